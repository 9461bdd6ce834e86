"""Customer tokens: issued once, stored only as a SHA-256 hash, presented as a Bearer token.

A generated secret carries 256 random bits, so an unsalted SHA-256 is enough to make the
stored hash useless to whoever reads the table; lookups are one GetItem by that hash.

`issue_token` is the one way a token is made (the operator CLI, the local stack's demo token,
the tests); `Tokens` is the one owner of the per-container cache of token records.
"""
from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from common.billing.records import TokenRecord
from common.errors import invalid_api_key

SECRET_PREFIX = "sk-img-"
CACHE_MAX = 1024

if TYPE_CHECKING:  # a protocol, for the type checker only
    from common.ports import Ledger


@dataclass(frozen=True)
class IssuedToken:
    secret: str  # shown once, never stored
    token_id: str


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def issue_token(ledger: Ledger, *, name: str, balance_usd: Decimal, secret: str | None = None,
                allowed_models: Sequence[str] | None = None, expires_at: int | None = None,
                price_multiplier: Decimal | None = None, now: float | None = None) -> IssuedToken:
    """Create a token with its opening balance (recorded as a deposit); the secret is returned once."""
    secret = secret or new_secret()
    token_id = "tok_" + secrets.token_hex(8)
    ledger.create_token(TokenRecord(
        key_hash=hash_secret(secret), token_id=token_id, name=name, balance_usd=balance_usd,
        deposited_usd=balance_usd, created_at=int(time.time() if now is None else now), expires_at=expires_at,
        allowed_models=tuple(allowed_models) if allowed_models is not None else None,
        price_multiplier=price_multiplier))
    return IssuedToken(secret=secret, token_id=token_id)


def bearer_secret(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


class Tokens:
    """Who is calling: the Bearer secret's token record, or a 401 `invalid_api_key` (missing,
    unknown, revoked or expired).

    Image routes may reuse a record read in this container within `cache_seconds`: one DynamoDB
    read less per request, for callers whose next write (the reservation) re-checks status,
    expiry and balance atomically. Only allowed models and the price multiplier can lag.
    """

    def __init__(self, ledger: Ledger, *, cache_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ledger = ledger
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._recent: OrderedDict[str, tuple[TokenRecord, float]] = OrderedDict()  # key hash -> (record, read at)

    def authenticate(self, authorization: str | None, *, cached: bool = False) -> TokenRecord:
        secret = bearer_secret(authorization)
        if secret is None:
            raise invalid_api_key()
        key_hash = hash_secret(secret)
        recent = self._recent.get(key_hash) if cached else None
        fresh = recent is None or self._clock() - recent[1] >= self._cache_seconds
        token = self._ledger.get_token(key_hash) if fresh else recent[0]
        if token is None or not token.usable_at(time.time()):
            self.forget(key_hash)
            raise invalid_api_key()
        if fresh and cached and self._cache_seconds:
            self._recent[key_hash] = (token, self._clock())
            self._recent.move_to_end(key_hash)
            if len(self._recent) > CACHE_MAX:
                self._recent.popitem(last=False)
        return token

    def forget(self, key_hash: str) -> None:
        """Drop a cached record: the ledger found the token revoked, expired or gone."""
        self._recent.pop(key_hash, None)
