"""Run one function under the Lambda Runtime Interface Emulator (RIE), through our own runtime.

The RIE is the Go program Lambda's container images use to emulate the Runtime API
(github.com/aws/aws-lambda-runtime-interface-emulator); the aws-sam-cli wheel ships its binaries as
samcli/local/rapid/aws-lambda-rie-<x86_64|arm64>. Started as
`aws-lambda-rie [--runtime-api-address H:P] [--runtime-interface-emulator-address H:P] BOOTSTRAP`,
it serves POST /2015-03-31/functions/function/invocations; on the first invocation it starts
BOOTSTRAP (here src/runtime/bootstrap, the function's exec wrapper, so the function runs under our
Runtime API client exactly as in Lambda) in the RIE's working directory, with the RIE's whole
environment plus defaults (AWS_LAMBDA_FUNCTION_NAME=test_function, AWS_LAMBDA_FUNCTION_VERSION=$LATEST,
AWS_LAMBDA_FUNCTION_MEMORY_SIZE=3008, AWS_LAMBDA_LOG_GROUP_NAME/STREAM_NAME; timeout
AWS_LAMBDA_FUNCTION_TIMEOUT, 300 s) and _HANDLER from the environment.

What it does with the answer: a buffered response comes back as it was posted; a streaming one
(Lambda-Runtime-Function-Response-Mode: streaming) is accepted but read whole and returned at once,
prelude and 8 NUL bytes included, and its error trailers are dropped; past 6 MiB + 100 bytes the
runtime's post gets HTTP 413 and the caller gets an error. An invocation error comes back as its JSON.

    python -m local_stack.rie --handler handlers.generations.handler --event events/generations_b64.json \
        [--task-root src] [--env K=V ...] [--log FILE]

prints the answer (a streamed one as its prelude line, then the body) and exits 0 on HTTP 200.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
BOOTSTRAP = SRC / "runtime" / "bootstrap"
INVOKE_PATH = "/2015-03-31/functions/function/invocations"
# The RIE's interop.MaxPayloadSize: what it accepts of a response, buffered or streamed.
MAX_RESPONSE_BYTES = 6 * 1024 * 1024 + 100
PRELUDE_DELIMITER = b"\x00" * 8
START_TIMEOUT_S = 10
# Never handed to the function: they would change how the RIE or the runtime start.
_NOT_PASSED = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH", "AWS_LAMBDA_RUNTIME_API",
               "AWS_LAMBDA_MAX_CONCURRENCY", "AWS_LAMBDA_EXEC_WRAPPER", "_HANDLER", "LAMBDA_TASK_ROOT",
               "LAMBDA_RUNTIME_DIR", "_X_AMZN_TRACE_ID", "AWS_LAMBDA_FUNCTION_HANDLER")


class EmulatorError(Exception):
    """The emulator did not start, or did not answer."""


def rie_binary() -> Path:
    """The RIE binary for this machine's architecture, from the installed aws-sam-cli."""
    import samcli

    machine = platform.machine().lower()
    arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(machine)
    if arch is None:
        raise EmulatorError(f"no Runtime Interface Emulator for the {machine} architecture")
    binary = Path(samcli.__file__).resolve().parent / "local" / "rapid" / f"aws-lambda-rie-{arch}"
    if not binary.is_file():
        raise EmulatorError(f"{binary} is missing (is aws-sam-cli installed?)")
    return binary


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def split_streamed(body: bytes) -> tuple[dict, bytes] | None:
    """(prelude, body) of a streamed http-integration-response, or None if `body` is not one."""
    if not body.startswith(b"{"):
        return None
    head, found, rest = body.partition(PRELUDE_DELIMITER)
    if not found:
        return None
    try:
        prelude = json.loads(head)
    except ValueError:
        return None
    return (prelude, rest) if isinstance(prelude, dict) and "statusCode" in prelude else None


