"""The HTTP boundary: an API Gateway REST (v1) proxy event in, a Response into a sink out.

Every answer is JSON with `x-request-id` (API Gateway's request id, which is also the ledger's
request id and the logs' correlation id); every refusal is an `ApiError` in OpenAI's shape.
"""
from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from aws_lambda_powertools.metrics import MetricUnit

from common.errors import ApiError
from common.observability import logger, metrics
from common.web.sinks import BufferedSink

if TYPE_CHECKING:  # a protocol, for the type checker only
    from common.ports import Sink


@dataclass(frozen=True)
class Request:
    request_id: str
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    query: dict[str, str] = field(default_factory=dict)
    path_params: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    remaining_ms: Callable[[], int] = lambda: 30_000
    # The largest body the connection can carry back (a buffered Lambda answer); None: no limit.
    max_response_bytes: int | None = None
    # Answered through a streaming integration (API Gateway response streaming), not buffered.
    streamed: bool = False
    # What precedes `path` in the URL the client used: "/prod" on an execute-api host.
    base_path: str = ""

    @classmethod
    def from_event(cls, event: dict[str, Any], context: Any = None, *,
                   max_response_bytes: int | None = None, streamed: bool = False) -> "Request":
        raw = event.get("body") or ""
        body = base64.b64decode(raw) if event.get("isBase64Encoded") else raw.encode("utf-8")
        headers = {k.lower(): v for k, v in (event.get("headers") or {}).items() if v is not None}
        request_context = event.get("requestContext") or {}
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        path, full_path = event.get("path", ""), request_context.get("path") or ""
        return cls(
            request_id=request_context.get("requestId") or getattr(context, "aws_request_id", "") or "local",
            method=event.get("httpMethod", ""),
            path=path,
            headers=headers,
            body=body,
            query=dict(event.get("queryStringParameters") or {}),
            path_params=dict(event.get("pathParameters") or {}),
            remaining_ms=remaining or (lambda: 30_000),
            max_response_bytes=max_response_bytes,
            streamed=streamed,
            base_path=full_path.removesuffix(path) if path and full_path.endswith(path) else "",
        )

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def base_url(self) -> str:
        """The URL this API was called at, as the client saw it (the stage included)."""
        scheme = (self.header("x-forwarded-proto") or "https").split(",")[0].strip()
        return f"{scheme}://{self.header('host') or 'localhost'}{self.base_path}"


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes | Iterator[bytes]  # an iterator: the body's pieces as they are made (an event stream)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        # JSON has one number type; the shortest float repr prints these amounts digit for digit.
        return float(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def json_response(status: int, payload: Any, request_id: str, headers: dict[str, str] | None = None) -> Response:
    body = payload if isinstance(payload, bytes) else \
        json.dumps(payload, default=_json_default, separators=(",", ":")).encode("utf-8")
    return Response(status, {"Content-Type": "application/json", "x-request-id": request_id, **(headers or {})}, body)


def error_response(error: ApiError, request_id: str) -> Response:
    return json_response(error.status, error.body(), request_id, error.headers)


# A body is written in pieces of at most this size (a streamed answer never needs a copy of it).
WRITE_CHUNK_BYTES = 1 << 20

Deps = TypeVar("Deps")
Route = Callable[[Request, Deps], Response]


def serve(event: dict, context: Any, route: Route, deps: Deps, sink: Sink | None = None) -> Any:
    """Run one route and write its answer into the sink (buffered unless given); its refusals
    (and any bug) become OpenAI-shaped answers. Returns the buffered sink's proxy result."""
    sink = sink if sink is not None else BufferedSink()
    request = Request.from_event(event, context, max_response_bytes=sink.max_body_bytes,
                                 streamed=sink.max_body_bytes is None)
    try:
        response = route(request, deps)
    except ApiError as error:
        logger.info("request refused", extra={"status": error.status, "code": error.code, "param": error.param})
        metrics.add_metric(name="Refusals", unit=MetricUnit.Count, value=1)
        response = error_response(error, request.request_id)
    except Exception:
        logger.exception("unhandled error")
        response = error_response(
            ApiError(500, "The gateway had an internal error. You have not been charged.", type="server_error",
                     code="internal_error"),
            request.request_id,
        )
    write(response, sink)
    return sink.result() if isinstance(sink, BufferedSink) else None


def write(response: Response, sink: Sink) -> None:
    """Status and headers, then the body piece by piece. A body that fails after the status went
    out (an event stream's bug) ends the answer with the sink's failure signal."""
    sink.start(response.status, response.headers)
    pieces = (response.body,) if isinstance(response.body, bytes) else response.body
    try:
        for piece in pieces:
            view = memoryview(piece)
            for offset in range(0, len(view), WRITE_CHUNK_BYTES):
                sink.write(view[offset:offset + WRITE_CHUNK_BYTES])
    except Exception:
        logger.exception("the answer failed after its status was sent")
        sink.fail("internal_error", "The gateway had an internal error while sending the answer.")
        return
    sink.close()
