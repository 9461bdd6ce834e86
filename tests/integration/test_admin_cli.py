"""The operator's CLI against `make run`: `python -m admin` as a subprocess on the local stack's
table, the token it creates used by the official `openai` SDK, and the books it then shows."""
from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
from datetime import datetime, timezone
from decimal import Decimal

import openai
import pytest

from tests.integration.stack import REPO, Stack

pytestmark = pytest.mark.slow

SECRET = re.compile(r"sk-img-[A-Za-z0-9_-]{43}")
PUBLISHED = REPO / ".local" / "stack.json"  # what the local stack writes for the CLI's default


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    running = Stack(tmp_path_factory.mktemp("admin_stack"))
    ours = published_pid() == running.process.pid
    yield running
    assert running.stop(signal.SIGTERM) == 0
    if ours:
        assert not PUBLISHED.exists(), "a stopped stack must remove .local/stack.json"


def published_pid() -> int | None:
    try:
        return json.loads(PUBLISHED.read_text()).get("pid")
    except (OSError, ValueError):
        return None


def admin(*argv: str, state_file=None, expect: int = 0) -> str:
    """`python -m admin [--state-file F] ARGS`, as the operator types it; returns stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    where = ["--state-file", str(state_file)] if state_file else []
    done = subprocess.run([sys.executable, "-m", "admin", *where, *argv], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == expect, done.stderr
    return done.stdout


def sdk(stack: Stack, secret: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.state["base_url"], api_key=secret, max_retries=0)


def generate(client: openai.OpenAI):
    return client.images.with_raw_response.generate(model="gpt-image-2", prompt="x", size="1024x1024", quality="low")


def test_a_token_created_with_the_cli_generates_is_charged_reconciled_topped_up_reported_and_revoked(stack):
    files = stack.state_file
    # The operator creates a token; the secret is printed once.
    created = admin("create", "--name", "integration customer", "--balance", "1", "--models", "gpt-image-2",
                    state_file=files)
    [secret] = SECRET.findall(created)
    [token_id] = set(re.findall(r"tok_[0-9a-f]{16}", created))
    assert "cannot be shown again" in created

    # The customer uses it with the official SDK.
    raw = generate(sdk(stack, secret))
    assert raw.parse().data[0].b64_json
    charged = Decimal(raw.headers["x-gateway-cost-usd"])
    assert charged > 0

    # show: the charge, and books that balance exactly.
    shown = json.loads(admin("show", token_id, "--json", state_file=files))
    assert Decimal(shown["token"]["spent_usd"]) == charged
    balance = Decimal(shown["token"]["balance_usd"])
    assert balance == Decimal(1) - charged == Decimal(raw.headers["x-gateway-balance-usd"])
    assert shown["reconciliation"]["reconciled"] is True and shown["requests"] == 1
    text = admin("show", token_id, state_file=files)
    assert "reconciled" in text and "NOT reconciled" not in text
    assert secret not in text

    # top-up: the new balance.
    topped = admin("top-up", token_id, "2.50", "--reason", "invoice 1001", state_file=files)
    assert f"Balance: {Decimal('3.50') - charged} USD" in topped

    # usage: one row for today, one request, the exact charge.
    rows = list(csv.DictReader(io.StringIO(admin("usage", token_id, state_file=files))))
    today = datetime.now(timezone.utc).date().isoformat()
    assert [(r["date"], r["model"], r["requests"], r["images"]) for r in rows] == [(today, "gpt-image-2", "1", "1")]
    assert Decimal(rows[0]["cost_usd"]) == charged and int(rows[0]["image_output_tokens"]) > 0

    # list: the token, never its secret.
    listed = admin("list", state_file=files)
    assert token_id in listed and secret not in listed

    # revoke: the very next request is refused, although the route may cache the token record.
    admin("revoke", token_id, state_file=files)
    with pytest.raises(openai.AuthenticationError):
        generate(sdk(stack, secret))
    assert json.loads(admin("show", token_id, "--json", state_file=files))["token"]["status"] == "revoked"


def test_an_unknown_token_id_exits_1_with_one_line(stack):
    done = subprocess.run([sys.executable, "-m", "admin", "--state-file", str(stack.state_file), "show",
                           "tok_0000000000000000"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stdout == "" and done.stderr.count("\n") == 1 and "tok_0000000000000000" in done.stderr


def test_without_options_the_cli_finds_the_running_stack_through_its_published_state(stack):
    if published_pid() != stack.process.pid:
        pytest.skip("another running local stack owns .local/stack.json (a `make run` is up)")
    state = json.loads(PUBLISHED.read_text())
    assert {k: state[k] for k in ("base_url", "moto_endpoint", "table")} == \
        {k: stack.state[k] for k in ("base_url", "moto_endpoint", "table")}
    listed = json.loads(admin("list", "--json"))
    assert stack.state["token_id"] in {token["token_id"] for token in listed}
