"""The DynamoDB ledger's storage layout (docs/ARCHITECTURE.md), which the port's contract suite
does not see: keys, sort keys and number formats as operators and the index read them."""
from __future__ import annotations

import time
from decimal import Decimal

import pytest

from common.billing.ledger import DynamoLedger
from common.billing.records import Outcome, TokenRecord


@pytest.fixture
def ledger(aws):
    return DynamoLedger(aws.table, aws.dynamodb())


@pytest.fixture
def token(ledger) -> TokenRecord:
    record = TokenRecord(key_hash="ab" * 32, token_id="tok_0123456789abcdef", name="layout",
                         balance_usd=Decimal("1"), deposited_usd=Decimal("1"), created_at=int(time.time()))
    ledger.create_token(record)
    return record


def item(ledger, pk: str, sk: str) -> dict:
    return ledger.client.get_item(TableName=ledger.table, Key={"pk": {"S": pk}, "sk": {"S": sk}},
                                  ConsistentRead=True)["Item"]


def usage_items(ledger, token_id: str, prefix: str) -> list[dict]:
    return ledger.client.query(
        TableName=ledger.table, KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
        ExpressionAttributeValues={":pk": {"S": f"USAGE#{token_id}"}, ":p": {"S": prefix}})["Items"]


def test_a_token_is_keyed_by_its_hash_and_indexed_by_its_id(ledger, token):
    stored = item(ledger, f"KEY#{token.key_hash}", "TOKEN")

    assert (stored["gsi1pk"], stored["gsi1sk"]) == ({"S": "TOKEN"}, {"S": token.token_id})
    assert stored["holds"] == {"M": {}}


def test_a_hold_is_an_entry_of_the_token_with_its_amount_in_plain_digits(ledger, token):
    ledger.reserve(token, "req-1", Decimal("0.0000001"), model="gpt-image-2", endpoint="generations")

    hold = item(ledger, f"KEY#{token.key_hash}", "TOKEN")["holds"]["M"]["req-1"]["M"]
    assert hold["amount"] == {"N": "0.0000001"}  # never 1E-7
    assert (hold["model"], hold["endpoint"]) == ({"S": "gpt-image-2"}, {"S": "generations"})


def test_records_days_and_entries_sort_by_time_under_the_tokens_usage_key(ledger, token):
    hold = ledger.reserve(token, "req-1", Decimal("0.5"))
    ledger.settle(hold, Outcome(model="gpt-image-2", endpoint="generations", status=200, outcome="ok", params={},
                                images=1, cost_usd=Decimal("0.1")))

    (record,) = usage_items(ledger, token.token_id, "REQ#")
    assert record["sk"]["S"].startswith(f"REQ#{time.strftime('%Y-%m-%dT', time.gmtime(hold.started_at))}")
    assert record["sk"]["S"].endswith("#req-1") and "usage_raw" not in record
    (day,) = usage_items(ledger, token.token_id, "DAY#")
    assert day["sk"]["S"] == f"DAY#{time.strftime('%Y-%m-%d', time.gmtime(hold.started_at))}#gpt-image-2"
    (entry,) = usage_items(ledger, token.token_id, "TXN#")
    assert entry["kind"] == {"S": "deposit"}
