"""multipart/form-data edits, as the official SDKs and curl send them.

Parsed with the `multipart` library. Files are kept byte for byte with the filename and content
type they arrived with, so they can be forwarded upstream unchanged; each file's real type is
checked from its bytes (png, jpeg, webp; the mask must be a PNG) whatever its name claims.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Any

from multipart import MultipartError, MultipartParser, parse_options_header

from common.errors import ApiError, invalid_request
from common.images.imagetypes import ImageInfo, sniff_image_type
from common.images.inputs import check_mask, checked_image
from common.upstream.openai_images import UploadedFile

MAX_IMAGES = 16
# OpenAI's per-file limit. In AWS a multipart body is also bounded by API Gateway (10 MB) and by
# Lambda's 6 MB event (about 4.4 MB of upload once base64-encoded): larger images go by URL.
MAX_FILE_BYTES = 50 * 1024 * 1024
IMAGE_FIELDS = ("image", "image[]")
INTEGER_FIELDS = ("n", "output_compression", "partial_images")
BOOLEAN_FIELDS = ("stream",)


@dataclass(frozen=True)
class MultipartEdit:
    fields: dict[str, str]  # every non-file field, exactly as received
    images: list[UploadedFile]
    mask: UploadedFile | None

    def typed_fields(self) -> dict[str, Any]:
        """Fields with the types the JSON form would have, for validation.

        The Python SDK sends `true`/`false` for booleans and an empty string for None.
        """
        typed: dict[str, Any] = {}
        for name, value in self.fields.items():
            if value == "":
                continue
            if name in INTEGER_FIELDS and re.fullmatch(r"-?[0-9]+", value):
                typed[name] = int(value)
            elif name in BOOLEAN_FIELDS and value.lower() in ("true", "false"):
                typed[name] = value.lower() == "true"
            else:
                typed[name] = value
        return typed


def too_large(what: str) -> ApiError:
    return ApiError(
        413,
        f"{what} Upload smaller files, or send the edit as JSON with images[].image_url references "
        "(https or data URLs), which have no upload limit here.",
        param="image",
        code="request_too_large",
    )


def parse_multipart(body: bytes, content_type: str) -> MultipartEdit:
    _, options = parse_options_header(content_type)
    boundary = options.get("boundary")
    if not boundary:
        raise invalid_request("multipart/form-data needs a boundary in its Content-Type.", code="invalid_multipart")
    fields: dict[str, str] = {}
    images: list[UploadedFile] = []
    mask: UploadedFile | None = None
    sizes: dict[str, ImageInfo] = {}  # the first image's and the mask's, for the mask rule
    try:
        parser = MultipartParser(io.BytesIO(body), boundary, content_length=len(body), part_limit=64,
                                 memory_limit=len(body) + 1024, memfile_limit=len(body) + 1024)
        for part in parser:
            if part.filename is None:
                fields[part.name] = _text_field(part.name, part.raw)
                continue
            data = part.raw
            if len(data) > MAX_FILE_BYTES:
                raise too_large(f"The file '{part.filename}' is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB.")
            if part.name not in (*IMAGE_FIELDS, "mask"):
                raise invalid_request(f"Unexpected file field '{part.name}'.", param=part.name, code="invalid_value")
            upload, info = _checked_file(part.name, part.filename, part.headers.get("Content-Type"), data)
            if part.name == "mask":
                mask, sizes["mask"] = upload, info
            else:
                images.append(upload)
                sizes.setdefault("image", info)
    except MultipartError as exc:
        raise invalid_request(f"The multipart body could not be parsed: {exc}.", code="invalid_multipart") from None
    if not images:
        raise invalid_request("Missing required parameter: 'image'.", param="image", code="missing_required_parameter")
    if len(images) > MAX_IMAGES:
        raise invalid_request(f"Too many images: at most {MAX_IMAGES} are allowed, got {len(images)}.",
                              param="image", code="too_many_images")
    check_mask(sizes.get("image"), sizes.get("mask"), "mask")
    return MultipartEdit(fields=fields, images=images, mask=mask)


def _text_field(name: str, raw: bytes) -> str:
    """A text field's value; bytes that are not UTF-8 are a mistaken upload, not a 500."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        hint = (" It looks like a file sent as a text field (curl's -F 'image=<file' sends the file's bytes as "
                "text): send files with -F 'image=@file'.") if sniff_image_type(raw) or name in IMAGE_FIELDS + ("mask",) \
            else ""
        raise invalid_request(f"The multipart field '{name}' is not UTF-8 text.{hint}", param=name,
                              code="invalid_multipart") from None


def _checked_file(field: str, filename: str, declared: str | None, data: bytes) -> tuple[UploadedFile, ImageInfo]:
    param = "mask" if field == "mask" else "image"
    info = checked_image(data, f"The file '{filename}'", param, "invalid_image_format")
    # Raw bytes from an SDK arrive as application/octet-stream, which OpenAI refuses: name the real type.
    content_type = declared if declared and declared != "application/octet-stream" else info.content_type
    return UploadedFile(field=field, filename=filename, content_type=content_type, data=data), info
