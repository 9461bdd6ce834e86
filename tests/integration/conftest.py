"""Each integration module gets its own running `make run` stack (a subprocess on free ports)."""
import signal

import openai
import pytest

from tests.integration.stack import Stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory, request):
    running = Stack(tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]))
    yield running
    assert running.stop(signal.SIGTERM) == 0


@pytest.fixture
def client(stack) -> openai.OpenAI:
    """The official SDK pointed at the stack with its demo token; the emulator starts empty."""
    stack.emulator("reset")
    return openai.OpenAI(base_url=stack.state["base_url"], api_key=stack.state["token"], max_retries=0)
