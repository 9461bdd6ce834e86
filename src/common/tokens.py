"""Customer tokens: issued once, stored only as a SHA-256 hash, presented as a Bearer token.

A generated secret carries 256 random bits, so an unsalted SHA-256 is enough to make the
stored hash useless to whoever reads the table; lookups are one GetItem by that hash.
"""
from __future__ import annotations

import hashlib
import secrets
import time
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


def authenticate(authorization: str | None) -> TokenRecord:
    """The caller's token, or a 401 `invalid_api_key` (missing, unknown, revoked or expired)."""
    secret = bearer_secret(authorization)
    if secret is None:
        raise invalid_api_key()
    token = get_ledger().get_token(hash_secret(secret))
    if token is None or token.status != "active" or (token.expires_at is not None and token.expires_at <= time.time()):
        raise invalid_api_key()
    return token