class Result:
    """What the emulator's invoke endpoint answered."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    @property
    def streamed(self) -> tuple[dict, bytes] | None:
        return split_streamed(self.body)


class Emulator:
    """One function under the RIE on loopback. Use as a context manager, or start() / stop()."""

    def __init__(self, handler: str, *, task_root: str | Path = SRC, env: dict[str, str] | None = None,
                 log: str | Path | None = None, output=None):
        """`log`: a file for the emulator's and the function's output; else `output` (a file object);
        else they share this process's stdout."""
        self.handler = handler
        self.output = output
        self.task_root = Path(task_root).resolve()
        self.extra_env = dict(env or {})
        self.log_path = Path(log) if log else None
        self.port = 0
        self.process: subprocess.Popen | None = None
        self._log_file = None

    def environment(self) -> dict[str, str]:
        environment = {k: v for k, v in os.environ.items() if k not in _NOT_PASSED}
        # The wrapper execs the python3 on PATH: this interpreter's (the venv's, with our dependencies).
        environment["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), environment.get("PATH", "")])
        environment.update({"_HANDLER": self.handler, "LAMBDA_TASK_ROOT": str(self.task_root),
                            "AWS_LAMBDA_FUNCTION_NAME": self.handler.rsplit(".", 1)[0].replace(".", "-"),
                            "AWS_REGION": os.environ.get("AWS_REGION", "us-east-1"),
                            "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")})
        environment.update(self.extra_env)
        return environment

    def start(self) -> "Emulator":
        self.port = free_port()
        command = [str(rie_binary()), "--log-level", "error",
                   "--runtime-api-address", f"127.0.0.1:{free_port()}",
                   "--runtime-interface-emulator-address", f"127.0.0.1:{self.port}", str(BOOTSTRAP)]
        if self.log_path:
            self._log_file = open(self.log_path, "ab")
            output = self._log_file
        else:
            output = self.output  # None: inherit (the function's logs, the RIE's START/END/REPORT lines)
        # Its own session: stop() ends the RIE and the runtime it started, and nothing else.
        self.process = subprocess.Popen(command, cwd=self.task_root, env=self.environment(), stdin=subprocess.DEVNULL,
                                        stdout=output, stderr=subprocess.STDOUT if output else None,
                                        start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise EmulatorError(f"the emulator exited with status {self.process.returncode}{self._log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise EmulatorError(f"the emulator did not listen within {START_TIMEOUT_S} s{self._log_tail()}")
                time.sleep(0.02)

    def invoke(self, event, *, timeout_s: float = 120) -> Result:
        """POST one event (a JSON-able value, or bytes as they are); the answer whole."""
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout_s)
        try:
            connection.request("POST", INVOKE_PATH, body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            return Result(response.status, dict(response.getheaders()), response.read())
        except (OSError, http.client.HTTPException) as exc:
            raise EmulatorError(f"the emulator did not answer: {exc!r}{self._log_tail()}") from exc
        finally:
            connection.close()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        if process is not None:
            try:  # the runtime the RIE started, should it have outlived the RIE
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self._log_file:
            self._log_file.close()
            self._log_file = None

    def _log_tail(self) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return "\n--- emulator log (end) ---\n" + self.log_path.read_text(errors="replace")[-4000:]

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def invoke_once(handler: str, event, *, task_root: str | Path = SRC, env: dict[str, str] | None = None,
                log: str | Path | None = None, output=None) -> Result:
    """Start the emulator, invoke once, stop it."""
    with Emulator(handler, task_root=task_root, env=env, log=log, output=output) as emulator:
        return emulator.invoke(event)


def _parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        name, found, value = pair.partition("=")
        if not found or not name:
            raise SystemExit(f"--env takes NAME=VALUE, not {pair!r}")
        env[name] = value
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_stack.rie", description=__doc__.split("\n\n")[0])
    parser.add_argument("--handler", required=True, help="module.function, e.g. handlers.generations.handler")
    parser.add_argument("--event", required=True, help="a JSON event file ('-' reads standard input)")
    parser.add_argument("--task-root", default=str(SRC), help="LAMBDA_TASK_ROOT: the code's directory (src/)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="more environment")
    parser.add_argument("--log", help="write the emulator's and the function's output there (default: stderr)")
    parser.add_argument("--raw", action="store_true", help="print the answer's bytes as they came")
    args = parser.parse_args(argv)

    event = sys.stdin.buffer.read() if args.event == "-" else Path(args.event).read_bytes()
    try:  # the function's output to stderr (or --log): stdout is for the answer
        result = invoke_once(args.handler, event, task_root=args.task_root, env=_parse_env(args.env), log=args.log,
                             output=sys.stderr)
    except EmulatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    out = sys.stdout.buffer
    streamed = None if args.raw else result.streamed
    if streamed is not None:
        prelude, body = streamed
        out.write(json.dumps(prelude).encode() + b"\n")
        out.write(body)
    else:
        out.write(result.body)
    if not result.body.endswith(b"\n"):
        out.write(b"\n")
    out.flush()
    if result.status != 200:
        print(f"HTTP {result.status}", file=sys.stderr)
    return 0 if result.status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
