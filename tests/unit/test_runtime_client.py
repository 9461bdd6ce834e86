"""The Runtime API client (src/runtime) against a fake Runtime API on loopback that records exactly
what the client sent: method, path, headers, and the raw body bytes with their chunk framing and
trailers. In-process (the client's loop on the test's thread, the fake on its own), except where the
process itself matters (init errors, the exec wrapper): there the client runs as a subprocess."""
from __future__ import annotations

import base64
import functools
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from runtime import streaming
from runtime.client import (PRELUDE_DELIMITER, FaultError, RuntimeAPI, RuntimeAPIError, is_streaming, load_handler,
                            run)
from tests.fixtures import runtime_handlers as fixtures

REPO = Path(__file__).resolve().parents[2]
FIXTURES_DIR = REPO / "tests" / "fixtures"
BOOTSTRAP = REPO / "src" / "runtime" / "bootstrap"
API = "/2018-06-01/runtime"
NEXT = f"{API}/invocation/next"
ARN = "arn:aws:lambda:eu-west-1:123456789012:function:gateway-generations"
TRACE = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


# --- the fake Runtime API -------------------------------------------------------------------------


class Recorded:
    """One request as the fake received it."""

    def __init__(self, method: str, path: str, headers: list[tuple[str, str]], raw_body: bytes, body: bytes,
                 trailers: dict[str, str]):
        self.method, self.path, self.headers = method, path, headers
        self.raw_body, self.body, self.trailers = raw_body, body, trailers

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        assert len(values) <= 1, f"{name} sent {len(values)} times"
        return values[0] if values else None

    def json(self):
        return json.loads(self.body)


class FakeRuntimeAPI:
    """Hands out queued invocations on GET /next and answers every post 202 (or `post_status`)."""

    def __init__(self):
        self.invocations: queue.Queue = queue.Queue()
        self.requests: list[Recorded] = []
        self.connections = 0
        self.next_wait_s = 10.0  # how long GET /next waits for an invocation before answering 500
        self.post_status = 202
        self.on_chunk = None  # called with each body chunk as it arrives
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no delayed-ACK stalls
                fake.connections += 1

            def log_message(self, *args):
                pass

            def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None):
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                fake.requests.append(Recorded("GET", self.path, list(self.headers.items()), b"", b"", {}))
                try:
                    headers, body = fake.invocations.get(timeout=fake.next_wait_s)
                except queue.Empty:
                    self._answer(500, b'{"errorType":"NoMoreInvocations"}')
                    return
                self._answer(200, body, headers)

            def do_POST(self):
                raw, body, trailers = b"", b"", {}
                if self.headers.get("Transfer-Encoding") == "chunked":
                    while True:
                        size_line = self.rfile.readline()
                        raw += size_line
                        size = int(size_line.split(b";")[0], 16)
                        if size == 0:
                            while True:
                                line = self.rfile.readline()
                                raw += line
                                if line in (b"\r\n", b""):
                                    break
                                name, _, value = line.decode("latin-1").partition(":")
                                trailers[name.strip()] = value.strip()
                            break
                        data = self.rfile.read(size)
                        crlf = self.rfile.read(2)
                        raw += data + crlf
                        body += data
                        if fake.on_chunk:
                            fake.on_chunk(data)
                else:
                    raw = body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fake.requests.append(Recorded("POST", self.path, list(self.headers.items()), raw, body, trailers))
                status = fake.post_status
                self._answer(status, b'{"status":"OK"}' if status == 202 else b'{"errorType":"RequestEntityTooLarge"}',
                             {"Content-Type": "application/json"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def add(self, event, *, request_id: str | None = None, deadline_ms: int | None = None, arn: str = ARN,
            trace_id: str | None = None, client_context: dict | None = None, cognito_identity: dict | None = None,
            content_type: str = "application/json") -> str:
        request_id = request_id or str(uuid.uuid4())
        headers = {"Lambda-Runtime-Aws-Request-Id": request_id,
                   "Lambda-Runtime-Deadline-Ms": str(deadline_ms or int(time.time() * 1000) + 30_000),
                   "Lambda-Runtime-Invoked-Function-Arn": arn, "Content-Type": content_type}
        if trace_id:
            headers["Lambda-Runtime-Trace-Id"] = trace_id
        if client_context is not None:
            headers["Lambda-Runtime-Client-Context"] = json.dumps(client_context)
        if cognito_identity is not None:
            headers["Lambda-Runtime-Cognito-Identity"] = json.dumps(cognito_identity)
        self.invocations.put((headers, event if isinstance(event, bytes) else json.dumps(event).encode()))
        return request_id

    def posts(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "POST"]

    def only_post(self) -> Recorded:
        posts = self.posts()
        assert len(posts) == 1, [p.path for p in posts]
        return posts[0]


@pytest.fixture
def fake():
    api = FakeRuntimeAPI()
    api.thread.start()
    yield api
    api.server.shutdown()
    api.server.server_close()


@pytest.fixture(autouse=True)
def lambda_environment(monkeypatch):
    """What Lambda sets for the function; no trace id left over from anything else."""
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "gateway-generations")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
    monkeypatch.setenv("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/gateway-generations")
    monkeypatch.setenv("AWS_LAMBDA_LOG_STREAM_NAME", "2026/12/02/[$LATEST]abcdef")
    monkeypatch.delenv("_X_AMZN_TRACE_ID", raising=False)
    fixtures.first_chunk_received.clear()
    fixtures.seen.clear()


def serve(fake: FakeRuntimeAPI, handler, invocations: int = 1) -> None:
    api = RuntimeAPI(fake.address)
    try:
        run(api, handler, max_invocations=invocations)
    finally:
        api.close()


def chunked(*pieces: bytes, trailers: bytes = b"") -> bytes:
    return b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in pieces) + b"0\r\n" + trailers + b"\r\n"


