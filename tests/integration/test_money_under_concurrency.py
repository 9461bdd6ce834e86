"""Money through the whole local stack under concurrency: real HTTP to the gateway, real HTTP from
the handlers to DynamoDB on moto, overlapping upstream calls."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
import requests

from tests.integration.stack import Stack

pytestmark = pytest.mark.slow

MEDIUM = {"model": "gpt-image-2", "prompt": "A futuristic skyline at dusk", "size": "1024x1024", "quality": "medium"}


def ledger_view(stack: Stack, secret: str) -> dict:
    """The token and its request records, read from the stack's table by the real ledger."""
    token = stack.token(secret)
    return {"token": token, "records": stack.ledger().request_records(token.token_id)}


def test_twelve_concurrent_requests_on_a_quarter_dollar_never_overspend_and_reconcile(stack):
    # Given a $0.25 token, and an upstream slow enough that all twelve requests overlap
    secret = stack.new_token("0.25")
    stack.emulator("reset")
    stack.emulator("script", {"behaviours": [{"delay": 0.5, "times": 12}]})

    # When twelve medium 1024x1024 requests arrive at once
    def call(_):
        response = requests.post(f"{stack.state['base_url']}/images/generations", json=MEDIUM, timeout=60,
                                 headers={"Authorization": f"Bearer {secret}"})
        return response.status_code, response.headers, response.json()

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(call, range(12)))

    admitted = [headers for status, headers, _ in results if status == 200]
    refused = [body for status, _, body in results if status != 200]
    charges = [Decimal(headers["x-gateway-cost-usd"]) for headers in admitted]

    # Then every refusal is a clean insufficient_quota, and the upstream saw only what was admitted
    assert all(body["error"]["code"] == "insufficient_quota" for body in refused)
    assert admitted, "the balance covers at least one medium image"
    assert len(stack.emulator("requests")) == len(admitted)
    # Nothing was spent beyond the balance: each admitted request was fully covered when reserved
    assert sum(charges) <= Decimal("0.25")
    view = ledger_view(stack, secret)
    token = view["token"]
    assert token.balance_usd >= 0
    # And the ledger reconciles to the last digit
    assert token.holds == {}
    assert token.balance_usd == Decimal("0.25") - sum(charges)
    assert token.spent_usd == sum(charges)
    assert sum(r.charged_usd for r in view["records"]) == sum(charges)
    assert token.deposited_usd - token.balance_usd == sum(charges)
    assert len(view["records"]) == len(admitted)  # refused before reserving: nothing to record


def test_requests_refused_for_balance_leave_no_trace_but_the_429(stack):
    secret = stack.new_token("0.01")
    stack.emulator("reset")
    response = requests.post(f"{stack.state['base_url']}/images/generations", json=MEDIUM, timeout=30,
                             headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "insufficient_quota"
    assert stack.emulator("requests") == []
    view = ledger_view(stack, secret)
    assert view["token"].balance_usd == Decimal("0.01") and view["records"] == []
