"""What an image really is, from its first bytes: filenames and declared types are not trusted.

`describe_image` reads the header of a PNG, JPEG or WebP far enough to get its dimensions, so
eight bytes of PNG signature followed by noise are refused here instead of being paid for
upstream. Hand-written on purpose: the three headers take a few dozen lines, where the libraries
that read them either add native code to every function (Pillow, 13 MB) or import a URL client
on the way (imagesize, 60 ms). The tests check it against images Pillow writes.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

EXTENSIONS = {"image/png": "png", "image/jpeg": "jpeg", "image/webp": "webp"}
# No upstream takes larger inputs than this per side; WebP itself stops at 16,383.
MAX_SIDE = 16_384

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers carry the dimensions; C4 (DHT), C8 (JPG) and CC (DAC) are not frames.
_JPEG_FRAMES = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM, RSTn: markers without a length


@dataclass(frozen=True)
class ImageInfo:
    content_type: str  # image/png, image/jpeg or image/webp
    width: int
    height: int

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


def sniff_image_type(data: bytes) -> str | None:
    """`image/png`, `image/jpeg` or `image/webp` by magic number; None for anything else."""
    if data.startswith(_PNG_SIGNATURE):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def describe_image(data: bytes) -> ImageInfo | None:
    """The type and dimensions from a header that decodes; None when it does not (or the type is
    not png, jpeg or webp)."""
    content_type = sniff_image_type(data)
    reader = {"image/png": _png_size, "image/jpeg": _jpeg_size, "image/webp": _webp_size}.get(content_type or "")
    try:
        dims = reader(data) if reader else None
    except (struct.error, IndexError):  # the header ends early
        dims = None
    if dims is None or not (0 < dims[0] and 0 < dims[1]) or content_type is None:
        return None
    return ImageInfo(content_type, *dims)


def _png_size(data: bytes) -> tuple[int, int] | None:
    # The first chunk must be a 13-byte IHDR whose CRC matches: noise after the signature fails here.
    length, kind = struct.unpack_from(">I4s", data, 8)
    if length != 13 or kind != b"IHDR" or len(data) < 33:
        return None
    (crc,) = struct.unpack_from(">I", data, 29)
    if zlib.crc32(data[12:29]) != crc:
        return None
    width, height = struct.unpack_from(">II", data, 16)
    return width, height


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None  # a segment must start with a marker
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in _JPEG_STANDALONE:
            at += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return None
        (length,) = struct.unpack_from(">H", data, at + 2)
        if length < 2:
            return None
        if marker in _JPEG_FRAMES:
            height, width = struct.unpack_from(">HH", data, at + 5)
            return width, height
        at += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":  # lossy: key frame start code
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and data[20] == 0x2F:  # lossless: 14-bit sizes minus one
        (bits,) = struct.unpack_from("<I", data, 21)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:  # extended: 24-bit canvas sizes minus one
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None
