"""The ledger's domain records: what a token is, what a reservation holds, what a request cost.

Frozen values: the ledger (common.billing.ledger, or an in-memory fake in the tests) takes and
returns these, never raw DynamoDB items; the gateway, the sweeper and the operator CLI read them.
All money is Decimal USD.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

ACTIVE, REVOKED = "active", "revoked"


@dataclass(frozen=True)
class HoldDetail:
    """One reservation in flight on a token: enough to release and record it later."""

    amount: Decimal
    started_at: int  # epoch seconds
    model: str = ""
    endpoint: str = ""


@dataclass(frozen=True)
class TokenRecord:
    key_hash: str  # SHA-256 of the secret; the secret itself is never stored
    token_id: str  # public id, tok_<hex>
    name: str
    status: str = ACTIVE
    balance_usd: Decimal = Decimal(0)
    deposited_usd: Decimal = Decimal(0)
    spent_usd: Decimal = Decimal(0)
    created_at: int = 0
    expires_at: int | None = None
    allowed_models: tuple[str, ...] | None = None
    price_multiplier: Decimal | None = None
    holds: dict[str, HoldDetail] = field(default_factory=dict)  # request id -> hold

    @property
    def held_usd(self) -> Decimal:
        return sum((hold.amount for hold in self.holds.values()), Decimal(0))

    def usable_at(self, now: float) -> bool:
        return self.status == ACTIVE and (self.expires_at is None or self.expires_at > now)

    def may_use(self, model_id: str) -> bool:
        return self.allowed_models is None or model_id in self.allowed_models


@dataclass(frozen=True)
class Hold:
    """A reservation as its request holds it: what was taken from the balance, and when."""

    key_hash: str
    token_id: str
    request_id: str
    amount: Decimal
    started_at: float  # epoch seconds
    balance_after: Decimal


@dataclass(frozen=True)
class CreditEntry:
    """A deposit or an adjustment: money that enters (or, negative, leaves) a token by hand."""

    token_id: str
    entry_id: str
    kind: str  # "deposit" or "adjustment"
    amount_usd: Decimal
    reason: str
    created_at: int


@dataclass(frozen=True)
class Outcome:
    """What to write for a finished request, charged or not."""

    model: str
    endpoint: str
    status: int
    outcome: str  # "ok", "ok_estimated", or the error code
    params: dict[str, Any]
    images: int = 0
    usage_raw: dict[str, Any] | None = None
    tokens: dict[str, int] = field(default_factory=dict)
    cost_by_kind: dict[str, Decimal] = field(default_factory=dict)
    cost_usd: Decimal = Decimal(0)
    latency_ms: int = 0
    upstream_latency_ms: int = 0


@dataclass(frozen=True)
class Settlement:
    charged_usd: Decimal
    balance_usd: Decimal  # after this request; exact when no other request of the token moved it


@dataclass(frozen=True)
class RequestRecord:
    """One finished request as the ledger recorded it (the raw upstream usage kept verbatim)."""

    request_id: str
    token_id: str
    model: str
    endpoint: str
    status: int
    outcome: str
    params: dict[str, Any]
    images: int
    reserved_usd: Decimal
    cost_usd: Decimal
    charged_usd: Decimal
    uncollected_usd: Decimal
    latency_ms: int
    upstream_latency_ms: int
    created_at: int
    expires_at: int
    usage_raw: dict[str, Any] | None = None
    tokens: dict[str, int] = field(default_factory=dict)
    cost_by_kind: dict[str, Decimal] = field(default_factory=dict)


USAGE_COUNTERS = ("requests", "images", "text_input_tokens", "cached_text_input_tokens", "image_input_tokens",
                  "image_output_tokens")


@dataclass(frozen=True)
class UsageDay:
    """A token's charged requests of one UTC day and model, added up."""

    date: str  # YYYY-MM-DD
    model: str
    requests: int = 0
    images: int = 0
    text_input_tokens: int = 0
    cached_text_input_tokens: int = 0
    image_input_tokens: int = 0
    image_output_tokens: int = 0
    cost_usd: Decimal = Decimal(0)


class TokenExists(Exception):
    """A token with this secret (or id) is already in the ledger."""


class UnknownToken(LookupError):
    """No token with this key in the ledger."""


class ReservationRefused(Exception):
    def __init__(self, reason: str, balance: Decimal | None = None) -> None:
        super().__init__(reason)
        self.reason = reason  # "unknown", "revoked", "expired" or "insufficient"
        self.balance = balance


def refusal_for(token: TokenRecord | None, amount: Decimal, now: float) -> ReservationRefused:
    """Why a reservation of `amount` on this token (as it is now) cannot be taken."""
    if token is None:
        return ReservationRefused("unknown")
    if token.status != ACTIVE:
        return ReservationRefused("revoked")
    if token.expires_at is not None and token.expires_at <= now:
        return ReservationRefused("expired")
    return ReservationRefused("insufficient", token.balance_usd)
