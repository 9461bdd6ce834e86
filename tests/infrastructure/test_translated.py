"""template.yaml as the installed SAM translator turns it into CloudFormation (what `sam deploy`
uploads): exactly the two image routes are API Gateway streaming integrations, the others buffered.
cfn-lint cannot see this: a `ResponseTransferMode` that is not the literal RESPONSE_STREAM (a !Ref,
another spelling) silently deploys a buffered integration, so the transformed template is checked."""
from __future__ import annotations

import copy
import json
from functools import lru_cache

import pytest
from samtranslator.translator.transform import transform

from .cfn_yaml import load_template

STREAMED = {("/v1/images/generations", "post"): "GenerationsFunction", ("/v1/images/edits", "post"): "EditsFunction"}


class NoManagedPolicies:
    """The translator asks IAM for managed policy ARNs; the template names none."""

    def load(self) -> dict:
        return {}


def translate(template: dict, monkeypatch) -> dict:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    template = copy.deepcopy(template)
    template["Globals"]["Function"]["CodeUri"] = "s3://bucket/package.zip"  # what `sam package` puts there
    return transform(template, {}, NoManagedPolicies())


@lru_cache(maxsize=1)
def source() -> dict:
    return load_template()


def integrations(translated: dict) -> dict[tuple[str, str], dict]:
    (api,) = [r for r in translated["Resources"].values() if r["Type"] == "AWS::ApiGateway::RestApi"]
    return {(path, method): operation["x-amazon-apigateway-integration"]
            for path, operations in api["Properties"]["Body"]["paths"].items()
            for method, operation in operations.items()}


@pytest.fixture
def translated(monkeypatch) -> dict:
    return translate(source(), monkeypatch)


def test_the_two_image_routes_call_lambdas_response_streaming_api_with_the_streaming_timeout(translated):
    found = integrations(translated)
    for route, function in STREAMED.items():
        integration = found[route]
        assert integration["responseTransferMode"] == "STREAM", route
        assert integration["uri"] == {"Fn::Sub": "arn:aws:apigateway:${AWS::Region}:lambda:path/2021-11-15/functions/"
                                                 f"${{{function}.Arn}}/response-streaming-invocations"}
        assert integration["timeoutInMillis"] == {"Fn::Sub": "${StreamingTimeoutSeconds}000"}


def test_every_other_route_stays_a_buffered_proxy_integration(translated):
    others = {route: integration for route, integration in integrations(translated).items() if route not in STREAMED}
    assert len(others) == 8
    for route, integration in others.items():
        assert "responseTransferMode" not in integration, route
        assert json.dumps(integration["uri"]).endswith('/invocations"}'), route
        assert "2015-03-31/functions/" in json.dumps(integration["uri"]), route
        assert integration["timeoutInMillis"] == {"Fn::Sub": "${RequestTimeoutSeconds}000"}, route


def test_a_transfer_mode_given_by_reference_would_deploy_buffered_which_is_why_this_is_checked(monkeypatch):
    template = copy.deepcopy(source())
    template["Parameters"]["Mode"] = {"Type": "String", "Default": "RESPONSE_STREAM"}
    event = template["Resources"]["GenerationsFunction"]["Properties"]["Events"]["Generations"]["Properties"]
    event["ResponseTransferMode"] = {"Ref": "Mode"}

    integration = integrations(translate(template, monkeypatch))[("/v1/images/generations", "post")]

    assert integration.get("responseTransferMode") != "STREAM"
    assert "response-streaming-invocations" not in json.dumps(integration["uri"])
