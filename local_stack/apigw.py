"""API Gateway (REST, Lambda proxy integration) on 127.0.0.1, calling the handlers in-process.

It does what the deployed API does to a request, as far as a handler or a client can tell:
routes and path parameters from the template, the v1 proxy event, base64 bodies for the API's
BinaryMediaTypes, the 10 MB request limit, Lambda's 6 MB payload limits, the integration timeout,
the proxy-result rules (a malformed result is a 502), and the API's own errors rendered from the
template's GatewayResponses. Bodies and headers are never logged: one access line per request.

Routes whose event says `ResponseTransferMode: RESPONSE_STREAM` run as streaming integrations:
the handler gets a `response_stream` (what our Lambda runtime gives it in AWS), its status and
headers reach the client when it starts the stream and each write becomes a chunk at once; no
6 MB or 10 MB limit on the answer, but API Gateway's: the integration timeout over the whole
answer (up to 15 minutes), 5 minutes idle at most, 200 MB at most, the first 10 MB at full speed
and then 2 MB/s. The request side keeps its limits.
"""
from __future__ import annotations

import base64
import binascii
import importlib
import json
import queue
import re
import secrets
import socket
import sys
import threading
import time
import traceback
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Any
from urllib.parse import parse_qsl, urlsplit

from local_stack.template import ApiSpec, GatewayResponse, Route

REQUEST_BODY_LIMIT = 10_485_760  # API Gateway: 10 MB, not raisable
LAMBDA_REQUEST_LIMIT = 6_291_456  # synchronous Invoke payload (the event JSON)
LAMBDA_RESPONSE_LIMIT = 6_291_556  # synchronous Invoke response (the result JSON)
# Response streaming (API Gateway REST with a Lambda streaming integration):
STREAM_IDLE_TIMEOUT_S = 300.0  # no byte for this long ends the answer (regional endpoints)
STREAM_RESPONSE_LIMIT = 200 * 1024 * 1024  # a Lambda streamed response
STREAM_UNTHROTTLED_BYTES = 10 * 1024 * 1024  # then
STREAM_THROTTLED_BYTES_PER_S = 2 * 1024 * 1024
# A body this far past the limit is not read to the end: the connection is closed instead.
DISCARD_LIMIT = 4 * REQUEST_BODY_LIMIT

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
API_ID = "local"

