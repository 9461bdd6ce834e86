"""The Lambda Runtime API client (2018-06-01) that replaces the managed python3.13 runtime loop.

Why: the managed runtime can only answer buffered; API Gateway REST response streaming needs the
function to answer in Lambda's streaming response mode. Standard library only.

The handler contract:
- `_HANDLER` is `module.function` (module may be dotted), imported with LAMBDA_TASK_ROOT on sys.path.
- A plain handler is called as `handler(event, context)`; its return value is posted as JSON
  (bytes are posted as they are), as the managed runtime does.
- A handler marked with `runtime.streaming` (the `__response_streaming__` attribute, looked up along
  the `__wrapped__` chain, so the mark may sit under Powertools' decorators) is called as
  `handler(event, context, response_stream=stream)`, keyword only (Powertools' Tracer passes only
  **kwargs through). See ResponseStream for what `stream` offers; a streaming handler that never calls
  `stream.start()` may return an API Gateway proxy result dict instead, which is then streamed.

Failures: a handler exception is reported (invocation error endpoint, or the error trailers once
the response has started) and the loop goes on; a failure to talk to the Runtime API ends the process
(exit status 1), and so does a failed init (after POST /runtime/init/error). Nothing of events,
responses or exception messages is logged: one line per failure on stderr with the error type and
where it was raised.
"""
import base64
import http.client
import importlib
import json
import os
import sys
import time
import traceback

from runtime import STREAMING_ATTRIBUTE

API_VERSION = "2018-06-01"
NEXT_PATH = f"/{API_VERSION}/runtime/invocation/next"
INIT_ERROR_PATH = f"/{API_VERSION}/runtime/init/error"

ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
ERROR_BODY_TRAILER = "Lambda-Runtime-Function-Error-Body"
XRAY_CAUSE_HEADER = "Lambda-Runtime-Function-XRay-Error-Cause"
RESPONSE_MODE_HEADER = "Lambda-Runtime-Function-Response-Mode"
STREAM_CONTENT_TYPE = "application/vnd.awslambda.http-integration-response"
# API Gateway's http-integration-response: JSON prelude, these 8 NUL bytes, then the body.
PRELUDE_DELIMITER = b"\x00" * 8
TRACE_ID_ENV = "_X_AMZN_TRACE_ID"
XRAY_CAUSE_MAX_BYTES = 64 * 1024  # the header is optional; a huge one would only get the post refused

# Error types the managed runtime reports (awslambdaric's FaultException).
IMPORT_MODULE_ERROR = "Runtime.ImportModuleError"
HANDLER_NOT_FOUND = "Runtime.HandlerNotFound"
USER_CODE_SYNTAX_ERROR = "Runtime.UserCodeSyntaxError"
MALFORMED_HANDLER_NAME = "Runtime.MalformedHandlerName"
BUILT_IN_MODULE_CONFLICT = "Runtime.BuiltInModuleConflict"
MARSHAL_ERROR = "Runtime.MarshalError"
UNMARSHAL_ERROR = "Runtime.UnmarshalError"
CONTEXT_UNMARSHAL_ERROR = "Runtime.LambdaContextUnmarshalError"
# Ours: a streaming handler that neither started the response nor returned a proxy result.
STREAM_NOT_STARTED = "Runtime.StreamingResponseNotStarted"

_current_request_id = ""  # for the root logger's records, as the managed runtime does


class RuntimeAPIError(Exception):
    """Talking to the Runtime API failed: the process cannot go on."""


class FaultError(Exception):
    """A failure the runtime reports with its own error type (Runtime.*), not the exception's name."""

    def __init__(self, error_type: str, message: str, stack_trace: list | None = None):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.stack_trace = stack_trace or []


# --- the Runtime API ------------------------------------------------------------------------------


class Invocation:
    """What GET /runtime/invocation/next returned."""

    __slots__ = ("request_id", "deadline_ms", "function_arn", "trace_id", "client_context", "cognito_identity",
                 "tenant_id", "content_type", "body")

    def __init__(self, headers, body: bytes):
        get = headers.get
        self.request_id = get("Lambda-Runtime-Aws-Request-Id") or ""
        self.deadline_ms = get("Lambda-Runtime-Deadline-Ms")
        self.function_arn = get("Lambda-Runtime-Invoked-Function-Arn")
        self.trace_id = get("Lambda-Runtime-Trace-Id")
        self.client_context = get("Lambda-Runtime-Client-Context")
        self.cognito_identity = get("Lambda-Runtime-Cognito-Identity")
        self.tenant_id = get("Lambda-Runtime-Aws-Tenant-Id")
        self.content_type = get("Content-Type")
        self.body = body


