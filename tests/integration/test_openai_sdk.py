"""The customer's view: the official `openai` SDK and the printed curl line against `make run`.

Everything goes over real HTTP on loopback: SDK -> local API Gateway -> handler -> DynamoDB and
S3 on moto -> upstream emulator. Only `base_url` and `api_key` differ from OpenAI code.
"""
from __future__ import annotations

import base64
import io
import signal
import subprocess
from decimal import Decimal

import openai
import pytest
import requests
from PIL import Image

from tests.integration.stack import Stack

pytestmark = pytest.mark.slow

QUICKSTART = {"model": "gpt-image-2", "prompt": "A futuristic skyline at dusk", "size": "1024x1024"}


def png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image


def test_the_printed_curl_line_saves_a_1024_png(stack, tmp_path):
    # Given the line `make run` printed for a new user to paste
    [curl_line] = [line.strip() for line in stack.output.read_text().splitlines() if line.strip().startswith("curl ")]
    # When it runs in a shell
    subprocess.run(["bash", "-c", curl_line], cwd=tmp_path, check=True, timeout=60)
    # Then image.png is a 1024x1024 PNG
    assert png((tmp_path / "image.png").read_bytes()).size == (1024, 1024)


def test_the_seed_python_snippet_gets_b64_json(client):
    result = client.images.generate(model="gpt-image-2", prompt="A futuristic skyline at dusk", size="1024x1024",
                                    quality="medium")
    assert png(base64.b64decode(result.data[0].b64_json)).size == (1024, 1024)
    assert result.usage.output_tokens > 0


def test_url_mode_returns_a_presigned_url_that_serves_the_png(client):
    result = client.images.generate(model="gpt-image-2", prompt="A clean studio product photo of a mug",
                                    size="1024x1024", quality="low", response_format="url")
    assert result.data[0].b64_json is None
    fetched = requests.get(result.data[0].url, timeout=10)
    assert fetched.status_code == 200
    assert fetched.headers["Content-Type"] == "image/png"
    assert png(fetched.content).size == (1024, 1024)


def test_several_url_images_are_distinct_objects(client):
    result = client.images.generate(model="gpt-image-2", prompt="three mugs", n=3, quality="low",
                                    response_format="url")
    urls = [item.url for item in result.data]
    assert len(set(urls)) == 3
    assert all(requests.get(url, timeout=10).status_code == 200 for url in urls)


def test_the_charge_and_balance_come_back_in_headers_and_match_the_ledger(stack, client):
    token = stack.new_token("1")
    priced = openai.OpenAI(base_url=stack.state["base_url"], api_key=token, max_retries=0)
    stack.emulator("script", {"behaviours": [{"usage": {
        "input_tokens": 41, "input_tokens_details": {"text_tokens": 41, "image_tokens": 0},
        "output_tokens": 1756, "total_tokens": 1797}}]})
    raw = priced.images.with_raw_response.generate(**QUICKSTART, quality="medium")
    assert raw.headers["x-gateway-cost-usd"] == "0.052885"
    assert raw.headers["x-request-id"]
    assert stack.balance(token) == Decimal("0.947115") == Decimal(raw.headers["x-gateway-balance-usd"])


