"""`python -m local_stack.invoke`: one function, a sample event from events/, against the running
stack (its table, bucket, secret and upstream), with the placeholder token replaced."""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
from decimal import Decimal

import pytest

from local_stack.invoke import PLACEHOLDER_TOKEN
from tests.integration.stack import REPO

pytestmark = pytest.mark.slow


def invoke(stack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "local_stack.invoke", *args, "--state-file", str(stack.state_file)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)


def test_every_sample_event_carries_the_placeholder_that_invoke_replaces():
    for path in sorted((REPO / "events").glob("*.json")):
        assert PLACEHOLDER_TOKEN in path.read_text(), path.name


@pytest.mark.parametrize("how", [[], ["--in-process"]], ids=["under the runtime emulator", "in process"])
def test_the_generations_sample_event_is_charged_to_the_stacks_demo_token(stack, tmp_path, how):
    before = stack.balance(stack.state["token"])
    output = tmp_path / "result.json"

    done = invoke(stack, "GenerationsFunction", "events/generations_b64.json", "--output", str(output), *how)

    assert done.returncode == 0, done.stderr
    result = json.loads(output.read_text())
    assert result["statusCode"] == 200
    # Under the emulator the function ran our runtime and answered in streaming mode, as in AWS
    assert result.get("streamed", False) is (how == [])
    assert json.loads(result["body"])["data"][0]["b64_json"]
    charged = Decimal(result["headers"]["x-gateway-cost-usd"])
    assert charged > 0 and stack.balance(stack.state["token"]) == before - charged


def test_an_invalid_sample_event_gets_the_gateways_400(stack, tmp_path):
    output = tmp_path / "result.json"
    done = invoke(stack, "GenerationsFunction", "events/generations_invalid_size.json", "--output", str(output))

    assert done.returncode == 0, done.stderr
    result = json.loads(output.read_text())
    assert result["statusCode"] == 400 and json.loads(result["body"])["error"]["param"] == "size"


def test_the_sam_recipe_points_the_function_at_the_stack(stack):
    done = invoke(stack, "ModelsFunction", "events/models_list.json", "--sam")

    assert done.returncode == 0, done.stderr
    command = shlex.split(done.stdout.strip().splitlines()[-1])
    assert command[:4] == ["sam", "local", "invoke", "ModelsFunction"]
    event = json.loads(open(command[command.index("--event") + 1]).read())
    assert event["headers"]["Authorization"] == f"Bearer {stack.state['token']}"
    env = json.loads(open(command[command.index("--env-vars") + 1]).read())["ModelsFunction"]
    assert env["TABLE_NAME"] == stack.state["table"]
    overrides = command[command.index("--parameter-overrides") + 1]
    assert f"LocalAwsEndpointUrl={stack.state['moto_endpoint']}" in overrides.split()


def test_an_unknown_function_is_refused_with_the_ones_the_template_has(stack):
    done = invoke(stack, "NoSuchFunction", "events/models_list.json")

    assert done.returncode == 1 and "GenerationsFunction" in done.stderr