PROXY_RESULT_KEYS = {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"}
# API Gateway renames these headers of a proxy result to x-amzn-Remapped-<name>: they belong to
# its own connection with the client.
REMAPPED_HEADERS = {
    "authorization", "connection", "content-length", "date", "max-forwards", "proxy-authenticate",
    "server", "trailer", "transfer-encoding", "upgrade", "user-agent", "via", "warning",
    "www-authenticate",
}
# API Gateway's built-in messages ($context.error.message) for the errors emulated here.
MESSAGES = {
    "MISSING_AUTHENTICATION_TOKEN": "Missing Authentication Token",
    "REQUEST_TOO_LARGE": "Request Too Long",
    "INTEGRATION_TIMEOUT": "Endpoint request timed out",
    "DEFAULT_5XX": "Internal server error",
}


# --- the request and the event ----------------------------------------------------------------

@dataclass
class IncomingRequest:
    """An HTTP request as the client sent it (before API Gateway's transformations)."""

    method: str
    target: str  # path and query string as on the request line
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str = "127.0.0.1"
    protocol: str = "HTTP/1.1"
    server_port: int = 443

    @property
    def path(self) -> str:
        return urlsplit(self.target).path or "/"

    @property
    def query(self) -> str:
        return urlsplit(self.target).query

    def header(self, name: str) -> str | None:
        found = None
        for key, value in self.headers:
            if key.lower() == name.lower():
                found = value  # last value wins, as in the event's `headers`
        return found


@dataclass(frozen=True)
class RequestIds:
    request_id: str
    extended_request_id: str
    trace_id: str
    epoch_ms: int

    @classmethod
    def new(cls) -> "RequestIds":
        now = time.time()
        trace = f"Root=1-{int(now):08x}-{secrets.token_hex(12)}"
        extended = base64.b64encode(secrets.token_bytes(10)).decode()[:14] + "="
        return cls(str(uuid.uuid4()), extended, trace, int(now * 1000))


class Router:
    """Template paths with {param} and {proxy+} segments; the most specific path wins."""

    def __init__(self, routes: tuple[Route, ...], stage: str):
        self.stage = stage
        self._routes = [(route, route.path.strip("/").split("/") if route.path != "/" else [])
                        for route in routes]

    def public_path(self, path: str) -> str:
        """The path without the stage: /v1/models and /prod/v1/models (as in AWS) both work."""
        prefix = f"/{self.stage}"
        if path == prefix:
            return "/"
        return path[len(prefix):] if path.startswith(prefix + "/") else path

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        segments = [s for s in path.strip("/").split("/")] if path.strip("/") else []
        candidates = []
        for route, pattern in self._routes:
            if route.method not in (method, "ANY"):
                continue
            parameters = _match_segments(pattern, segments)
            if parameters is None:
                continue
            # static < {param} < {proxy+}, segment by segment; then exact method before ANY
            rank = tuple(2 if p.endswith("+}") else 1 if p.startswith("{") else 0 for p in pattern)
            candidates.append((rank, route.method == "ANY", route, parameters))
        if not candidates:
            return None
        _, _, route, parameters = min(candidates, key=lambda c: (c[0], c[1]))
        return route, parameters


def _match_segments(pattern: list[str], segments: list[str]) -> dict[str, str] | None:
    parameters: dict[str, str] = {}
    for index, part in enumerate(pattern):
        if part.startswith("{") and part.endswith("+}"):
            rest = segments[index:]
            if not rest:
                return None
            parameters[part[1:-2]] = "/".join(rest)
            return parameters
        if index >= len(segments):
            return None
        if part.startswith("{") and part.endswith("}"):
            if not segments[index]:
                return None
            parameters[part[1:-1]] = segments[index]
        elif part != segments[index]:
            return None
    return parameters if len(pattern) == len(segments) else None


def media_type_matches(content_type: str | None, patterns: tuple[str, ...]) -> bool:
    """Whether a Content-Type (or Accept) value is one of the API's BinaryMediaTypes."""
    if not content_type:
        return False
    kind = content_type.split(";", 1)[0].strip().lower()
    major = kind.split("/", 1)[0]
    for pattern in patterns:
        pattern = pattern.strip().lower()
        if pattern in ("*/*", kind) or (pattern.endswith("/*") and pattern[:-2] == major):
            return True
    return False


def build_event(request: IncomingRequest, route: Route, path_parameters: dict[str, str],
                stage: str, binary_media_types: tuple[str, ...], ids: RequestIds) -> dict:
    """The REST API (v1) Lambda proxy event API Gateway would send for this request."""
    headers: dict[str, str] = {}
    multi_headers: dict[str, list[str]] = {}
    names: dict[str, str] = {}  # lower-case -> first spelling seen (HTTP names are case-blind)
    for key, value in request.headers:
        name = names.setdefault(key.lower(), key)
        headers[name] = value
        multi_headers.setdefault(name, []).append(value)

    # Headers API Gateway adds on its way to the integration.
    def add(name: str, value: str) -> None:
        name = names.setdefault(name.lower(), name)
        headers[name] = value
        multi_headers[name] = [value]

    forwarded = headers.get(names.get("x-forwarded-for", ""), "")
    add("X-Forwarded-For", f"{forwarded}, {request.source_ip}" if forwarded else request.source_ip)
    # Locally the client speaks plain http to this port (AWS would say https and 443).
    add("X-Forwarded-Port", str(request.server_port))
    add("X-Forwarded-Proto", "http")
    add("X-Amzn-Trace-Id", ids.trace_id)

    query: dict[str, str] = {}
    multi_query: dict[str, list[str]] = {}
    for key, value in parse_qsl(request.query, keep_blank_values=True):
        query[key] = value
        multi_query.setdefault(key, []).append(value)

    if not request.body:
        body, is_base64 = None, False
    elif media_type_matches(request.header("content-type"), binary_media_types):
        body, is_base64 = base64.b64encode(request.body).decode("ascii"), True
    else:
        body, is_base64 = request.body.decode("utf-8", errors="replace"), False

    host = request.header("host") or "127.0.0.1"
    public_path = Router((), stage).public_path(request.path)
    return {
        "resource": route.path,
        "path": public_path,
        "httpMethod": request.method,
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": f"{zlib.crc32(route.path.encode()) & 0xFFFFFF:06x}",
            "resourcePath": route.path,
            "httpMethod": request.method,
            "extendedRequestId": ids.extended_request_id,
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(ids.epoch_ms / 1000)),
            "path": f"/{stage}{public_path}",
            "accountId": ACCOUNT_ID,
            "protocol": request.protocol,
            "stage": stage,
            "domainPrefix": host.split(".", 1)[0],
            "requestTimeEpoch": ids.epoch_ms,
            "requestId": ids.request_id,
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "sourceIp": request.source_ip,
                "principalOrgId": None,
                "accessKey": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "userAgent": request.header("user-agent"),
                "user": None,
            },
            "domainName": host,
            "apiId": API_ID,
        },
        "body": body,
        "isBase64Encoded": is_base64,
    }


