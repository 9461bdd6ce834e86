"""Shared by every test: moto's DynamoDB made atomic and cheap per transaction, as the local
stack makes it (local_stack/moto_fidelity.py), so in-process tests see the same service; and one
upstream emulator on loopback for the whole session."""
import pytest

from local_stack import moto_fidelity
from local_stack.upstream_emulator import UpstreamEmulator

moto_fidelity.install()

PLATFORM_KEY = "sk-platform-test-0123456789"


@pytest.fixture(scope="session")
def emulator():
    """The OpenAI-like upstream, expecting the platform's key PLATFORM_KEY."""
    emu = UpstreamEmulator(api_key=PLATFORM_KEY)
    emu.start()
    yield emu
    emu.stop()


@pytest.fixture
def emu(emulator):
    """The session's emulator with an empty script and request log, before and after the test."""
    emulator.reset()
    yield emulator
    emulator.reset()
