"""Handlers called in process, as Lambda would call them: moto in place of AWS (the template's
own table), the upstream emulator on loopback in place of OpenAI."""
from __future__ import annotations

import base64
import importlib
import json
import re
import uuid
from dataclasses import dataclass
from functools import lru_cache
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local_stack import aws as local_aws
from local_stack.template import Template
from local_stack.upstream_emulator import UpstreamEmulator

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "functional-images"


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
    """The deployed functions, in process, with helpers to fund tokens and read the ledger."""

    def __init__(self, table: str, emulator: UpstreamEmulator) -> None:
        self.table = table
        self.emulator = emulator
        self.dynamodb = boto3.client("dynamodb")

    def token(self, balance: str = "10", **options: Any) -> str:
        from common.tokens import create_token

        return create_token(name="functional", balance_usd=Decimal(balance), **options).secret

    def token_item(self, secret: str) -> dict:
        from common.tokens import hash_secret

        return self.dynamodb.get_item(TableName=self.table, Key={"pk": {"S": f"KEY#{hash_secret(secret)}"},
                                                                 "sk": {"S": "TOKEN"}})["Item"]

    def balance(self, secret: str) -> Decimal:
        return Decimal(self.token_item(secret)["balance_usd"]["N"])

    def records(self, secret: str) -> list[dict]:
        token_id = self.token_item(secret)["token_id"]["S"]
        items = self.dynamodb.query(TableName=self.table, KeyConditionExpression="pk = :pk",
                                    ExpressionAttributeValues={":pk": {"S": f"USAGE#{token_id}"}})["Items"]
        return [i for i in items if i["sk"]["S"].startswith("REQ#")]

    def generate(self, body: Any, token: str | None, *, context: FakeContext | None = None, **kw: Any) -> "Reply":
        from handlers.generations import handler

        return Reply(handler(api_event("POST", "/v1/images/generations", body=body, token=token, **kw),
                             context or FakeContext()))

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


def _clear_caches() -> None:
    from common.catalog import get_catalog
    from common.config import get_settings
    from common.ledger import get_ledger
    from common.storage import get_image_store
    from common.upstream import get_upstream

    for cached in (get_settings, get_catalog, get_ledger, get_image_store, get_upstream):
        cached.cache_clear()


@pytest.fixture
def storage() -> bool:
    """Override in a test module (or with parametrize) to run without image storage."""
    return True


@pytest.fixture
def gateway(monkeypatch, emulator, storage) -> Gateway:
    environment = {
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "TABLE_NAME": "functional", "IMAGE_BUCKET": BUCKET if storage else "", "UPSTREAM_BASE_URL": emulator.base_url,
        "UPSTREAM_API_KEY_SECRET_ID": "functional/upstream-key", "REQUEST_TIMEOUT_SECONDS": "29",
        "POWERTOOLS_SERVICE_NAME": "image-gateway", "POWERTOOLS_METRICS_NAMESPACE": "ImageGateway",
        "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_DEV": "false",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    emulator.reset()
    with mock_aws():
        table = Template(ROOT / "template.yaml").table()
        local_aws.create_table(None, table, name="functional")
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        boto3.client("secretsmanager").create_secret(Name="functional/upstream-key", SecretString=emulator.api_key)
        _clear_caches()
        yield Gateway("functional", emulator)
        _clear_caches()
