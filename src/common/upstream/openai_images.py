"""OpenAI's images protocol, on any Transport: what goes out, what comes back, what it means.

- `ImageCall` is one request to the upstream as a value. The two refusals the gateway works
  around (`response_format` refused, the JSON form of an edit refused) produce a NEW call
  (`without`, `as_multipart`), never a changed one, so what was sent is what the value says.
- `OpenAIImages.send` writes a call as JSON or multipart (one file as `image`, several as
  `image[]`, what both official SDKs send) and turns transport failures into the customer's
  errors.
- `parse_answer` reads a 200 (JSON `ImagesResponse`, or server-sent events) into an `Answer`;
  `error_from_reply` maps anything else to what the customer sees.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from common.errors import ApiError, upstream_error, upstream_timeout
from common.images.schemas import ImagesResponse
from common.ports import HttpReply, Transport
from common.upstream.transport import ConnectionLost, TimedOut, Unreachable

# Edit references that a multipart body carries as files instead.
REFERENCE_FIELDS = ("images", "mask")


@dataclass(frozen=True)
class UploadedFile:
    field: str  # "image", "image[]" or "mask", as received
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class ImageCall:
    """One request to /images/{endpoint}: JSON fields, or multipart text fields plus files."""

    endpoint: str  # "generations" or "edits"
    fields: Mapping[str, Any]
    files: tuple[UploadedFile, ...] | None = None  # set: sent as multipart/form-data

    def without(self, name: str) -> "ImageCall":
        return ImageCall(self.endpoint, {k: v for k, v in self.fields.items() if k != name}, self.files)

    def as_multipart(self, files: tuple[UploadedFile, ...]) -> "ImageCall":
        """The same edit with its image references replaced by the downloaded files."""
        return ImageCall(self.endpoint, {k: v for k, v in self.fields.items() if k not in REFERENCE_FIELDS}, files)


class OpenAIImages:
    """The upstream as the image flow sees it."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def send(self, call: ImageCall, deadline: float) -> HttpReply:
        path = f"/images/{call.endpoint}"
        try:
            if call.files is None:
                return self.transport.post(path, json_body=dict(call.fields), deadline=deadline)
            images = sum(f.field != "mask" for f in call.files)
            image_field = "image" if images == 1 else "image[]"
            files = [("mask" if f.field == "mask" else image_field, (f.filename, f.data, f.content_type))
                     for f in call.files]
            return self.transport.post(path, data=form_fields(call.fields), files=files, deadline=deadline)
        except TimedOut as timeout:
            raise upstream_timeout(timeout.seconds) from None
        except ConnectionLost:
            raise upstream_error("The connection to the image service was lost. You have not been charged.") from None
        except Unreachable:
            raise upstream_error("The image service could not be reached. You have not been charged.") from None


def form_fields(fields: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Multipart text fields: strings as they are (a multipart request's own fields are forwarded
    exactly); JSON values written the way the SDKs write them."""
    out = []
    for name, value in fields.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif not isinstance(value, str):
            value = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
        out.append((name, value))
    return out


# --- refusals the gateway works around ------------------------------------------------------

def rejects_parameter(reply: HttpReply, name: str) -> bool:
    """Did the upstream refuse the request because of this parameter?"""
    if reply.status != 400:
        return False
    body = reply.json()
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return False
    return error.get("param") == name or (
        error.get("code") in ("unknown_parameter", "unsupported_parameter") and f"'{name}'" in str(error.get("message")))


def rejects_json_form(reply: HttpReply) -> bool:
    """Did the upstream refuse a JSON edit (it only takes multipart uploads)?"""
    return reply.status == 415 or rejects_parameter(reply, "images")


# --- answers --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Answer:
    """A successful upstream answer: a JSON body (ImagesResponse) or a buffered event stream."""

    body: dict[str, Any] | None
    stream: bytes | None
    raw_usage: dict[str, Any] | None
    images: int


def parse_answer(reply: HttpReply) -> Answer:
    """The upstream's reply as an Answer, or the ApiError the customer gets instead."""
    if reply.status >= 400:
        raise error_from_reply(reply)
    content_type = (reply.headers.get("content-type") or "").lower()
    if content_type.startswith("text/event-stream"):
        return _parse_stream(reply.content)
    body = reply.json()
    if not isinstance(body, dict):
        raise upstream_error()
    try:
        parsed = ImagesResponse.model_validate(body)
    except ValueError:
        raise upstream_error("The image service answered without images. You have not been charged.") from None
    if any(not (item.b64_json or item.url) for item in parsed.data):
        raise upstream_error("The image service answered without images. You have not been charged.")
    return Answer(body=body, stream=None, raw_usage=parsed.usage, images=len(parsed.data))


def _parse_stream(content: bytes) -> Answer:
    """Buffered SSE: the events pass through unchanged; usage comes from the completed events."""
    usage: dict[str, Any] = {}
    completed = 0
    for block in content.decode("utf-8", "replace").split("\n\n"):
        data = "".join(line[5:].strip() for line in block.splitlines() if line.startswith("data:"))
        if not data or data == "[DONE]":
            continue
        try:
            event = json.loads(data)
        except ValueError:
            raise upstream_error() from None
        if str(event.get("type", "")).endswith(".completed"):
            completed += 1
            usage = _add_usage(usage, event.get("usage") or {})
    if not completed:
        raise upstream_error("The image service's stream ended without an image. You have not been charged.")
    return Answer(body=None, stream=content, raw_usage=usage or None, images=completed)


def _add_usage(total: dict[str, Any], usage: dict[str, Any]) -> dict[str, Any]:
    out = dict(total)
    for key, value in usage.items():
        if isinstance(value, dict):
            out[key] = _add_usage(out.get(key) or {}, value)
        elif isinstance(value, int):
            out[key] = out.get(key, 0) + value
    return out


def error_from_reply(reply: HttpReply) -> ApiError:
    """Map an unsuccessful upstream answer to what the customer sees."""
    body = reply.json()
    error = body.get("error") if isinstance(body, dict) else None
    headers = {}
    if reply.headers.get("x-request-id"):
        headers["x-upstream-request-id"] = reply.headers["x-request-id"]
    if reply.status in (401, 403):
        # The platform's own key was refused: not the customer's fault, and not their key.
        return ApiError(502, "The gateway could not authenticate with the image service. Please contact the platform.",
                        type="server_error", code="upstream_auth_error", headers=headers)
    if reply.status == 429 and isinstance(error, dict) and error.get("code") == "insufficient_quota":
        # The platform's own upstream account is out of credit: the customer's balance is fine.
        return ApiError(503, "The image service is temporarily unavailable on this platform. You have not been charged.",
                        type="server_error", code="upstream_unavailable", headers=headers)
    if 400 <= reply.status < 500 and isinstance(error, dict) and isinstance(error.get("message"), str):
        if reply.status == 429 and reply.headers.get("retry-after"):
            headers["retry-after"] = reply.headers["retry-after"]
        full = {"error": {"message": error["message"], "type": error.get("type") or "invalid_request_error",
                          "param": error.get("param"), "code": error.get("code"),
                          **{k: v for k, v in error.items() if k not in ("message", "type", "param", "code")}}}
        return ApiError(reply.status, error["message"], type=full["error"]["type"], param=error.get("param"),
                        code=error.get("code"), headers=headers, body=full)
    return ApiError(502, f"The image service failed (HTTP {reply.status}). You have not been charged; please retry.",
                    type="server_error", code="upstream_error", headers=headers)
