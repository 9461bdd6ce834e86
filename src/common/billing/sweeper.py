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
from typing import TYPE_CHECKING, Any

from common.billing.records import Hold, Outcome

MARGIN_SECONDS = 60

if TYPE_CHECKING:  # a protocol, for the type checker only
    from common.ports import Ledger


@dataclass(frozen=True)
class SweepResult:
    tokens_checked: int
    holds_released: int
    amount_released_usd: Decimal


def release_stale_holds(ledger: Ledger, request_timeout_seconds: float, now: float | None = None) -> SweepResult:
    now = time.time() if now is None else now
    oldest_allowed = now - (request_timeout_seconds + MARGIN_SECONDS)
    tokens = ledger.list_tokens()
    released, amount = 0, Decimal(0)
    for token in tokens:
        for request_id, held in token.holds.items():
            if held.started_at > oldest_allowed:
                continue
            hold = Hold(token.key_hash, token.token_id, request_id, held.amount, float(held.started_at),
                        token.balance_usd)
            ledger.release(hold, Outcome(model=held.model or "unknown", endpoint=held.endpoint or "unknown",
                                         status=0, outcome="abandoned", params={}))
            released += 1
            amount += held.amount
    return SweepResult(tokens_checked=len(tokens), holds_released=released, amount_released_usd=amount)


def sweep(deps: Any) -> dict[str, Any]:
    """The scheduled sweep with the container's ledger and timeout; what it released, logged and counted."""
    from aws_lambda_powertools.metrics import MetricUnit

    from common.observability import logger, metrics

    result = release_stale_holds(deps.ledger, deps.settings.longest_request_seconds)
    metrics.add_metric(name="AbandonedHoldsReleased", unit=MetricUnit.Count, value=result.holds_released)
    logger.info("stale reservations swept", extra={"tokens": result.tokens_checked, "released": result.holds_released,
                                                   "amount_usd": str(result.amount_released_usd)})
    return {"tokens_checked": result.tokens_checked, "holds_released": result.holds_released,
            "amount_released_usd": str(result.amount_released_usd)}
