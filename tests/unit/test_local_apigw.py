"""The local stack's API Gateway emulation and template reader, without moto or the handlers.

The gateway runs in-process on a free loopback port with stand-in functions, so these stay fast.
"""
from __future__ import annotations

import base64
import io
import json
import socket
import textwrap
import threading
import time
from pathlib import Path

import pytest
import requests

from local_stack.apigw import (
    LAMBDA_RESPONSE_LIMIT,
    REQUEST_BODY_LIMIT,
    ApiGateway,
    BadResult,
    IncomingRequest,
    LambdaContext,
    RequestIds,
    Router,
    build_event,
    media_type_matches,
    proxy_result_to_http,
)
from local_stack.template import Route, Template, TemplateError

REPO = Path(__file__).resolve().parents[2]

TEMPLATE = """\
AWSTemplateFormatVersion: 2010-09-09
Transform: AWS::Serverless-2016-10-31
Parameters:
  Timeout:
    Type: Number
    Default: 2
  Storage:
    Type: String
    Default: Enabled
Conditions:
  StorageOn: !Equals [!Ref Storage, Enabled]
Globals:
  Function:
    CodeUri: code/
    Timeout: !Ref Timeout
    MemorySize: 256
    Environment:
      Variables:
        BUCKET: !If [StorageOn, !Ref Bucket, ""]
        GREETING: !Sub "hello-${AWS::Region}-${Timeout}"
Resources:
  Api:
    Type: AWS::Serverless::Api
    Properties:
      StageName: prod
      BinaryMediaTypes: [multipart~1form-data, image~1png]
      GatewayResponses:
        MISSING_AUTHENTICATION_TOKEN:
          StatusCode: 404
          ResponseParameters:
            Headers:
              x-request-id: context.requestId
              x-literal: "'yes'"
          ResponseTemplates:
            application/json: '{"error":{"message":"no route for $context.httpMethod","code":"not_found"}}'
        INTEGRATION_TIMEOUT:
          StatusCode: 504
          ResponseTemplates:
            application/json: '{"error":{"message":$context.error.messageString,"code":"timeout"}}'
        DEFAULT_5XX:
          ResponseTemplates:
            application/json: '{"error":{"message":$context.error.messageString,"id":"$context.requestId"}}'
        DEFAULT_4XX:
          ResponseTemplates:
            application/json: '{"error":{"message":$context.error.messageString,"type":"$context.error.responseType"}}'
  Echo:
    Type: AWS::Serverless::Function
    Properties:
      Handler: echo_handler.handler
      Events:
        Post:
          Type: Api
          Properties: {RestApiId: !Ref Api, Path: /v1/echo, Method: post}
        Item:
          Type: Api
          Properties: {RestApiId: !Ref Api, Path: "/v1/things/{id}", Method: any}
        Static:
          Type: Api
          Properties: {RestApiId: !Ref Api, Path: /v1/things/special, Method: get}
  Slow:
    Type: AWS::Serverless::Function
    Properties:
      Handler: handlers/slow.handler
      Events:
        Get:
          Type: Api
          Properties: {RestApiId: !Ref Api, Path: /v1/slow, Method: get, TimeoutInMillis: 300}
  Bucket:
    Type: AWS::S3::Bucket
    Condition: StorageOn
"""


@pytest.fixture
def template(tmp_path: Path) -> Template:
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    return Template(tmp_path / "template.yaml")


def make_request(method="POST", target="/v1/echo", headers=(), body=b"") -> IncomingRequest:
    return IncomingRequest(method=method, target=target, headers=list(headers), body=body,
                           source_ip="127.0.0.9", server_port=3000)


def route_for(template: Template, method: str, path: str) -> tuple[Route, dict]:
    found = Router(template.api.routes, "prod").match(method, path)
    assert found is not None
    return found


# --- template --------------------------------------------------------------------------------