class RuntimeAPI:
    """One keep-alive HTTP/1.1 connection to http://$AWS_LAMBDA_RUNTIME_API, reopened when it drops."""

    def __init__(self, address: str):
        self.address = address
        self._conn = http.client.HTTPConnection(address)  # no timeout: /next long-polls

    def close(self) -> None:
        self._conn.close()

    def _request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        """Send one request, return (status, headers, body). A reused connection that turns out to be
        dead is reopened once; any other failure is fatal."""
        for attempt in (1, 2):
            reused = self._conn.sock is not None
            try:
                self._conn.request(method, path, body, headers or {})
                response = self._conn.getresponse()
                return response.status, response.headers, response.read()
            except (OSError, http.client.HTTPException) as exc:
                self._conn.close()
                if attempt == 2 or not reused:
                    raise RuntimeAPIError(f"{method} {path} failed: {exc!r}") from exc
        raise AssertionError("unreachable")

    def _expect_accepted(self, what: str, status: int, body: bytes) -> None:
        """The API refused a post (e.g. 413 for a response over the payload limit): it has told the
        invoker already; say it in one line and go on. Its body is the API's own error, no payload."""
        if status != 202:
            _log_line(f"[ERROR] Runtime API refused the {what}: HTTP {status} {body[:200]!r}")

    def next_invocation(self) -> Invocation:
        status, headers, body = self._request("GET", NEXT_PATH)
        if status != 200:
            raise RuntimeAPIError(f"GET {NEXT_PATH} answered HTTP {status}: {body[:200]!r}")
        return Invocation(headers, body)

    def post_response(self, request_id: str, body: bytes, content_type: str) -> None:
        status, _, reply = self._request("POST", f"/{API_VERSION}/runtime/invocation/{request_id}/response", body,
                                         {"Content-Type": content_type})
        self._expect_accepted("response", status, reply)

    def post_error(self, request_id: str, payload: dict, xray_cause: dict | None = None) -> None:
        status, _, reply = self._request("POST", f"/{API_VERSION}/runtime/invocation/{request_id}/error",
                                         _to_json_bytes(payload), _error_headers(payload, xray_cause))
        self._expect_accepted("error", status, reply)

    def post_init_error(self, payload: dict) -> None:
        status, _, reply = self._request("POST", INIT_ERROR_PATH, _to_json_bytes(payload),
                                         _error_headers(payload, None))
        self._expect_accepted("init error", status, reply)

    # The streaming response: http.client sends no trailers, so the request head goes through
    # putrequest/endheaders and the chunks are framed here, straight onto the socket.

    def open_stream(self, request_id: str, first_chunk: bytes) -> None:
        """Send the request head of a streaming response and its first chunk. Raises OSError."""
        path = f"/{API_VERSION}/runtime/invocation/{request_id}/response"
        for attempt in (1, 2):
            reused = self._conn.sock is not None
            try:
                conn = self._conn
                conn.putrequest("POST", path, skip_accept_encoding=True)
                conn.putheader(RESPONSE_MODE_HEADER, "streaming")
                conn.putheader("Transfer-Encoding", "chunked")
                conn.putheader("Content-Type", STREAM_CONTENT_TYPE)
                conn.putheader("Trailer", f"{ERROR_TYPE_HEADER}, {ERROR_BODY_TRAILER}")
                conn.endheaders(_chunk(first_chunk))
                return
            except (OSError, http.client.HTTPException) as exc:
                self._conn.close()
                if attempt == 2 or not reused:
                    raise OSError(f"could not start the streaming response: {exc!r}") from exc

    def send_chunk(self, data) -> None:
        sock = self._conn.sock
        if sock is None:
            raise OSError("the streaming response's connection is closed")
        size = len(data)
        if size <= 65536:
            sock.sendall(b"%x\r\n%b\r\n" % (size, data))
        else:  # no copy of a large body
            sock.sendall(b"%x\r\n" % size)
            sock.sendall(data)
            sock.sendall(b"\r\n")

    def finish_stream(self, trailers: bytes = b"") -> None:
        """Send the last chunk and the trailers, then read the API's answer (202). Raises OSError."""
        sock = self._conn.sock
        if sock is None:
            raise OSError("the streaming response's connection is closed")
        try:
            sock.sendall(b"0\r\n" + trailers + b"\r\n")
            response = self._conn.getresponse()
            status, reply = response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            self._conn.close()
            raise OSError(f"could not finish the streaming response: {exc!r}") from exc
        self._expect_accepted("streamed response", status, reply)

    def abandon_stream(self) -> None:
        """Drop a streaming response's connection; the next request opens a new one."""
        self._conn.close()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def _error_headers(payload: dict, xray_cause: dict | None) -> dict:
    headers = {"Content-Type": "application/json", ERROR_TYPE_HEADER: _header_safe(payload["errorType"])}
    if xray_cause is not None:
        cause = json.dumps(xray_cause)  # ASCII: a header
        if len(cause) < XRAY_CAUSE_MAX_BYTES:
            headers[XRAY_CAUSE_HEADER] = cause
    return headers


