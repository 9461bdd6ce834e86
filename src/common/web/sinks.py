"""Where an answer goes once its status is known: status and headers first, then the body.

A route returns a Response value; `serve` writes it into a sink. The buffered sink builds the
API Gateway proxy result that a buffered Lambda integration returns; the stream sink sends the
same status, headers and bytes as they come, through a response stream: our Lambda runtime's
(src/runtime, API Gateway response streaming) in AWS, the local stack's socket in `make run`.
The flow asks the sink's `max_body_bytes` before it settles, so that an answer the sink cannot
carry is never charged.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # protocols (common.ports), for the type checker only
    from common.ports import ResponseStream, Sink

# Lambda returns at most 6,291,556 bytes of JSON (body, headers and envelope): keep room for the rest.
BUFFERED_MAX_BODY_BYTES = 6_200_000


class StreamSink:
    """The answer through a response stream, as it is written: no size limit, no buffering."""

    max_body_bytes: int | None = None

    def __init__(self, stream: ResponseStream) -> None:
        self._stream = stream

    def start(self, status: int, headers: dict[str, str]) -> None:
        self._stream.start(status, headers)

    def write(self, chunk: bytes | memoryview) -> None:
        self._stream.write(chunk)

    def close(self) -> None:
        self._stream.close()

    def fail(self, error_type: str, message: str) -> None:
        self._stream.fail(error_type, message)


def sink_for(response_stream: ResponseStream | None) -> Sink:
    """A handler's sink: the stream it was given (a streaming invocation), else a buffered answer."""
    return StreamSink(response_stream) if response_stream is not None else BufferedSink()


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

    def write(self, chunk: bytes | memoryview) -> None:
        if not self._status or self._closed:
            raise RuntimeError("write before start or after close")
        self._chunks.append(bytes(chunk))

    def close(self) -> None:
        self._closed = True

    def fail(self, error_type: str, message: str) -> None:
        """Nothing has left yet: the whole answer becomes a 500 in OpenAI's shape."""
        body = json.dumps({"error": {"message": message, "type": "server_error", "param": None, "code": error_type}})
        self._status, self._chunks, self._closed = 500, [body.encode()], True
        self._headers = {**self._headers, "Content-Type": "application/json"}

    def result(self) -> dict:
        if not self._closed:
            raise RuntimeError("the answer is not complete")
        return {"statusCode": self._status, "headers": self._headers,
                "body": b"".join(self._chunks).decode("utf-8"), "isBase64Encoded": False}
