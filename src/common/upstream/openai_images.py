"""OpenAI's images protocol, on any Transport: what goes out, what comes back, what it means.

- `ImageCall` is one request to the upstream as a value. The two refusals the gateway works
  around (`response_format` refused, the JSON form of an edit refused) produce a NEW call
  (`without`, `as_multipart`), never a changed one, so what was sent is what the value says.
- `OpenAIImages.send` writes a call as JSON or multipart (one file as `image`, several as
  `image[]`, what both official SDKs send) and turns transport failures into the customer's
  errors.
- `parse_answer` reads a JSON 200 into an `Answer`; `events_of` reads an event stream (stream=true)
  event by event as it arrives; `error_from_reply` maps anything else to what the customer sees.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from pydantic_core import from_json

from common.errors import ApiError, upstream_error, upstream_timeout
from common.images.schemas import ImagesResponse
from common.upstream.transport import TimedOut, TransportError, Unreachable

if TYPE_CHECKING:  # the ports are protocols: for the type checker only, nothing to import at cold start
    from common.ports import HttpReply, Transport

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
        """The reply; an event stream (stream=true) comes back unread, to be relayed as it arrives."""
        path = f"/images/{call.endpoint}"
        stream = call.fields.get("stream") in (True, "true", "True")
        try:
            if call.files is None:
                return self.transport.post(path, json_body=dict(call.fields), deadline=deadline, stream_events=stream)
            images = sum(f.field != "mask" for f in call.files)
            image_field = "image" if images == 1 else "image[]"
            files = [("mask" if f.field == "mask" else image_field, (f.filename, f.data, f.content_type))
                     for f in call.files]
            return self.transport.post(path, data=form_fields(call.fields), files=files, deadline=deadline,
                                       stream_events=stream)
        except TransportError as failure:
            raise customer_error(failure) from None


def customer_error(failure: TransportError) -> ApiError:
    """What the customer is told when the transport has no reply to give."""
    if isinstance(failure, TimedOut):
        return upstream_timeout(failure.seconds)
    if isinstance(failure, Unreachable):
        return upstream_error("The image service could not be reached. You have not been charged.")
    return upstream_error("The connection to the image service was lost. You have not been charged.")


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
    """A successful JSON answer, parsed once (pydantic's JSON parser, straight from the bytes). The
    bytes themselves are kept: in b64 mode they go to the customer as they came, never re-encoded."""

    raw: bytes
    response: ImagesResponse

    @property
    def raw_usage(self) -> dict[str, Any] | None:
        return self.response.usage

    @property
    def images(self) -> int:
        return len(self.response.data)


def parse_answer(reply: HttpReply) -> Answer:
    """The upstream's JSON reply as an Answer, or the ApiError the customer gets instead."""
    if reply.status >= 400:
        raise error_from_reply(reply)
    try:
        response = ImagesResponse.model_validate_json(reply.content)
    except ValidationError as invalid:
        if any(error["type"] == "json_invalid" for error in invalid.errors()):
            raise upstream_error() from None
        raise upstream_error("The image service answered without images. You have not been charged.") from None
    if any(not (item.b64_json or item.url) for item in response.data):
        raise upstream_error("The image service answered without images. You have not been charged.")
    return Answer(reply.content, response)


def is_event_stream(reply: HttpReply) -> bool:
    return reply.status == 200 and reply.streamed


# --- server-sent events (stream=true) -------------------------------------------------------

@dataclass(frozen=True)
class Event:
    """One server-sent event as it came (passed on unchanged), and what the gateway reads of it."""

    raw: bytes  # with its terminating blank line
    type: str  # the data's "type" (OpenAI puts it there), else the `event:` field
    data: dict[str, Any] | None

    @property
    def completed(self) -> bool:
        return self.type.endswith(".completed")

    @property
    def failed(self) -> bool:
        return self.type == "error" or (self.data is not None and "error" in self.data)


_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")


def events_of(chunks: Iterable[bytes]) -> Iterator[Event]:
    """Server-sent events from the bytes of a stream, each as soon as its blank line arrives.
    A partial event at the end (the connection dropped mid-event) is not an event."""
    buffer = bytearray()
    searched = 0
    for chunk in chunks:
        buffer += chunk
        while match := _EVENT_END.search(buffer, max(searched - 3, 0)):
            raw = bytes(buffer[:match.end()])
            del buffer[:match.end()]
            searched = 0
            event = _event(raw)
            if event is not None:
                yield event
        searched = len(buffer)


def _event(raw: bytes) -> Event | None:
    name, data = "", []
    for line in raw.splitlines():
        field, _, value = line.partition(b":")
        value = value[1:] if value.startswith(b" ") else value
        if field == b"event":
            name = value.decode("utf-8", "replace")
        elif field == b"data":
            data.append(value)
    if not data:
        return None  # a comment or a keep-alive: nothing to pass on
    payload = b"\n".join(data)
    try:
        parsed = from_json(payload) if payload != b"[DONE]" else None
    except ValueError:
        raise upstream_error("The image service sent an unreadable event. You have not been charged.") from None
    parsed = parsed if isinstance(parsed, dict) else None
    kind = parsed.get("type") if parsed and isinstance(parsed.get("type"), str) else name
    return Event(raw, kind, parsed)


def add_usage(total: dict[str, Any], usage: dict[str, Any]) -> dict[str, Any]:
    """Usage blocks added up, key by key (n > 1 streams report usage per completed event)."""
    out = dict(total)
    for key, value in usage.items():
        if isinstance(value, dict):
            out[key] = add_usage(out.get(key) or {}, value)
        elif isinstance(value, int) and not isinstance(value, bool):
            out[key] = out.get(key, 0) + value
    return out


def error_event(error: ApiError) -> bytes:
    """An error as the last event of a stream, in OpenAI's shape (the SDKs raise it as APIError)."""
    body = error.body()
    return b"event: error\ndata: " + json.dumps({"type": "error", **body}, separators=(",", ":")).encode() + b"\n\n"


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
