"""OpenAI's images protocol on the transport: the mapping of upstream errors to what the customer
sees, the refusals the gateway works around, and transport failures as the customer's errors."""
from __future__ import annotations

import json
import time
from typing import Any

import pytest
from requests.structures import CaseInsensitiveDict

from common.errors import ApiError
from common.upstream.openai_images import ImageCall, OpenAIImages, error_from_reply, rejects_parameter
from common.upstream.transport import ConnectionLost, HttpReply, HttpTransport, TimedOut, Unreachable


PATH = "/images/generations"
BODY = {"model": "gpt-image-2", "prompt": "a cat", "size": "1024x1024", "quality": "low"}
ERROR_KEYS = {"message", "type", "param", "code"}


def post(client: HttpTransport, seconds: float = 20.0, body: Any = BODY) -> Any:
    return client.post(PATH, json_body=body, deadline=time.monotonic() + seconds)


def error_json(message: str, type_: str = "invalid_request_error", param: str | None = None,
               code: str | None = None, **extra: Any) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code, **extra}}


class FailingTransport:
    def __init__(self, failure: Exception) -> None:
        self.failure = failure

    def post(self, path: str, **kwargs: Any):
        raise self.failure


@pytest.mark.parametrize("failure, status, code", [
    (TimedOut(28.7), 504, "upstream_timeout"),
    (ConnectionLost(), 502, "upstream_error"),
    (Unreachable(), 502, "upstream_error"),
])
def test_transport_failures_become_server_errors_that_say_nothing_was_charged(failure, status, code):
    with pytest.raises(ApiError) as info:
        OpenAIImages(FailingTransport(failure)).send(ImageCall("generations", BODY), time.monotonic() + 5)

    error = info.value
    assert (error.status, error.code, error.type) == (status, code, "server_error")
    assert set(error.body()["error"]) == ERROR_KEYS
    assert "not been charged" in error.message


def test_a_timeout_says_how_long_the_gateway_waited():
    with pytest.raises(ApiError) as info:
        OpenAIImages(FailingTransport(TimedOut(28.7))).send(ImageCall("generations", BODY), time.monotonic() + 5)

    assert "29 seconds" in info.value.message


# --------------------------------------------------------------------------- error_from_reply

def reply_of(status: int, body: Any = b"", headers: dict[str, str] | None = None) -> HttpReply:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpReply(status, CaseInsensitiveDict(headers or {}), content, 12)


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