# --- the Lambda side --------------------------------------------------------------------------

class LambdaContext:
    """The context object of the Python runtime (awslambdaric's LambdaContext)."""

    def __init__(self, route: Route, timeout_s: float):
        name = function_name(route)
        self.function_name = name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"
        # The runtime reads it from AWS_LAMBDA_FUNCTION_MEMORY_SIZE: a string, not an int.
        self.memory_limit_in_mb = str(route.memory_mb)
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{secrets.token_hex(16)}"
        self.identity = None
        self.client_context = None
        self._deadline_ms = int(time.time() * 1000 + timeout_s * 1000)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


def function_name(route: Route) -> str:
    return f"image-gateway-local-{route.function}"


class Functions:
    """Handlers imported once per process, like a warm container per function."""

    def __init__(self, overrides: dict[str, Callable] | None = None):
        self._overrides = overrides or {}
        self._loaded: dict[tuple[str, str], Callable] = {}
        self._lock = threading.Lock()

    def get(self, route: Route) -> Callable:
        if route.function in self._overrides:
            return self._overrides[route.function]
        key = (str(route.code_uri), route.handler)
        with self._lock:
            if key not in self._loaded:
                self._loaded[key] = self._import(route)
            return self._loaded[key]

    @staticmethod
    def _import(route: Route) -> Callable:
        module_name, _, attribute = route.handler.rpartition(".")
        if not module_name:
            raise ImportError(f"{route.function}: Handler {route.handler!r} is not module.function")
        if str(route.code_uri) not in sys.path:
            sys.path.insert(0, str(route.code_uri))
        module = importlib.import_module(module_name.replace("/", "."))
        handler = getattr(module, attribute, None)
        if not callable(handler):
            raise ImportError(f"{route.function}: {module_name} has no callable {attribute!r}")
        return handler


class BadResult(Exception):
    """The function's result is not a valid proxy result (API Gateway: 502)."""


class StreamCut(Exception):
    """A streamed answer ends early: the client sees the connection close without the last chunk."""


@dataclass
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    note: str = ""  # for the access line: why API Gateway answered itself
    chunks: Iterator[bytes] | None = None  # a streamed answer's body, piece by piece (then `body` is empty)


class LocalResponseStream:
    """What a streaming handler gets as `response_stream` here: the same methods as our Lambda
    runtime's (runtime.client.ResponseStream). Writes go through a small queue to the client's
    connection, so a slow client slows the handler down as a socket would; once the client is
    gone, writes are dropped and the handler runs on, as in AWS, where it gets no signal."""

    def __init__(self) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=16)
        self.abandoned = threading.Event()  # the client went away, or API Gateway ended the answer
        self.started = False
        self.done = False

    def _put(self, item: tuple) -> None:
        while not self.abandoned.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def start(self, status_code: int, headers: dict | None = None, cookies: list | None = None) -> None:
        if self.started:
            raise RuntimeError("response_stream.start() was already called")
        self.started = True
        self._put(("start", int(status_code), dict(headers or {}), list(cookies or [])))

    def write(self, data: bytes | memoryview | str) -> None:
        if not self.started or self.done:
            raise RuntimeError("response_stream.write() before start() or after the end")
        # Kept as given (a memoryview of an immutable body is not copied): it goes to the socket as is.
        data = data.encode() if isinstance(data, str) else data
        if len(data):
            self._put(("data", data))

    def close(self) -> None:
        if self.started and not self.done:
            self.done = True
            self._put(("end",))

    def fail(self, error_type: str, message: str) -> None:
        if not self.done:
            self.done = True
            self._put(("fail", error_type))

    # -- the gateway's side
    def finish(self, result: Any, error: BaseException | None) -> None:
        """The handler returned (with `result`) or raised."""
        if error is not None:
            self._put(("error", error))
        elif not self.started:
            self._put(("result", result))  # answered without the stream: a proxy result, as the runtime allows
        else:
            self.close()

    def next(self, timeout: float) -> tuple | None:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None