def test_the_template_reader_understands_short_tags_and_resolves_intrinsics(template):
    assert template.document["AWSTemplateFormatVersion"] == "2010-09-09"  # a string, not a date
    env = template.environment()
    assert env["BUCKET"] == {"Fn::If": ["StorageOn", {"Ref": "Bucket"}, ""]}
    assert template.resolve(env["BUCKET"], refs={"Bucket": "b"}) == "b"
    assert template.resolve(env["GREETING"]) == "hello-us-east-1-2"
    with pytest.raises(TemplateError):
        template.resolve(env["BUCKET"])  # the bucket has no local value yet: loud, not empty
    off = Template(template.path, {"Storage": "Disabled"})
    assert off.resolve(env["BUCKET"]) == "" and not off.active("Bucket")


def test_the_template_reader_extracts_routes_limits_and_gateway_responses(template):
    api = template.api
    assert api.stage == "prod"
    assert api.binary_media_types == ("multipart/form-data", "image/png")
    routes = {(r.method, r.path): r for r in api.routes}
    assert set(routes) == {("POST", "/v1/echo"), ("ANY", "/v1/things/{id}"),
                           ("GET", "/v1/things/special"), ("GET", "/v1/slow")}
    slow = routes[("GET", "/v1/slow")]
    assert slow.handler == "handlers/slow.handler" and slow.code_uri == template.root / "code"
    assert (slow.timeout_s, slow.memory_mb, slow.integration_timeout_ms) == (2.0, 256, 300)
    assert routes[("POST", "/v1/echo")].integration_timeout_ms == 29_000
    missing = api.gateway_responses["MISSING_AUTHENTICATION_TOKEN"]
    assert missing.status == 404 and missing.headers["x-literal"] == "'yes'"


def test_the_real_template_gives_the_routes_and_table_the_architecture_names():
    template = Template(REPO / "template.yaml")
    api = template.api
    routes = {(r.method, r.path): r for r in api.routes}
    assert ("POST", "/v1/images/generations") in routes and ("GET", "/v1/models") in routes
    assert routes[("GET", "/v1/models")].handler == "handlers.models.handler"
    assert "multipart/form-data" in api.binary_media_types and api.stage == "prod"
    assert {"MISSING_AUTHENTICATION_TOKEN", "REQUEST_TOO_LARGE", "INTEGRATION_TIMEOUT"} <= set(api.gateway_responses)
    table = template.table()
    assert table.key_schema[0] == {"AttributeName": "pk", "KeyType": "HASH"}
    assert table.global_secondary_indexes[0]["IndexName"] == "gsi1" and table.ttl_attribute == "expires_at"


# --- routing and the event -------------------------------------------------------------------

def test_routes_match_path_parameters_and_prefer_static_segments(template):
    router = Router(template.api.routes, "prod")
    route, params = router.match("DELETE", "/v1/things/42")
    assert route.path == "/v1/things/{id}" and params == {"id": "42"}
    route, params = router.match("GET", "/v1/things/special")
    assert route.path == "/v1/things/special" and params == {}
    assert router.match("GET", "/v1/echo") is None  # known resource, wrong method
    assert router.match("POST", "/v1/echo/more") is None
    assert router.public_path("/prod/v1/echo") == "/v1/echo" and router.public_path("/v1/echo") == "/v1/echo"


def test_the_event_is_a_rest_v1_proxy_event(template):
    route, params = route_for(template, "POST", "/v1/echo")
    request = make_request(
        target="/v1/echo?a=1&a=2&b=&c=x%20y",
        headers=[("Content-Type", "application/json"), ("X-Dup", "first"), ("x-dup", "second"),
                 ("User-Agent", "ua/1"), ("Host", "127.0.0.1:3000")],
        body='{"prompt":"é"}'.encode())
    ids = RequestIds.new()
    event = build_event(request, route, params, "prod", template.api.binary_media_types, ids)
    assert event["resource"] == "/v1/echo" and event["path"] == "/v1/echo" and event["httpMethod"] == "POST"
    assert event["headers"]["X-Dup"] == "second"  # last value wins
    assert event["multiValueHeaders"]["X-Dup"] == ["first", "second"]
    assert event["headers"]["X-Forwarded-For"] == "127.0.0.9"
    assert event["queryStringParameters"] == {"a": "2", "b": "", "c": "x y"}
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"], "b": [""], "c": ["x y"]}
    assert event["pathParameters"] is None and event["stageVariables"] is None
    assert event["body"] == '{"prompt":"é"}' and event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["requestId"] == ids.request_id and context["extendedRequestId"] == ids.extended_request_id
    assert (context["resourcePath"], context["httpMethod"], context["path"], context["stage"]) == \
        ("/v1/echo", "POST", "/prod/v1/echo", "prod")
    assert context["protocol"] == "HTTP/1.1" and context["requestTimeEpoch"] == ids.epoch_ms
    assert time.strptime(context["requestTime"], "%d/%b/%Y:%H:%M:%S +0000")
    assert context["identity"]["sourceIp"] == "127.0.0.9" and context["identity"]["userAgent"] == "ua/1"
    assert context["accountId"] == "123456789012" and context["apiId"] == "local"
    json.dumps(event)  # what Lambda receives is JSON