def response_path(request_id: str) -> str:
    return f"{API}/invocation/{request_id}/response"


def error_path(request_id: str) -> str:
    return f"{API}/invocation/{request_id}/error"


# --- buffered handlers ----------------------------------------------------------------------------


def test_a_buffered_handler_s_return_value_is_posted_as_json_to_the_response_endpoint(fake):
    request_id = fake.add({"prompt": "a cat", "n": 1})

    serve(fake, fixtures.echo)

    get, post = fake.requests
    assert (get.method, get.path) == ("GET", NEXT)
    assert (post.method, post.path) == ("POST", response_path(request_id))
    assert post.header("Content-Type") == "application/json"
    assert post.header("Content-Length") == str(len(post.raw_body))
    assert post.header("Lambda-Runtime-Function-Response-Mode") is None
    assert post.json() == {"event": {"prompt": "a cat", "n": 1}, "request_id": request_id}


def test_a_buffered_handler_that_raises_goes_to_the_error_endpoint_with_its_type_and_json(fake, capsys):
    request_id = fake.add({})

    serve(fake, fixtures.raises)

    post = fake.only_post()
    assert post.path == error_path(request_id)
    assert post.header("Lambda-Runtime-Function-Error-Type") == "ValueError"
    error = post.json()
    assert error["errorType"] == "ValueError"
    assert error["errorMessage"] == f"the upstream rejected {fixtures.SECRET}"
    assert error["requestId"] == request_id
    assert isinstance(error["stackTrace"], list) and error["stackTrace"]
    assert "runtime_handlers.py" in error["stackTrace"][0]  # the runtime's own frames are left out
    assert not any("runtime/client.py" in line for line in error["stackTrace"])
    cause = json.loads(post.header("Lambda-Runtime-Function-XRay-Error-Cause"))
    assert cause["exceptions"][0]["type"] == "ValueError"
    # One line on stderr, without the message (it may quote a payload).
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ValueError" in err and request_id in err
    assert fixtures.SECRET not in err


def test_a_return_value_that_is_not_json_is_reported_as_runtime_marshal_error(fake):
    request_id = fake.add({})

    serve(fake, fixtures.returns_unserializable)

    post = fake.only_post()
    assert post.path == error_path(request_id)
    assert post.header("Lambda-Runtime-Function-Error-Type") == "Runtime.MarshalError"
    assert post.json()["errorType"] == "Runtime.MarshalError"