def proxy_result_to_http(result: Any, accept: str | None,
                         binary_media_types: tuple[str, ...]) -> HttpResponse:
    """Validate a Lambda proxy result as API Gateway does and turn it into the HTTP answer."""
    if not isinstance(result, dict):
        raise BadResult(f"result is {type(result).__name__}, not an object")
    extra = set(result) - PROXY_RESULT_KEYS
    if extra:
        raise BadResult(f"unexpected keys {sorted(extra)}")
    if "statusCode" not in result:
        raise BadResult("no statusCode")
    status = result["statusCode"]
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise BadResult(f"statusCode {status!r}")
    body = result.get("body")
    if body is not None and not isinstance(body, str):
        raise BadResult(f"body is {type(body).__name__}, not a string")
    encoded = result.get("isBase64Encoded", False)
    if encoded not in (True, False, "true", "false"):
        raise BadResult(f"isBase64Encoded {encoded!r}")
    encoded = encoded in (True, "true")

    if not isinstance(result.get("headers") or {}, dict) or \
            not isinstance(result.get("multiValueHeaders") or {}, dict):
        raise BadResult("headers and multiValueHeaders must be objects")
    merged: dict[str, list[str]] = {}
    for name, values in (result.get("multiValueHeaders") or {}).items():
        if not isinstance(values, list):
            raise BadResult(f"multiValueHeaders[{name!r}] is not a list")
        merged[name] = [_header_value(name, v) for v in values if v is not None]
    for name, value in (result.get("headers") or {}).items():
        if name not in merged and value is not None:  # multiValueHeaders wins for a shared name
            merged[name] = [_header_value(name, value)]

    headers: list[tuple[str, str]] = []
    for name, values in merged.items():
        if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
            raise BadResult(f"invalid header name {name!r}")
        if name.lower() in REMAPPED_HEADERS:
            name = f"x-amzn-Remapped-{name}"
        headers.extend((name, value) for value in values)
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", "application/json"))

    data = (body or "").encode("utf-8")
    # A base64 body reaches the client decoded only when the client's Accept (its first type)
    # is one of the BinaryMediaTypes; otherwise API Gateway passes the base64 text through.
    first_accept = (accept or "").split(",", 1)[0]
    if encoded and body and media_type_matches(first_accept, binary_media_types):
        try:
            data = base64.b64decode(body, validate=True)
        except binascii.Error:
            raise BadResult("body is not valid base64") from None
    return HttpResponse(status, headers, data)


def _header_value(name: str, value: Any) -> str:
    if isinstance(value, bool):
        value = "true" if value else "false"
    if not isinstance(value, (str, int, float)):
        raise BadResult(f"header {name!r} has a {type(value).__name__} value")
    value = str(value)
    if "\r" in value or "\n" in value:
        raise BadResult(f"header {name!r} contains a line break")
    return value


# --- the gateway ------------------------------------------------------------------------------

# $context.x, $!context.x or ${context.x}, as VTL writes them
_CONTEXT_VARIABLE = re.compile(r"\$!?(?:\{(context(?:\.\w+)+)\}|(context(?:\.\w+)+))")