def _header_safe(value: str) -> str:
    """A header (or trailer) value: one line of latin-1."""
    value = str(value).replace("\r", " ").replace("\n", " ")
    return value.encode("latin-1", "replace").decode("latin-1")


# --- the streaming response -----------------------------------------------------------------------

_NEW, _STARTED, _DONE = "new", "started", "done"


class ResponseStream:
    """What a streaming handler gets as `response_stream`.

    start(status_code, headers, cookies=None): once, before any write; sends the prelude at once
        (status and headers reach the client before the body). The status cannot change afterwards.
    write(data): bytes (str is sent as UTF-8); each call is one HTTP chunk, sent immediately.
    close(): ends the response. Called for the handler if it returns without it.
    fail(error_type, message): after start, ends the response with the error trailers; before
        start, reports an invocation error instead.

    If the connection to the Runtime API breaks mid-stream, later writes are dropped (`broken` turns
    true): the handler still runs to its end, e.g. to settle what it charged.
    """

    __slots__ = ("_api", "_request_id", "_state", "_broken")

    def __init__(self, api: RuntimeAPI, request_id: str):
        self._api = api
        self._request_id = request_id
        self._state = _NEW
        self._broken = False

    @property
    def started(self) -> bool:
        return self._state != _NEW

    @property
    def closed(self) -> bool:
        return self._state == _DONE

    @property
    def broken(self) -> bool:
        return self._broken

    def start(self, status_code: int, headers: dict | None = None, cookies: list | None = None, *,
              multi_value_headers: dict | None = None) -> None:
        if self._state != _NEW:
            raise RuntimeError("response_stream.start() was already called")
        prelude = {"statusCode": int(status_code),
                   "headers": {str(name): str(value) for name, value in (headers or {}).items()}}
        if multi_value_headers:
            prelude["multiValueHeaders"] = {str(name): [str(v) for v in values]
                                            for name, values in multi_value_headers.items()}
        if cookies:
            prelude["cookies"] = [str(cookie) for cookie in cookies]
        head = json.dumps(prelude, separators=(",", ":")).encode() + PRELUDE_DELIMITER
        self._state = _STARTED
        try:
            self._api.open_stream(self._request_id, head)
        except OSError as exc:
            self._break(exc)

    def write(self, data) -> None:
        if self._state != _STARTED:
            raise RuntimeError("response_stream.write() before start()" if self._state == _NEW
                               else "response_stream.write() after the response ended")
        if isinstance(data, str):
            data = data.encode("utf-8")
        elif not isinstance(data, (bytes, bytearray)):
            data = memoryview(data).cast("B")  # len() in bytes
        if not data or self._broken:  # an empty chunk would end the response
            return
        try:
            self._api.send_chunk(data)
        except OSError as exc:
            self._break(exc)

    def close(self) -> None:
        """End the response. Before start() and after the end, it does nothing."""
        if self._state == _STARTED:
            self._finish(b"")

    def fail(self, error_type: str, message: str) -> None:
        self._fail(_error_payload(error_type, message, [], self._request_id))

    def _fail(self, payload: dict, xray_cause: dict | None = None) -> None:
        if self._state == _NEW:
            self._state = _DONE
            self._api.post_error(self._request_id, payload, xray_cause)
        elif self._state == _STARTED:
            body = base64.b64encode(json.dumps(payload).encode()).decode("ascii")
            self._finish(f"{ERROR_TYPE_HEADER}: {_header_safe(payload['errorType'])}\r\n"
                         f"{ERROR_BODY_TRAILER}: {body}\r\n".encode("latin-1"))

    def _finish(self, trailers: bytes) -> None:
        self._state = _DONE
        if self._broken:
            return
        try:
            self._api.finish_stream(trailers)
        except OSError as exc:
            self._break(exc)

    def _break(self, exc: OSError) -> None:
        if not self._broken:
            self._broken = True
            self._api.abandon_stream()
            _log_line(f"[ERROR] streaming response dropped (RequestId: {self._request_id}): {exc}")


