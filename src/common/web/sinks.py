"""Where an answer goes once its status is known: status and headers first, then the body.

A route returns a Response value; `serve` writes it into a sink. The buffered sink builds the
API Gateway proxy result that a buffered Lambda integration returns; a streaming sink (API
Gateway response streaming) sends the same status, headers and bytes as they come. The flow asks
the sink's `max_body_bytes` before it settles, so that an answer the sink cannot carry is never
charged.
"""
from __future__ import annotations

from typing import Protocol

# Lambda returns at most 6,291,556 bytes of JSON (body, headers and envelope): keep room for the rest.
BUFFERED_MAX_BODY_BYTES = 6_200_000


class Sink(Protocol):
    max_body_bytes: int | None  # None: no limit

    def start(self, status: int, headers: dict[str, str]) -> None: ...
    def write(self, chunk: bytes) -> None: ...
    def close(self) -> None: ...


class BufferedSink:
    """The whole answer as one API Gateway REST proxy result (a dict)."""

    max_body_bytes: int | None = BUFFERED_MAX_BODY_BYTES

    def __init__(self) -> None:
        self._status = 0
        self._headers: dict[str, str] = {}
        self._chunks: list[bytes] = []
        self._closed = False

    def start(self, status: int, headers: dict[str, str]) -> None:
        if self._status:
            raise RuntimeError("the status was already sent")
        self._status, self._headers = status, dict(headers)

    def write(self, chunk: bytes) -> None:
        if not self._status or self._closed:
            raise RuntimeError("write before start or after close")
        self._chunks.append(chunk)

    def close(self) -> None:
        self._closed = True

    def result(self) -> dict:
        if not self._closed:
            raise RuntimeError("the answer is not complete")
        return {"statusCode": self._status, "headers": self._headers,
                "body": b"".join(self._chunks).decode("utf-8"), "isBase64Encoded": False}
