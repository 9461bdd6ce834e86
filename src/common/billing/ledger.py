"""The ledger on DynamoDB: tokens, balances, reservations and request records in one table.

The real adapter of the Ledger port (common.ports); it takes and returns the records of
common.billing.records, never raw items. This is the only module that talks to DynamoDB.
Keys (docs/ARCHITECTURE.md):
  token          pk=KEY#<sha256 of secret>   sk=TOKEN     balance, deposits, in-flight `holds`
  request record pk=USAGE#<token_id>         sk=REQ#<started ISO time>#<request id>
  daily total    pk=USAGE#<token_id>         sk=DAY#<YYYY-MM-DD>#<model>
  credit entry   pk=USAGE#<token_id>         sk=TXN#<ISO time>#<entry id>   deposits and adjustments
  token index    gsi1: gsi1pk=TOKEN, gsi1sk=<token_id>   (operator look-ups and the sweeper only)

Every balance change has its record: for each token, exactly,
  deposited_usd = sum(credit entries)      spent_usd = sum(charged_usd of request records)
  deposited_usd - balance_usd - sum(holds) = spent_usd

Money moves only by conditional writes:
- reserve: one UpdateItem takes the worst case from the balance into `holds.<request id>`, on
  condition the token is active, unexpired and covers it; concurrent requests can never overdraw.
- settle/release: one transaction removes the hold (condition: it still exists), refunds the
  unused part, and writes the request record (and for a charge, the daily totals). A retried
  settlement finds no hold and changes nothing, so it charges once.
"""
from __future__ import annotations

import hashlib
import json
import secrets
import time
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from common.billing.records import (USAGE_COUNTERS, CreditEntry, Hold, HoldDetail, Outcome, RequestRecord, Settlement,
                                    TokenExists, TokenRecord, UnknownToken, UsageDay, refusal_for)

TOKEN_SK = "TOKEN"
TOKEN_INDEX_PK = "TOKEN"


def _n(value: Decimal | int) -> dict[str, str]:
    # Plain digits, never an exponent ("1E-7"): exact either way, but readable and portable.
    return {"N": format(value, "f") if isinstance(value, Decimal) else str(value)}


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _token_from_item(item: dict[str, Any]) -> TokenRecord:
    holds = {rid: HoldDetail(amount=Decimal(h["M"]["amount"]["N"]), started_at=int(h["M"].get("at", {}).get("N", "0")),
                             model=h["M"].get("model", {}).get("S", ""), endpoint=h["M"].get("endpoint", {}).get("S", ""))
             for rid, h in item.get("holds", {}).get("M", {}).items()}
    return TokenRecord(
        key_hash=item["pk"]["S"].removeprefix("KEY#"),
        token_id=item["token_id"]["S"],
        name=item.get("name", {}).get("S", ""),
        status=item.get("status", {}).get("S", "active"),
        balance_usd=Decimal(item["balance_usd"]["N"]),
        deposited_usd=Decimal(item.get("deposited_usd", {}).get("N", "0")),
        spent_usd=Decimal(item.get("spent_usd", {}).get("N", "0")),
        created_at=int(item.get("created_at", {}).get("N", "0")),
        expires_at=int(item["expires_at_token"]["N"]) if "expires_at_token" in item else None,
        allowed_models=tuple(m["S"] for m in item["allowed_models"]["L"]) if "allowed_models" in item else None,
        price_multiplier=Decimal(item["price_multiplier"]["N"]) if "price_multiplier" in item else None,
        holds=holds,
    )


def _record_from_item(item: dict[str, Any]) -> RequestRecord:
    return RequestRecord(
        request_id=item["request_id"]["S"], token_id=item["token_id"]["S"], model=item["model"]["S"],
        endpoint=item["endpoint"]["S"], status=int(item["status"]["N"]), outcome=item["outcome"]["S"],
        params=json.loads(item["params"]["S"]), images=int(item["images"]["N"]),
        reserved_usd=Decimal(item["reserved_usd"]["N"]), cost_usd=Decimal(item["cost_usd"]["N"]),
        charged_usd=Decimal(item["charged_usd"]["N"]), uncollected_usd=Decimal(item["uncollected_usd"]["N"]),
        latency_ms=int(item["latency_ms"]["N"]), upstream_latency_ms=int(item["upstream_latency_ms"]["N"]),
        created_at=int(item["created_at"]["N"]), expires_at=int(item["expires_at"]["N"]),
        usage_raw=json.loads(item["usage_raw"]["S"]) if "usage_raw" in item else None,
        tokens={k: int(v["N"]) for k, v in item.get("tokens", {}).get("M", {}).items()},
        cost_by_kind={k: Decimal(v["N"]) for k, v in item.get("cost_by_kind", {}).get("M", {}).items()},
    )


