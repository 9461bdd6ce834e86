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
    """The token item and its request records, read straight from the table."""
    from common.tokens import hash_secret

    dynamodb = stack.dynamodb()
    table = stack.state["table"]
    item = dynamodb.get_item(TableName=table, Key={"pk": {"S": f"KEY#{hash_secret(secret)}"}, "sk": {"S": "TOKEN"}},
                             ConsistentRead=True)["Item"]
    records = dynamodb.query(TableName=table, KeyConditionExpression="pk = :pk AND begins_with(sk, :req)",
                             ExpressionAttributeValues={":pk": {"S": f"USAGE#{item['token_id']['S']}"},
                                                        ":req": {"S": "REQ#"}})["Items"]
    return {"item": item, "records": records}


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
    balance = Decimal(view["item"]["balance_usd"]["N"])
    assert balance >= 0
    # And the ledger reconciles to the last digit
    assert view["item"]["holds"]["M"] == {}
    assert balance == Decimal("0.25") - sum(charges)
    assert Decimal(view["item"]["spent_usd"]["N"]) == sum(charges)
    assert sum(Decimal(r["charged_usd"]["N"]) for r in view["records"]) == sum(charges)
    assert Decimal(view["item"]["deposited_usd"]["N"]) - balance == sum(charges)
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
    assert Decimal(view["item"]["balance_usd"]["N"]) == Decimal("0.01") and view["records"] == []
