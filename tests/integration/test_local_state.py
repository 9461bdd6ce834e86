"""`make run` keeps its state: tokens, balances and the demo token survive a restart (a clean
stop, or a kill -9 after the autosave), and GATEWAY_FRESH=1 starts clean."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from decimal import Decimal

import pytest

from local_stack.persistence import AUTOSAVE_SECONDS
from tests.integration.stack import REPO, Stack

pytestmark = pytest.mark.slow
QUICKSTART = {"model": "gpt-image-2", "prompt": "A futuristic skyline at dusk", "size": "1024x1024", "quality": "low"}


def admin_create(stack: Stack, balance: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "admin", "--state-file", str(stack.state_file), "create",
                           "--name", "survivor", "--balance", balance, "--json"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def generate(stack: Stack, secret: str):
    return stack.http.post(f"{stack.state['base_url']}/images/generations", json=QUICKSTART,
                           headers={"Authorization": f"Bearer {secret}"}, timeout=30)


def test_a_token_created_before_a_restart_still_works_after_it_with_its_balance(tmp_path):
    data = str(tmp_path / "data")
    # Given a stack where the operator created a token and spent some of it
    first = Stack(tmp_path / "first", GATEWAY_DATA_DIR=data)
    try:
        created = admin_create(first, "5")
        assert generate(first, created["secret"]).status_code == 200
        balance_before = first.balance(created["secret"])
        demo_before = first.state["token"]
    finally:
        assert first.stop(signal.SIGTERM) == 0

    # When make run starts again on the same data
    second = Stack(tmp_path / "second", GATEWAY_DATA_DIR=data)
    try:
        # Then the token is there with the same balance, it still works, and the demo token is the same
        assert second.balance(created["secret"]) == balance_before
        reply = generate(second, created["secret"])
        assert reply.status_code == 200
        assert second.balance(created["secret"]) == balance_before - Decimal(reply.headers["x-gateway-cost-usd"])
        assert second.state["token"] == demo_before
        assert second.http.get(f"{second.state['base_url']}/models", headers=second.auth, timeout=10).status_code == 200
        assert "items restored" in second.output.read_text()
    finally:
        assert second.stop(signal.SIGTERM) == 0


def test_a_change_survives_a_kill_once_the_autosave_has_run(tmp_path):
    data = str(tmp_path / "data")
    first = Stack(tmp_path / "first", GATEWAY_DATA_DIR=data)
    created = admin_create(first, "3")
    time.sleep(AUTOSAVE_SECONDS * 2)
    first.process.kill()  # no clean stop: only the autosave has run
    first.process.wait(10)

    second = Stack(tmp_path / "second", GATEWAY_DATA_DIR=data)
    try:
        assert generate(second, created["secret"]).status_code == 200
    finally:
        assert second.stop(signal.SIGTERM) == 0


def test_gateway_fresh_starts_with_an_empty_table_and_a_new_demo_token(tmp_path):
    data = str(tmp_path / "data")
    first = Stack(tmp_path / "first", GATEWAY_DATA_DIR=data)
    try:
        created = admin_create(first, "1")
        demo_before = first.state["token"]
    finally:
        assert first.stop(signal.SIGTERM) == 0

    second = Stack(tmp_path / "second", GATEWAY_DATA_DIR=data, GATEWAY_FRESH="1")
    try:
        assert generate(second, created["secret"]).status_code == 401
        assert second.state["token"] != demo_before
    finally:
        assert second.stop(signal.SIGTERM) == 0
