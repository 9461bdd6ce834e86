"""What an image really is, from its first bytes: filenames and declared types are not trusted."""
from __future__ import annotations

EXTENSIONS = {"image/png": "png", "image/jpeg": "jpeg", "image/webp": "webp"}


def sniff_image_type(data: bytes) -> str | None:
    """`image/png`, `image/jpeg` or `image/webp` by magic number; None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None
