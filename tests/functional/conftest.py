"""Handlers called in process, as Lambda would call them, on the in-memory fakes of the ledger
and the image store (tests/fakes/, held to the real adapters by tests/contract/), with the upstream
emulator on loopback in place of OpenAI. The local-stack tests prove the same through DynamoDB and S3.
"""
from __future__ import annotations

import base64
import importlib
import json
import re
import uuid
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest

from common.billing.records import RequestRecord, TokenRecord
from common.billing.tokens import hash_secret, issue_token
from common.config import Settings
from common.upstream.openai_images import OpenAIImages
from common.upstream.transport import HttpTransport
from common.wiring import Container
from local_stack.template import Template
from local_stack.upstream_emulator import UpstreamEmulator
from tests.fakes.ledger import FakeLedger
from tests.fakes.store import FakeImageStore
from tests.fakes.stream import RecordingStream

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class FakeContext:
    """What Lambda passes as `context`, with a configurable time budget."""

    remaining_ms: int = 29_000
    function_name: str = "functional"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:functional"
    memory_limit_in_mb: int = 1024
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    log_group_name: str = "/aws/lambda/functional"
    log_stream_name: str = "stream"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def api_event(method: str, path: str, *, body: Any = None, token: str | None = None,
              headers: dict[str, str] | None = None, binary: bool = False, resource: str | None = None,
              query: dict[str, str] | None = None, path_params: dict[str, str] | None = None) -> dict:
    """An API Gateway REST proxy event (v1) like the deployed API sends (`resource`: the template's
    path, e.g. /v1/models/{model}, when it has parameters)."""
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    if isinstance(body, bytes):
        body, binary = base64.b64encode(body).decode(), True
    request_id = str(uuid.uuid4())
    return {
        "resource": resource or path, "path": path, "httpMethod": method, "headers": all_headers,
        "multiValueHeaders": {k: [v] for k, v in all_headers.items()},
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": path_params or None,
        "stageVariables": None, "body": body, "isBase64Encoded": binary,
        "requestContext": {"requestId": request_id, "resourcePath": resource or path, "httpMethod": method,
                           "stage": "prod", "path": f"/prod{path}", "identity": {"sourceIp": "127.0.0.1"}},
    }


class Gateway:
    """The deployed functions, in process, on one container of fakes, with helpers to fund
    tokens and read the ledger."""

    def __init__(self, deps: Container, emulator: UpstreamEmulator) -> None:
        self.deps = deps
        self.emulator = emulator

    @property
    def ledger(self) -> FakeLedger:
        return self.deps.ledger

    @property
    def store(self) -> FakeImageStore | None:
        return self.deps.store

    def token(self, balance: str = "10", **options: Any) -> str:
        return issue_token(self.ledger, name="functional", balance_usd=Decimal(balance), **options).secret

    def token_record(self, secret: str) -> TokenRecord:
        return self.ledger.get_token(hash_secret(secret))

    def balance(self, secret: str) -> Decimal:
        return self.token_record(secret).balance_usd

    def records(self, secret: str) -> list[RequestRecord]:
        return self.ledger.request_records(self.token_record(secret).token_id)

    def revoke(self, secret: str) -> None:
        self.ledger.set_status(self.token_record(secret), "revoked")

    def generate(self, body: Any, token: str | None, *, context: FakeContext | None = None, **kw: Any) -> "Reply":
        from handlers.generations import handler

        return Reply(handler(api_event("POST", "/v1/images/generations", body=body, token=token, **kw),
                             context or FakeContext()))

    def generate_streamed(self, body: Any, token: str | None, *, context: FakeContext | None = None) -> RecordingStream:
        """The same, invoked as API Gateway's streaming integration invokes it (through our runtime)."""
        from handlers.generations import handler

        stream = RecordingStream()
        assert handler(api_event("POST", "/v1/images/generations", body=body, token=token), context or FakeContext(),
                       response_stream=stream) is None
        return stream

    def edit(self, body: Any, token: str | None, *, content_type: str = "application/json",
             context: FakeContext | None = None) -> "Reply":
        from handlers.edits import handler

        event = api_event("POST", "/v1/images/edits", body=body, token=token, headers={"Content-Type": content_type})
        return Reply(handler(event, context or FakeContext()))

    def models(self, token: str | None) -> "Reply":
        from handlers.models import handler

        return Reply(handler(api_event("GET", "/v1/models", token=token), FakeContext()))

    def get(self, path: str, token: str | None, query: dict[str, str] | None = None,
            path_params: dict[str, str] | None = None) -> "Reply":
        """GET any route of template.yaml through the handler the template names: `path` as a client
        sends it (/v1/models/gpt-image-2) or as the template has it with `path_params` to fill in."""
        route, params = _get_route(path, path_params)
        concrete = re.sub(r"\{([^}]+)\}", lambda m: params[m.group(1)], route.path)
        module, _, name = route.handler.rpartition(".")
        handler = getattr(importlib.import_module(module), name)
        event = api_event("GET", concrete, token=token, resource=route.path, query=query, path_params=params)
        return Reply(handler(event, FakeContext()))


@lru_cache(maxsize=1)
def _get_routes() -> tuple:
    return tuple(route for route in Template(ROOT / "template.yaml").api.routes if route.method == "GET")


def _get_route(path: str, path_params: dict[str, str] | None):
    for route in _get_routes():
        if path_params is not None:
            if route.path == path:
                return route, dict(path_params)
            continue
        pattern = re.sub(r"\\\{([^}]+)\\\}", r"(?P<\1>[^/]+)", re.escape(route.path))
        match = re.fullmatch(pattern, path)
        if match:
            return route, match.groupdict()
    raise LookupError(f"template.yaml has no GET {path}")


@dataclass
class Reply:
    raw: dict

    @property
    def status(self) -> int:
        return self.raw["statusCode"]

    @property
    def headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.raw["headers"].items()}

    @property
    def json(self) -> Any:
        return json.loads(self.raw["body"])

    @property
    def error(self) -> dict:
        return self.json["error"]


@pytest.fixture
def storage() -> bool:
    """Override in a test module (or with parametrize) to run without image storage."""
    return True


HANDLER_MODULES = ("handlers.generations", "handlers.edits", "handlers.models", "handlers.model", "handlers.pricing",
                   "handlers.usage", "handlers.billing_subscription", "handlers.billing_usage", "handlers.sweeper")


@pytest.fixture
def settings(emulator, storage) -> Settings:
    return Settings.from_environ({
        "TABLE_NAME": "functional", "IMAGE_BUCKET": "functional-images" if storage else "",
        "UPSTREAM_BASE_URL": emulator.base_url, "UPSTREAM_API_KEY_SECRET_ID": "functional/upstream-key",
        "REQUEST_TIMEOUT_SECONDS": "29"})


@pytest.fixture
def gateway(monkeypatch, emulator, storage, settings) -> Gateway:
    for name, value in {"POWERTOOLS_SERVICE_NAME": "image-gateway", "POWERTOOLS_METRICS_NAMESPACE": "ImageGateway",
                        "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_DEV": "false"}.items():
        monkeypatch.setenv(name, value)
    emulator.reset()
    deps = Container(settings, ledger=FakeLedger(), store=FakeImageStore() if storage else None,
                     upstream=OpenAIImages(HttpTransport(emulator.base_url, lambda: emulator.api_key)))
    # Each handler builds its parts with common.wiring.container(); here it gets this container.
    for module in HANDLER_MODULES:
        monkeypatch.setattr(importlib.import_module(module), "container", lambda: deps)
    yield Gateway(deps, emulator)
