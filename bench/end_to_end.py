"""End to end on the local stack: the quickstart request straight to the upstream emulator and
through `make run` (API Gateway emulation -> handler -> DynamoDB on moto -> emulator)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench.measure import QUICKSTART, ROOT, PairedRun, paired_runs, progress


def start_stack(tmp: Path) -> tuple[subprocess.Popen, dict]:
    state_file = tmp / "state.json"
    env = {**os.environ, "GATEWAY_PORT": "0", "GATEWAY_STATE_FILE": str(state_file), "GATEWAY_DATA_DIR": str(tmp / "data"),
           "GATEWAY_DEMO_BALANCE_USD": "100000", "GATEWAY_STORAGE": "on"}
    env.pop("UPSTREAM_BASE_URL", None)  # always the built-in emulator: a real upstream would swamp the figure
    process = subprocess.Popen([sys.executable, "-m", "local_stack"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not state_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"local stack did not start: {process.stderr.read().decode() if process.stderr else ''}")
        time.sleep(0.1)
    return process, json.loads(state_file.read_text())


def measure(runs: int, pairs: int, warmup: int) -> list[PairedRun]:
    with tempfile.TemporaryDirectory() as tmp:
        progress("starting the local stack")
        process, state = start_stack(Path(tmp))
        try:
            direct_session, gateway_session = requests.Session(), requests.Session()
            emulator_root = state["emulator_url"].rsplit("/v1", 1)[0]
            done = 0

            def direct() -> None:
                post(direct_session, f"{state['emulator_url']}/images/generations", state["emulator_api_key"])

            def gateway() -> None:
                nonlocal done
                post(gateway_session, f"{state['base_url']}/images/generations", state["token"])
                done += 1
                if done % 50 == 0:  # the emulator keeps a log of every request: keep it short
                    requests.post(f"{emulator_root}/__emulator/reset", timeout=5)

            return paired_runs(direct, gateway, runs=runs, pairs=pairs, warmup=warmup, label="end to end")
        finally:
            process.terminate()
            process.wait(timeout=30)


def post(session: requests.Session, url: str, key: str) -> None:
    response = session.post(url, json=QUICKSTART, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    if response.status_code != 200:
        raise SystemExit(f"{url} answered {response.status_code}: {response.text[:300]}")