def test_a_wrong_key_raises_authentication_error(stack):
    bad = openai.OpenAI(base_url=stack.state["base_url"], api_key="sk-img-not-a-real-token", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        bad.images.generate(**QUICKSTART)
    assert caught.value.code == "invalid_api_key"


@pytest.mark.parametrize("field, value", [("size", "1000x1000"), ("n", 11), ("quality", "ultra"),
                                          ("output_compression", 50)])
def test_bad_input_raises_bad_request_error_naming_the_param_and_costs_nothing(stack, client, field, value):
    before = stack.balance(stack.state["token"])
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(**{**QUICKSTART, field: value})
    assert caught.value.param == field
    assert stack.emulator("requests") == []
    assert stack.balance(stack.state["token"]) == before


def test_a_balance_too_small_raises_rate_limit_error_without_reaching_the_upstream(stack):
    token = stack.new_token("0.01")
    # Default retries on: x-should-retry: false must stop the SDK from retrying this 429.
    poor = openai.OpenAI(base_url=stack.state["base_url"], api_key=token)
    stack.emulator("reset")
    with pytest.raises(openai.RateLimitError) as caught:
        poor.images.generate(**QUICKSTART, quality="medium")
    assert caught.value.code == "insufficient_quota"
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert stack.emulator("requests") == []
    assert stack.balance(token) == Decimal("0.01")


def test_an_upstream_outage_raises_internal_server_error_and_costs_nothing(stack, client):
    before = stack.balance(stack.state["token"])
    stack.emulator("script", {"behaviours": [{"status": 503, "body": {"error": {"message": "overloaded",
                                                                                 "type": "server_error"}},
                                              "times": 3}]})
    with pytest.raises(openai.InternalServerError) as caught:
        client.images.generate(**QUICKSTART)
    assert caught.value.status_code == 502
    assert len(stack.emulator("requests")) == 3  # first try + two gateway retries
    assert stack.balance(stack.state["token"]) == before


def test_a_moderation_block_raises_bad_request_error_with_the_upstream_code(stack, client):
    before = stack.balance(stack.state["token"])
    stack.emulator("script", {"behaviours": [{"status": 400, "body": {"error": {
        "message": "Your request was rejected by the safety system.", "type": "image_generation_user_error",
        "param": None, "code": "moderation_blocked"}}}]})
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(**QUICKSTART)
    assert caught.value.code == "moderation_blocked"
    assert stack.balance(stack.state["token"]) == before


def test_a_dropped_upstream_connection_is_a_502_without_retry_or_charge(stack, client):
    before = stack.balance(stack.state["token"])
    stack.emulator("script", {"behaviours": [{"kind": "drop"}]})
    with pytest.raises(openai.InternalServerError):
        client.images.generate(**QUICKSTART)
    assert len(stack.emulator("requests")) == 1  # the request may be billed upstream: never sent twice
    assert stack.balance(stack.state["token"]) == before


def test_streaming_with_the_sdk_yields_partial_and_completed_events(client):
    events = list(client.images.generate(**QUICKSTART, stream=True, partial_images=1))
    assert [event.type for event in events] == ["image_generation.partial_image", "image_generation.completed"]
    assert png(base64.b64decode(events[-1].b64_json)).size == (1024, 1024)


def test_models_list_and_the_sdk_agree(client):
    assert "gpt-image-2" in {model.id for model in client.models.list()}


# --- a stack without storage and with a short request timeout ----------------------------------

@pytest.fixture(scope="module")
def constrained(tmp_path_factory):
    running = Stack(tmp_path_factory.mktemp("constrained_stack"), GATEWAY_STORAGE="off",
                    GATEWAY_PARAMETER_OVERRIDES="RequestTimeoutSeconds=5 StreamingTimeoutSeconds=5")
    yield running
    assert running.stop(signal.SIGINT) == 0


def test_url_mode_without_storage_raises_image_url_not_available_and_never_calls_upstream(constrained):
    client = openai.OpenAI(base_url=constrained.state["base_url"], api_key=constrained.state["token"], max_retries=0)
    constrained.emulator("reset")
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(**QUICKSTART, response_format="url")
    assert caught.value.code == "image_url_not_available"
    assert list(caught.value.response.json()) == ["error"]  # no image data in disguise
    assert constrained.emulator("requests") == []


def test_an_upstream_slower_than_the_request_timeout_is_a_504_from_the_function_itself(constrained):
    # StreamingTimeoutSeconds=5 (the image routes'): the function gives up at ~2.5 s, before API Gateway's 5 s.
    client = openai.OpenAI(base_url=constrained.state["base_url"], api_key=constrained.state["token"], max_retries=0)
    before = constrained.balance(constrained.state["token"])
    constrained.emulator("script", {"behaviours": [{"delay": 4}]})
    with pytest.raises(openai.APIStatusError) as caught:
        client.images.generate(**QUICKSTART)
    assert caught.value.status_code == 504
    assert caught.value.code == "upstream_timeout"
    assert constrained.balance(constrained.state["token"]) == before
