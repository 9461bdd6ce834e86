"""Fixtures the unit tests share."""
import pytest

from common.catalog import Catalog, ModelSpec, get_catalog


@pytest.fixture
def catalog(monkeypatch) -> Catalog:
    """The shipped catalog.json, whatever the environment says (and without touching the cache)."""
    monkeypatch.delenv("MODEL_CATALOG_JSON", raising=False)
    return get_catalog.__wrapped__()


@pytest.fixture
def gpt_image_2(catalog) -> ModelSpec:
    return catalog.get("gpt-image-2")