def test_multipart_bodies_reach_the_handler_base64_encoded(template):
    route, params = route_for(template, "PUT", "/v1/things/7")
    body = b"--xyz\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\n\x89PNG\xff\x00\r\n--xyz--\r\n"
    request = make_request("PUT", "/prod/v1/things/7",
                           [("Content-Type", "multipart/form-data; boundary=xyz")], body)
    event = build_event(request, route, params, "prod", template.api.binary_media_types, RequestIds.new())
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == body
    assert event["pathParameters"] == {"id": "7"} and event["resource"] == "/v1/things/{id}"
    assert event["path"] == "/v1/things/7" and event["requestContext"]["path"] == "/prod/v1/things/7"
    assert event["queryStringParameters"] is None and event["multiValueQueryStringParameters"] is None


def test_an_empty_body_is_none():
    assert media_type_matches("image/png; q=1", ("image/*",)) and not media_type_matches(None, ("*/*",))
    route = Route("GET", "/x", "F", "m.h", Path("."), 3, 128, 29_000)
    event = build_event(make_request("GET", "/x"), route, {}, "prod", ("*/*",), RequestIds.new())
    assert event["body"] is None and event["isBase64Encoded"] is False


def test_the_context_counts_down_from_the_function_timeout():
    route = Route("GET", "/x", "ModelsFunction", "m.h", Path("."), 3, 1024, 29_000)
    context = LambdaContext(route, route.timeout_s)
    assert 2900 <= context.get_remaining_time_in_millis() <= 3000
    assert context.function_version == "$LATEST" and context.memory_limit_in_mb == "1024"
    assert context.invoked_function_arn.endswith(":function:" + context.function_name)
    assert context.log_group_name == "/aws/lambda/" + context.function_name and context.aws_request_id


# --- proxy results ---------------------------------------------------------------------------

def test_a_proxy_result_becomes_the_http_answer():
    response = proxy_result_to_http({
        "statusCode": 201, "headers": {"X-One": "1", "Set-Cookie": "ignored", "Server": "me"},
        "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]}, "body": "{}", "isBase64Encoded": False,
    }, None, ())
    assert response.status == 201 and response.body == b"{}"
    assert ("Set-Cookie", "a=1") in response.headers and ("Set-Cookie", "b=2") in response.headers
    assert ("Set-Cookie", "ignored") not in response.headers
    assert ("x-amzn-Remapped-Server", "me") in response.headers  # API Gateway's own header
    assert ("Content-Type", "application/json") in response.headers  # API Gateway's default


def test_a_base64_result_is_decoded_only_for_a_binary_accept():
    result = {"statusCode": 200, "headers": {"Content-Type": "image/png"},
              "body": base64.b64encode(b"\x89PNG").decode(), "isBase64Encoded": True}
    assert proxy_result_to_http(result, "image/png", ("image/png",)).body == b"\x89PNG"
    assert proxy_result_to_http(result, "application/json", ("image/png",)).body == result["body"].encode()


@pytest.mark.parametrize("result", [
    None, "text", {"body": "no status"}, {"statusCode": 200, "body": {"not": "a string"}},
    {"statusCode": 200, "body": "", "extra": 1}, {"statusCode": "abc"},
    {"statusCode": 200, "headers": {"X": "a\r\nInjected: 1"}},
])
def test_malformed_proxy_results_are_refused(result):
    with pytest.raises(BadResult):
        proxy_result_to_http(result, None, ())


