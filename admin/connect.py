"""Which table the tool works on, and the DynamoDB client to reach it.

Three ways, in this order:
  --table NAME        a deployed table, with the usual AWS credentials (boto3's default chain)
  --stack-name NAME   a deployed CloudFormation/SAM stack: its `TableName` output
  --local             a running `make run`: `.local/stack.json` (or --state-file, or the
                      GATEWAY_STATE_FILE that `make run` was given) gives moto's endpoint and the
                      table; dummy credentials. Also the default when neither of the others is
                      given and that file exists.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from admin import REPO_ROOT
from local_stack.stack import is_running

DEFAULT_STATE_FILE = REPO_ROOT / ".local" / "stack.json"
LOCAL_REGION = "us-east-1"
LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
TABLE_OUTPUT = "TableName"

HOW_TO_CONNECT = (
    "no table to work on: pass --table NAME (a deployed table, AWS credentials from the usual "
    "places), --stack-name NAME (the TableName output of a deployed stack), or --local / "
    "--state-file PATH (a running `make run`, which writes .local/stack.json)")


class ConnectionProblem(Exception):
    """The options do not say which table to use (exit 2), or it cannot be reached (exit 1)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Target:
    table: str
    client: Any  # a boto3 DynamoDB client
    description: str  # for messages: where the table is


def resolve(table: str | None = None, stack_name: str | None = None, local: bool = False,
            state_file: str | Path | None = None, region: str | None = None,
            profile: str | None = None, default_state_file: Path | None = None) -> Target:
    chosen = [name for name, given in (("--table", table), ("--stack-name", stack_name),
                                       ("--local/--state-file", local or state_file)) if given]
    if len(chosen) > 1:
        raise ConnectionProblem(f"choose one of {', '.join(chosen)}", exit_code=2)
    if table:
        return Target(table, _session(region, profile).client("dynamodb"), f"table {table}")
    if stack_name:
        session = _session(region, profile)
        name = stack_table(session.client("cloudformation"), stack_name)
        return Target(name, session.client("dynamodb"), f"table {name} of stack {stack_name}")
    default = default_state_file or Path(os.environ.get("GATEWAY_STATE_FILE") or DEFAULT_STATE_FILE)
    if (local or state_file) and (region or profile):
        raise ConnectionProblem("--region/--profile are for a deployed table; the local stack needs neither",
                                exit_code=2)
    if local or state_file or default.is_file():
        return local_target(Path(state_file) if state_file else default)
    raise ConnectionProblem(HOW_TO_CONNECT, exit_code=2)


def _session(region: str | None, profile: str | None) -> boto3.session.Session:
    return boto3.session.Session(region_name=region, profile_name=profile)


def stack_table(cloudformation: Any, stack_name: str) -> str:
    from botocore.exceptions import ClientError

    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as error:
        raise ConnectionProblem(f"stack {stack_name}: {error.response['Error'].get('Message') or error}") from None
    outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in (stacks[0].get("Outputs") or [])} if stacks else {}
    if not outputs.get(TABLE_OUTPUT):
        raise ConnectionProblem(f"stack {stack_name} has no {TABLE_OUTPUT} output (is it the image gateway's stack, "
                                "fully deployed?)")
    return outputs[TABLE_OUTPUT]


def local_target(path: Path) -> Target:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConnectionProblem(f"{path} not found: start the local stack with `make run` "
                                "(it writes that file once ready)") from None
    except (OSError, ValueError) as error:
        raise ConnectionProblem(f"{path}: cannot read the local stack's state ({error})") from None
    endpoint, table = (state.get("moto_endpoint"), state.get("table")) if isinstance(state, dict) else (None, None)
    if not endpoint or not table:
        raise ConnectionProblem(f"{path} has no moto_endpoint/table: not a local stack state file")
    pid = state.get("pid")
    if isinstance(pid, int) and not is_running(pid):
        raise ConnectionProblem(f"the local stack that wrote {path} (pid {pid}) is not running any more: "
                                "start it with `make run`")
    session = boto3.session.Session(region_name=LOCAL_REGION, **LOCAL_CREDENTIALS)
    # A stopped stack should fail at once, not after botocore's retries.
    config = Config(connect_timeout=3, read_timeout=30, retries={"mode": "standard", "max_attempts": 1},
                    proxies={})
    client = session.client("dynamodb", endpoint_url=endpoint, config=config)
    return Target(table, client, f"local stack at {endpoint} (table {table}; is `make run` still running?)")
