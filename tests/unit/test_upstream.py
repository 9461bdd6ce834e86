"""Upstream calls: the platform key, bounded retries that respect the deadline, never a second
generation after the request may have reached the upstream, and the mapping of upstream errors."""
from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest
from requests.structures import CaseInsensitiveDict

from common.errors import ApiError
from common.upstream import POLICY, RETRY_STATUSES, Upstream, UpstreamReply, error_from_reply, rejects_parameter

from tests.conftest import PLATFORM_KEY
PATH = "/images/generations"
BODY = {"model": "gpt-image-2", "prompt": "a cat", "size": "1024x1024", "quality": "low"}
ERROR_KEYS = {"message", "type", "param", "code"}


@pytest.fixture
def upstream(emu):
    client = Upstream(emu.base_url, lambda: PLATFORM_KEY)
    yield client
    client.session.close()


def post(client: Upstream, seconds: float = 20.0, body: Any = BODY) -> Any:
    return client.post(PATH, json_body=body, deadline=time.monotonic() + seconds)


def refused(call, *args: Any, **kwargs: Any) -> ApiError:
    with pytest.raises(ApiError) as info:
        call(*args, **kwargs)
    return info.value


def closed_port() -> int:
    """A loopback port nobody listens on: connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def error_json(message: str, type_: str = "invalid_request_error", param: str | None = None,
               code: str | None = None, **extra: Any) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code, **extra}}


# --------------------------------------------------------------------------- the platform key

def test_authorization_header_carries_the_platform_key_from_the_provider(upstream, emu):
    reply = post(upstream)

    assert reply.status == 200
    assert [r["headers"]["authorization"] for r in emu.requests] == [f"Bearer {PLATFORM_KEY}"]


def test_the_key_provider_is_asked_on_every_call_so_a_rotated_key_is_used(emu):
    keys = iter(["sk-old-key-000000000", PLATFORM_KEY])
    client = Upstream(emu.base_url, lambda: next(keys))
    try:
        first, second = post(client), post(client)
    finally:
        client.session.close()

    assert [r["headers"]["authorization"] for r in emu.requests] == ["Bearer sk-old-key-000000000",
                                                                      f"Bearer {PLATFORM_KEY}"]
    assert (first.status, second.status) == (401, 200)


def test_json_body_is_forwarded_unchanged_to_the_path_under_the_base_url(upstream, emu):
    body = {**BODY, "user": "u-1", "safety_identifier": "x"}

    post(upstream, body=body)

    (request,) = emu.requests
    assert request["path"] == "/v1/images/generations"
    assert request["json"] == body


def test_successful_reply_carries_status_headers_body_and_elapsed_time(upstream):
    reply = post(upstream)

    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["x-request-id"].startswith("req_")
    assert reply.json()["data"][0]["b64_json"]
    assert reply.elapsed_ms >= 0


# --------------------------------------------------------------------------- retries

def test_503_then_200_is_retried_and_succeeds_with_two_requests_seen(upstream, emu):
    emu.script({"status": 503, "body": error_json("overloaded", "server_error")})

    reply = post(upstream)

    assert reply.status == 200
    assert len(emu.requests) == 2


@pytest.mark.parametrize("status", sorted(RETRY_STATUSES))
def test_each_retryable_status_is_retried_once_then_succeeds(upstream, emu, status):
    emu.script({"status": status, "headers": {"Retry-After": "0"}, "body": error_json("busy", "server_error")})

    reply = post(upstream)

    assert reply.status == 200
    assert len(emu.requests) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 408, 409, 422])
def test_a_non_retryable_status_is_returned_after_a_single_request(upstream, emu, status):
    emu.script({"status": status, "body": error_json("no", code="x")})

    reply = post(upstream)

    assert reply.status == status
    assert len(emu.requests) == 1


def test_429_with_retry_after_is_honoured_before_the_retry(upstream, emu):
    # Given a rate limit asking to wait one second
    emu.script({"status": 429, "headers": {"Retry-After": "1"},
                "body": error_json("Rate limit reached", "requests", code="rate_limit_exceeded")})
    # When posting
    started = time.monotonic()
    reply = post(upstream)
    elapsed = time.monotonic() - started
    # Then the retry came at least one second after the first attempt, and succeeded
    first, second = emu.requests
    assert reply.status == 200
    assert second["time"] - first["time"] >= 0.95
    assert 0.95 <= elapsed < 5


def test_retries_stop_at_the_policys_limit_and_the_last_response_is_returned(upstream, emu):
    # Given more failures queued than the policy allows retries
    emu.script(*({"status": 503, "headers": {"Retry-After": "0"}, "body": f"attempt-{i}"} for i in range(1, 6)))
    # When posting
    reply = post(upstream)
    # Then 1 + POLICY.total attempts were made and the last answer is the one returned
    assert POLICY.total == 2
    assert len(emu.requests) == 3
    assert reply.status == 503
    assert reply.content == b"attempt-3"


def test_no_retry_when_the_backoff_plus_a_full_attempt_would_pass_the_deadline(upstream, emu):
    # Given a 503 and less than MIN_ATTEMPT_SECONDS (2 s) left
    emu.script({"status": 503, "body": "busy"}, {"status": 503, "body": "busy again"})
    started = time.monotonic()
    # When posting with a tight deadline
    reply = post(upstream, seconds=1.5)
    # Then the first answer is returned at once, after one request
    assert reply.status == 503
    assert reply.content == b"busy"
    assert len(emu.requests) == 1
    assert time.monotonic() - started < 1.0


def test_retry_after_longer_than_the_time_left_returns_the_429_at_once(upstream, emu):
    emu.script({"status": 429, "headers": {"Retry-After": "30"},
                "body": error_json("Rate limit reached", "requests", code="rate_limit_exceeded")})
    started = time.monotonic()

    reply = post(upstream, seconds=20)

    assert reply.status == 429
    assert reply.headers["retry-after"] == "30"
    assert len(emu.requests) == 1
    assert time.monotonic() - started < 1.0


def test_429_with_fractional_retry_after_is_retried_not_crashed(upstream, emu):
    emu.script({"status": 429, "headers": {"Retry-After": "0.5"},
                "body": error_json("Rate limit reached", "requests", code="rate_limit_exceeded")})

    reply = post(upstream)

    assert reply.status == 200
    assert len(emu.requests) == 2


def test_post_after_the_deadline_has_passed_answers_504_without_sending(upstream, emu):
    error = refused(upstream.post, PATH, json_body=BODY, deadline=time.monotonic() - 0.5)

    assert error.status == 504
    assert error.code == "upstream_timeout"
    assert emu.requests == []


# --------------------------------------------------------------------------- never twice after sending

def test_read_timeout_answers_504_upstream_timeout_and_is_never_retried(upstream, emu):
    # Given an upstream slower than the time left
    emu.script({"delay": 1.5})
    started = time.monotonic()
    # When posting with half a second left
    error = refused(post, upstream, 0.5)
    elapsed = time.monotonic() - started
    # Then 504 upstream_timeout near the deadline, after exactly one request
    assert error.status == 504
    assert error.code == "upstream_timeout"
    assert error.type == "server_error"
    assert set(error.body()["error"]) == ERROR_KEYS
    assert len(emu.requests) == 1
    assert 0.4 <= elapsed < 1.4


def test_connection_dropped_after_the_request_was_sent_answers_502_and_is_never_retried(upstream, emu):
    emu.script({"kind": "drop"})

    error = refused(post, upstream)

    assert error.status == 502
    assert error.code == "upstream_error"
    assert error.type == "server_error"
    assert len(emu.requests) == 1


def _counting(client: Upstream) -> list[float]:
    """Record the time of every attempt the client makes through its session."""
    attempts: list[float] = []
    original = client.session.post

    def counted(*args: Any, **kwargs: Any):
        attempts.append(time.monotonic())
        return original(*args, **kwargs)

    client.session.post = counted
    return attempts


def test_connection_refused_is_retried_then_answers_502_upstream_error():
    # Given nobody listening at the upstream's address
    client = Upstream(f"http://127.0.0.1:{closed_port()}/v1", lambda: PLATFORM_KEY)
    attempts = _counting(client)
    # When posting with ample time
    try:
        error = refused(post, client, 20)
    finally:
        client.session.close()
    # Then the connection was attempted 1 + POLICY.connect times, then 502 upstream_error
    assert len(attempts) == 1 + POLICY.connect == 3
    assert error.status == 502
    assert error.code == "upstream_error"
    assert error.type == "server_error"


def test_connection_refused_with_a_tight_deadline_is_not_retried():
    client = Upstream(f"http://127.0.0.1:{closed_port()}/v1", lambda: PLATFORM_KEY)
    attempts = _counting(client)
    try:
        error = refused(post, client, 1.5)
    finally:
        client.session.close()

    assert len(attempts) == 1
    assert (error.status, error.code) == (502, "upstream_error")


# --------------------------------------------------------------------------- error_from_reply

def reply_of(status: int, body: Any = b"", headers: dict[str, str] | None = None) -> UpstreamReply:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return UpstreamReply(status, CaseInsensitiveDict(headers or {}), content, 12)


def lower_keys(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


MODERATION = error_json(
    "Your request was rejected as a result of our safety system.", "image_generation_user_error",
    code="moderation_blocked", moderation_details={"categories": ["violence"], "flagged": True})


def test_moderation_blocked_400_passes_through_with_its_status_and_extra_fields():
    error = error_from_reply(reply_of(400, MODERATION, {"x-request-id": "req_mod"}))

    assert error.status == 400
    assert error.type == "image_generation_user_error"
    assert error.code == "moderation_blocked"
    assert error.body() == MODERATION
    assert error.body()["error"]["moderation_details"] == {"categories": ["violence"], "flagged": True}


def test_429_passes_through_and_keeps_retry_after():
    body = error_json("Rate limit reached for requests", "requests", code="rate_limit_exceeded")

    error = error_from_reply(reply_of(429, body, {"Retry-After": "20", "x-request-id": "req_429"}))

    assert error.status == 429
    assert error.code == "rate_limit_exceeded"
    assert error.body() == body
    assert lower_keys(error.headers)["retry-after"] == "20"


def test_429_without_retry_after_adds_no_retry_after_header():
    error = error_from_reply(reply_of(429, error_json("slow down", "requests", code="rate_limit_exceeded")))

    assert "retry-after" not in lower_keys(error.headers)


@pytest.mark.parametrize("status", [401, 403])
def test_upstream_auth_refusal_is_a_502_upstream_auth_error_not_the_customers_invalid_api_key(status):
    # Given the upstream refusing the platform's key (its message shows part of that key)
    upstream_message = "Incorrect API key provided: sk-pla***********6789."
    body = error_json(upstream_message, code="invalid_api_key")
    # When mapped
    error = error_from_reply(reply_of(status, body, {"x-request-id": "req_auth"}))
    # Then the customer sees a gateway-side failure, without the upstream's words
    assert error.status == 502
    assert error.type == "server_error"
    assert error.code == "upstream_auth_error"
    assert error.code != "invalid_api_key"
    assert upstream_message not in json.dumps(error.body())
    assert "sk-pla" not in json.dumps(error.body())
    assert set(error.body()["error"]) == ERROR_KEYS


@pytest.mark.parametrize(("status", "body", "content_type"), [
    (500, b"<html><body><h1>500 Internal Server Error</h1></body></html>", "text/html"),
    (502, b"<html>Bad Gateway</html>", "text/html"),
    (503, json.dumps(error_json("The engine is currently overloaded", "server_error")).encode(), "application/json"),
    (500, json.dumps(error_json("The server had an error", "server_error")).encode(), "application/json"),
    (504, b"", "text/plain"),
    (404, b"<html>Not Found</html>", "text/html"),
    (400, b"not json at all", "text/plain"),
    (400, json.dumps({"error": "a string, not an object"}).encode(), "application/json"),
])
def test_server_errors_and_unreadable_bodies_are_a_502_upstream_error(status, body, content_type):
    error = error_from_reply(reply_of(status, body, {"content-type": content_type}))

    assert error.status == 502
    assert error.type == "server_error"
    assert error.code == "upstream_error"
    assert set(error.body()["error"]) == ERROR_KEYS
    assert error.body()["error"]["message"] == error.message


@pytest.mark.parametrize(("status", "body"), [
    (400, MODERATION),
    (429, error_json("slow", "requests", code="rate_limit_exceeded")),
    (401, error_json("bad key", code="invalid_api_key")),
    (500, b"<html>oops</html>"),
])
def test_upstream_x_request_id_is_kept_as_x_upstream_request_id(status, body):
    error = error_from_reply(reply_of(status, body, {"X-Request-Id": "req_abc123"}))

    assert lower_keys(error.headers)["x-upstream-request-id"] == "req_abc123"
    assert "x-request-id" not in lower_keys(error.headers)


def test_no_x_upstream_request_id_when_the_upstream_sent_none():
    assert "x-upstream-request-id" not in lower_keys(error_from_reply(reply_of(500, b"oops")).headers)


def test_passed_through_error_without_type_param_or_code_still_has_all_four_keys():
    error = error_from_reply(reply_of(400, {"error": {"message": "Something is off."}}))

    assert error.status == 400
    assert error.body() == {"error": {"message": "Something is off.", "type": "invalid_request_error",
                                      "param": None, "code": None}}


def test_unknown_parameter_400_passes_through_naming_the_parameter():
    body = error_json("Unknown parameter: 'foo'.", param="foo", code="unknown_parameter")

    error = error_from_reply(reply_of(400, body))

    assert (error.status, error.param, error.code) == (400, "foo", "unknown_parameter")
    assert error.body() == body


def test_error_from_a_real_emulator_429_keeps_retry_after_end_to_end(upstream, emu):
    emu.script({"status": 429, "headers": {"Retry-After": "30"},
                "body": error_json("Rate limit reached", "requests", code="rate_limit_exceeded")})

    error = error_from_reply(post(upstream, seconds=5))

    assert error.status == 429
    assert lower_keys(error.headers)["retry-after"] == "30"
    assert lower_keys(error.headers)["x-upstream-request-id"].startswith("req_")


# --------------------------------------------------------------------------- rejects_parameter

OPENAI_UNKNOWN_RESPONSE_FORMAT = {"error": {"message": "Unknown parameter: 'response_format'.",
                                            "type": "invalid_request_error", "param": "response_format",
                                            "code": "unknown_parameter"}}


def test_openais_exact_unknown_parameter_body_rejects_response_format():
    assert rejects_parameter(reply_of(400, OPENAI_UNKNOWN_RESPONSE_FORMAT), "response_format") is True


def test_the_emulators_response_format_refusal_is_recognised(upstream, emu):
    reply = post(upstream, body={**BODY, "response_format": "url"})

    assert reply.status == 400
    assert rejects_parameter(reply, "response_format") is True


def test_unknown_parameter_with_null_param_is_recognised_from_the_message():
    body = {"error": {**OPENAI_UNKNOWN_RESPONSE_FORMAT["error"], "param": None}}

    assert rejects_parameter(reply_of(400, body), "response_format") is True


@pytest.mark.parametrize(("status", "body"), [
    (400, error_json("Invalid value: '1254x836'. Supported values are: 'auto'.", param="size", code="invalid_value")),
    (400, MODERATION),
    (400, error_json("Unknown parameter: 'foo'.", param="foo", code="unknown_parameter")),
    (400, error_json("Missing required parameter: 'prompt'.", param="prompt", code="missing_required_parameter")),
    (400, b"<html>Bad Request</html>"),
    (400, {"error": "Unknown parameter: 'response_format'."}),
    (500, OPENAI_UNKNOWN_RESPONSE_FORMAT),
    (422, OPENAI_UNKNOWN_RESPONSE_FORMAT),
    (200, {"created": 1, "data": [{"b64_json": "AA=="}]}),
])
def test_other_answers_are_not_taken_as_rejecting_response_format(status, body):
    assert rejects_parameter(reply_of(status, body), "response_format") is False


def test_a_response_format_refusal_does_not_reject_other_parameters():
    assert rejects_parameter(reply_of(400, OPENAI_UNKNOWN_RESPONSE_FORMAT), "user") is False
