"""Invoke one function with a sample event from `events/`, against the running `make run` stack.

  python -m local_stack.invoke GenerationsFunction events/generations_b64.json            (make invoke)
  python -m local_stack.invoke GenerationsFunction events/generations_b64.json --in-process
  python -m local_stack.invoke GenerationsFunction events/generations_b64.json --sam

The events carry the placeholder token `sk-img-REPLACE_WITH_YOUR_TOKEN`; it is replaced with the
running stack's demo token (or --token). The function gets the environment the stack gives its
functions (table, bucket, secret and upstream emulator, AWS_ENDPOINT_URL pointing at moto), read
from the stack's state file, so it works on the same tokens, balances and images as the gateway.

Without Docker, by default, the function runs under the Lambda Runtime Interface Emulator from the
aws-sam-cli wheel, through the function's own exec wrapper and our runtime (src/runtime): the real
runtime path, streamed answers included (the emulator buffers them and caps them at 6 MB, so this
is a smoke test of the path, not of the limits). --in-process calls the handler in this process, as
the local stack does. With --sam it writes the prepared event and a `--env-vars` file under
.local/invoke/ and prints the `sam local invoke` command for users with Docker (Linux: the
container shares the host network, so it reaches moto and the emulator on 127.0.0.1).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import shlex
import sys
import warnings
from pathlib import Path
from typing import Any

from local_stack.rie import EmulatorError
from local_stack.template import Template, TemplateError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STATE_FILE = REPO_ROOT / ".local" / "stack.json"
PLACEHOLDER_TOKEN = "sk-img-REPLACE_WITH_YOUR_TOKEN"
SHOWN_BODY_CHARS = 400


class InvokeError(Exception):
    pass


def read_state(path: Path) -> dict[str, Any]:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvokeError(f"{path} not found: start the local stack with `make run` first") from None
    except (OSError, ValueError) as error:
        raise InvokeError(f"{path}: not a local stack state file ({error})") from None
    if not isinstance(state, dict) or not state.get("environment"):
        raise InvokeError(f"{path} has no function environment: restart `make run` (an older version wrote it)")
    return state


def prepare_event(path: Path, token: str) -> dict[str, Any]:
    """The sample event with the placeholder token replaced, wherever it appears."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise InvokeError(f"{path}: {error.strerror}") from None
    return json.loads(text.replace(PLACEHOLDER_TOKEN, token))


def invoke_in_process(template: Template, function_id: str, event: dict[str, Any],
                      environment: dict[str, str]) -> Any:
    """Call the handler the template names, in this process, with the stack's environment."""
    from local_stack.apigw import LambdaContext, Route

    spec = template.function(function_id)
    # Metrics are off locally (as in the stack), so Powertools would warn that none were published.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    os.environ.update(function_environment(environment))
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    sys.path.insert(0, str(spec.code_uri))
    module_name, _, attribute = spec.handler.rpartition(".")
    handler = getattr(importlib.import_module(module_name), attribute)
    route = Route("POST", "/", function_id, spec.handler, spec.code_uri, spec.timeout_s, spec.memory_mb, 0)
    return handler(event, LambdaContext(route, spec.timeout_s))


def function_environment(environment: dict[str, str]) -> dict[str, str]:
    """The stack's function environment with the local stack's dummy credentials, nothing of the
    developer's AWS setup."""
    from local_stack.aws import DUMMY_CREDENTIALS, REGION

    return {"AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION, "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_ACCESS_KEY_ID": DUMMY_CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": DUMMY_CREDENTIALS["aws_secret_access_key"], **environment}