def test_an_event_that_is_not_json_is_reported_as_runtime_unmarshal_error_and_the_handler_is_not_called(fake):
    request_id = fake.add(b"{not json")
    called = []

    serve(fake, lambda event, context: called.append(event))

    assert called == []
    post = fake.only_post()
    assert (post.path, post.header("Lambda-Runtime-Function-Error-Type")) == (error_path(request_id),
                                                                              "Runtime.UnmarshalError")


# --- streaming handlers ---------------------------------------------------------------------------


def test_a_streamed_answer_starts_with_the_prelude_and_eight_nul_bytes_then_one_chunk_per_write(fake):
    request_id = fake.add({"chunks": ["hello ", "world"]})

    serve(fake, fixtures.streams)

    post = fake.only_post()
    assert (post.method, post.path) == ("POST", response_path(request_id))
    assert post.header("Lambda-Runtime-Function-Response-Mode") == "streaming"
    assert post.header("Transfer-Encoding") == "chunked"
    assert post.header("Content-Type") == "application/vnd.awslambda.http-integration-response"
    assert post.header("Trailer") == "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body"
    assert post.header("Content-Length") is None
    prelude = b'{"statusCode":201,"headers":{"Content-Type":"text/plain","X-Test":"yes"},"cookies":["a=1; Path=/"]}'
    assert PRELUDE_DELIMITER == b"\x00" * 8
    assert post.raw_body == chunked(prelude + b"\x00" * 8, b"hello ", b"world")
    assert post.trailers == {}


def test_each_chunk_reaches_the_runtime_api_before_the_handler_writes_the_next(fake):
    fake.on_chunk = lambda data: fixtures.first_chunk_received.set() if data == b"first" else None
    request_id = fake.add({})

    serve(fake, fixtures.streams_waiting_for_first_chunk)

    assert fixtures.seen["first_chunk_arrived_before_second_write"] is True
    post = fake.only_post()
    assert post.path == response_path(request_id)
    # It returned without close(): the client closed for it, with empty trailers.
    assert post.raw_body == chunked(b'{"statusCode":200,"headers":{"Content-Type":"text/plain"}}' + b"\x00" * 8,
                                    b"first", b"second")


def test_an_exception_before_the_first_byte_goes_to_the_error_endpoint_with_the_right_type_and_json(fake, capsys):
    request_id = fake.add({})

    serve(fake, fixtures.stream_raises_before_start)

    post = fake.only_post()
    assert post.path == error_path(request_id)
    assert post.header("Lambda-Runtime-Function-Error-Type") == "LookupError"
    assert post.header("Transfer-Encoding") is None
    error = post.json()
    assert (error["errorType"], error["errorMessage"]) == ("LookupError", f"nothing to stream for {fixtures.SECRET}")
    assert "stream_raises_before_start" in "".join(error["stackTrace"])
    assert fixtures.SECRET not in capsys.readouterr().err


def test_an_exception_after_the_first_byte_ends_the_stream_with_the_error_trailers(fake, capsys):
    request_id = fake.add({})

    serve(fake, fixtures.stream_raises_after_start)

    post = fake.only_post()
    assert post.path == response_path(request_id)
    assert post.trailers["Lambda-Runtime-Function-Error-Type"] == "ValueError"
    error = json.loads(base64.b64decode(post.trailers["Lambda-Runtime-Function-Error-Body"], validate=True))
    assert error["errorType"] == "ValueError"
    assert error["errorMessage"] == f"mid-stream failure with {fixtures.SECRET}"
    assert error["requestId"] == request_id
    assert "stream_raises_after_start" in "".join(error["stackTrace"])
    body = post.trailers["Lambda-Runtime-Function-Error-Body"]
    assert post.raw_body == chunked(b'{"statusCode":200,"headers":{"Content-Type":"text/plain"}}' + b"\x00" * 8,
                                    b"partial",
                                    trailers=b"Lambda-Runtime-Function-Error-Type: ValueError\r\n"
                                             b"Lambda-Runtime-Function-Error-Body: " + body.encode() + b"\r\n")
    assert fixtures.SECRET not in capsys.readouterr().err


