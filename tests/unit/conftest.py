"""Fixtures the unit tests share."""
import pytest

from common.billing.catalog import Catalog, ModelSpec, load_catalog
from common.upstream.transport import HttpTransport
from tests.conftest import PLATFORM_KEY


@pytest.fixture
def catalog() -> Catalog:
    """The shipped catalog.json."""
    return load_catalog()


@pytest.fixture
def gpt_image_2(catalog) -> ModelSpec:
    return catalog.get("gpt-image-2")


@pytest.fixture
def upstream(emu):
    """The HTTP transport to the session's upstream emulator, with the platform's key."""
    transport = HttpTransport(emu.base_url, lambda: PLATFORM_KEY)
    yield transport
    transport.session.close()
