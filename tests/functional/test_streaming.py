"""The image handler invoked as a streaming integration (what our Lambda runtime does in AWS), on the
fakes: the status and exact cost first, then the body; the upstream's bytes passed through; no 6 MB
cap; events relayed with keep-alives; every failure after the start ends in an error event and
releases the reservation."""
from __future__ import annotations

import json
from decimal import Decimal

from common.images import flow
from common.web.apigw import Request
from common.images.generations import generate_images

from tests.functional.conftest import FakeContext

QUICKSTART = {"model": "gpt-image-2", "prompt": "A futuristic skyline at dusk", "size": "1024x1024", "quality": "low"}
FIXED_ANSWER = {"created": 1700000000, "data": [{"b64_json": "iVBORw0KGgo" + "A" * 4000, "revised_prompt": "a \u00e9"}],
                "usage": {"input_tokens": 41, "input_tokens_details": {"text_tokens": 41, "image_tokens": 0},
                          "output_tokens": 196, "total_tokens": 237}, "output_format": "png"}


def sse_blocks(body: bytes) -> list[str]:
    return [block for block in body.decode().split("\n\n") if block.strip()]


def test_the_status_and_exact_cost_start_the_stream_then_the_upstreams_bytes_pass_through(gateway):
    # Given an upstream answer with a non-ASCII revised prompt and a usage block
    token = gateway.token("1")
    gateway.emulator.script({"status": 200, "body": FIXED_ANSWER})
    # When the handler answers through a response stream
    stream = gateway.generate_streamed(QUICKSTART, token)
    # Then status and headers came first with the charge already settled ...
    assert stream.status == 200 and stream.closed and stream.failure is None
    charged = Decimal(stream.headers["x-gateway-cost-usd"])
    assert charged == Decimal("0.006085")  # (41 x $5 + 196 x $30) per 1M tokens
    assert gateway.balance(token) == Decimal("1") - charged == Decimal(stream.headers["x-gateway-balance-usd"])
    # ... and the body is the upstream's JSON byte for byte: parsed once, never re-encoded
    assert stream.body == json.dumps(FIXED_ANSWER).encode()


def test_a_streamed_answer_has_no_6_mb_cap(gateway):
    # Given two 1536x1024 PNGs of random pixels: about 12.6 MB of base64
    token = gateway.token()
    gateway.emulator.script({"noise": True})
    stream = gateway.generate_streamed({**QUICKSTART, "size": "1536x1024", "n": 2}, token)
    # Then it all arrives (buffered, the same request is refused as response_too_large)
    assert stream.status == 200 and len(stream.body) > 12_000_000
    assert len(json.loads(stream.body)["data"]) == 2
    assert max(len(chunk) for chunk in stream.chunks) <= 1 << 20  # written in pieces, not as one copy
    assert gateway.records(token)[0].charged_usd > 0


def test_a_refusal_is_streamed_with_its_own_status_and_openai_shape(gateway):
    stream = gateway.generate_streamed({**QUICKSTART, "size": "7x7"}, gateway.token())

    assert stream.status == 400 and stream.closed
    assert json.loads(stream.body)["error"]["param"] == "size"
    assert gateway.emulator.requests == []


def test_events_are_relayed_as_they_come_with_keep_alives_while_the_upstream_is_silent(gateway, monkeypatch):
    # Given an upstream that waits 0.7 s before each event, and keep-alives every 0.2 s of silence
    monkeypatch.setattr(flow, "KEEPALIVE_SECONDS", 0.2)
    token = gateway.token()
    gateway.emulator.script({"event_interval": 0.7})
    stream = gateway.generate_streamed({**QUICKSTART, "stream": True, "partial_images": 1}, token)
    blocks = sse_blocks(stream.body)
    events = [b.splitlines()[0] for b in blocks if not b.startswith(":")]
    # Then the events came through in order, comments filled the silences, and they were not batched
    assert events == ["event: image_generation.partial_image", "event: image_generation.completed"]
    assert blocks.count(": keep-alive") >= 4
    partial, completed = (stream.times[i] for i, c in enumerate(stream.chunks) if c.startswith(b"event:"))
    assert completed - partial >= 0.5
    assert stream.headers["Content-Type"] == "text/event-stream" and stream.status == 200
    assert blocks[-1].startswith(": x-gateway-cost-usd=")


def test_an_upstream_failure_after_the_first_event_ends_with_an_error_event_and_no_charge(gateway):
    token = gateway.token("1")
    gateway.emulator.script({"fail_after_events": 1})
    stream = gateway.generate_streamed({**QUICKSTART, "stream": True, "partial_images": 2}, token)

    blocks = sse_blocks(stream.body)
    assert blocks[0].startswith("event: image_generation.partial_image")
    assert blocks[-1].startswith("event: error")
    error = json.loads(blocks[-1].split("data: ", 1)[1])
    assert error["type"] == "error" and error["error"]["code"] == "upstream_error"
    assert gateway.balance(token) == Decimal("1")
    [record] = gateway.records(token)
    assert (record.outcome, record.charged_usd) == ("upstream_error", 0)


def test_a_stream_that_outlasts_the_deadline_ends_with_a_timeout_event_and_no_charge(gateway):
    # Given 3.2 s left in the function (0.7 s after the 2.5 s margin) and an upstream taking 1 s an event
    token = gateway.token("1")
    gateway.emulator.script({"event_interval": 1.0})
    stream = gateway.generate_streamed({**QUICKSTART, "stream": True, "partial_images": 2}, token,
                                       context=FakeContext(remaining_ms=3200))
    error = json.loads(sse_blocks(stream.body)[-1].split("data: ", 1)[1])
    assert error["error"]["code"] == "upstream_timeout"
    assert gateway.balance(token) == Decimal("1") and gateway.token_record(token).holds == {}


def test_a_reader_that_stops_mid_stream_gets_its_reservation_released(gateway):
    # Given the route's streamed answer, read only up to its first event
    token = gateway.token("1")
    gateway.emulator.script({"event_interval": 0.3})
    request = Request(request_id="req-stop", method="POST", path="/v1/images/generations",
                      headers={"authorization": f"Bearer {token}"}, streamed=True,
                      body=json.dumps({**QUICKSTART, "stream": True, "partial_images": 2}).encode())
    response = generate_images(request, gateway.deps)
    first = next(iter(response.body))
    assert first.startswith(b"event: image_generation.partial_image")
    # When the reader stops there
    response.body.close()
    # Then nothing is held or charged
    assert gateway.balance(token) == Decimal("1") and gateway.token_record(token).holds == {}