def test_fail_after_start_sends_the_given_type_and_message_as_trailers(fake):
    fake.add({})

    serve(fake, fixtures.stream_fails)

    post = fake.only_post()
    assert post.body.endswith(b"\x00" * 8 + b"partial")
    assert post.trailers["Lambda-Runtime-Function-Error-Type"] == "UpstreamError"
    error = json.loads(base64.b64decode(post.trailers["Lambda-Runtime-Function-Error-Body"]))
    assert (error["errorType"], error["errorMessage"], error["stackTrace"]) == ("UpstreamError",
                                                                                 "the upstream went away", [])


def test_fail_before_start_uses_the_invocation_error_endpoint(fake):
    request_id = fake.add({})

    serve(fake, fixtures.stream_fails_before_start)

    post = fake.only_post()
    assert post.path == error_path(request_id)
    assert post.header("Lambda-Runtime-Function-Error-Type") == "QuotaError"
    assert post.json()["errorMessage"] == "no balance"


def test_a_streaming_handler_that_returns_a_proxy_result_is_streamed_from_it(fake):
    text_id = fake.add({})
    binary_id = fake.add({"base64": True})

    serve(fake, fixtures.stream_returns_proxy_result, invocations=2)

    text, binary = fake.posts()
    assert text.path == response_path(text_id)
    assert text.header("Lambda-Runtime-Function-Response-Mode") == "streaming"
    prelude, _, body = text.body.partition(b"\x00" * 8)
    assert json.loads(prelude) == {"statusCode": 400, "headers": {"Content-Type": "application/json"},
                                   "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]}}
    assert body == b'{"error":{"message":"bad request"}}'
    assert binary.path == response_path(binary_id)
    prelude, _, body = binary.body.partition(b"\x00" * 8)
    assert json.loads(prelude) == {"statusCode": 402, "headers": {"Content-Type": "application/octet-stream"}}
    assert body == b"\x00\x01binary\xff"  # decoded from base64


def test_a_streaming_handler_that_neither_starts_nor_returns_a_proxy_result_is_an_error(fake):
    request_id = fake.add({})

    serve(fake, fixtures.stream_returns_nothing)

    post = fake.only_post()
    assert post.path == error_path(request_id)
    assert post.header("Lambda-Runtime-Function-Error-Type") == "Runtime.StreamingResponseNotStarted"


def test_the_stream_refuses_writes_before_start_and_a_second_start(fake):
    stream_calls = []

    @streaming
    def handler(event, context, response_stream):
        with pytest.raises(RuntimeError):
            response_stream.write(b"too early")
        response_stream.start(200, {})
        with pytest.raises(RuntimeError):
            response_stream.start(500, {})
        stream_calls.append("checked")

    fake.add({})

    serve(fake, handler)

    assert stream_calls == ["checked"]
    assert fake.only_post().raw_body == chunked(b'{"statusCode":200,"headers":{}}' + b"\x00" * 8)


def test_the_streaming_mark_is_found_under_decorators_that_use_functools_wraps():
    def decorator(function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            return function(*args, **kwargs)
        wrapper.__dict__.pop("__response_streaming__", None)  # even if the wrapper drops the copied mark
        return wrapper

    @decorator
    @decorator
    @streaming
    def marked(event, context, response_stream):
        pass

    @decorator
    def plain(event, context):
        pass

    assert is_streaming(marked)
    assert not is_streaming(plain) and not is_streaming(fixtures.echo)
    assert is_streaming(streaming(plain))  # outermost works too


# --- the context and the loop ---------------------------------------------------------------------


def test_the_context_carries_the_invocation_s_headers_and_the_function_s_environment(fake):
    deadline = int(time.time() * 1000) + 5_000
    request_id = fake.add({}, deadline_ms=deadline, trace_id=TRACE,
                          client_context={"custom": {"k": "v"}, "env": {}, "client": {"installation_id": "inst-1"}},
                          cognito_identity={"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool-1"})

    serve(fake, fixtures.context_probe)

    seen = fake.only_post().json()
    assert 4_000 < seen.pop("remaining_ms") <= 5_000
    assert seen == {
        "aws_request_id": request_id, "invoked_function_arn": ARN, "function_name": "gateway-generations",
        "function_version": "$LATEST", "memory_limit_in_mb": "1024",
        "log_group_name": "/aws/lambda/gateway-generations", "log_stream_name": "2026/12/02/[$LATEST]abcdef",
        "trace_id_env": TRACE, "cognito_identity_id": "id-1", "cognito_identity_pool_id": "pool-1",
        "client_context_custom": {"k": "v"}, "client_installation_id": "inst-1",
    }


def test_two_invocations_in_one_process_keep_one_connection_and_share_no_state(fake, monkeypatch):
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=stale-from-before")
    first = fake.add({}, trace_id=TRACE, client_context={"custom": {"k": "v"}}, cognito_identity={
        "cognitoIdentityId": "id-1"})
    second = fake.add({}, deadline_ms=int(time.time() * 1000) - 1_000)  # past its deadline already

    serve(fake, fixtures.context_probe, invocations=2)

    one, two = (post.json() for post in fake.posts())
    assert [post.path for post in fake.posts()] == [response_path(first), response_path(second)]
    assert (one["aws_request_id"], one["trace_id_env"], one["client_context_custom"]) == (first, TRACE, {"k": "v"})
    assert two["aws_request_id"] == second
    assert two["trace_id_env"] is None and "_X_AMZN_TRACE_ID" not in os.environ  # cleared, not inherited
    assert (two["client_context_custom"], two["cognito_identity_id"]) == (None, None)
    assert two["remaining_ms"] == 0
    assert [r.method for r in fake.requests] == ["GET", "POST", "GET", "POST"]
    assert fake.connections == 1


def test_the_loop_goes_on_after_a_handler_exception_and_after_a_refused_post(fake, capsys):
    failing = fake.add({})
    too_large = fake.add({})
    fine = fake.add({"n": 3})
    calls = []

    def handler(event, context):
        calls.append(context.aws_request_id)
        if context.aws_request_id == failing:
            raise RuntimeError("first fails")
        if context.aws_request_id == too_large:
            fake.post_status = 413
        else:
            fake.post_status = 202
        return event

    serve(fake, handler, invocations=3)

    assert calls == [failing, too_large, fine]
    assert [p.path for p in fake.posts()] == [error_path(failing), response_path(too_large), response_path(fine)]
    assert "HTTP 413" in capsys.readouterr().err


def test_a_runtime_api_that_fails_is_fatal(fake):
    fake.next_wait_s = 0  # GET /next answers 500 at once

    with pytest.raises(RuntimeAPIError, match="HTTP 500"):
        serve(fake, fixtures.echo)

    with pytest.raises(RuntimeAPIError):  # nobody listening
        run(RuntimeAPI("127.0.0.1:1"), fixtures.echo, max_invocations=1)


def test_powertools_logger_tracer_and_metrics_accept_the_context_and_the_streaming_call(fake, monkeypatch, capsys):
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_DEV", "false")
    from tests.fixtures import runtime_powertools_handlers as powertools

    powertools.log_stream.seek(0)
    powertools.log_stream.truncate()
    buffered_id = fake.add({}, trace_id=TRACE)
    streamed_id = fake.add({})

    serve(fake, powertools.buffered)
    assert is_streaming(powertools.streamed)  # the mark sits under three Powertools decorators
    serve(fake, powertools.streamed)

    buffered, streamed = fake.posts()
    assert buffered.path == response_path(buffered_id)
    assert buffered.json() == {"ok": True, "request_id": buffered_id}
    assert streamed.path == response_path(streamed_id)
    assert streamed.header("Lambda-Runtime-Function-Response-Mode") == "streaming"
    assert streamed.body.endswith(b"\x00" * 8 + b"streamed by " + streamed_id.encode())
    logs = [json.loads(line) for line in powertools.log_stream.getvalue().splitlines()]
    assert [log["message"] for log in logs] == ["buffered handled", "streamed handled"]
    assert logs[0]["function_request_id"] == buffered_id and logs[1]["function_request_id"] == streamed_id
    assert logs[0]["function_name"] == "gateway-generations" and logs[0]["function_arn"] == ARN
    assert logs[0]["function_memory_size"] == "1024"
    assert logs[0]["xray_trace_id"] == TRACE.split(";")[0].removeprefix("Root=")
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    metric_names = {m["Name"] for blob in emitted for d in blob["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"BufferedInvocations", "StreamedInvocations"} <= metric_names


# --- init -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "spec", "error_type"), [
    (None, "{mod}.handler", "Runtime.ImportModuleError"),
    ("def handler(event, context):\n    return (\n", "{mod}.handler", "Runtime.UserCodeSyntaxError"),
    ("def other(event, context):\n    pass\n", "{mod}.handler", "Runtime.HandlerNotFound"),
    (None, "nodots", "Runtime.MalformedHandlerName"),
])
def test_load_handler_reports_the_managed_runtime_s_error_types(tmp_path, monkeypatch, source, spec, error_type):
    module = f"runtime_fixture_{uuid.uuid4().hex}"
    if source is not None:
        (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))

    with pytest.raises(FaultError) as raised:
        load_handler(spec.format(mod=module))

    assert raised.value.error_type == error_type


def test_load_handler_imports_a_dotted_module():
    assert load_handler("tests.fixtures.runtime_handlers.echo") is fixtures.echo


def _run_wrapper(fake: FakeRuntimeAPI, handler: str, task_root: Path, **env: str) -> subprocess.CompletedProcess:
    """The exec wrapper as Lambda runs it: `$AWS_LAMBDA_EXEC_WRAPPER <python> <bootstrap.py>`."""
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "_X_AMZN_TRACE_ID")}
    environment.update({"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                        "AWS_LAMBDA_RUNTIME_API": fake.address, "_HANDLER": handler,
                        "LAMBDA_TASK_ROOT": str(task_root), **env})
    return subprocess.run([str(BOOTSTRAP), "/var/lang/bin/python3.13", "/var/runtime/bootstrap.py"],
                          cwd=task_root, env=environment, capture_output=True, timeout=60)


