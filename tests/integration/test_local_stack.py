"""`python -m local_stack` as a user runs it: a subprocess on free ports, driven over HTTP.

The module's stack is shared by the tests; the last one stops it with SIGTERM. A second, short
lived stack checks Ctrl-C and the storage/token knobs.
"""
from __future__ import annotations

import base64
import signal
import time

import pytest
import requests

from tests.integration.stack import Stack, port_is_closed

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Stack:
    running = Stack(tmp_path_factory.mktemp("local_stack"))
    yield running
    assert running.stop(signal.SIGTERM) == 0, running.output.read_text()


def assert_openai_error(response: requests.Response, status: int) -> dict:
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers.get("x-request-id")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


def test_the_stack_becomes_ready_and_lists_models_with_the_token_and_401_without(stack):
    state = stack.state
    assert state["base_url"].startswith("http://127.0.0.1:") and state["base_url"].endswith("/v1")
    assert state["emulator_url"] and state["table"] and state["bucket"] and state["moto_endpoint"]
    models = stack.http.get(f"{state['base_url']}/models", headers=stack.auth)
    assert models.status_code == 200 and models.json()["object"] == "list"
    assert models.headers["x-request-id"]
    assert_openai_error(stack.http.get(f"{state['base_url']}/models"), 401)
    output = stack.output.read_text()
    assert state["base_url"] in output and "curl -s" in output and "from openai import OpenAI" in output


def test_an_unknown_route_answers_404_in_openais_error_shape_with_a_request_id(stack):
    response = stack.http.get(f"{stack.state['base_url']}/no/such/route", headers=stack.auth)
    assert assert_openai_error(response, 404)["code"] == "not_found"
    assert response.headers["x-request-id"] == response.headers["x-amzn-RequestId"]


def test_a_body_over_10_mb_answers_413_in_openais_error_shape(stack):
    response = stack.http.post(f"{stack.state['base_url']}/images/generations", headers=stack.auth,
                               data=b"{" + b" " * 10_485_760 + b"}")
    assert assert_openai_error(response, 413)["code"] == "request_too_large"


def test_the_openai_sdk_generates_an_image_through_the_stack(stack):
    from openai import OpenAI

    with OpenAI(base_url=stack.state["base_url"], api_key=stack.state["token"], max_retries=0) as client:
        result = client.images.generate(model="gpt-image-2", prompt="A futuristic skyline at dusk",
                                        size="1024x1024")
    assert base64.b64decode(result.data[0].b64_json).startswith(b"\x89PNG")
    assert "POST /v1/images/generations 200" in stack.output.read_text()
    assert stack.state["token"] not in stack.output.read_text().split("Ctrl-C stops everything.")[-1]


def test_sigterm_stops_moto_the_emulator_and_the_server(stack):
    ports = stack.ports()
    assert len(ports) == 3 and not any(port_is_closed(p) for p in ports)
    started = time.monotonic()
    assert stack.stop(signal.SIGTERM) == 0, stack.output.read_text()
    assert time.monotonic() - started < 5
    assert all(port_is_closed(p) for p in ports)
    assert "local stack stopped." in stack.output.read_text()


def test_ctrl_c_stops_a_stack_without_storage_using_the_given_demo_token(tmp_path):
    local = Stack(tmp_path, GATEWAY_STORAGE="off", GATEWAY_DEMO_TOKEN="sk-img-local-test-token")
    try:
        assert local.state["token"] == "sk-img-local-test-token" and local.state["bucket"] is None
        assert local.http.get(f"{local.state['base_url']}/models", headers=local.auth).status_code == 200
    finally:
        ports = local.ports()
        assert local.stop(signal.SIGINT) == 0, local.output.read_text()
    assert all(port_is_closed(p) for p in ports)
