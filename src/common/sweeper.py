"""Releases reservations left behind by requests that never finished.

A function that dies or times out after reserving leaves its hold on the token. Once a hold is
older than the longest a request can run (the request timeout, plus a margin for clock skew), no
settlement can come any more: the reservation is returned to the balance and the request is
recorded as abandoned. The release is the ledger's usual conditional transaction, so a request
that does settle at the last moment and the sweeper can never both move the money.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal

from common.config import get_settings
from common.ledger import Hold, HoldDetail, Outcome, get_ledger

MARGIN_SECONDS = 60


@dataclass(frozen=True)
class SweepResult:
    tokens_checked: int
    holds_released: int
    amount_released_usd: Decimal


def release_stale_holds(now: float | None = None) -> SweepResult:
    now = time.time() if now is None else now
    oldest_allowed = now - (get_settings().request_timeout_seconds + MARGIN_SECONDS)
    ledger = get_ledger()
    tokens = ledger.list_tokens()
    released, amount = 0, Decimal(0)
    for token in tokens:
        for request_id, held in token.holds.items():
            detail = token.hold_details.get(request_id, HoldDetail(started_at=0))
            if detail.started_at > oldest_allowed:
                continue
            hold = Hold(token.key_hash, token.token_id, request_id, held, float(detail.started_at), token.balance_usd)
            ledger.release(hold, Outcome(model=detail.model or "unknown", endpoint=detail.endpoint or "unknown",
                                         status=0, outcome="abandoned", params={}))
            released += 1
            amount += held
    return SweepResult(tokens_checked=len(tokens), holds_released=released, amount_released_usd=amount)