# --- the server ------------------------------------------------------------------------------

def echo(event, context):
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"event": event, "remaining": context.get_remaining_time_in_millis()})}


@pytest.fixture
def gateway(template):
    calls = {"slow": threading.Event()}

    def slow(event, context):
        calls["slow"].wait(5)  # keeps running after API Gateway gives up, as in AWS
        return {"statusCode": 200, "body": "late"}

    functions = {"Echo": echo, "Slow": slow}
    log = io.StringIO()
    gw = ApiGateway(template.api, port=0, access_log=log, function_log=io.StringIO(), functions=functions)
    gw.start()
    gw.log = log
    yield gw
    calls["slow"].set()
    gw.stop()


@pytest.fixture
def http():
    with requests.Session() as session:
        session.trust_env = False  # loopback only, never a proxy
        yield session


def test_the_server_hands_the_handler_a_proxy_event_and_returns_its_answer(gateway, http):
    files = {"image": ("a.png", b"\x89PNG\x00\xff", "image/png")}
    response = http.post(f"{gateway.url}/v1/things/9?x=1", files=files, data={"prompt": "hi"},
                         headers={"Authorization": "Bearer secret-token"})
    assert response.status_code == 200
    event = response.json()["event"]
    assert event["isBase64Encoded"] is True
    assert b"\x89PNG\x00\xff" in base64.b64decode(event["body"])
    assert event["pathParameters"] == {"id": "9"} and event["queryStringParameters"] == {"x": "1"}
    assert 0 < response.json()["remaining"] <= 2000
    assert response.headers["x-request-id"] == event["requestContext"]["requestId"]
    line = gateway.log.getvalue()
    assert "POST /v1/things/9 200" in line and "secret-token" not in line and "x=1" not in line


def test_an_unknown_route_answers_the_templates_404_with_a_request_id(gateway, http):
    response = http.get(f"{gateway.url}/v1/nothing")
    assert response.status_code == 404
    assert response.json() == {"error": {"message": "no route for GET", "code": "not_found"}}
    assert response.headers["x-request-id"] == response.headers["x-amzn-RequestId"]
    assert response.headers["x-literal"] == "yes"


def test_gateway_errors_without_a_template_entry_answer_api_gateways_own_body(template):
    api = template.api
    bare = type(api)(api.logical_id, api.stage, api.binary_media_types, {}, api.routes)
    gw = ApiGateway(bare, port=0)
    try:
        response = gw.gateway_error("MISSING_AUTHENTICATION_TOKEN", 403, make_request("GET", "/nope"),
                                    RequestIds.new())
    finally:
        gw.stop()
    assert response.status == 403 and json.loads(response.body) == {"message": "Missing Authentication Token"}


def test_a_body_over_10_mb_answers_413(gateway, http):
    response = http.post(f"{gateway.url}/v1/echo", data=b"x" * (REQUEST_BODY_LIMIT + 1))
    assert response.status_code == 413
    # No REQUEST_TOO_LARGE entry in this template: DEFAULT_4XX with API Gateway's message.
    assert response.json() == {"error": {"message": "Request Too Long", "type": "REQUEST_TOO_LARGE"}}


def test_an_event_over_lambdas_6_mb_answers_413(gateway, http):
    response = http.post(f"{gateway.url}/v1/echo", data=b"x" * 6_300_000)
    assert response.status_code == 413


def test_a_timeout_answers_504_while_the_handler_keeps_running(gateway, http):
    started = time.monotonic()
    response = http.get(f"{gateway.url}/v1/slow")
    assert response.status_code == 504 and time.monotonic() - started < 2
    assert response.json()["error"] == {"message": "Endpoint request timed out", "code": "timeout"}
    assert any(t.name == "lambda-Slow" for t in threading.enumerate())


@pytest.mark.parametrize("behaviour", ["raise", "malformed", "huge"])
def test_a_failing_or_invalid_handler_answers_502(gateway, http, behaviour):
    def bad(event, context):
        if behaviour == "raise":
            raise RuntimeError("boom")
        if behaviour == "malformed":
            return {"statusCode": 200, "body": {"a": 1}}
        return {"statusCode": 200, "body": "x" * LAMBDA_RESPONSE_LIMIT}

    gateway.functions._overrides["Echo"] = bad
    response = http.post(f"{gateway.url}/v1/echo", json={})
    assert response.status_code == 502
    assert response.json()["error"]["message"] == "Internal server error"
    assert response.json()["error"]["id"] == response.headers["x-request-id"]