def is_streaming(handler) -> bool:
    """Whether `handler`, or any function it wraps (functools.wraps' __wrapped__), is marked streaming."""
    seen = 0
    while handler is not None and seen < 100:
        if getattr(handler, STREAMING_ATTRIBUTE, False):
            return True
        handler = getattr(handler, "__wrapped__", None)
        seen += 1
    return False


# --- the context ----------------------------------------------------------------------------------


class CognitoIdentity:
    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self, identity: dict | None = None):
        identity = identity or {}
        self.cognito_identity_id = identity.get("cognitoIdentityId")
        self.cognito_identity_pool_id = identity.get("cognitoIdentityPoolId")


class Client:
    __slots__ = ("installation_id", "app_title", "app_version_name", "app_version_code", "app_package_name")

    def __init__(self, client: dict):
        for name in self.__slots__:
            setattr(self, name, client.get(name))


class ClientContext:
    __slots__ = ("custom", "env", "client")

    def __init__(self, context: dict):
        self.custom = context.get("custom")
        self.env = context.get("env")
        client = context.get("client")
        self.client = Client(client) if isinstance(client, dict) else client


class LambdaContext:
    """The `context` argument, with the managed runtime's attributes (Powertools reads them)."""

    def __init__(self, invocation: Invocation):
        environ = os.environ
        self.aws_request_id = invocation.request_id
        self.invoked_function_arn = invocation.function_arn
        self.function_name = environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.memory_limit_in_mb = environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")  # a string, as managed
        self.log_group_name = environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.tenant_id = invocation.tenant_id
        self.identity = CognitoIdentity(_parse_json_header(invocation.cognito_identity, "Cognito Identity"))
        client_context = _parse_json_header(invocation.client_context, "Client Context")
        self.client_context = ClientContext(client_context) if isinstance(client_context, dict) else None
        try:
            self._deadline_ms = int(invocation.deadline_ms or 0)
        except ValueError:
            self._deadline_ms = 0

    def get_remaining_time_in_millis(self) -> int:
        return max(self._deadline_ms - int(time.time() * 1000), 0)

    def log(self, message) -> None:
        sys.stdout.write(str(message))

    def __repr__(self) -> str:
        return (f"LambdaContext(aws_request_id={self.aws_request_id!r}, function_name={self.function_name!r}, "
                f"function_version={self.function_version!r}, invoked_function_arn={self.invoked_function_arn!r})")


def _parse_json_header(value: str | None, name: str):
    if not value:
        return None
    try:
        return json.loads(value)
    except ValueError as exc:
        raise FaultError(CONTEXT_UNMARSHAL_ERROR, f"Unable to parse {name} JSON: {exc}") from None


# --- init -----------------------------------------------------------------------------------------


def load_handler(spec: str):
    """Import `module.function` the way the managed runtime does, with its Runtime.* error types.
    Other exceptions raised while importing the module propagate."""
    try:
        module_name, function_name = spec.rsplit(".", 1)
    except ValueError as exc:
        raise FaultError(MALFORMED_HANDLER_NAME, f"Bad handler '{spec}': {exc}") from None
    if module_name.split(".")[0] in sys.builtin_module_names:
        raise FaultError(BUILT_IN_MODULE_CONFLICT, f"Cannot use built-in module {module_name} as a handler module")
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as exc:
        raise FaultError(IMPORT_MODULE_ERROR, f"Unable to import module '{module_name}': {exc}") from None
    except SyntaxError as exc:
        trace = [f'  File "{exc.filename}" Line {exc.lineno}\n    {exc.text}']
        raise FaultError(USER_CODE_SYNTAX_ERROR, f"Syntax error in module '{module_name}': {exc}", trace) from None
    try:
        return getattr(module, function_name)
    except AttributeError:
        raise FaultError(HANDLER_NOT_FOUND, f"Handler '{function_name}' missing on module '{module_name}'") from None


