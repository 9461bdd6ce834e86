"""The scheduled sweeper: reservations of requests that died are returned, and only those."""
from __future__ import annotations

import time
from decimal import Decimal

import pytest

from tests.functional.conftest import FakeContext


def reserve_at(gateway, secret: str, request_id: str, amount: str, age_seconds: float):
    """A reservation as a request that started `age_seconds` ago and then died would leave it."""
    gateway.ledger.clock = lambda: time.time() - age_seconds
    try:
        return gateway.ledger.reserve(gateway.token_record(secret), request_id, Decimal(amount),
                                      model="gpt-image-2", endpoint="generations")
    finally:
        gateway.ledger.clock = time.time


def sweep() -> dict:
    from handlers.sweeper import handler

    return handler({"source": "aws.events", "detail-type": "Scheduled Event"}, FakeContext())


def test_a_reservation_older_than_the_longest_request_is_returned_and_recorded_as_abandoned(gateway):
    # Given a $1 token whose request reserved $0.30 and died an hour ago (the longest request: 600 s)
    token = gateway.token("1")
    reserve_at(gateway, token, "req-died", "0.30", age_seconds=3600)
    assert gateway.balance(token) == Decimal("0.70")
    # When the sweeper runs
    result = sweep()
    # Then the money is back, the hold is gone, and the request is on record, uncharged
    assert result["holds_released"] == 1 and result["amount_released_usd"] == "0.30"
    assert gateway.balance(token) == Decimal("1")
    assert gateway.token_record(token).holds == {}
    [record] = gateway.records(token)
    assert (record.outcome, record.charged_usd, record.model) == ("abandoned", 0, "gpt-image-2")


def test_a_reservation_of_a_request_that_may_still_be_running_is_left_alone(gateway):
    token = gateway.token("1")
    reserve_at(gateway, token, "req-running", "0.30", age_seconds=20)
    assert sweep()["holds_released"] == 0
    assert gateway.balance(token) == Decimal("0.70")
    assert "req-running" in gateway.token_record(token).holds


def test_a_late_settlement_after_the_sweep_charges_nothing_twice(gateway):
    # Given a request the sweeper already gave up on
    from common.billing.records import Outcome

    token = gateway.token("1")
    hold = reserve_at(gateway, token, "req-late", "0.30", age_seconds=3600)
    sweep()
    # When the request settles after all (its function was only very slow)
    charged = gateway.ledger.settle(hold, Outcome(model="gpt-image-2", endpoint="generations", status=200,
                                                  outcome="ok", params={}, cost_usd=Decimal("0.05"))).charged_usd
    # Then nothing moves: the hold is gone, so the settlement's condition fails
    assert charged == Decimal(0)
    assert gateway.balance(token) == Decimal("1")


def test_sweeping_twice_releases_once(gateway):
    token = gateway.token("1")
    reserve_at(gateway, token, "req-once", "0.25", age_seconds=3600)
    assert sweep()["holds_released"] == 1
    assert sweep()["holds_released"] == 0
    assert gateway.balance(token) == Decimal("1")
    assert len(gateway.records(token)) == 1


def test_a_request_interrupted_mid_way_releases_its_reservation_itself(gateway, monkeypatch):
    # A function interrupted by an exception (not killed) gives the reservation back at once.
    from common.images import flow

    token = gateway.token("1")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(flow, "send", interrupted)
    with pytest.raises(KeyboardInterrupt):  # the interruption still ends the function
        gateway.generate({"prompt": "x", "quality": "low"}, token)
    assert gateway.balance(token) == Decimal("1")
    assert gateway.token_record(token).holds == {}
