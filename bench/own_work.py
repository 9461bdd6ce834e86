"""The gateway's own work per request, without AWS: the quickstart request through the API Gateway
emulation and the real generations handler, whose ledger and image store are the in-memory fakes
of the tests (held to the real adapters by tests/contract/), against the upstream emulator; beside
the same request sent straight to the emulator. What is left is the emulated API Gateway, the event,
the handler's decorators, validation, pricing, JSON and the upstream client: everything but AWS.

The same again with a large answer (a 1536x1024 PNG of random pixels, 6.3 MB of base64, as large
as real photos get), to see what the gateway's own work costs per answer-MB: the answer is parsed
once and its bytes are passed through the streaming integration, never re-encoded.

Runs in its own interpreter (`python -m bench.own_work RUNS PAIRS WARMUP`) and prints JSON.
"""
from __future__ import annotations

import io
import json
import os
import sys
import warnings
from dataclasses import asdict
from decimal import Decimal


LARGE = {"size": "1536x1024", "quality": "low"}


def main(runs: int, pairs: int, warmup: int) -> dict[str, object]:
    os.environ.update({"POWERTOOLS_SERVICE_NAME": "image-gateway", "POWERTOOLS_METRICS_NAMESPACE": "ImageGateway",
                       "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true"})
    results_out, sys.stdout = sys.stdout, open(os.devnull, "w")
    # Metrics are off here, so Powertools would warn on every invocation that none were published.
    warnings.filterwarnings("ignore", message="No application metrics to publish")  # the function logs, as in Lambda, go nowhere here
    sys.path.insert(0, "src")
    import requests

    import handlers.generations
    from bench.measure import QUICKSTART, ROOT, paired_runs
    from common.billing.tokens import issue_token
    from common.config import Settings
    from common.upstream.openai_images import OpenAIImages
    from common.upstream.transport import HttpTransport
    from common.wiring import Container
    from local_stack.apigw import ApiGateway
    from local_stack.template import Template
    from local_stack.upstream_emulator import UpstreamEmulator
    from tests.fakes.ledger import FakeLedger
    from tests.fakes.store import FakeImageStore

    emulator = UpstreamEmulator(api_key="sk-bench")
    emulator.start()
    settings = Settings.from_environ({"TABLE_NAME": "bench", "UPSTREAM_API_KEY_SECRET_ID": "bench",
                                      "UPSTREAM_BASE_URL": emulator.base_url, "IMAGE_BUCKET": "bench-images"})
    deps = Container(settings, ledger=FakeLedger(), store=FakeImageStore(),
                     upstream=OpenAIImages(HttpTransport(emulator.base_url, lambda: emulator.api_key)))
    handlers.generations.container = lambda: deps
    token = issue_token(deps.ledger, name="bench", balance_usd=Decimal(1_000_000)).secret
    gateway = ApiGateway(Template(ROOT / "template.yaml").api, function_log=io.StringIO(),
                         functions={"GenerationsFunction": handlers.generations.handler})
    base_url = gateway.start()
    direct_session, gateway_session = requests.Session(), requests.Session()

    sizes: list[int] = []

    def post(session: requests.Session, url: str, key: str, body: dict) -> None:
        response = session.post(url, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60)
        if response.status_code != 200:
            raise SystemExit(f"{url} answered {response.status_code}: {response.text[:300]}")
        sizes.append(len(response.content))

    def measure(body: dict, label: str, count: int) -> list:
        emulator.reset()
        if body is not QUICKSTART:
            emulator.script({"noise": True, "times": 10 * (warmup + runs * count) + 10})
        return paired_runs(lambda: post(direct_session, f"{emulator.base_url}/images/generations", emulator.api_key, body),
                           lambda: post(gateway_session, f"{base_url}/v1/images/generations", token, body),
                           runs=runs, pairs=count, warmup=warmup, label=label)

    try:
        small = measure(QUICKSTART, "own work (fakes)", pairs)
        sizes.clear()
        large = measure({**QUICKSTART, **LARGE}, "own work (fakes), large answer", max(pairs // 5, 10))
    finally:
        gateway.stop()
        emulator.stop()
    sys.stdout = results_out
    return {"small": [asdict(run) for run in small], "large": [asdict(run) for run in large],
            "large_answer_bytes": max(sizes)}


if __name__ == "__main__":
    print(json.dumps(main(*(int(arg) for arg in sys.argv[1:4]))))
