"""The AWS side of the local stack: moto's server on loopback and the stack's resources in it.

Everything goes through boto3 over real HTTP, exactly as the functions will talk to it (they find
moto through AWS_ENDPOINT_URL), so the table, bucket and secret look the same to both.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import boto3

from local_stack.template import TableSpec

REGION = "us-east-1"
# moto accepts any credentials; real-looking dummies keep botocore's signer happy.
DUMMY_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}

TABLE_NAME = "image-gateway-local"
# Valid S3 name (lower case, 3-63 characters, no underscores), like the deployed stack's.
BUCKET_NAME = "image-gateway-local-images"
SECRET_NAME = "image-gateway-local/upstream-api-key"


class MotoServer:
    """moto's ThreadedMotoServer on 127.0.0.1 with a free port, without per-request logging."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        # Imported here: moto's server pulls in Flask and every backend, which takes a moment.
        from moto.server import ThreadedMotoServer

        from local_stack import moto_fidelity

        moto_fidelity.install()

        # werkzeug would print one line per AWS call to stderr.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        self.endpoint: str | None = None

    def start(self) -> str:
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        return self.endpoint

    def stop(self) -> None:
        if self.endpoint is not None:
            self._server.stop()  # shuts the werkzeug server down and closes its socket
            self.endpoint = None


def client(service: str, endpoint: str):
    # A session of our own: boto3's default session belongs to the functions.
    session = boto3.session.Session(region_name=REGION, **DUMMY_CREDENTIALS)
    return session.client(service, endpoint_url=endpoint)


@dataclass(frozen=True)
class Resources:
    table: str
    bucket: str  # "" when storage is off
    secret_arn: str


def create_table(endpoint: str, spec: TableSpec, name: str = TABLE_NAME) -> str:
    """The table with the template's own key schema, indexes, billing mode and TTL."""
    dynamodb = client("dynamodb", endpoint)
    arguments: dict = {
        "TableName": name,
        "KeySchema": spec.key_schema,
        "AttributeDefinitions": spec.attribute_definitions,
        "BillingMode": spec.billing_mode,
    }
    if spec.global_secondary_indexes:
        arguments["GlobalSecondaryIndexes"] = spec.global_secondary_indexes
    if spec.local_secondary_indexes:
        arguments["LocalSecondaryIndexes"] = spec.local_secondary_indexes
    if spec.billing_mode == "PROVISIONED":
        arguments["ProvisionedThroughput"] = spec.provisioned_throughput or {
            "ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
    dynamodb.create_table(**arguments)
    dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.1})
    if spec.ttl_attribute:
        dynamodb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"AttributeName": spec.ttl_attribute, "Enabled": True})
    return name


def create_bucket(endpoint: str, name: str = BUCKET_NAME) -> str:
    client("s3", endpoint).create_bucket(Bucket=name)  # us-east-1: no LocationConstraint
    return name


def create_secret(endpoint: str, api_key: str, name: str = SECRET_NAME) -> str:
    """A plain-string secret holding the upstream API key; returns its ARN (what !Ref gives)."""
    return client("secretsmanager", endpoint).create_secret(Name=name, SecretString=api_key)["ARN"]


def provision(endpoint: str, table: TableSpec, storage: bool, upstream_api_key: str) -> Resources:
    return Resources(
        table=create_table(endpoint, table),
        bucket=create_bucket(endpoint) if storage else "",
        secret_arn=create_secret(endpoint, upstream_api_key),
    )