class ApiGateway:
    """One REST API stage, served on host:port without the stage in the path."""

    def __init__(self, api: ApiSpec, host: str = "127.0.0.1", port: int = 0,
                 access_log: IO[str] | None = None, function_log: IO[str] | None = None,
                 functions: dict[str, Callable] | None = None):
        self.api = api
        self.router = Router(api.routes, api.stage)
        self.functions = Functions(functions)
        self.access_log = access_log
        self.function_log = function_log  # None: sys.stderr at the time of writing
        self._log_lock = threading.Lock()
        self._server = _Server((host, port), _Handler)
        self._server.gateway = self
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self._server.server_address[0]}:{self.port}"

    def load(self) -> None:
        """Import every handler now, so that a broken module stops the start, not a request."""
        for route in self.api.routes:
            self.functions.get(route)

    def start(self) -> str:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="apigw", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()
        self._server.close_connections()

    # -- one request --

    def handle(self, request: IncomingRequest, too_large: bool = False) -> HttpResponse:
        ids = RequestIds.new()
        if too_large:
            return self.gateway_error("REQUEST_TOO_LARGE", 413, request, ids)
        path = self.router.public_path(request.path)
        found = self.router.match(request.method, path)
        if found is None:
            # A REST API answers an unknown resource or method with this (403 by default).
            return self.gateway_error("MISSING_AUTHENTICATION_TOKEN", 403, request, ids)
        route, path_parameters = found
        event = build_event(request, route, path_parameters, self.api.stage,
                            self.api.binary_media_types, ids)
        if len(json.dumps(event).encode()) > LAMBDA_REQUEST_LIMIT:
            # Under 10 MB for API Gateway, over 6 MB for Lambda (base64 adds a third).
            return self.gateway_error("REQUEST_TOO_LARGE", 413, request, ids, route,
                                      note="event over Lambda's 6 MB")
        return self._invoke(route, event, request, ids)

    def _invoke(self, route: Route, event: dict, request: IncomingRequest, ids: RequestIds) -> HttpResponse:
        if route.streaming:
            return self._invoke_streaming(route, event, request, ids)
        context = LambdaContext(route, route.timeout_s)
        outcome: dict[str, Any] = {}
        done = threading.Event()

        def run() -> None:
            try:
                outcome["result"] = self.functions.get(route)(event, context)
            except BaseException as error:  # noqa: BLE001 - Lambda reports whatever escapes
                outcome["error"] = error
                self._function_log(f"[ERROR] {function_name(route)} {context.aws_request_id} "
                                   f"unhandled {type(error).__name__}\n{traceback.format_exc()}")
            finally:
                done.set()

        # The handler runs on its own thread: when API Gateway gives up it keeps running, as the
        # function does in AWS (to its own Timeout), and may still settle its ledger entries.
        threading.Thread(target=run, name=f"lambda-{route.function}", daemon=True).start()
        integration_s = route.integration_timeout_ms / 1000
        if not done.wait(min(integration_s, route.timeout_s)):
            if route.timeout_s < integration_s:  # Lambda's timeout first: a function error
                self._function_log(f"{context.aws_request_id} Task timed out after "
                                   f"{route.timeout_s:.2f} seconds (still running locally)\n")
                return self.gateway_error("DEFAULT_5XX", 502, request, ids, route, note="function timed out")
            return self.gateway_error("INTEGRATION_TIMEOUT", 504, request, ids, route)
        if "error" in outcome:
            note = f"handler raised {type(outcome['error']).__name__}"
            return self.gateway_error("DEFAULT_5XX", 502, request, ids, route, note=note)
        try:
            size = len(json.dumps(outcome["result"]).encode())
        except (TypeError, ValueError):
            self._function_log(f"[ERROR] {function_name(route)} {context.aws_request_id} "
                               "Runtime.MarshalError: the result is not JSON-serializable\n")
            return self.gateway_error("DEFAULT_5XX", 502, request, ids, route, note="result not JSON")
        if size > LAMBDA_RESPONSE_LIMIT:
            self._function_log(f"[ERROR] {function_name(route)} {context.aws_request_id} "
                               f"Response payload size ({size} bytes) exceeded maximum allowed "
                               f"payload size ({LAMBDA_RESPONSE_LIMIT} bytes).\n")
            return self.gateway_error("DEFAULT_5XX", 502, request, ids, route, note="result over 6 MB")
        try:
            response = proxy_result_to_http(outcome["result"], request.header("accept"),
                                            self.api.binary_media_types)
        except BadResult as problem:
            self._function_log(f"[ERROR] {function_name(route)} {context.aws_request_id} "
                               f"Malformed Lambda proxy response: {problem}\n")
            return self.gateway_error("DEFAULT_5XX", 502, request, ids, route, note="malformed result")
        return self._finish(response, ids)

    def _invoke_streaming(self, route: Route, event: dict, request: IncomingRequest, ids: RequestIds) -> HttpResponse:
        """A streaming integration: wait for the handler to start its answer (or to fail, or to
        return a proxy result), then hand the client the rest as it comes."""
        started = time.monotonic()
        context = LambdaContext(route, route.timeout_s)
        stream = LocalResponseStream()

        def run() -> None:
            result, failure = None, None
            try:
                result = self.functions.get(route)(event, context, response_stream=stream)
            except BaseException as error:  # noqa: BLE001 - Lambda reports whatever escapes
                failure = error
                self._function_log(f"[ERROR] {function_name(route)} {context.aws_request_id} "
                                   f"unhandled {type(error).__name__}\n{traceback.format_exc()}")
            stream.finish(result, failure)

        threading.Thread(target=run, name=f"lambda-{route.function}", daemon=True).start()
        limit = started + min(route.integration_timeout_ms / 1000, route.timeout_s)
        item = stream.next(timeout=max(0.0, min(limit - time.monotonic(), STREAM_IDLE_TIMEOUT_S)))
        if item is None:
            stream.abandoned.set()
            return self.gateway_error("INTEGRATION_TIMEOUT", 504, request, ids, route, note="no answer started")
        if item[0] == "error":
            return self.gateway_error("DEFAULT_5XX", 502, request, ids, route,
                                      note=f"handler raised {type(item[1]).__name__}")
        if item[0] == "result":
            try:
                return self._finish(proxy_result_to_http(item[1], request.header("accept"),
                                                         self.api.binary_media_types), ids)
            except BadResult as problem:
                return self.gateway_error("DEFAULT_5XX", 502, request, ids, route, note=f"malformed result: {problem}")
        if item[0] != "start":
            return self.gateway_error("DEFAULT_5XX", 502, request, ids, route, note="stream failed before its start")
        _, status, headers, cookies = item
        try:
            response = proxy_result_to_http({"statusCode": status, "headers": headers}, None, ())
        except BadResult as problem:
            stream.abandoned.set()
            return self.gateway_error("DEFAULT_5XX", 502, request, ids, route, note=f"malformed prelude: {problem}")
        response.headers = [(n, v) for n, v in response.headers] + [("Set-Cookie", c) for c in cookies]
        response.chunks = self._stream_body(stream, limit)
        response.note = "streamed"
        return self._finish(response, ids)

    def _stream_body(self, stream: LocalResponseStream, limit: float) -> Iterator[bytes]:
        """The answer's bytes as the handler writes them, within API Gateway's streaming limits;
        an answer cut short (a limit, the handler failing) ends without its last chunk."""
        sent = 0
        throttle_from = None
        try:
            while True:
                item = stream.next(timeout=max(0.0, min(limit - time.monotonic(), STREAM_IDLE_TIMEOUT_S)))
                if item is None:
                    raise StreamCut("the integration timeout or the 5-minute idle limit")
                if item[0] == "end" or item[0] == "result":
                    return
                if item[0] != "data":
                    raise StreamCut(f"the function failed after the answer started ({item[0]})")
                data = item[1]
                sent += len(data)
                if sent > STREAM_RESPONSE_LIMIT:
                    raise StreamCut("the 200 MB limit of a streamed response")
                if sent > STREAM_UNTHROTTLED_BYTES:  # then 2 MB/s, as API Gateway meters it
                    throttle_from = throttle_from or (time.monotonic(), sent - len(data))
                    due = throttle_from[0] + (sent - throttle_from[1]) / STREAM_THROTTLED_BYTES_PER_S
                    time.sleep(max(0.0, due - time.monotonic()))
                yield data
        finally:
            stream.abandoned.set()  # the client is done with it, whichever way: later writes are dropped

    def gateway_error(self, kind: str, default_status: int, request: IncomingRequest, ids: RequestIds,
                      route: Route | None = None, note: str = "", message: str | None = None) -> HttpResponse:
        """API Gateway's own answer, from the template's GatewayResponses: the response type's
        own entry, else DEFAULT_4XX/DEFAULT_5XX, else API Gateway's {"message": ...}."""
        fallback = "DEFAULT_4XX" if default_status < 500 else "DEFAULT_5XX"
        spec = (self.api.gateway_responses.get(kind) or self.api.gateway_responses.get(fallback)
                or GatewayResponse(None, {}, {"application/json": '{"message":$context.error.messageString}'}))
        status = (self.api.gateway_responses.get(kind) or GatewayResponse(None, {}, {})).status or default_status
        message = message or MESSAGES.get(kind, MESSAGES["DEFAULT_5XX"])
        path = self.router.public_path(request.path)
        variables = {
            "context.requestId": ids.request_id,
            "context.extendedRequestId": ids.extended_request_id,
            "context.httpMethod": request.method,
            "context.path": f"/{self.api.stage}{path}",
            "context.resourcePath": route.path if route else "",
            "context.stage": self.api.stage,
            "context.apiId": API_ID,
            "context.accountId": ACCOUNT_ID,
            "context.domainName": request.header("host") or "",
            "context.protocol": request.protocol,
            "context.requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(ids.epoch_ms / 1000)),
            "context.requestTimeEpoch": str(ids.epoch_ms),
            "context.identity.sourceIp": request.source_ip,
            "context.identity.userAgent": request.header("user-agent") or "",
            "context.error.message": message,
            "context.error.messageString": json.dumps(message),
            "context.error.responseType": kind,
        }
        template = spec.templates.get("application/json") or next(iter(spec.templates.values()), "")
        body = _CONTEXT_VARIABLE.sub(lambda m: variables.get(m.group(1) or m.group(2), m.group(0)), template)
        headers = []
        for name, expression in spec.headers.items():
            if expression.startswith("'") and expression.endswith("'"):
                headers.append((name, expression[1:-1]))
            elif expression in variables:
                headers.append((name, variables[expression]))
            elif expression.startswith("method.request.header."):
                headers.append((name, request.header(expression.rsplit(".", 1)[1]) or ""))
        if not any(name.lower() == "content-type" for name, _ in headers):
            headers.append(("Content-Type", "application/json"))
        return self._finish(HttpResponse(status, headers, body.encode(), note or kind), ids)

    @staticmethod
    def _finish(response: HttpResponse, ids: RequestIds) -> HttpResponse:
        names = {name.lower() for name, _ in response.headers}
        response.headers += [("x-amzn-RequestId", ids.request_id), ("x-amz-apigw-id", ids.extended_request_id),
                             ("X-Amzn-Trace-Id", ids.trace_id)]
        if "x-request-id" not in names:  # the handler's own x-request-id wins
            response.headers.append(("x-request-id", ids.request_id))
        return response

    def log_access(self, method: str, path: str, status: int, started: float, note: str = "") -> None:
        if self.access_log is None:
            return
        ms = (time.monotonic() - started) * 1000
        line = f"{time.strftime('%H:%M:%S')} {method} {path} {status} {ms:.0f}ms"
        with self._log_lock:
            try:
                self.access_log.write(f"{line} ({note})\n" if note else line + "\n")
                self.access_log.flush()
            except (OSError, ValueError):
                pass  # a closed console (| head) must not fail the request

    def _function_log(self, text: str) -> None:
        stream = self.function_log or sys.stderr
        with self._log_lock:
            stream.write(text)
            stream.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a request in flight does not keep the process alive
    allow_reuse_address = True
    gateway: ApiGateway

    def __init__(self, *args: Any, **kwargs: Any):
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def close_connections(self) -> None:
        """Close idle keep-alive connections too, so that stop() leaves nothing listening."""
        with self.connections_lock:
            for connection in list(self.connections):
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every answer carries Content-Length
    server: _Server
    timeout = 300  # an idle keep-alive connection is closed after this

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in two writes: without TCP_NODELAY, Nagle's algorithm and the
        # client's delayed ACK stall every keep-alive response by ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the access line says enough
        pass

    def handle_expect_100(self) -> bool:
        # Decide after looking at Content-Length: an oversized upload is refused before it is sent.
        return True

    def _serve(self) -> None:
        started = time.monotonic()
        gateway = self.server.gateway
        too_large = False
        body = b""
        expects_continue = (self.headers.get("Expect", "").lower() == "100-continue"
                            and self.request_version >= "HTTP/1.1")
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body, too_large = self._read_chunked()
        else:
            try:
                length = int(self.headers.get("Content-Length") or 0)
                if length < 0:
                    raise ValueError
            except ValueError:
                self.send_error(400, "Bad Content-Length")
                return
            if length > REQUEST_BODY_LIMIT:
                too_large = True
                if expects_continue or length > DISCARD_LIMIT:
                    self.close_connection = True  # the body stays unread: this connection is done
                else:
                    self._discard(length)
            elif length:
                if expects_continue:
                    self.send_response_only(100)
                    self.end_headers()
                body = self.rfile.read(length)
        request = IncomingRequest(
            method=self.command,
            target=self.path,
            headers=list(self.headers.items()),
            body=body,
            source_ip=self.client_address[0],
            protocol=self.request_version,
            server_port=self.server.server_address[1],
        )
        response = gateway.handle(request, too_large=too_large)
        if response.chunks is not None:
            self._send_streamed(response, started)
            return
        gateway.log_access(self.command, urlsplit(self.path).path, response.status, started, response.note)
        self._send_whole(response)

    def _send_whole(self, response: HttpResponse) -> None:
        self.send_response_only(response.status)
        self.send_header("Date", formatdate(usegmt=True))
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)
        self.wfile.flush()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a malformed request line, headers too large, an unknown
        method) as API Gateway answers them, from the template's GatewayResponses: never its HTML
        page. An unknown method is an unknown route to API Gateway."""
        self.close_connection = True
        gateway = self.server.gateway
        request = IncomingRequest(
            method=getattr(self, "command", None) or "GET", target=getattr(self, "path", None) or "/",
            headers=list(self.headers.items()) if getattr(self, "headers", None) else [], body=b"",
            source_ip=self.client_address[0], protocol=getattr(self, "request_version", None) or "HTTP/1.1")
        if code == 501:
            response = gateway.gateway_error("MISSING_AUTHENTICATION_TOKEN", 403, request, RequestIds.new())
        else:
            reason = self.responses.get(code, ("Bad Request",))[0]
            response = gateway.gateway_error("DEFAULT_4XX" if code < 500 else "DEFAULT_5XX", code, request,
                                             RequestIds.new(), note=f"refused by the HTTP layer: {reason}",
                                             message=reason)
        gateway.log_access(request.method, urlsplit(request.target).path, response.status, time.monotonic(),
                           response.note)
        self.command = self.command or "GET"  # _send_whole writes a body unless HEAD
        self.request_version = "HTTP/1.1"  # never HTTP/0.9's headerless answer: API Gateway speaks 1.1
        self._send_whole(response)

    def _send_streamed(self, response: HttpResponse, started: float) -> None:
        """Headers at once, then each piece as one HTTP/1.1 chunk, flushed as it comes."""
        self.send_response_only(response.status)
        self.send_header("Date", formatdate(usegmt=True))
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        note = "streamed"
        try:
            for data in response.chunks or ():
                self.wfile.write(b"%x\r\n" % len(data))
                self.wfile.write(data)  # not joined with its framing: a large piece is not copied
                self.wfile.write(b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except StreamCut as cut:
            note = f"streamed, cut short: {cut}"
            self.close_connection = True  # no last chunk: the client can tell the answer is incomplete
        except OSError:
            note = "streamed, the client went away"
            self.close_connection = True
        finally:
            close = getattr(response.chunks, "close", None)
            if close is not None:
                close()  # the body's generator: marks the stream abandoned, later writes are dropped
        self.server.gateway.log_access(self.command, urlsplit(self.path).path, response.status, started, note)

    def _discard(self, length: int) -> None:
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 20))
            if not chunk:
                break
            length -= len(chunk)

    def _read_chunked(self) -> tuple[bytes, bool]:
        body = bytearray()
        total = 0
        while True:
            size = int(self.rfile.readline(1024).split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(65536) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                break
            total += size
            if total > DISCARD_LIMIT:
                self.close_connection = True
                break
            chunk = self.rfile.read(size)
            self.rfile.readline()
            if total <= REQUEST_BODY_LIMIT:
                body += chunk
        return bytes(body), total > REQUEST_BODY_LIMIT

    # Every method API Gateway accepts on the wire goes to the router (an unknown route or method
    # there is MISSING_AUTHENTICATION_TOKEN, as in AWS); a name it does not know is send_error(501).
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_TRACE = do_CONNECT = _serve


