"""Peak memory of the largest answer: n=4 images at 3840x2160 (the most pixels gpt-image-2 allows),
PNGs of random pixels (about 25 MB each, 133 MB of base64 in all), through the real generations
handler answering in streaming mode (the in-memory ledger and store; the upstream emulator in a
process of its own, so that its images do not count here). The body goes to a stream that counts
and drops it, as the runtime's socket does.

Runs in its own interpreter (`python -m bench.memory`) and prints JSON: the process's peak RSS
before the request (everything imported and warmed up) and after it, in MiB.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import warnings
import time
from decimal import Decimal

LARGEST = {"model": "gpt-image-2", "prompt": "Four noisy 4K frames", "size": "3840x2160", "quality": "low", "n": 4}


class CountingStream:
    def __init__(self) -> None:
        self.status, self.bytes = None, 0

    def start(self, status_code, headers=None, cookies=None) -> None:
        self.status = status_code

    def write(self, data) -> None:
        self.bytes += len(data)

    def close(self) -> None:
        pass

    def fail(self, error_type, message) -> None:
        raise SystemExit(f"the answer failed: {error_type}")


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> dict[str, float]:
    os.environ.update({"POWERTOOLS_SERVICE_NAME": "image-gateway", "POWERTOOLS_METRICS_NAMESPACE": "ImageGateway",
                       "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true"})
    results_out, sys.stdout = sys.stdout, open(os.devnull, "w")
    # Metrics are off here, so Powertools would warn on every invocation that none were published.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    sys.path.insert(0, "src")
    import requests

    import handlers.generations
    from common.billing.tokens import issue_token
    from common.config import Settings
    from common.upstream.openai_images import OpenAIImages
    from common.upstream.transport import HttpTransport
    from common.wiring import Container
    from local_stack.apigw import IncomingRequest, LambdaContext, RequestIds, build_event
    from local_stack.template import Template
    from bench.measure import ROOT
    from tests.fakes.ledger import FakeLedger
    from tests.fakes.store import FakeImageStore

    emulator = subprocess.Popen([sys.executable, "-m", "local_stack.upstream_emulator", "--api-key", "sk-bench"],
                                cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        base_url = emulator.stdout.readline().strip()
        root = base_url.rsplit("/v1", 1)[0]
        settings = Settings.from_environ({"TABLE_NAME": "bench", "UPSTREAM_API_KEY_SECRET_ID": "bench",
                                          "UPSTREAM_BASE_URL": base_url})
        deps = Container(settings, ledger=FakeLedger(), store=FakeImageStore(),
                         upstream=OpenAIImages(HttpTransport(base_url, lambda: "sk-bench")))
        handlers.generations.container = lambda: deps
        token = issue_token(deps.ledger, name="bench", balance_usd=Decimal(1000)).secret
        api = Template(ROOT / "template.yaml").api
        route = next(r for r in api.routes if r.function == "GenerationsFunction")

        def invoke(body: dict) -> CountingStream:
            request = IncomingRequest("POST", route.path, [("Authorization", f"Bearer {token}"),
                                                           ("Content-Type", "application/json")], json.dumps(body).encode())
            stream = CountingStream()
            handlers.generations.handler(build_event(request, route, {}, api.stage, api.binary_media_types,
                                                     RequestIds.new()), LambdaContext(route, route.timeout_s),
                                         response_stream=stream)
            return stream

        invoke({"model": "gpt-image-2", "prompt": "warm-up", "quality": "low"})
        # The emulator renders the four images before it answers: ask it once to have them cached.
        requests.post(f"{root}/__emulator/script", json={"behaviours": [{"noise": True, "times": 2}]}, timeout=10)
        with requests.post(f"{base_url}/images/generations", json=LARGEST, headers={"Authorization": "Bearer sk-bench"},
                           timeout=600, stream=True) as warm:
            warm.raise_for_status()
            for _ in warm.iter_content(chunk_size=1 << 16):  # read and dropped: not held in this process
                pass
        before = peak_mib()
        started = time.monotonic()
        stream = invoke(LARGEST)
        seconds = time.monotonic() - started
    finally:
        emulator.terminate()
        emulator.wait(10)
    if stream.status != 200:
        raise SystemExit(f"the largest answer got {stream.status}")
    sys.stdout = results_out
    return {"peak_before_mib": before, "peak_after_mib": peak_mib(), "answer_mb": stream.bytes / 1_000_000,
            "seconds": seconds}


if __name__ == "__main__":
    print(json.dumps(main()))
