"""Long and large image requests through `make run`'s streaming integrations, with the official SDK,
unchanged: a generation slower than API Gateway's old 29 s, answers far above Lambda's 6 MB buffered
limit, partial images that reach the client while the upstream is still working, and the money of
all of it reconciling to the cent."""
from __future__ import annotations

import base64
import io
import time
from decimal import Decimal

import openai
import pytest
import requests
from PIL import Image

pytestmark = pytest.mark.slow


def charged(response) -> Decimal:
    return Decimal(response.headers["x-gateway-cost-usd"])


def test_a_generation_that_takes_40_seconds_returns_its_image(stack, client):
    # Given an upstream that takes 40 s, longer than any buffered REST integration allows by default
    stack.emulator("script", {"behaviours": [{"delay": 40}]})
    before = stack.balance(stack.state["token"])
    started = time.monotonic()
    # When the SDK asks for one image, as it always does
    raw = client.images.with_raw_response.generate(model="gpt-image-2", prompt="A slow masterpiece",
                                                   size="1024x1024", quality="high")
    # Then the image arrives after the 40 s, and exactly its cost is charged
    assert time.monotonic() - started >= 40
    image = Image.open(io.BytesIO(base64.b64decode(raw.parse().data[0].b64_json)))
    assert image.size == (1024, 1024)
    assert stack.balance(stack.state["token"]) == before - charged(raw)


def test_three_large_pngs_totalling_more_than_6_mb_come_back_as_base64(stack, client):
    # Given an upstream whose PNGs are as large as real photos (random pixels: 4.7 MB each at 1536x1024)
    stack.emulator("script", {"behaviours": [{"noise": True}]})
    before = stack.balance(stack.state["token"])
    # When three 1536x1024 PNGs are asked for as b64_json
    raw = client.images.with_raw_response.generate(model="gpt-image-2", prompt="Three noisy landscapes",
                                                   size="1536x1024", quality="low", n=3)
    result = raw.parse()
    # Then all three arrive whole (about 19 MB of base64, three times Lambda's buffered limit)
    encoded = sum(len(item.b64_json) for item in result.data)
    assert len(result.data) == 3 and encoded > 3 * 6_000_000
    for item in result.data:
        png = base64.b64decode(item.b64_json)
        assert png.startswith(b"\x89PNG") and Image.open(io.BytesIO(png)).size == (1536, 1024)
    assert stack.balance(stack.state["token"]) == before - charged(raw)


def test_streamed_partial_images_reach_the_client_before_the_upstream_has_finished(stack, client):
    # Given an upstream that takes a second before each of its events (two partials, then the image)
    stack.emulator("script", {"behaviours": [{"event_interval": 1.0}]})
    before = stack.balance(stack.state["token"])
    started = time.monotonic()
    arrivals: list[tuple[str, float]] = []
    # When the SDK streams the generation
    for event in client.images.generate(model="gpt-image-2", prompt="A sunrise, step by step", size="1024x1024",
                                        quality="low", stream=True, partial_images=2):
        arrivals.append((event.type, time.monotonic() - started))
    # Then each event arrived as the upstream sent it: the first partial a good second before the image
    assert [kind for kind, _ in arrivals] == ["image_generation.partial_image"] * 2 + ["image_generation.completed"]
    first_partial, completed = arrivals[0][1], arrivals[-1][1]
    assert completed - first_partial >= 1.5
    # And the completed event's usage was charged, partial images included
    [record] = [r for r in stack.ledger().request_records(stack.token(stack.state["token"]).token_id)
                if r.params.get("stream")][-1:]
    assert record.tokens["image_output"] == 196 + 2 * 100
    assert stack.balance(stack.state["token"]) == before - record.charged_usd


def test_an_upstream_that_fails_mid_stream_ends_with_an_error_event_and_costs_nothing(stack, client):
    # Given an upstream that drops the connection after the first partial image
    stack.emulator("script", {"behaviours": [{"fail_after_events": 1}]})
    before = stack.balance(stack.state["token"])
    received = []
    # When the SDK streams, it gets the partial image, then the gateway's error event as an APIError
    with pytest.raises(openai.APIError) as caught:
        for event in client.images.generate(model="gpt-image-2", prompt="Interrupted", size="1024x1024",
                                            quality="low", stream=True, partial_images=2):
            received.append(event.type)
    assert received == ["image_generation.partial_image"]
    assert "not been charged" in str(caught.value)
    # And nothing was charged
    assert stack.balance(stack.state["token"]) == before


def test_stream_with_response_format_url_is_refused_before_the_upstream_is_called(stack, client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(model="gpt-image-2", prompt="x", stream=True, response_format="url")
    assert caught.value.body["param"] == "response_format"
    assert stack.emulator("requests") == []


def test_a_streamed_answer_arrives_in_chunks_with_its_status_and_cost_headers_first(stack):
    # The raw HTTP view: chunked transfer, the exact cost in the headers, the body after them.
    stack.emulator("script", {"behaviours": [{"noise": True}]})
    with requests.post(f"{stack.state['base_url']}/images/generations", headers=stack.auth, stream=True, timeout=120,
                       json={"model": "gpt-image-2", "prompt": "chunks", "size": "1536x1024", "quality": "low"}) as r:
        assert r.status_code == 200
        assert r.headers["transfer-encoding"] == "chunked" and "content-length" not in r.headers
        assert Decimal(r.headers["x-gateway-cost-usd"]) > 0
        pieces = [len(piece) for piece in r.iter_content(chunk_size=None)]
    assert sum(pieces) > 6_000_000 and len(pieces) > 1