def test_the_handlers_own_request_id_header_wins_and_connections_stay_open(gateway, http):
    gateway.functions._overrides["Echo"] = lambda e, c: {
        "statusCode": 200, "headers": {"x-request-id": "mine"}, "body": "ok"}
    first = http.post(f"{gateway.url}/v1/echo", data="a")
    second = http.post(f"{gateway.url}/v1/echo", data="b")  # same keep-alive connection
    assert first.headers["x-request-id"] == second.headers["x-request-id"] == "mine"
    assert first.text == "ok" and first.headers["Content-Length"] == "2"


def test_handlers_are_imported_from_the_code_uri_once(tmp_path, http):
    code = tmp_path / "code"
    code.mkdir()
    (code / "echo_handler_local_stack_test.py").write_text(textwrap.dedent("""
        IMPORTS = []
        IMPORTS.append(1)
        def handler(event, context):
            return {"statusCode": 200, "body": str(len(IMPORTS))}
    """))
    (tmp_path / "template.yaml").write_text(TEMPLATE.replace("echo_handler.handler",
                                                             "echo_handler_local_stack_test.handler"))
    api = Template(tmp_path / "template.yaml").api
    gw = ApiGateway(api, port=0, functions={"Slow": echo})
    gw.load()
    gw.start()
    try:
        assert http.post(f"{gw.url}/v1/echo").text == "1"
        assert http.post(f"{gw.url}/v1/echo").text == "1"
    finally:
        gw.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", gw.port), timeout=1)


# --- streaming integrations ------------------------------------------------------------------

STREAMING_TEMPLATE = """\
AWSTemplateFormatVersion: 2010-09-09
Transform: AWS::Serverless-2016-10-31
Resources:
  Api:
    Type: AWS::Serverless::Api
    Properties: {StageName: prod}
  Streamer:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: code/
      Handler: streamer.handler
      Timeout: 5
      Events:
        Post:
          Type: Api
          Properties: {RestApiId: !Ref Api, Path: /v1/stream, Method: post, TimeoutInMillis: 4000,
                       ResponseTransferMode: RESPONSE_STREAM}
        Buffered:
          Type: Api
          Properties: {RestApiId: !Ref Api, Path: /v1/buffered, Method: post}
"""


@pytest.fixture
def streaming(tmp_path, http, monkeypatch):
    """A gateway whose /v1/stream is a streaming integration; `behave` sets what the handler does."""
    import local_stack.apigw as apigw

    monkeypatch.setattr(apigw, "STREAM_IDLE_TIMEOUT_S", 1.0)
    (tmp_path / "template.yaml").write_text(STREAMING_TEMPLATE)
    calls: dict = {"behaviour": None, "done": threading.Event(), "kwargs": None}

    def handler(event, context, **kwargs):
        calls["kwargs"] = kwargs
        try:
            return calls["behaviour"](kwargs.get("response_stream"))
        finally:
            calls["done"].set()

    gw = ApiGateway(Template(tmp_path / "template.yaml").api, port=0, access_log=io.StringIO(),
                    function_log=io.StringIO(), functions={"Streamer": handler})
    gw.start()
    gw.calls = calls
    yield gw
    gw.stop()


def test_the_template_reader_knows_which_routes_stream(streaming):
    routes = {r.path: r for r in streaming.api.routes}
    assert routes["/v1/stream"].streaming and not routes["/v1/buffered"].streaming


def test_a_streaming_route_sends_status_and_headers_at_start_and_each_write_as_it_comes(streaming, http):
    go_on = threading.Event()

    def behave(stream):
        stream.start(201, {"Content-Type": "text/event-stream", "x-cost": "0.1"})
        stream.write(b"first")
        go_on.wait(5)
        stream.write(b"second")
        stream.close()

    streaming.calls["behaviour"] = behave
    with http.post(streaming.url + "/v1/stream", stream=True, timeout=10) as response:
        # The status and the first piece are here while the handler is still waiting
        assert response.status_code == 201 and response.headers["x-cost"] == "0.1"
        assert response.headers["transfer-encoding"] == "chunked"
        pieces = response.iter_content(chunk_size=None)
        assert next(pieces) == b"first"
        go_on.set()
        assert b"".join(pieces) == b"second"


