"""The HTTP transport to the upstream: the platform key, bounded retries that respect the
deadline, and never a second attempt after the request may have reached the upstream."""
from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from common.upstream.transport import (POLICY, RETRY_STATUSES, ConnectionLost, HttpTransport, TimedOut,
                                      TransportError, Unreachable)

from tests.conftest import PLATFORM_KEY
PATH = "/images/generations"
BODY = {"model": "gpt-image-2", "prompt": "a cat", "size": "1024x1024", "quality": "low"}


def post(client: HttpTransport, seconds: float = 20.0, body: Any = BODY) -> Any:
    return client.post(PATH, json_body=body, deadline=time.monotonic() + seconds)


def refused(call, *args: Any, **kwargs: Any) -> TransportError:
    with pytest.raises(TransportError) as info:
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
    client = HttpTransport(emu.base_url, lambda: next(keys))
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


def test_post_after_the_deadline_has_passed_times_out_without_sending(upstream, emu):
    error = refused(upstream.post, PATH, json_body=BODY, deadline=time.monotonic() - 0.5)

    assert isinstance(error, TimedOut)
    assert emu.requests == []


# --------------------------------------------------------------------------- never twice after sending

def test_a_read_timeout_times_out_near_the_deadline_and_is_never_retried(upstream, emu):
    # Given an upstream slower than the time left
    emu.script({"delay": 1.5})
    started = time.monotonic()
    # When posting with half a second left
    error = refused(post, upstream, 0.5)
    elapsed = time.monotonic() - started
    # Then it timed out near the deadline, after exactly one request
    assert isinstance(error, TimedOut) and 0.4 <= error.seconds < 1.4
    assert len(emu.requests) == 1
    assert 0.4 <= elapsed < 1.4


def test_a_connection_dropped_after_the_request_was_sent_is_lost_and_never_retried(upstream, emu):
    emu.script({"kind": "drop"})

    error = refused(post, upstream)

    assert isinstance(error, ConnectionLost)
    assert len(emu.requests) == 1


def _counting(client: HttpTransport) -> list[float]:
    """Record the time of every attempt the client makes through its session."""
    attempts: list[float] = []
    original = client.session.post

    def counted(*args: Any, **kwargs: Any):
        attempts.append(time.monotonic())
        return original(*args, **kwargs)

    client.session.post = counted
    return attempts


def test_a_refused_connection_is_retried_then_unreachable():
    # Given nobody listening at the upstream's address
    client = HttpTransport(f"http://127.0.0.1:{closed_port()}/v1", lambda: PLATFORM_KEY)
    attempts = _counting(client)
    # When posting with ample time
    try:
        error = refused(post, client, 20)
    finally:
        client.session.close()
    # Then the connection was attempted 1 + POLICY.connect times, then given up as unreachable
    assert len(attempts) == 1 + POLICY.connect == 3
    assert isinstance(error, Unreachable)


def test_connection_refused_with_a_tight_deadline_is_not_retried():
    client = HttpTransport(f"http://127.0.0.1:{closed_port()}/v1", lambda: PLATFORM_KEY)
    attempts = _counting(client)
    try:
        error = refused(post, client, 1.5)
    finally:
        client.session.close()

    assert len(attempts) == 1
    assert isinstance(error, Unreachable)