# --- the loop -------------------------------------------------------------------------------------


def run(api: RuntimeAPI, handler, *, max_invocations: int | None = None) -> None:
    """Serve invocations: forever, or `max_invocations` of them (tests). Raises RuntimeAPIError."""
    global _current_request_id
    streaming = is_streaming(handler)
    served = 0
    while max_invocations is None or served < max_invocations:
        invocation = api.next_invocation()
        served += 1
        _current_request_id = invocation.request_id
        if invocation.trace_id:
            os.environ[TRACE_ID_ENV] = invocation.trace_id
        else:
            os.environ.pop(TRACE_ID_ENV, None)
        try:
            if streaming:
                _serve_streaming(api, handler, invocation)
            else:
                _serve_buffered(api, handler, invocation)
        except RuntimeAPIError:
            raise
        except Exception as exc:  # a bug of ours: say so, keep serving
            _log_failure("Runtime.InternalError", exc.__traceback__, invocation.request_id)


def _prepare(invocation: Invocation):
    """(event, context), or raises FaultError."""
    context = LambdaContext(invocation)
    if invocation.content_type in (None, "", "application/json"):
        try:
            event = json.loads(invocation.body)
        except ValueError as exc:
            raise FaultError(UNMARSHAL_ERROR, f"Unable to unmarshal input: {exc}") from None
    else:
        event = invocation.body
    return event, context


def _serve_buffered(api: RuntimeAPI, handler, invocation: Invocation) -> None:
    request_id = invocation.request_id
    try:
        event, context = _prepare(invocation)
        result = handler(event, context)
        if isinstance(result, (bytes, bytearray)):
            body, content_type = bytes(result), "application/unknown"
        else:
            try:
                body, content_type = _to_json_bytes(result), "application/json"
            except (TypeError, ValueError) as exc:
                raise FaultError(MARSHAL_ERROR, f"Unable to marshal response: {exc}") from None
    except Exception as exc:
        payload, cause = _exception_payload(exc, request_id)
        _log_failure(payload["errorType"], exc.__traceback__, request_id)
        api.post_error(request_id, payload, cause)
        return
    api.post_response(request_id, body, content_type)


def _serve_streaming(api: RuntimeAPI, handler, invocation: Invocation) -> None:
    request_id = invocation.request_id
    stream = ResponseStream(api, request_id)
    try:
        event, context = _prepare(invocation)
        result = handler(event, context, response_stream=stream)
        if not stream.started:
            if not (isinstance(result, dict) and "statusCode" in result):
                raise FaultError(STREAM_NOT_STARTED, "The streaming handler returned without calling "
                                 "response_stream.start() and without an API Gateway proxy result")
            _stream_proxy_result(stream, result)
    except Exception as exc:
        payload, cause = _exception_payload(exc, request_id)
        _log_failure(payload["errorType"], exc.__traceback__, request_id)
        if stream.closed:
            return  # the answer is out already; nothing left to report it with
        stream._fail(payload, cause)
        return
    stream.close()


def _stream_proxy_result(stream: ResponseStream, result: dict) -> None:
    """Stream an API Gateway proxy result ({statusCode, headers, multiValueHeaders, body, isBase64Encoded})."""
    body = result.get("body")
    if body is None:
        data = b""
    elif result.get("isBase64Encoded"):
        data = base64.b64decode(body)
    else:
        data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    stream.start(result["statusCode"], result.get("headers") or {}, result.get("cookies"),
                 multi_value_headers=result.get("multiValueHeaders"))
    stream.write(data)
    stream.close()


# --- errors and logs ------------------------------------------------------------------------------


def _to_json_bytes(value) -> bytes:
    return json.dumps(value, ensure_ascii=False, default=_json_default).encode("utf-8")


