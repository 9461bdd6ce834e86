"""Typed configuration, read from the environment once per container (by common.wiring, the
only caller of `Settings.from_environ`), and handed to what needs it.

The names are the template's `Globals.Function.Environment` variables (docs/ARCHITECTURE.md).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    table_name: str = Field(alias="TABLE_NAME")
    # Empty means the deployment has no image storage: response_format=url is then refused.
    image_bucket: str = Field(default="", alias="IMAGE_BUCKET")
    image_url_ttl_seconds: int = Field(default=3600, ge=60, le=604800, alias="IMAGE_URL_TTL_SECONDS")
    upstream_base_url: str = Field(default="https://api.openai.com/v1", alias="UPSTREAM_BASE_URL")
    upstream_api_key_secret_id: str = Field(alias="UPSTREAM_API_KEY_SECRET_ID")
    # API Gateway's integration timeout of the buffered routes: the function must have answered before it.
    request_timeout_seconds: float = Field(default=29, gt=0, alias="REQUEST_TIMEOUT_SECONDS")
    # The same for the streamed image routes (API Gateway response streaming allows up to 15 minutes).
    streaming_timeout_seconds: float = Field(default=600, gt=0, le=900, alias="STREAMING_TIMEOUT_SECONDS")
    record_retention_days: int = Field(default=400, ge=1, alias="RECORD_RETENTION_DAYS")
    price_multiplier: Decimal = Field(default=Decimal("1"), gt=0, alias="PRICE_MULTIPLIER")
    default_model: str = Field(default="gpt-image-2", alias="DEFAULT_MODEL")
    # How long image routes may reuse a token record read in this container (allowed models,
    # price multiplier); status, expiry and balance are always checked by the reservation.
    token_cache_seconds: float = Field(default=30, ge=0, alias="TOKEN_CACHE_SECONDS")
    # Networks the gateway may fetch customer image URLs from although they are not public
    # (comma-separated CIDRs). Empty in production: only globally routable addresses are fetched.
    fetch_allowed_networks: tuple[str, ...] = Field(default=(), alias="FETCH_ALLOWED_NETWORKS")
    # Replaces common/billing/catalog.json (same shape) when set.
    model_catalog_json: str = Field(default="", alias="MODEL_CATALOG_JSON")

    @field_validator("fetch_allowed_networks", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        return tuple(part.strip() for part in value.split(",") if part.strip()) if isinstance(value, str) else value

    @property
    def storage_enabled(self) -> bool:
        return bool(self.image_bucket)

    @property
    def longest_request_seconds(self) -> float:
        """No request runs longer than this: after it, a reservation can only be abandoned."""
        return max(self.request_timeout_seconds, self.streaming_timeout_seconds)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        return cls.model_validate(dict(os.environ if environ is None else environ))
