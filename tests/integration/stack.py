"""The local stack (`python -m local_stack`, what `make run` starts) as a subprocess for tests."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 10


class Stack:
    def __init__(self, tmp_path: Path, **env: str):
        self.state_file = tmp_path / "state.json"
        self.output = tmp_path / "stdout.txt"
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "UPSTREAM_"))}
        # Its own saved state: never the developer's .local/data.
        tmp_path.mkdir(parents=True, exist_ok=True)
        environment.update({"GATEWAY_PORT": "0", "GATEWAY_STATE_FILE": str(self.state_file),
                            "GATEWAY_LOG": str(tmp_path / "gateway.log"), "GATEWAY_DATA_DIR": str(tmp_path / "data"),
                            **env})
        with open(self.output, "wb") as output:
            self.process = subprocess.Popen([sys.executable, "-m", "local_stack"], cwd=REPO, env=environment,
                                            stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.state_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                pytest.fail(f"local stack did not start:\n{self.output.read_text()}")
            time.sleep(0.05)
        self.state = json.loads(self.state_file.read_text())
        self.http = requests.Session()
        self.http.trust_env = False  # loopback only

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.state['token']}"}

    def ports(self) -> list[int]:
        urls = [self.state["base_url"], self.state["moto_endpoint"], self.state["emulator_url"]]
        return [urlsplit(url).port for url in urls if url]

    def stop(self, signum: int) -> int:
        self.http.close()
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail("local stack did not stop in time")


    def dynamodb(self):
        return boto3.client("dynamodb", endpoint_url=self.state["moto_endpoint"], region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def ledger(self):
        """The stack's table through the real ledger adapter (DynamoDB on the stack's moto)."""
        from common.billing.ledger import DynamoLedger

        return DynamoLedger(self.state["table"], self.dynamodb())

    def new_token(self, balance: str) -> str:
        """Fund another token in the stack's table (what the operator CLI does)."""
        from common.billing.tokens import issue_token

        return issue_token(self.ledger(), name="integration", balance_usd=Decimal(balance)).secret

    def token(self, secret: str):
        from common.billing.tokens import hash_secret

        return self.ledger().get_token(hash_secret(secret))

    def balance(self, secret: str) -> Decimal:
        return self.token(secret).balance_usd

    def emulator(self, action: str, payload: dict | None = None):
        root = self.state["emulator_url"].rsplit("/v1", 1)[0]
        if payload is None and action == "requests":
            return self.http.get(f"{root}/__emulator/requests", timeout=5).json()["requests"]
        return self.http.post(f"{root}/__emulator/{action}", json=payload or {}, timeout=5)


def port_is_closed(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