def invoke_under_rie(template: Template, function_id: str, event: dict[str, Any],
                     environment: dict[str, str]) -> Any:
    """Run the function under the Runtime Interface Emulator, through our runtime, and return its
    answer as a proxy result (a streamed answer's prelude and body put together)."""
    from local_stack.rie import Emulator

    spec = template.function(function_id)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    env = {**function_environment(environment), "AWS_LAMBDA_FUNCTION_TIMEOUT": str(int(spec.timeout_s)),
           "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb)}
    with Emulator(spec.handler, task_root=spec.code_uri, env=env, output=sys.stderr) as emulator:
        result = emulator.invoke(event, timeout_s=spec.timeout_s + 5)
    if result.status != 200:
        raise InvokeError(f"the emulator answered HTTP {result.status}: {result.body[:300]!r}")
    streamed = result.streamed
    if streamed is None:
        return result.json()
    prelude, body = streamed
    return {**prelude, "body": body.decode("utf-8", "replace"), "streamed": True}


def sam_command(function_id: str, event_file: Path, env_file: Path, state: dict[str, Any]) -> list[str]:
    environment = state["environment"]
    overrides = [f"LocalAwsEndpointUrl={environment['AWS_ENDPOINT_URL']}",
                 f"UpstreamBaseUrl={environment['UPSTREAM_BASE_URL']}",
                 f"ImageStorage={'Enabled' if environment.get('IMAGE_BUCKET') else 'Disabled'}"]
    return ["sam", "local", "invoke", function_id, "--event", str(event_file), "--env-vars", str(env_file),
            "--parameter-overrides", " ".join(overrides), "--docker-network", "host"]


def write_sam_files(function_id: str, event: dict[str, Any], state: dict[str, Any],
                    directory: Path) -> tuple[Path, Path]:
    """The prepared event and an --env-vars file: sam applies only variables the template
    declares, which these all are (AWS_ENDPOINT_URL through the LocalAwsEndpointUrl parameter)."""
    directory.mkdir(parents=True, exist_ok=True)
    event_file = directory / f"{function_id}.event.json"
    env_file = directory / "env.json"
    event_file.write_text(json.dumps(event, indent=2) + "\n", encoding="utf-8")
    declared = {k: v for k, v in state["environment"].items() if k != "AWS_ENDPOINT_URL"}
    env_file.write_text(json.dumps({function_id: declared}, indent=2) + "\n", encoding="utf-8")
    return event_file, env_file


def shown(result: Any) -> str:
    """The result as sam prints it, with long bodies (base64 images) cut short."""
    if isinstance(result, dict) and isinstance(result.get("body"), str) and len(result["body"]) > SHOWN_BODY_CHARS:
        result = {**result, "body": result["body"][:SHOWN_BODY_CHARS] + f"... ({len(result['body'])} characters)"}
    return json.dumps(result, indent=2, default=str)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_stack.invoke", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("function", help="logical id in template.yaml, e.g. GenerationsFunction")
    parser.add_argument("event", type=Path, help="an event file, e.g. events/generations_b64.json")
    parser.add_argument("--state-file", type=Path, default=Path(os.environ.get("GATEWAY_STATE_FILE") or DEFAULT_STATE_FILE),
                        help="the running stack's state (default: .local/stack.json, or GATEWAY_STATE_FILE)")
    parser.add_argument("--token", help="the token to put in the event (default: the stack's demo token)")
    parser.add_argument("--output", type=Path, help="write the whole result as JSON there")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--in-process", action="store_true",
                     help="call the handler in this process (as make run does) instead of under the emulator")
    how.add_argument("--sam", action="store_true",
                     help="do not invoke: write the files for `sam local invoke` (Docker) and print its command")
    args = parser.parse_args(argv)
    try:
        state = read_state(args.state_file)
        template = Template(REPO_ROOT / "template.yaml")
        template.function(args.function)  # an unknown function fails before anything else
        event = prepare_event(args.event, args.token or state["token"])
        if args.sam:
            event_file, env_file = write_sam_files(args.function, event, state, REPO_ROOT / ".local" / "invoke")
            print("sam build   # once: sam local invoke runs the built package")
            print(shlex.join(sam_command(args.function, event_file, env_file, state)))
            return 0
        invoke = invoke_in_process if args.in_process else invoke_under_rie
        result = invoke(template, args.function, event, state["environment"])
    except (InvokeError, TemplateError, EmulatorError) as problem:
        print(f"invoke: {problem}", file=sys.stderr)
        return 1
    if args.output:
        args.output.write_text(json.dumps(result, default=str) + "\n", encoding="utf-8")
    print(shown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
