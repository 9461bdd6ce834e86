"""An in-memory Ledger with the DynamoDB ledger's semantics (tests/contract/ proves they agree).

Every operation runs under one lock, as each DynamoDB conditional write or transaction is atomic.
"""
from __future__ import annotations

import secrets
import threading
import time
from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal

from common.billing.records import (CreditEntry, Hold, HoldDetail, Outcome, RequestRecord, Settlement,
                                    TokenExists, TokenRecord, UnknownToken, UsageDay, refusal_for)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeLedger:
    def __init__(self, record_retention_days: int = 400) -> None:
        self.retention_seconds = record_retention_days * 86400
        self.clock = time.time  # what "now" is for a reservation (a test may set it back)
        self._lock = threading.RLock()
        self._tokens: dict[str, TokenRecord] = {}  # key hash -> record
        self._records: dict[str, list[tuple[str, RequestRecord]]] = {}  # token id -> [(sort key, record)]
        self._days: dict[tuple[str, str, str], UsageDay] = {}  # (token id, date, model) -> totals
        self._entries: dict[str, list[tuple[str, CreditEntry]]] = {}  # token id -> [(sort key, entry)]
        self.calls: list[str] = []  # operation names, in order (what a test may count)

    # --- tokens ---------------------------------------------------------------------------
    def get_token(self, key_hash: str) -> TokenRecord | None:
        with self._lock:
            self.calls.append("get_token")
            return self._tokens.get(key_hash)

    def create_token(self, token: TokenRecord) -> None:
        with self._lock:
            self.calls.append("create_token")
            if token.key_hash in self._tokens:
                raise TokenExists(token.token_id)
            self._tokens[token.key_hash] = replace(token, spent_usd=Decimal(0), holds={})
            if token.deposited_usd:
                self._add_entry(CreditEntry(token.token_id, secrets.token_hex(8), "deposit", token.deposited_usd,
                                            "initial balance", token.created_at or int(time.time())))

    def find_token(self, token_id: str) -> TokenRecord | None:
        with self._lock:
            return next((t for t in self._tokens.values() if t.token_id == token_id), None)

    def list_tokens(self) -> list[TokenRecord]:
        with self._lock:
            return sorted(self._tokens.values(), key=lambda t: t.token_id)

    def credit(self, token: TokenRecord, amount: Decimal, *, kind: str, reason: str) -> Decimal:
        if kind not in ("deposit", "adjustment") or not reason.strip():
            raise ValueError("a credit needs kind deposit/adjustment and a reason")
        with self._lock:
            current = self._tokens.get(token.key_hash)
            if current is None or (amount < 0 and current.balance_usd < -amount):
                raise ValueError("the balance does not cover that negative adjustment")
            self._tokens[token.key_hash] = replace(current, balance_usd=current.balance_usd + amount,
                                                   deposited_usd=current.deposited_usd + amount)
            self._add_entry(CreditEntry(token.token_id, secrets.token_hex(8), kind, amount, reason.strip(),
                                        int(time.time())))
            return current.balance_usd + amount

    def set_status(self, token: TokenRecord, status: str) -> None:
        with self._lock:
            current = self._tokens.get(token.key_hash)
            if current is None:
                raise UnknownToken(token.token_id)
            self._tokens[token.key_hash] = replace(current, status=status)

    # --- reservations ---------------------------------------------------------------------
    def reserve(self, token: TokenRecord, request_id: str, amount: Decimal, *, model: str = "",
                endpoint: str = "") -> Hold:
        now = self.clock()
        with self._lock:
            self.calls.append("reserve")
            current = self._tokens.get(token.key_hash)
            if current is not None and request_id in current.holds:
                # A retried reservation (its reply lost): the first one holds, nothing is taken twice.
                return Hold(current.key_hash, current.token_id, request_id, current.holds[request_id].amount, now,
                            current.balance_usd)
            if current is None or not current.usable_at(now) or current.balance_usd < amount:
                raise refusal_for(current, amount, now)
            balance = current.balance_usd - amount
            self._tokens[token.key_hash] = replace(current, balance_usd=balance, holds={
                **current.holds, request_id: HoldDetail(amount, int(now), model, endpoint)})
            return Hold(current.key_hash, current.token_id, request_id, amount, now, balance)

    def settle(self, hold: Hold, outcome: Outcome) -> Settlement:
        with self._lock:
            self.calls.append("settle")
            current = self._tokens.get(hold.key_hash)
            if current is None or hold.request_id not in current.holds:
                return Settlement(Decimal(0), current.balance_usd if current else Decimal(0))
            # Above the reservation: the excess comes from the balance as far as it goes.
            charged = min(outcome.cost_usd, hold.amount + current.balance_usd)
            return Settlement(charged, self._finish(current, hold, outcome, charged))

    def release(self, hold: Hold, outcome: Outcome) -> Decimal:
        with self._lock:
            self.calls.append("release")
            current = self._tokens.get(hold.key_hash)
            if current is None or hold.request_id not in current.holds:
                return current.balance_usd if current else Decimal(0)
            return self._finish(current, hold, outcome, Decimal(0))

    def _finish(self, current: TokenRecord, hold: Hold, outcome: Outcome, charged: Decimal) -> Decimal:
        balance = current.balance_usd + hold.amount - charged
        self._tokens[hold.key_hash] = replace(
            current, balance_usd=balance, spent_usd=current.spent_usd + charged,
            holds={k: v for k, v in current.holds.items() if k != hold.request_id})
        started = int(hold.started_at)
        record = RequestRecord(
            request_id=hold.request_id, token_id=hold.token_id, model=outcome.model, endpoint=outcome.endpoint,
            status=outcome.status, outcome=outcome.outcome, params=dict(outcome.params), images=outcome.images,
            reserved_usd=hold.amount, cost_usd=outcome.cost_usd, charged_usd=charged,
            uncollected_usd=max(outcome.cost_usd - charged, Decimal(0)), latency_ms=outcome.latency_ms,
            upstream_latency_ms=outcome.upstream_latency_ms, created_at=started,
            expires_at=started + self.retention_seconds, usage_raw=outcome.usage_raw, tokens=dict(outcome.tokens),
            cost_by_kind=dict(outcome.cost_by_kind))
        self._records.setdefault(hold.token_id, []).append((f"{_iso(hold.started_at)}#{hold.request_id}", record))
        if charged > 0:
            day = _iso(hold.started_at)[:10]
            key = (hold.token_id, day, outcome.model)
            total = self._days.get(key) or UsageDay(date=day, model=outcome.model)
            self._days[key] = replace(
                total, requests=total.requests + 1, images=total.images + outcome.images, cost_usd=total.cost_usd + charged,
                **{f"{kind}_tokens": getattr(total, f"{kind}_tokens") + count for kind, count in outcome.tokens.items()})
        return balance

    # --- reading what happened ------------------------------------------------------------
    def daily_totals(self, token_id: str, start_date: str, end_date: str) -> list[UsageDay]:
        with self._lock:
            return sorted((day for (tid, date, _), day in self._days.items()
                           if tid == token_id and start_date <= date <= end_date), key=lambda d: (d.date, d.model))

    def request_records(self, token_id: str, start_iso: str = "", end_iso: str = "\uffff") -> list[RequestRecord]:
        now = time.time()
        with self._lock:
            return [record for key, record in sorted(self._records.get(token_id, []), key=lambda kv: kv[0])
                    if start_iso <= key <= end_iso and record.expires_at > now]

    def credit_entries(self, token_id: str) -> list[CreditEntry]:
        with self._lock:
            return [entry for _, entry in sorted(self._entries.get(token_id, []), key=lambda kv: kv[0])]

    def _add_entry(self, entry: CreditEntry) -> None:
        self._entries.setdefault(entry.token_id, []).append((f"{_iso(entry.created_at)}#{entry.entry_id}", entry))