def _json_default(value):
    import decimal  # only for the rare response that holds a Decimal (DynamoDB numbers)
    if isinstance(value, decimal.Decimal):
        if value.is_nan():
            return float("nan")
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _error_payload(error_type: str, message: str, stack_trace: list, request_id: str = "") -> dict:
    return {"errorMessage": message or "", "errorType": error_type or "", "requestId": request_id or "",
            "stackTrace": stack_trace or []}


def _user_frames(tb) -> list:
    """The traceback's frames without this module's own at the top."""
    frames = traceback.extract_tb(tb)
    start = 0
    while start < len(frames) and frames[start].filename.endswith(("runtime/client.py", "runtime\\client.py")):
        start += 1
    return frames[start:]


def _exception_payload(exc: BaseException, request_id: str = "") -> tuple[dict, dict | None]:
    """(the error JSON, the X-Ray error cause) for an exception, as the managed runtime builds them."""
    if isinstance(exc, FaultError):
        return _error_payload(exc.error_type, exc.message, exc.stack_trace, request_id), None
    frames = _user_frames(exc.__traceback__)
    error_type, message = type(exc).__name__, str(exc)
    cause = {"working_directory": os.getcwd(),
             "exceptions": [{"message": message, "type": error_type,
                             "stack": [{"label": f.name, "path": f.filename, "line": f.lineno} for f in frames]}],
             "paths": sorted({f.filename for f in frames})}
    return _error_payload(error_type, message, traceback.format_list(frames), request_id), cause


def _log_line(line: str) -> None:
    try:
        sys.stderr.write(line.replace("\n", " ") + "\n")
        sys.stderr.flush()
    except Exception:
        pass


def _log_failure(error_type: str, tb, request_id: str = "") -> None:
    """One line: the error type and where it was raised; never the message (it may quote a payload)."""
    where = ""
    frames = traceback.extract_tb(tb) if tb is not None else []
    if frames:
        where = f" at {frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name}"
    suffix = f" (RequestId: {request_id})" if request_id else ""
    _log_line(f"[ERROR] {error_type}{where}{suffix}")


def _setup_logging() -> None:
    """The root logger writes to stdout in the managed runtime's text format, at AWS_LAMBDA_LOG_LEVEL."""
    import logging

    class RequestIdFilter(logging.Filter):
        def filter(self, record):
            record.aws_request_id = _current_request_id
            return True

    class StdoutHandler(logging.Handler):
        def emit(self, record):
            try:
                sys.stdout.write(self.format(record))
                sys.stdout.flush()
            except Exception:
                self.handleError(record)

    logging.Formatter.converter = time.gmtime
    handler = StdoutHandler()
    handler.setFormatter(logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n", "%Y-%m-%dT%H:%M:%S"))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    level = (os.environ.get("AWS_LAMBDA_LOG_LEVEL") or "").upper()
    if level in logging.getLevelNamesMapping():
        root.setLevel(level)
    root.addHandler(handler)


def _prepare_sys_path() -> None:
    """LAMBDA_TASK_ROOT first (the wrapper's PYTHONPATH already says so; this covers a direct
    `python -m runtime`), and its .pth files processed, as the managed runtime does."""
    task_root = os.environ.get("LAMBDA_TASK_ROOT")
    if not task_root:
        return
    if task_root not in sys.path:
        sys.path.insert(0, task_root)
    import site
    for directory in (task_root, f"/opt/python/lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages",
                      "/opt/python"):
        if os.path.isdir(directory):
            site.addsitedir(directory)


def main() -> int:
    address = os.environ.get("AWS_LAMBDA_RUNTIME_API")
    if not address:
        _log_line("[ERROR] AWS_LAMBDA_RUNTIME_API is not set: not running under Lambda")
        return 2
    _prepare_sys_path()
    _setup_logging()
    api = RuntimeAPI(address)
    try:
        try:
            handler = load_handler(os.environ.get("_HANDLER", ""))
        except Exception as exc:
            payload, _ = _exception_payload(exc)
            _log_failure(payload["errorType"], exc.__traceback__)
            api.post_init_error(payload)
            return 1
        run(api, handler)
    except RuntimeAPIError as exc:
        _log_line(f"[ERROR] Runtime API: {exc}")
        return 1
    return 0
