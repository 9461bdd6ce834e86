"""The one place that builds the gateway's parts, once per container, from typed settings.

Handlers call `container()` and hand it to their route; nothing else reads the environment or
keeps a global client. Each part is built on first use, so a function builds (and imports) only
what its route touches: GET /v1/models never loads requests, S3 or the URL fetcher.

Tests build a `Container` of their own, with fakes in place of the real ports:
`Container(settings, ledger=FakeLedger(), store=FakeImageStore())`.
"""
from __future__ import annotations

from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any

from common.config import Settings

if TYPE_CHECKING:
    from common.billing.catalog import Catalog
    from common.billing.tokens import Tokens
    from common.ports import Fetcher, ImageStore, Ledger
    from common.upstream.openai_images import OpenAIImages

# How long a fetched upstream key is reused: a rotated key is picked up without a redeploy.
SECRET_MAX_AGE_SECONDS = 300


class Container:
    def __init__(self, settings: Settings, **parts: Any) -> None:
        self.settings = settings
        unknown = set(parts) - {"catalog", "ledger", "tokens", "upstream", "store", "fetcher"}
        if unknown:
            raise TypeError(f"unknown parts: {sorted(unknown)}")
        # A cached_property keeps its value in the instance's __dict__: given parts win.
        self.__dict__.update(parts)

    @cached_property
    def catalog(self) -> Catalog:
        from common.billing.catalog import load_catalog

        return load_catalog(self.settings.model_catalog_json)

    @cached_property
    def ledger(self) -> Ledger:
        from common.billing.ledger import DynamoLedger, dynamodb_client

        return DynamoLedger(self.settings.table_name, dynamodb_client(), self.settings.record_retention_days)

    @cached_property
    def tokens(self) -> Tokens:
        from common.billing.tokens import Tokens

        return Tokens(self.ledger, cache_seconds=self.settings.token_cache_seconds)

    @cached_property
    def upstream(self) -> OpenAIImages:
        from aws_lambda_powertools.utilities import parameters

        from common.upstream.openai_images import OpenAIImages
        from common.upstream.transport import HttpTransport

        secret_id = self.settings.upstream_api_key_secret_id
        return OpenAIImages(HttpTransport(
            self.settings.upstream_base_url,
            lambda: parameters.get_secret(secret_id, max_age=SECRET_MAX_AGE_SECONDS)))

    @cached_property
    def store(self) -> ImageStore | None:
        """None when the deployment has no image storage (response_format=url is then refused)."""
        if not self.settings.storage_enabled:
            return None
        from common.images.storage import S3ImageStore, s3_client

        return S3ImageStore(self.settings.image_bucket, self.settings.image_url_ttl_seconds, s3_client())

    @cached_property
    def fetcher(self) -> Fetcher:
        from common.images.fetch import ImageFetcher

        return ImageFetcher(allowed_networks=self.settings.fetch_allowed_networks)


@lru_cache(maxsize=1)
def container() -> Container:
    """This Lambda container's parts, from its environment (read here, and only here)."""
    return Container(Settings.from_environ())
