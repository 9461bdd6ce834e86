"""Shared by every test: moto's DynamoDB made atomic and cheap per transaction, as the local
stack makes it (local_stack/moto_fidelity.py), so in-process tests see the same service; one
upstream emulator on loopback for the whole session; and the one moto fixture (`aws`) that
gives a test the template's own table and an image bucket."""
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from local_stack import aws as local_aws
from local_stack import moto_fidelity
from local_stack.template import Template
from local_stack.upstream_emulator import UpstreamEmulator

moto_fidelity.install()

# Powertools reads these when common.observability is first imported, whichever test does it first:
# as the template sets them, with tracing off (no X-Ray daemon here).
for _name, _value in {"POWERTOOLS_SERVICE_NAME": "image-gateway", "POWERTOOLS_METRICS_NAMESPACE": "ImageGateway",
                      "POWERTOOLS_TRACE_DISABLED": "true"}.items():
    os.environ.setdefault(_name, _value)

ROOT = Path(__file__).resolve().parents[1]
PLATFORM_KEY = "sk-platform-test-0123456789"


@pytest.fixture(scope="session")
def emulator():
    """The OpenAI-like upstream, expecting the platform's key PLATFORM_KEY."""
    emu = UpstreamEmulator(api_key=PLATFORM_KEY)
    emu.start()
    yield emu
    emu.stop()


@pytest.fixture
def emu(emulator):
    """The session's emulator with an empty script and request log, before and after the test."""
    emulator.reset()
    yield emulator
    emulator.reset()


@lru_cache(maxsize=1)
def table_spec():
    return Template(ROOT / "template.yaml").table()


@pytest.fixture
def aws_env(monkeypatch):
    """Dummy credentials and a region; nothing of the developer's AWS setup reaches boto3."""
    for name, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_S3",
                 "AWS_ENDPOINT_URL_CLOUDFORMATION", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)


@dataclass(frozen=True)
class MotoAws:
    table: str
    bucket: str

    def dynamodb(self):
        return boto3.client("dynamodb")

    def s3(self):
        return boto3.client("s3")


@pytest.fixture
def aws(aws_env):
    """moto in process: the template's table (keys, index, TTL) and an image bucket."""
    with mock_aws():
        local_aws.create_table(None, table_spec(), name="gateway")
        boto3.client("s3").create_bucket(Bucket="gateway-images")
        yield MotoAws(table="gateway", bucket="gateway-images")
