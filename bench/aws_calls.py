"""AWS calls per image request, counted (not assumed): the real handlers and the real adapters
(DynamoDB ledger, S3 store, Secrets Manager) against moto in process, every botocore API call
counted by service and operation, per request, for a cold container's first request and for the
steady state after it, in b64 and in url mode.

Runs in its own interpreter (`python -m bench.aws_calls`) and prints JSON.
"""
from __future__ import annotations

import json
import os
import sys
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal


@contextmanager
def counting_aws_calls() -> Iterator[Counter]:
    """Every botocore API call made inside the block, as "service.Operation": count."""
    from botocore.client import BaseClient

    calls: Counter = Counter()
    original = BaseClient._make_api_call

    def counted(client: BaseClient, operation: str, params: dict):
        calls[f"{client.meta.service_model.service_name}.{operation}"] += 1
        return original(client, operation, params)

    BaseClient._make_api_call = counted
    try:
        yield calls
    finally:
        BaseClient._make_api_call = original


def main() -> dict[str, dict[str, int]]:
    env = {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "TABLE_NAME": "bench", "IMAGE_BUCKET": "bench-images", "UPSTREAM_API_KEY_SECRET_ID": "bench/upstream",
           "POWERTOOLS_SERVICE_NAME": "image-gateway", "POWERTOOLS_METRICS_NAMESPACE": "ImageGateway",
           "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true"}
    for name in [n for n in os.environ if n.startswith(("AWS_ENDPOINT_URL", "AWS_PROFILE"))]:
        del os.environ[name]
    os.environ.update(env)
    results_out, sys.stdout = sys.stdout, open(os.devnull, "w")
    # Metrics are off here, so Powertools would warn on every invocation that none were published.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    sys.path.insert(0, "src")
    import boto3
    from moto import mock_aws

    import handlers.generations
    from bench.measure import QUICKSTART, ROOT
    from common.billing.tokens import issue_token
    from common.wiring import container
    from local_stack import aws, moto_fidelity
    from local_stack.apigw import IncomingRequest, LambdaContext, RequestIds, build_event
    from local_stack.template import Template
    from local_stack.upstream_emulator import UpstreamEmulator

    moto_fidelity.install()
    api = Template(ROOT / "template.yaml").api
    route = next(r for r in api.routes if r.function == "GenerationsFunction")

    def invoke(body: dict, token: str) -> dict:
        """The generations handler as API Gateway and Lambda call it (the local stack's own event)."""
        request = IncomingRequest("POST", route.path, [("Authorization", f"Bearer {token}"),
                                                       ("Content-Type", "application/json")], json.dumps(body).encode())
        event = build_event(request, route, {}, api.stage, api.binary_media_types, RequestIds.new())
        return handlers.generations.handler(event, LambdaContext(route, route.timeout_s))

    emulator = UpstreamEmulator(api_key="sk-bench")
    os.environ["UPSTREAM_BASE_URL"] = emulator.start()
    counts: dict[str, dict[str, int]] = {}
    try:
        with mock_aws():
            aws.create_table(None, Template(ROOT / "template.yaml").table(), name="bench")
            boto3.client("s3").create_bucket(Bucket="bench-images")
            boto3.client("secretsmanager").create_secret(Name="bench/upstream", SecretString=emulator.api_key)
            token = issue_token(container().ledger, name="bench", balance_usd=Decimal(1000)).secret
            for label, body in (("first request (cold container), b64", QUICKSTART),
                                ("next request, b64", QUICKSTART),
                                ("request, url mode, n=1", {**QUICKSTART, "response_format": "url"}),
                                ("request, url mode, n=3", {**QUICKSTART, "response_format": "url", "n": 3})):
                with counting_aws_calls() as calls:
                    reply = invoke(body, token)
                if reply["statusCode"] != 200:
                    raise SystemExit(f"{label}: {reply['statusCode']} {reply['body'][:300]}")
                counts[label] = dict(sorted(calls.items()))
    finally:
        emulator.stop()
    sys.stdout = results_out
    return counts


if __name__ == "__main__":
    print(json.dumps(main()))