def test_a_streamed_answer_is_not_held_to_the_6_mb_buffered_limit(streaming, http):
    def behave(stream):
        stream.start(200, {})
        for _ in range(8):
            stream.write(b"x" * 1_000_000)
        stream.close()

    streaming.calls["behaviour"] = behave
    response = http.post(streaming.url + "/v1/stream", timeout=10)
    assert response.status_code == 200 and len(response.content) == 8_000_000


def test_a_buffered_route_of_the_same_function_is_called_without_a_stream(streaming, http):
    streaming.calls["behaviour"] = lambda stream: {"statusCode": 200, "body": f"stream={stream}"}
    response = http.post(streaming.url + "/v1/buffered", timeout=10)
    assert response.text == "stream=None" and streaming.calls["kwargs"] == {}


def test_a_streaming_handler_may_answer_with_a_proxy_result_instead(streaming, http):
    streaming.calls["behaviour"] = lambda stream: {"statusCode": 404, "headers": {"x-a": "b"}, "body": "nope"}
    response = http.post(streaming.url + "/v1/stream", timeout=10)
    assert (response.status_code, response.text, response.headers["x-a"]) == (404, "nope", "b")


def test_a_handler_that_raises_before_starting_is_a_502(streaming, http):
    def behave(stream):
        raise RuntimeError("boom")

    streaming.calls["behaviour"] = behave
    assert http.post(streaming.url + "/v1/stream", timeout=10).status_code == 502


def test_a_handler_that_starts_nothing_within_the_idle_limit_is_a_504(streaming, http):
    streaming.calls["behaviour"] = lambda stream: time.sleep(2)  # the idle limit here is 1 s
    assert http.post(streaming.url + "/v1/stream", timeout=10).status_code == 504


def test_silence_past_the_idle_limit_cuts_the_answer_without_its_last_chunk(streaming, http):
    def behave(stream):
        stream.start(200, {})
        stream.write(b"partial")
        time.sleep(2)  # the idle limit here is 1 s
        stream.write(b"too late")  # dropped: the answer was cut
        stream.close()

    streaming.calls["behaviour"] = behave
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        http.post(streaming.url + "/v1/stream", timeout=10).content
    assert streaming.calls["done"].wait(5)  # the handler itself ran to its end, as a Lambda does


def test_a_client_that_goes_away_does_not_stop_the_handler(streaming, http):
    wrote_all = threading.Event()

    def behave(stream):
        stream.start(200, {})
        for _ in range(200):  # far more than the queue and the socket buffers hold
            stream.write(b"y" * 65536)
        stream.close()
        wrote_all.set()

    streaming.calls["behaviour"] = behave
    with http.post(streaming.url + "/v1/stream", stream=True, timeout=10) as response:
        next(response.iter_content(chunk_size=1024))
    # The client closed the connection after 1 KB; the handler's later writes are dropped, not blocked
    assert wrote_all.wait(10)


# --- malformed requests: API Gateway's shape, never http.server's HTML ------------------------------

def raw_exchange(gateway, data: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as conn:
        conn.sendall(data)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize("data, status", [
    (b"TRACE /v1/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404),  # an unknown route (the template's 404)
    (b"BREW /v1/echo HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    (b"GET /v1/echo HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", 431),
    (b"POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
    (b"NOT A REQUEST LINE AT ALL\r\n\r\n", 400),
], ids=["TRACE", "unknown method", "huge header", "negative length", "garbage"])
def test_a_malformed_request_gets_a_json_gateway_response_not_an_html_page(gateway, data, status):
    code, headers, body = raw_exchange(gateway, data)

    assert code == status
    assert headers["content-type"] == "application/json" and not body.lstrip().startswith(b"<")
    json.loads(body)  # the template's GatewayResponses render JSON
