"""Customer tokens: issued once, stored only as a SHA-256 hash, presented as a Bearer token.

A generated secret carries 256 random bits, so an unsalted SHA-256 is enough to make the
stored hash useless to whoever reads the table; lookups are one GetItem by that hash.
"""
from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from decimal import Decimal

from common.errors import invalid_api_key
from common.ledger import TokenRecord, get_ledger

SECRET_PREFIX = "sk-img-"


@dataclass(frozen=True)
class IssuedToken:
    secret: str  # shown once, never stored
    token_id: str


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_token(
    *,
    name: str,
    balance_usd: Decimal,
    secret: str | None = None,
    allowed_models: list[str] | None = None,
    expires_at: int | None = None,
    price_multiplier: Decimal | None = None,
) -> IssuedToken:
    secret = secret or SECRET_PREFIX + secrets.token_urlsafe(32)
    token_id = "tok_" + secrets.token_hex(8)
    get_ledger().create_token(
        TokenRecord(
            key_hash=hash_secret(secret),
            token_id=token_id,
            name=name,
            balance_usd=balance_usd,
            deposited_usd=balance_usd,
            created_at=int(time.time()),
            expires_at=expires_at,
            allowed_models=allowed_models,
            price_multiplier=price_multiplier,
        )
    )
    return IssuedToken(secret=secret, token_id=token_id)


def bearer_secret(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


# Per container: token hash -> (record, monotonic time it was read). Only image routes use it,
# and only for what the reservation does not check again (allowed models, price multiplier):
# status, expiry and balance are conditions of the reservation's own write.
_recent: OrderedDict[str, tuple[TokenRecord, float]] = OrderedDict()
_RECENT_MAX = 1024


def authenticate(authorization: str | None, *, max_age_seconds: float = 0) -> TokenRecord:
    """The caller's token, or a 401 `invalid_api_key` (missing, unknown, revoked or expired).

    With `max_age_seconds`, a record read that recently in this container is reused: one
    DynamoDB read less per request, for callers whose next write re-checks the token atomically.
    """
    secret = bearer_secret(authorization)
    if secret is None:
        raise invalid_api_key()
    key_hash = hash_secret(secret)
    recent = _recent.get(key_hash)
    fresh = recent is None or time.monotonic() - recent[1] >= max_age_seconds
    token = get_ledger().get_token(key_hash) if fresh else recent[0]
    if token is None or token.status != "active" or (token.expires_at is not None and token.expires_at <= time.time()):
        forget(key_hash)
        raise invalid_api_key()
    if fresh and max_age_seconds:
        _recent[key_hash] = (token, time.monotonic())
        _recent.move_to_end(key_hash)
        if len(_recent) > _RECENT_MAX:
            _recent.popitem(last=False)
    return token


def forget(key_hash: str) -> None:
    """Drop a cached record (the reservation found the token revoked, expired or gone)."""
    _recent.pop(key_hash, None)
