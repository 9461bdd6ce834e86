"""The runtime client under the real Lambda Runtime Interface Emulator (local_stack/rie.py): the RIE
starts src/runtime/bootstrap (the exec wrapper) as Lambda would, so each answer here went through the
real Runtime API and our runtime, buffered or streamed. The handlers are tests/fixtures'."""
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from local_stack.rie import MAX_RESPONSE_BYTES, Emulator, split_streamed

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
PRELUDE = b'{"statusCode":201,"headers":{"Content-Type":"text/plain","X-Test":"yes"},"cookies":["a=1; Path=/"]}'


def emulator(handler: str, tmp_path: Path, **env: str) -> Emulator:
    return Emulator(handler, task_root=FIXTURES, env=env, log=tmp_path / "rie.log")


def test_a_buffered_handler_answers_through_the_emulator(tmp_path):
    with emulator("runtime_handlers.echo", tmp_path) as rie:
        result = rie.invoke({"hello": "world"})

    assert result.status == 200
    answer = result.json()
    assert answer["event"] == {"hello": "world"}
    assert uuid.UUID(answer["request_id"])  # the emulator's request id reached the context


def test_a_streamed_answer_comes_back_whole_with_its_prelude_and_the_loop_survives_the_6_mb_cap(tmp_path):
    with emulator("runtime_handlers.streams", tmp_path) as rie:
        first = rie.invoke({"chunks": ["hello ", "world"]})
        second = rie.invoke({"chunks": ["again"]})
    with emulator("runtime_handlers.streams_size", tmp_path) as rie:
        too_large = rie.invoke({"size": MAX_RESPONSE_BYTES})
        after = rie.invoke({"size": 5})

    assert first.status == 200
    assert first.body == PRELUDE + b"\x00" * 8 + b"hello world"
    assert split_streamed(second.body) == (json.loads(PRELUDE), b"again")
    # Past 6 MiB + 100 bytes the emulator refuses the stream (HTTP 413 to the runtime, which goes on).
    assert too_large.json()["errorType"] == "Function.ResponseSizeTooLarge"
    assert after.streamed[1] == b"xxxxx"


def test_handler_exceptions_come_back_as_the_error_json(tmp_path):
    with emulator("runtime_handlers.stream_raises_before_start", tmp_path) as rie:
        streamed = rie.invoke({})
    with emulator("runtime_handlers.raises", tmp_path) as rie:
        buffered = rie.invoke({})

    assert streamed.json()["errorType"] == "LookupError"
    assert buffered.json()["errorType"] == "ValueError"
    log = (tmp_path / "rie.log").read_text()
    assert "sk-secret-token-never-logged" not in log  # the runtime logs no exception message


def test_an_init_failure_comes_back_as_runtime_import_module_error(tmp_path):
    with emulator("runtime_handlers_broken.handler", tmp_path) as rie:
        result = rie.invoke({})

    assert result.status == 502
    assert result.json()["errorType"] == "Runtime.ImportModuleError"


def test_a_powertools_decorated_streaming_handler_runs_in_the_emulator(tmp_path):
    with emulator("runtime_powertools_handlers.streamed", tmp_path, POWERTOOLS_TRACE_DISABLED="true") as rie:
        result = rie.invoke({})

    prelude, body = result.streamed
    assert prelude == {"statusCode": 200, "headers": {"Content-Type": "text/plain"}}
    assert body.startswith(b"streamed by ")
    log = (tmp_path / "rie.log").read_text()
    assert "StreamedInvocations" in log  # Powertools' EMF line, flushed by @metrics.log_metrics


def test_the_cli_prints_the_prelude_then_the_body(tmp_path):
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"chunks": ["streamed ", "body"]}))

    process = subprocess.run([sys.executable, "-m", "local_stack.rie", "--handler", "runtime_handlers.streams",
                              "--task-root", str(FIXTURES), "--event", str(event), "--log", str(tmp_path / "cli.log")],
                             cwd=REPO, capture_output=True, timeout=120)

    assert process.returncode == 0, process.stderr
    prelude, body = process.stdout.split(b"\n", 1)
    assert json.loads(prelude)["statusCode"] == 201
    assert body == b"streamed body\n"