def _idempotency(*parts: str) -> str:
    """A ClientRequestToken: botocore retrying a transaction whose reply was lost then gets the
    first outcome back instead of a condition failure (DynamoDB keeps it for 10 minutes)."""
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:36]


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class DynamoLedger:
    def __init__(self, table_name: str, client: Any, record_retention_days: int = 400) -> None:
        self.table = table_name
        self.client = client  # a boto3 DynamoDB client, created once per container by common.wiring
        self.retention_seconds = record_retention_days * 86400

    # --- tokens -------------------------------------------------------------------------
    def get_token(self, key_hash: str) -> TokenRecord | None:
        item = self.client.get_item(TableName=self.table, Key=self._token_key(key_hash)).get("Item")
        return _token_from_item(item) if item else None

    def create_token(self, token: TokenRecord) -> None:
        item: dict[str, Any] = {
            **self._token_key(token.key_hash),
            "token_id": _s(token.token_id),
            "name": _s(token.name),
            "status": _s(token.status),
            "balance_usd": _n(token.balance_usd),
            "deposited_usd": _n(token.deposited_usd),
            "spent_usd": _n(0),
            "created_at": _n(token.created_at),
            "holds": {"M": {}},
            "gsi1pk": _s(TOKEN_INDEX_PK),
            "gsi1sk": _s(token.token_id),
        }
        if token.expires_at is not None:
            item["expires_at_token"] = _n(token.expires_at)
        if token.allowed_models is not None:
            item["allowed_models"] = {"L": [_s(m) for m in token.allowed_models]}
        if token.price_multiplier is not None:
            item["price_multiplier"] = _n(token.price_multiplier)
        actions: list[dict[str, Any]] = [
            {"Put": {"TableName": self.table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}}]
        if token.deposited_usd:
            entry = CreditEntry(token.token_id, secrets.token_hex(8), "deposit", token.deposited_usd,
                                "initial balance", token.created_at or int(time.time()))
            actions.append({"Put": {"TableName": self.table, "Item": self._entry_item(entry)}})
        try:
            self.client.transact_write_items(TransactItems=actions,
                                             ClientRequestToken=_idempotency("create", token.token_id))
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "TransactionCanceledException":
                raise TokenExists(token.token_id) from None
            raise

    def find_token(self, token_id: str) -> TokenRecord | None:
        """By public id (operator tools): the index finds the key, the table gives a consistent read."""
        found = self.client.query(
            TableName=self.table, IndexName="gsi1", KeyConditionExpression="gsi1pk = :t AND gsi1sk = :id",
            ExpressionAttributeValues={":t": _s(TOKEN_INDEX_PK), ":id": _s(token_id)})["Items"]
        if not found:
            return None
        item = self.client.get_item(TableName=self.table, Key={"pk": found[0]["pk"], "sk": found[0]["sk"]},
                                    ConsistentRead=True).get("Item")
        return _token_from_item(item) if item else None

    def list_tokens(self) -> list[TokenRecord]:
        """Every token, by id (operator tools and the sweeper; never on a customer's request path)."""
        tokens, start = [], None
        while True:
            page = self.client.query(
                TableName=self.table, IndexName="gsi1", KeyConditionExpression="gsi1pk = :t",
                ExpressionAttributeValues={":t": _s(TOKEN_INDEX_PK)}, **({"ExclusiveStartKey": start} if start else {}))
            tokens += [_token_from_item(item) for item in page["Items"]]
            start = page.get("LastEvaluatedKey")
            if not start:
                return tokens

    def credit(self, token: TokenRecord, amount: Decimal, *, kind: str, reason: str) -> Decimal:
        """Add (or, negative, take back) money by hand, with its entry, in one transaction.

        A negative adjustment never takes the balance below zero. Returns the new balance.
        """
        if kind not in ("deposit", "adjustment") or not reason.strip():
            raise ValueError("a credit needs kind deposit/adjustment and a reason")
        entry = CreditEntry(token.token_id, secrets.token_hex(8), kind, amount, reason.strip(), int(time.time()))
        condition = "attribute_exists(pk)" + (" AND balance_usd >= :short" if amount < 0 else "")
        values: dict[str, Any] = {":a": _n(amount)}
        if amount < 0:
            values[":short"] = _n(-amount)
        try:
            self.client.transact_write_items(ClientRequestToken=_idempotency("credit", entry.entry_id), TransactItems=[
                {"Update": {"TableName": self.table, "Key": self._token_key(token.key_hash),
                            "UpdateExpression": "SET balance_usd = balance_usd + :a, deposited_usd = deposited_usd + :a",
                            "ConditionExpression": condition, "ExpressionAttributeValues": values}},
                {"Put": {"TableName": self.table, "Item": self._entry_item(entry),
                         "ConditionExpression": "attribute_not_exists(pk)"}},
            ])
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "TransactionCanceledException":
                raise ValueError("the balance does not cover that negative adjustment") from None
            raise
        return self._balance(token.key_hash)

    def set_status(self, token: TokenRecord, status: str) -> None:
        try:
            self.client.update_item(
                TableName=self.table, Key=self._token_key(token.key_hash), UpdateExpression="SET #s = :s",
                ConditionExpression="attribute_exists(pk)", ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":s": _s(status)})
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise UnknownToken(token.token_id) from None
            raise

    # --- reading usage ------------------------------------------------------------------
    def daily_totals(self, token_id: str, start_date: str, end_date: str) -> list[UsageDay]:
        """Daily totals per model, dates inclusive (YYYY-MM-DD), oldest first."""
        items = self._query_usage(token_id, f"DAY#{start_date}", f"DAY#{end_date}#\uffff")
        return [UsageDay(date=item["date"]["S"], model=item["model"]["S"],
                         cost_usd=Decimal(item.get("cost_usd", {}).get("N", "0")),
                         **{name: int(item.get(name, {}).get("N", "0")) for name in USAGE_COUNTERS})
                for item in items]

    def request_records(self, token_id: str, start_iso: str = "", end_iso: str = "\uffff") -> list[RequestRecord]:
        """Request records, oldest first; expired ones (TTL not yet applied) filtered out."""
        now = time.time()
        items = self._query_usage(token_id, f"REQ#{start_iso}", f"REQ#{end_iso}")
        return [_record_from_item(i) for i in items if int(i.get("expires_at", {}).get("N", "0")) > now]

    def credit_entries(self, token_id: str) -> list[CreditEntry]:
        return [CreditEntry(token_id=i["token_id"]["S"], entry_id=i["entry_id"]["S"], kind=i["kind"]["S"],
                            amount_usd=Decimal(i["amount_usd"]["N"]), reason=i["reason"]["S"],
                            created_at=int(i["created_at"]["N"]))
                for i in self._query_usage(token_id, "TXN#", "TXN#\uffff")]

    def _query_usage(self, token_id: str, low: str, high: str) -> list[dict[str, Any]]:
        items, start = [], None
        while True:
            page = self.client.query(
                TableName=self.table, KeyConditionExpression="pk = :pk AND sk BETWEEN :low AND :high",
                ExpressionAttributeValues={":pk": _s(f"USAGE#{token_id}"), ":low": _s(low), ":high": _s(high)},
                **({"ExclusiveStartKey": start} if start else {}))
            items += page["Items"]
            start = page.get("LastEvaluatedKey")
            if not start:
                return items

    def _entry_item(self, entry: CreditEntry) -> dict[str, Any]:
        return {
            "pk": _s(f"USAGE#{entry.token_id}"),
            "sk": _s(f"TXN#{_iso(entry.created_at)}#{entry.entry_id}"),
            "token_id": _s(entry.token_id), "entry_id": _s(entry.entry_id), "kind": _s(entry.kind),
            "amount_usd": _n(entry.amount_usd), "reason": _s(entry.reason), "created_at": _n(entry.created_at),
        }

    # --- reservations -------------------------------------------------------------------
    def reserve(self, token: TokenRecord, request_id: str, amount: Decimal, *,
                model: str = "", endpoint: str = "") -> Hold:
        now = time.time()
        try:
            result = self.client.update_item(
                TableName=self.table,
                Key=self._token_key(token.key_hash),
                UpdateExpression="SET balance_usd = balance_usd - :amount, holds.#rid = :hold",
                ConditionExpression=(
                    # The hold must not exist yet: a retried call (lost reply) must not debit twice.
                    "attribute_exists(pk) AND attribute_not_exists(holds.#rid)"
                    " AND #status = :active AND balance_usd >= :amount"
                    " AND (attribute_not_exists(expires_at_token) OR expires_at_token > :now)"
                ),
                ExpressionAttributeNames={"#rid": request_id, "#status": "status"},
                ExpressionAttributeValues={
                    ":amount": _n(amount),
                    # What the sweeper needs to release and record an abandoned request.
                    ":hold": {"M": {"amount": _n(amount), "at": _n(int(now)), "model": _s(model),
                                    "endpoint": _s(endpoint)}},
                    ":active": _s("active"),
                    ":now": _n(int(now)),
                },
                ReturnValues="UPDATED_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            item = exc.response.get("Item")
            current = _token_from_item(item) if item else None
            if current is not None and request_id in current.holds:
                # Our own earlier attempt went through: the reservation already holds.
                return Hold(current.key_hash, current.token_id, request_id, current.holds[request_id].amount, now,
                            current.balance_usd)
            raise refusal_for(current, amount, now) from None
        balance = Decimal(result["Attributes"]["balance_usd"]["N"])
        return Hold(token.key_hash, token.token_id, request_id, amount, now, balance)

    def settle(self, hold: Hold, outcome: Outcome) -> Settlement:
        """Charge `outcome.cost_usd`, release the rest.

        If the upstream billed more than was reserved, the excess is taken from the balance as
        far as it goes (never below zero); what could not be collected is recorded, not lost.
        """
        charged = outcome.cost_usd
        for _ in range(2):
            try:
                return Settlement(charged, self._finish(hold, outcome, charged))
            except _HoldGone:
                return Settlement(Decimal(0), self._balance(hold.key_hash))
            except _BalanceShort as short:
                charged = hold.amount + min(charged - hold.amount, short.balance)
        raise RuntimeError(f"settlement of {hold.request_id} could not complete")

    def release(self, hold: Hold, outcome: Outcome) -> Decimal:
        """Give the whole reservation back (the request failed) and record the failure."""
        try:
            return self._finish(hold, outcome, Decimal(0))
        except _HoldGone:
            return self._balance(hold.key_hash)

    def _finish(self, hold: Hold, outcome: Outcome, charged: Decimal) -> Decimal:
        """One transaction: drop the hold, move the difference, write the record (and totals)."""
        delta = hold.amount - charged  # negative when the upstream billed more than reserved
        condition = "attribute_exists(holds.#rid)"
        values: dict[str, Any] = {":delta": _n(delta), ":charged": _n(charged)}
        if delta < 0:
            condition += " AND balance_usd >= :short"
            values[":short"] = _n(-delta)
        items: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self.table,
                    "Key": self._token_key(hold.key_hash),
                    "UpdateExpression": "SET balance_usd = balance_usd + :delta REMOVE holds.#rid ADD spent_usd :charged",
                    "ConditionExpression": condition,
                    "ExpressionAttributeNames": {"#rid": hold.request_id},
                    "ExpressionAttributeValues": values,
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
            {"Put": {"TableName": self.table, "Item": self._record_item(hold, outcome, charged),
                     "ConditionExpression": "attribute_not_exists(pk)"}},
        ]
        if charged > 0:
            items.append({"Update": self._daily_update(hold, outcome, charged)})
        try:
            self.client.transact_write_items(
                TransactItems=items, ClientRequestToken=_idempotency("finish", hold.request_id, str(charged)))
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            reasons = exc.response.get("CancellationReasons") or []
            if not reasons or reasons[0].get("Code") != "ConditionalCheckFailed":
                raise
            current = self.client.get_item(
                TableName=self.table, Key=self._token_key(hold.key_hash), ConsistentRead=True).get("Item")
            token = _token_from_item(current) if current else None
            if token is None or hold.request_id not in token.holds:
                raise _HoldGone() from None
            raise _BalanceShort(token.balance_usd) from None
        # Exact when no other request of this token moved the balance since the reservation.
        return hold.balance_after + delta

    def _record_item(self, hold: Hold, outcome: Outcome, charged: Decimal) -> dict[str, Any]:
        item: dict[str, Any] = {
            "pk": _s(f"USAGE#{hold.token_id}"),
            "sk": _s(f"REQ#{_iso(hold.started_at)}#{hold.request_id}"),
            "request_id": _s(hold.request_id),
            "token_id": _s(hold.token_id),
            "model": _s(outcome.model),
            "endpoint": _s(outcome.endpoint),
            "status": _n(outcome.status),
            "outcome": _s(outcome.outcome),
            "params": _s(json.dumps(outcome.params, sort_keys=True)),
            "images": _n(outcome.images),
            "reserved_usd": _n(hold.amount),
            "cost_usd": _n(outcome.cost_usd),
            "charged_usd": _n(charged),
            "uncollected_usd": _n(max(outcome.cost_usd - charged, Decimal(0))),
            "latency_ms": _n(outcome.latency_ms),
            "upstream_latency_ms": _n(outcome.upstream_latency_ms),
            "created_at": _n(int(hold.started_at)),
            "expires_at": _n(int(hold.started_at) + self.retention_seconds),
        }
        if outcome.usage_raw is not None:
            # The upstream's usage exactly as received, so any charge can be explained later.
            item["usage_raw"] = _s(json.dumps(outcome.usage_raw, sort_keys=True))
        if outcome.tokens:
            item["tokens"] = {"M": {k: _n(v) for k, v in outcome.tokens.items()}}
        if outcome.cost_by_kind:
            item["cost_by_kind"] = {"M": {k: _n(v) for k, v in outcome.cost_by_kind.items()}}
        return item

    def _daily_update(self, hold: Hold, outcome: Outcome, charged: Decimal) -> dict[str, Any]:
        day = _iso(hold.started_at)[:10]
        counters = {"requests": 1, "images": outcome.images, **{f"{k}_tokens": v for k, v in outcome.tokens.items()}}
        names = {f"#c{i}": name for i, name in enumerate(counters)}
        values = {f":c{i}": _n(value) for i, value in enumerate(counters.values())}
        adds = ", ".join(f"#c{i} :c{i}" for i in range(len(counters)))
        return {
            "TableName": self.table,
            "Key": {"pk": _s(f"USAGE#{hold.token_id}"), "sk": _s(f"DAY#{day}#{outcome.model}")},
            "UpdateExpression": f"SET #date = :date, #model = :model ADD {adds}, cost_usd :cost",
            "ExpressionAttributeNames": {**names, "#date": "date", "#model": "model"},
            "ExpressionAttributeValues": {**values, ":cost": _n(charged), ":date": _s(day), ":model": _s(outcome.model)},
        }

    def _balance(self, key_hash: str) -> Decimal:
        item = self.client.get_item(TableName=self.table, Key=self._token_key(key_hash), ConsistentRead=True)["Item"]
        return Decimal(item["balance_usd"]["N"])

    @staticmethod
    def _token_key(key_hash: str) -> dict[str, Any]:
        return {"pk": _s(f"KEY#{key_hash}"), "sk": _s(TOKEN_SK)}


class _HoldGone(Exception):
    """The reservation was already settled, released or swept: nothing more to do."""


class _BalanceShort(Exception):
    def __init__(self, balance: Decimal) -> None:
        super().__init__("balance short")
        self.balance = balance


def dynamodb_client() -> Any:
    """The DynamoDB client the ledger needs (created once per container by common.wiring)."""
    import boto3

    return boto3.client("dynamodb")