def test_an_import_failure_goes_to_init_error_and_the_process_exits_non_zero(fake):
    process = _run_wrapper(fake, "runtime_handlers_broken.handler", FIXTURES_DIR)

    assert process.returncode == 1
    (post,) = fake.requests
    assert (post.method, post.path) == ("POST", f"{API}/init/error")
    assert post.header("Lambda-Runtime-Function-Error-Type") == "Runtime.ImportModuleError"
    error = post.json()
    assert error["errorType"] == "Runtime.ImportModuleError"
    assert error["errorMessage"] == ("Unable to import module 'runtime_handlers_broken': "
                                     "No module named 'module_that_does_not_exist_anywhere'")
    assert error["stackTrace"] == []
    assert process.stderr.decode().count("\n") == 1


def test_an_exception_raised_while_importing_is_reported_under_its_own_type(fake, tmp_path):
    (tmp_path / "explodes.py").write_text("raise KeyError('missing setting')\n")

    process = _run_wrapper(fake, "explodes.handler", tmp_path)

    assert process.returncode == 1
    (post,) = fake.requests
    assert post.path == f"{API}/init/error"
    assert post.header("Lambda-Runtime-Function-Error-Type") == "KeyError"
    assert "explodes.py" in "".join(post.json()["stackTrace"])


def test_the_wrapper_runs_our_client_with_the_managed_runtime_s_path_order(fake, tmp_path):
    runtime_dir = tmp_path / "var-runtime"
    runtime_dir.mkdir()
    request_id = fake.add({})
    fake.next_wait_s = 0  # once the queue is empty, GET /next answers 500 and the process ends

    process = _run_wrapper(fake, "runtime_handlers.python_paths", FIXTURES_DIR, LAMBDA_RUNTIME_DIR=str(runtime_dir))

    assert process.returncode == 1 and b"HTTP 500" in process.stderr  # a failing Runtime API is fatal
    post = fake.posts()[0]
    assert post.path == response_path(request_id)
    seen = post.json()
    src = str(REPO / "src")
    expected = [str(FIXTURES_DIR), "/opt/python/lib/python3.13/site-packages", "/opt/python", str(runtime_dir), src]
    assert seen["sys_path"][:5] == expected  # task root first; no working directory entry
    assert seen["executable"] == str(Path(sys.executable).parent / "python3")
    assert seen["runtime_api"] == fake.address
