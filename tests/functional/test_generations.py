"""POST /v1/images/generations through the handler: the customer's view and the ledger's."""
from __future__ import annotations

import base64
import io
import json
from decimal import Decimal

import pytest
import requests
from PIL import Image

from tests.functional.conftest import FakeContext

QUICKSTART = {"model": "gpt-image-2", "prompt": "A futuristic skyline at dusk", "size": "1024x1024"}
KNOWN_USAGE = {"input_tokens": 41, "input_tokens_details": {"text_tokens": 41, "image_tokens": 0},
               "output_tokens": 1756, "output_tokens_details": {"image_tokens": 1756, "text_tokens": 0},
               "total_tokens": 1797}


def decode(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


# --- success -----------------------------------------------------------------------------------

def test_quickstart_returns_a_1024_png_as_b64_json_with_usage(gateway):
    token = gateway.token()
    reply = gateway.generate(QUICKSTART, token)
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    image = decode(reply.json["data"][0]["b64_json"])
    assert (image.format, image.size) == ("PNG", (1024, 1024))
    assert reply.json["usage"]["output_tokens"] > 0


def test_every_response_carries_the_api_gateway_request_id(gateway):
    token = gateway.token()
    ok = gateway.generate(QUICKSTART, token)
    bad = gateway.generate({"prompt": ""}, token)
    assert ok.headers["x-request-id"] and bad.headers["x-request-id"]
    assert ok.headers["x-request-id"] != bad.headers["x-request-id"]


def test_known_usage_is_charged_exactly_and_recorded_with_the_raw_usage(gateway):
    # Given a token with $1 and an upstream that reports 41 text and 1,756 image output tokens
    token = gateway.token("1")
    gateway.emulator.script({"usage": KNOWN_USAGE})
    # When one medium 1024x1024 image is generated
    reply = gateway.generate({**QUICKSTART, "quality": "medium"}, token)
    # Then exactly $0.052885 is charged, reported in headers, and recorded
    assert reply.status == 200
    assert reply.headers["x-gateway-cost-usd"] == "0.052885"
    assert gateway.balance(token) == Decimal("0.947115")
    assert Decimal(reply.headers["x-gateway-balance-usd"]) == Decimal("0.947115")
    [record] = gateway.records(token)
    assert record.charged_usd == Decimal("0.052885")
    assert record.usage_raw == KNOWN_USAGE
    assert record.outcome == "ok"
    assert record.cost_by_kind == {
        "text_input": Decimal("0.000205"), "cached_text_input": Decimal(0), "image_input": Decimal(0),
        "image_output": Decimal("0.05268")}
    assert gateway.token_record(token).holds == {}


def test_the_customer_token_never_reaches_the_upstream_but_the_platform_key_does(gateway):
    token = gateway.token()
    gateway.generate(QUICKSTART, token)
    [received] = gateway.emulator.requests
    assert received["headers"]["authorization"] == f"Bearer {gateway.emulator.api_key}"
    assert token not in json.dumps(received)


def test_unknown_fields_are_forwarded_unchanged_and_the_upstream_has_the_last_word(gateway):
    token = gateway.token()
    reply = gateway.generate({**QUICKSTART, "brand_new_option": {"level": 3}}, token)
    assert gateway.emulator.requests[0]["json"]["brand_new_option"] == {"level": 3}
    # The emulator, like OpenAI today, does not know the field: its 400 reaches the customer, free.
    assert (reply.status, reply.error["param"]) == (400, "brand_new_option")
    assert gateway.balance(token) == Decimal("10")


def test_model_defaults_to_gpt_image_2_when_absent(gateway):
    token = gateway.token()
    reply = gateway.generate({"prompt": "a cat"}, token)
    assert reply.status == 200
    assert gateway.emulator.requests[0]["json"]["model"] == "gpt-image-2"


@pytest.mark.parametrize("output_format, pil_format", [("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")])
def test_requested_output_format_and_size_come_back(gateway, output_format, pil_format):
    token = gateway.token()
    reply = gateway.generate({**QUICKSTART, "size": "1536x1024", "output_format": output_format}, token)
    image = decode(reply.json["data"][0]["b64_json"])
    assert (image.format, image.size) == (pil_format, (1536, 1024))


def test_n_images_are_returned_and_counted(gateway):
    token = gateway.token()
    reply = gateway.generate({**QUICKSTART, "n": 3, "quality": "low"}, token)
    assert len(reply.json["data"]) == 3
    assert gateway.records(token)[0].images == 3


# --- response_format=url ---------------------------------------------------------------------

def test_url_mode_passes_through_then_retries_without_and_returns_presigned_s3_urls(gateway):
    token = gateway.token()
    reply = gateway.generate({**QUICKSTART, "n": 2, "response_format": "url"}, token)
    assert reply.status == 200
    first, second = gateway.emulator.requests
    assert first["json"]["response_format"] == "url"  # passed through first, as the platform promises
    assert "response_format" not in second["json"]  # then once more without it
    urls = [item["url"] for item in reply.json["data"]]
    assert all("b64_json" not in item for item in reply.json["data"])
    assert len(set(urls)) == 2
    # The objects are really in the store, with the right content type.
    stored = gateway.store.read(urls[0])
    assert stored.content_type == "image/png"
    assert Image.open(io.BytesIO(stored.data)).size == (1024, 1024)


def test_url_mode_keeps_upstream_urls_when_the_upstream_accepts_response_format(gateway):
    token = gateway.token()
    gateway.emulator.script({"kind": "accept_response_format"})
    reply = gateway.generate({**QUICKSTART, "response_format": "url"}, token)
    assert reply.status == 200
    assert len(gateway.emulator.requests) == 1
    assert reply.json["data"][0]["url"].startswith(gateway.emulator.base_url.rsplit("/v1", 1)[0])
    assert requests.get(reply.json["data"][0]["url"], timeout=5).status_code == 200


@pytest.mark.parametrize("storage", [False])
def test_url_mode_without_storage_is_refused_before_the_upstream_is_called(gateway):
    token = gateway.token()
    reply = gateway.generate({**QUICKSTART, "response_format": "url"}, token)
    assert reply.status == 400
    assert reply.error["code"] == "image_url_not_available"
    assert reply.error["param"] == "response_format"
    assert list(reply.json) == ["error"]  # no image data in disguise
    assert gateway.emulator.requests == []
    assert gateway.balance(token) == Decimal("10")


# --- refusals cost nothing and never reach the upstream ------------------------------------

@pytest.mark.parametrize("body, param", [
    ({"model": "gpt-image-2"}, "prompt"),
    ({**QUICKSTART, "prompt": ""}, "prompt"),
    ({**QUICKSTART, "prompt": "x" * 32_001}, "prompt"),
    ({**QUICKSTART, "n": 0}, "n"),
    ({**QUICKSTART, "n": 11}, "n"),
    ({**QUICKSTART, "size": "1000x1000"}, "size"),
    ({**QUICKSTART, "size": "4096x4096"}, "size"),
    ({**QUICKSTART, "quality": "ultra"}, "quality"),
    ({**QUICKSTART, "background": "transparent", "output_format": "jpeg"}, "background"),
    ({**QUICKSTART, "output_format": "gif"}, "output_format"),
    ({**QUICKSTART, "output_compression": 50}, "output_compression"),
    ({**QUICKSTART, "output_format": "jpeg", "output_compression": 101}, "output_compression"),
    ({**QUICKSTART, "moderation": "none"}, "moderation"),
    ({**QUICKSTART, "user": 42}, "user"),
    ({**QUICKSTART, "response_format": "link"}, "response_format"),
    ({**QUICKSTART, "stream": "yes"}, "stream"),
    ({**QUICKSTART, "partial_images": 4}, "partial_images"),
    ({**QUICKSTART, "model": "dall-e-9"}, "model"),
    # Decided as OpenAI's spec and SDK types have them: `user` is a string (not nullable), `model`
    # names a model, and `style` (vivid/natural) exists for dall-e-3 only, which is not sold here.
    ({**QUICKSTART, "model": ""}, "model"),
    ({**QUICKSTART, "user": None}, "user"),
    ({**QUICKSTART, "style": "vivid"}, "style"),
    ({**QUICKSTART, "style": "cinematic"}, "style"),
])
def test_bad_input_is_a_400_naming_the_param_with_no_upstream_call_and_no_charge(gateway, body, param):
    token = gateway.token()
    reply = gateway.generate(body, token)
    assert reply.status == 400
    assert set(reply.error) == {"message", "type", "param", "code"}
    assert reply.error["type"] == "invalid_request_error"
    assert reply.error["param"] == param
    assert gateway.emulator.requests == []
    assert gateway.balance(token) == Decimal("10")
    assert gateway.records(token) == []


def test_nullable_fields_sent_as_null_are_accepted_as_openai_accepts_them(gateway):
    # The SDKs' types mark these Optional: null means "not given".
    body = {**QUICKSTART, **dict.fromkeys(("n", "quality", "background", "output_format", "moderation",
                                           "response_format", "stream", "partial_images", "style", "model"))}
    reply = gateway.generate(body, gateway.token())
    assert reply.status == 200


@pytest.mark.parametrize("headers, code", [
    ({"Content-Type": "text/plain"}, "unsupported_media_type"),
    ({"Content-Type": "application/x-www-form-urlencoded"}, "unsupported_media_type"),
    ({"Content-Encoding": "gzip"}, "unsupported_content_encoding"),
])
def test_a_body_not_declared_as_plain_json_is_415_and_never_parsed(gateway, headers, code):
    token = gateway.token()
    reply = gateway.generate(QUICKSTART, token, headers=headers)
    assert (reply.status, reply.error["code"]) == (415, code)
    assert gateway.emulator.requests == [] and gateway.balance(token) == Decimal("10")


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/merge-patch+json"])
def test_json_declared_with_parameters_or_a_json_suffix_is_read(gateway, content_type):
    assert gateway.generate(QUICKSTART, gateway.token(), headers={"Content-Type": content_type}).status == 200


@pytest.mark.parametrize("raw", [
    '{"prompt": "a cat", "\\ud800": 1}',  # an unknown key that is a lone surrogate
    '{"prompt": "a cat \\udfff"}',
])
def test_json_with_a_lone_surrogate_escape_is_a_400_before_the_upstream(gateway, raw):
    token = gateway.token()
    reply = gateway.generate(raw, token)
    assert (reply.status, reply.error["code"]) == (400, "invalid_json")
    assert gateway.emulator.requests == [] and gateway.balance(token) == Decimal("10")


def test_a_body_that_is_not_json_is_a_400(gateway):
    token = gateway.token()
    reply = gateway.generate("{not json", token)
    assert reply.status == 400 and reply.error["param"] is None
    assert gateway.emulator.requests == []


@pytest.mark.parametrize("authorization", [None, "Bearer sk-img-unknown", "Basic abc", "Bearer "])
def test_missing_or_unknown_tokens_get_401_invalid_api_key(gateway, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    reply = gateway.generate(QUICKSTART, None, headers=headers)
    assert reply.status == 401
    assert reply.error["code"] == "invalid_api_key"
    assert gateway.emulator.requests == []


def test_revoked_and_expired_tokens_get_401(gateway):
    expired = gateway.token(expires_at=1)
    revoked = gateway.token()
    gateway.revoke(revoked)
    for token in (expired, revoked):
        assert gateway.generate(QUICKSTART, token).error["code"] == "invalid_api_key"
    assert gateway.emulator.requests == []


def test_a_401_message_never_echoes_the_presented_token(gateway):
    reply = gateway.generate(QUICKSTART, "sk-img-very-secret-value")
    assert "very-secret" not in reply.raw["body"]


def test_insufficient_balance_is_429_insufficient_quota_and_the_upstream_sees_nothing(gateway):
    token = gateway.token("0.01")
    reply = gateway.generate({**QUICKSTART, "quality": "medium"}, token)
    assert reply.status == 429
    assert reply.error["code"] == "insufficient_quota" and reply.error["type"] == "insufficient_quota"
    assert reply.headers["x-should-retry"] == "false"
    assert gateway.emulator.requests == []
    assert gateway.balance(token) == Decimal("0.01")


# --- upstream failures cost nothing ----------------------------------------------------------

def test_moderation_block_passes_through_with_its_body_and_no_charge(gateway):
    token = gateway.token()
    blocked = {"error": {"message": "Your request was rejected by the safety system.",
                         "type": "image_generation_user_error", "param": None, "code": "moderation_blocked",
                         "moderation_details": {"categories": ["violence"]}}}
    gateway.emulator.script({"status": 400, "body": blocked})
    reply = gateway.generate(QUICKSTART, token)
    assert reply.status == 400
    assert reply.json == blocked
    assert gateway.balance(token) == Decimal("10")
    [record] = gateway.records(token)
    assert (record.outcome, record.charged_usd) == ("moderation_blocked", 0)


@pytest.mark.parametrize("behaviour, status, code", [
    ({"status": 500, "body": {"error": {"message": "boom", "type": "server_error"}}, "times": 3}, 502, "upstream_error"),
    ({"kind": "malformed"}, 502, "upstream_error"),
    ({"kind": "empty_data"}, 502, "upstream_error"),
    ({"status": 401, "body": {"error": {"message": "bad key", "type": "invalid_request_error",
                                        "code": "invalid_api_key"}}}, 502, "upstream_auth_error"),
])
def test_upstream_failures_map_to_openai_errors_and_charge_nothing(gateway, behaviour, status, code):
    token = gateway.token()
    gateway.emulator.script(behaviour)
    reply = gateway.generate(QUICKSTART, token)
    assert reply.status == status
    assert reply.error["code"] == code
    assert gateway.balance(token) == Decimal("10")
    assert gateway.token_record(token).holds == {}


def test_upstream_429_keeps_retry_after_once_retries_run_out(gateway):
    token = gateway.token()
    limited = {"error": {"message": "Rate limit reached", "type": "requests", "param": None,
                         "code": "rate_limit_exceeded"}}
    gateway.emulator.script({"status": 429, "headers": {"Retry-After": "0"}, "body": limited, "times": 3})
    reply = gateway.generate(QUICKSTART, token)
    assert reply.status == 429
    assert reply.headers["retry-after"] == "0"
    assert len(gateway.emulator.requests) == 3  # the first try and two retries
    assert gateway.balance(token) == Decimal("10")


def test_a_transient_upstream_500_is_retried_and_the_customer_gets_the_image(gateway):
    token = gateway.token()
    gateway.emulator.script({"status": 500, "body": {"error": {"message": "boom", "type": "server_error"}}})
    reply = gateway.generate(QUICKSTART, token)
    assert reply.status == 200
    assert len(gateway.emulator.requests) == 2


def test_an_upstream_slower_than_the_deadline_is_a_504_without_charge_and_without_retry(gateway):
    # Given a function with 3.5 s left: the gateway keeps 2.5 s back, so it waits ~1 s upstream
    token = gateway.token()
    gateway.emulator.script({"delay": 3})
    reply = gateway.generate(QUICKSTART, token, context=FakeContext(remaining_ms=3500))
    assert reply.status == 504
    assert reply.error["code"] == "upstream_timeout"
    assert len(gateway.emulator.requests) == 1
    assert gateway.balance(token) == Decimal("10")


def test_storage_failure_in_url_mode_is_a_502_without_charge(gateway):
    token = gateway.token()
    gateway.store.fail = True
    reply = gateway.generate({**QUICKSTART, "response_format": "url"}, token)
    assert reply.status == 502 and reply.error["code"] == "image_storage_failed"
    assert gateway.balance(token) == Decimal("10")


# --- streaming -----------------------------------------------------------------------------

def test_stream_true_answers_server_sent_events_and_bills_the_partial_images(gateway):
    token = gateway.token()
    reply = gateway.generate({**QUICKSTART, "stream": True, "partial_images": 2}, token)
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/event-stream"
    blocks = [block for block in reply.raw["body"].split("\n\n") if block.strip()]
    events = [block for block in blocks if not block.startswith(":")]
    assert [e.splitlines()[0] for e in events] == ["event: image_generation.partial_image"] * 2 + [
        "event: image_generation.completed"]
    [record] = gateway.records(token)
    assert record.tokens["image_output"] == 1756 + 200
    # The charge, which cannot be a header any more, ends the stream as a comment (clients skip those)
    assert blocks[-1] == f": x-gateway-cost-usd={record.charged_usd} x-gateway-balance-usd={gateway.balance(token)}"


# --- models --------------------------------------------------------------------------------

def test_models_lists_the_catalog_in_openai_shape(gateway):
    reply = gateway.models(gateway.token())
    assert reply.status == 200
    assert reply.json["object"] == "list"
    assert {m["id"] for m in reply.json["data"]} >= {"gpt-image-2"}
    assert all(m["object"] == "model" for m in reply.json["data"])


def test_models_lists_only_what_the_token_may_use(gateway):
    reply = gateway.models(gateway.token(allowed_models=["gpt-image-2"]))
    assert [m["id"] for m in reply.json["data"]] == ["gpt-image-2"]


def test_models_needs_a_valid_token(gateway):
    assert gateway.models(None).status == 401


def test_a_token_revoked_after_use_is_refused_at_once_despite_the_token_cache(gateway):
    # Given a token whose record this container has just read (and keeps for TOKEN_CACHE_SECONDS)
    token = gateway.token()
    assert gateway.generate(QUICKSTART, token).status == 200
    # When the operator revokes it
    gateway.revoke(token)
    gateway.emulator.reset()
    # Then the next request is a 401: the reservation's condition checks the status itself
    reply = gateway.generate(QUICKSTART, token)
    assert (reply.status, reply.error["code"]) == (401, "invalid_api_key")
    assert gateway.emulator.requests == []


def test_image_requests_reuse_a_recently_read_token_record(gateway):
    token = gateway.token()
    gateway.ledger.calls.clear()
    for _ in range(3):
        assert gateway.generate(QUICKSTART, token).status == 200
    assert gateway.ledger.calls.count("get_token") == 1
    # The models route always reads afresh.
    gateway.models(token)
    assert gateway.ledger.calls.count("get_token") == 2


def test_an_answer_too_large_for_lambda_is_refused_uncharged_and_points_to_url_mode(gateway, monkeypatch):
    # Given a response limit smaller than the answer (in AWS: Lambda's 6 MB)
    from common.web.sinks import BufferedSink

    monkeypatch.setattr(BufferedSink, "max_body_bytes", 1000)
    token = gateway.token()
    reply = gateway.generate({**QUICKSTART, "n": 2}, token)
    # Then the customer hears why and what to do, and pays nothing for images they never got
    assert (reply.status, reply.error["code"], reply.error["param"]) == (400, "response_too_large", "response_format")
    assert "response_format=url" in reply.error["message"]
    assert gateway.balance(token) == Decimal("10")
    [record] = gateway.records(token)
    assert (record.outcome, record.charged_usd) == ("response_too_large", 0)


def test_log_keys_of_one_caller_do_not_leak_into_the_next_invocation(gateway, monkeypatch):
    from common.observability import logger

    def logged_lines() -> list[dict]:
        lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
        stream.seek(0), stream.truncate()
        return lines

    stream = io.StringIO()
    monkeypatch.setattr(logger.registered_handler, "stream", stream)  # the function's log, as CloudWatch gets it
    # Given a warm container that has just served one customer (their token id is a log key)
    first = gateway.token()
    assert gateway.generate(QUICKSTART, first).status == 200
    first_id = gateway.token_record(first).token_id
    assert any(line.get("token_id") == first_id for line in logged_lines())
    # When the next invocation is another caller's (here refused before any token is known)
    assert gateway.generate({"prompt": ""}, gateway.token()).status == 400
    lines = logged_lines()
    # Then none of its log lines names the first caller
    assert lines and all(first_id not in json.dumps(line) for line in lines)
