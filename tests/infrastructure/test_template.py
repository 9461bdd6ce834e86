"""Static checks of template.yaml, samconfig.toml and events/ (fast: no sam, no AWS)."""

from __future__ import annotations

import ast
import base64
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any, Iterator

import pytest

from .cfn_yaml import REPO_ROOT, load_template

SRC = REPO_ROOT / "src"
EVENTS_DIR = REPO_ROOT / "events"

EXPECTED_ROUTES = {
    ("POST", "/v1/images/generations"): "GenerationsFunction",
    ("POST", "/v1/images/edits"): "EditsFunction",
    ("GET", "/v1/models"): "ModelsFunction",
    ("GET", "/v1/models/{model}"): "ModelFunction",
    ("GET", "/v1/pricing"): "PricingFunction",
    ("GET", "/v1/usage"): "UsageFunction",
    ("GET", "/v1/dashboard/billing/subscription"): "BillingSubscriptionFunction",
    ("GET", "/v1/dashboard/billing/usage"): "BillingUsageFunction",
    # where ChatGPT-Next-Web asks ({base}/dashboard/..., without /v1)
    ("GET", "/dashboard/billing/subscription"): "BillingSubscriptionFunction",
    ("GET", "/dashboard/billing/usage"): "BillingUsageFunction",
}

EXPECTED_HANDLERS = {
    "GenerationsFunction": "handlers.generations.handler",
    "EditsFunction": "handlers.edits.handler",
    "ModelsFunction": "handlers.models.handler",
    "ModelFunction": "handlers.model.handler",
    "PricingFunction": "handlers.pricing.handler",
    "UsageFunction": "handlers.usage.handler",
    "BillingSubscriptionFunction": "handlers.billing_subscription.handler",
    "BillingUsageFunction": "handlers.billing_usage.handler",
    "SweeperFunction": "handlers.sweeper.handler",
}

# Read-only customer routes: the token by GetItem, their own usage by Query on the base table.
READ_ONLY_ACTIONS = {
    "ModelsFunction": {"dynamodb:GetItem"},
    "ModelFunction": {"dynamodb:GetItem"},
    "PricingFunction": {"dynamodb:GetItem"},
    "BillingSubscriptionFunction": {"dynamodb:GetItem"},
    "UsageFunction": {"dynamodb:GetItem", "dynamodb:Query"},
    "BillingUsageFunction": {"dynamodb:GetItem", "dynamodb:Query"},
}

TABLE_ARN = {"Fn::GetAtt": ["GatewayTable", "Arn"]}

EXPECTED_ENVIRONMENT = {
    "TABLE_NAME",
    "IMAGE_BUCKET",
    "IMAGE_URL_TTL_SECONDS",
    "UPSTREAM_BASE_URL",
    "UPSTREAM_API_KEY_SECRET_ID",
    "REQUEST_TIMEOUT_SECONDS",
    "RECORD_RETENTION_DAYS",
    "PRICE_MULTIPLIER",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
    "AWS_ENDPOINT_URL",  # unset unless LocalAwsEndpointUrl is given (sam local invoke only)
    "STREAMING_TIMEOUT_SECONDS",
}
# The streamed image functions also run our own runtime loop (src/runtime/bootstrap).
STREAMED_FUNCTIONS = {"GenerationsFunction", "EditsFunction"}

# response type -> (status code or None to keep API Gateway's, OpenAI error code)
EXPECTED_GATEWAY_RESPONSES = {
    "UNAUTHORIZED": (401, "invalid_api_key"),
    "ACCESS_DENIED": (403, "permission_denied"),
    "MISSING_AUTHENTICATION_TOKEN": (404, "not_found"),
    "RESOURCE_NOT_FOUND": (404, "not_found"),
    "REQUEST_TOO_LARGE": (413, "request_too_large"),
    "THROTTLED": (429, "rate_limit_exceeded"),
    "QUOTA_EXCEEDED": (429, "rate_limit_exceeded"),
    "INTEGRATION_TIMEOUT": (504, "upstream_timeout"),
    "INTEGRATION_FAILURE": (502, "server_error"),
    "DEFAULT_4XX": (None, None),
    "DEFAULT_5XX": (None, "server_error"),
}

SEED_QUICKSTART_BODY = {"model": "gpt-image-2", "prompt": "A futuristic skyline at dusk", "size": "1024x1024"}


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def resources_of_type(template: dict[str, Any], type_name: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in template["Resources"].items() if res["Type"] == type_name}


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each Serverless function's properties with Globals.Function applied (function wins)."""
    global_props = template.get("Globals", {}).get("Function", {})
    merged = {}
    for name, res in resources_of_type(template, "AWS::Serverless::Function").items():
        props = {**global_props, **res["Properties"]}
        env = {
            **global_props.get("Environment", {}).get("Variables", {}),
            **res["Properties"].get("Environment", {}).get("Variables", {}),
        }
        props["Environment"] = {"Variables": env}
        merged[name] = props
    return merged


def api_events(template: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for fn_name, props in functions(template).items():
        for event_name, event in props.get("Events", {}).items():
            if event["Type"] == "Api":
                yield fn_name, event_name, event["Properties"]


def template_routes(template: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(ev["Method"].upper(), ev["Path"]): fn for fn, _, ev in api_events(template)}


def if_branches(value: Any) -> list[Any]:
    """Every value a (possibly nested) Fn::If can take; AWS::NoValue branches are dropped."""
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        _, when_true, when_false = value["Fn::If"]
        return if_branches(when_true) + if_branches(when_false)
    if value == {"Ref": "AWS::NoValue"}:
        return []
    return [value]


def policy_statements(props: dict[str, Any]) -> list[dict[str, Any]]:
    statements = []
    for policy in props.get("Policies", []):
        for document in if_branches(policy):
            assert isinstance(document, dict) and "Statement" in document, (
                f"only inline policy documents are allowed, found {document!r}"
            )
            for statement in document["Statement"]:
                statements.extend(if_branches(statement))
    return statements


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def render_gateway_template(text: str) -> str:
    """What API Gateway would send: $context.error.messageString is a quoted JSON string,
    the other $context variables are plain text inside string literals."""
    text = text.replace("$context.error.messageString", json.dumps('Some "quoted" message'))
    return re.sub(r"\$context\.[A-Za-z.]+", "value", text)


def load_event(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


EVENT_FILES = sorted(EVENTS_DIR.glob("*.json"))


# --------------------------------------------------------------------------- functions and routes


def test_every_api_event_handler_exists_in_src_and_defines_handler(template):
    for fn_name, props in functions(template).items():
        assert props["CodeUri"] in ("src/", "src"), f"{fn_name} must be packaged from src/"
        module_path, _, func_name = props["Handler"].rpartition(".")
        assert "/" not in module_path, f"{fn_name}: handler uses dotted module syntax, not a path"
        source = SRC / (module_path.replace(".", "/") + ".py")
        assert source.is_file(), f"{fn_name}: {source.relative_to(REPO_ROOT)} does not exist"
        tree = ast.parse(source.read_text(encoding="utf-8"))
        defined = {
            node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        } | {
            target.id
            for node in tree.body
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        assert func_name in defined, f"{source.relative_to(REPO_ROOT)} does not define {func_name}"


def test_every_function_is_built_by_its_src_makefile_target(template):
    # src/Makefile installs the dependencies for arm64 and precompiles the package (.pyc files)
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed (sam build needs it too)")
    for fn_name, res in resources_of_type(template, "AWS::Serverless::Function").items():
        assert res.get("Metadata", {}).get("BuildMethod") == "makefile", fn_name
        dry_run = subprocess.run(
            [make, "-C", str(SRC), "-n", f"build-{fn_name}", "ARTIFACTS_DIR=/nonexistent"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert dry_run.returncode == 0, f"src/Makefile has no build-{fn_name}: {dry_run.stderr}"
        assert "compileall" in dry_run.stdout, fn_name


def test_routes_are_exactly_the_images_models_and_billing_routes(template):
    assert template_routes(template) == EXPECTED_ROUTES


def test_every_function_but_the_sweeper_serves_a_route(template):
    serving = {fn for fn, _, _ in api_events(template)}
    assert set(functions(template)) - serving == {"SweeperFunction"}


def test_every_api_event_belongs_to_the_images_api(template):
    for fn_name, event_name, event in api_events(template):
        assert event["RestApiId"] == {"Ref": "ImagesApi"}, f"{fn_name}.{event_name} is not on ImagesApi"


def test_handlers_are_the_ones_the_architecture_names(template):
    assert {name: props["Handler"] for name, props in functions(template).items()} == EXPECTED_HANDLERS


def test_functions_run_python_3_13_on_arm64_with_tracing(template):
    for fn_name, props in functions(template).items():
        assert props["Runtime"] == "python3.13", fn_name
        assert props["Architectures"] == ["arm64"], fn_name
        assert props["MemorySize"] == 1024, fn_name
        assert props["Tracing"] == "Active", fn_name


def test_function_timeouts_relate_to_the_integration_timeout(template):
    parameter = template["Parameters"]["RequestTimeoutSeconds"]
    assert parameter["Default"] == 29
    assert (parameter["MinValue"], parameter["MaxValue"]) == (5, 300)
    assert "Maximum integration timeout in milliseconds" in parameter["Description"]
    streaming = template["Parameters"]["StreamingTimeoutSeconds"]
    # Streaming integrations allow 15 minutes without a quota increase; Lambda allows 900 s.
    assert (streaming["Default"], streaming["MinValue"], streaming["MaxValue"]) == (600, 5, 900)
    fns = functions(template)
    for fn_name, event_name, event in api_events(template):
        timeout = "StreamingTimeoutSeconds" if fn_name in STREAMED_FUNCTIONS else "RequestTimeoutSeconds"
        # the integration timeout is the parameter in milliseconds ...
        assert event["TimeoutInMillis"] == {"Fn::Sub": f"${{{timeout}}}000"}, f"{fn_name}.{event_name}"
        # ... and the function may run as long (it answers before, with its own safety margin)
        assert fns[fn_name]["Timeout"] == {"Ref": timeout}, fn_name
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["REQUEST_TIMEOUT_SECONDS"] == {"Ref": "RequestTimeoutSeconds"}
    assert env["STREAMING_TIMEOUT_SECONDS"] == {"Ref": "StreamingTimeoutSeconds"}


def test_exactly_the_image_routes_stream_through_our_runtime(template):
    fns = functions(template)
    for fn_name, event_name, event in api_events(template):
        if fn_name in STREAMED_FUNCTIONS:
            # the one literal SAM honours; a !Ref or another spelling deploys a buffered integration
            assert event["ResponseTransferMode"] == "RESPONSE_STREAM", f"{fn_name}.{event_name}"
            assert fns[fn_name]["Environment"]["Variables"]["AWS_LAMBDA_EXEC_WRAPPER"] == \
                "/var/task/runtime/bootstrap"
        else:
            assert "ResponseTransferMode" not in event, f"{fn_name}.{event_name}"
    assert (SRC / "runtime" / "bootstrap").stat().st_mode & 0o111, "the exec wrapper must be executable"


def test_api_stage_is_redeployed_when_the_timeout_parameter_changes(template):
    # TimeoutInMillis is an intrinsic, invisible to SAM's deployment hash.
    assert template["Resources"]["ImagesApi"]["Properties"]["AlwaysDeploy"] is True


# --------------------------------------------------------------------------- environment


def test_environment_variables_match_the_architecture_contract(template):
    for fn_name, props in functions(template).items():
        extra = {"AWS_LAMBDA_EXEC_WRAPPER"} if fn_name in STREAMED_FUNCTIONS else set()
        assert set(props["Environment"]["Variables"]) == EXPECTED_ENVIRONMENT | extra, fn_name
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["TABLE_NAME"] == {"Ref": "GatewayTable"}
    assert env["IMAGE_BUCKET"] == {"Fn::If": ["StorageEnabled", {"Ref": "ImageBucket"}, ""]}
    assert env["POWERTOOLS_SERVICE_NAME"] == "image-gateway"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "ImageGateway"
    assert env["POWERTOOLS_LOG_LEVEL"] == {"Ref": "LogLevel"}
    assert env["UPSTREAM_BASE_URL"] == {"Ref": "UpstreamBaseUrl"}
    assert template["Parameters"]["UpstreamBaseUrl"]["Default"] == "https://api.openai.com/v1"


def test_the_functions_get_an_aws_endpoint_only_when_a_loopback_one_is_given_for_sam_local(template):
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["AWS_ENDPOINT_URL"] == {"Fn::If": ["HasLocalAwsEndpointUrl", {"Ref": "LocalAwsEndpointUrl"},
                                                  {"Ref": "AWS::NoValue"}]}
    assert template["Conditions"]["HasLocalAwsEndpointUrl"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "LocalAwsEndpointUrl"}, ""]}]}
    parameter = template["Parameters"]["LocalAwsEndpointUrl"]
    assert parameter["Default"] == ""
    allowed = re.compile(parameter["AllowedPattern"])
    for accepted in ("", "http://127.0.0.1:5000", "http://localhost:4566", "http://host.docker.internal:5000"):
        assert allowed.fullmatch(accepted), accepted
    for refused in ("https://dynamodb.example.com", "http://10.0.0.1:5000", "http://127.0.0.1.evil.com:80"):
        assert not allowed.fullmatch(refused), refused


def test_no_environment_variable_holds_a_secret_value(template):
    for fn_name, props in functions(template).items():
        env = props["Environment"]["Variables"]
        assert "UPSTREAM_API_KEY" not in env, fn_name
        # the key travels as a reference to Secrets Manager, never as a value
        assert env["UPSTREAM_API_KEY_SECRET_ID"] == {
            "Fn::If": [
                "CreateUpstreamApiKeySecret",
                {"Ref": "UpstreamApiKeySecret"},
                {"Ref": "UpstreamApiKeySecretArn"},
            ]
        }
        for name, value in env.items():
            text = json.dumps(value)
            assert "resolve:secretsmanager" not in text, f"{fn_name}.{name} resolves a secret value"
            assert not re.search(r"\bsk-[A-Za-z0-9_-]{8,}", text), f"{fn_name}.{name} looks like a key"
            if re.search(r"(KEY|SECRET|TOKEN|PASSWORD)", name):
                assert name.endswith(("_SECRET_ID", "_SECRET_ARN")), f"{fn_name}.{name} holds a secret?"


def test_upstream_secret_is_created_only_when_no_arn_is_given(template):
    conditions = template["Conditions"]
    assert conditions["CreateUpstreamApiKeySecret"] == {"Fn::Equals": [{"Ref": "UpstreamApiKeySecretArn"}, ""]}
    assert template["Parameters"]["UpstreamApiKeySecretArn"]["Default"] == ""
    secret = template["Resources"]["UpstreamApiKeySecret"]
    assert secret["Type"] == "AWS::SecretsManager::Secret"
    assert secret["Condition"] == "CreateUpstreamApiKeySecret"
    # no value in the template: the operator sets it with put-secret-value
    assert "SecretString" not in secret.get("Properties", {})
    assert "put-secret-value" in template["Parameters"]["UpstreamApiKeySecretArn"]["Description"]


def test_storage_can_be_switched_off(template):
    assert template["Parameters"]["ImageStorage"]["AllowedValues"] == ["Enabled", "Disabled"]
    assert template["Parameters"]["ImageStorage"]["Default"] == "Enabled"
    assert template["Conditions"]["StorageEnabled"] == {"Fn::Equals": [{"Ref": "ImageStorage"}, "Enabled"]}
    ttl = template["Parameters"]["ImageUrlTtlSeconds"]
    assert ttl["Default"] == 3600 and ttl["MaxValue"] == 43200
    assert "credentials" in ttl["Description"]


# --------------------------------------------------------------------------- permissions


def test_each_function_policy_uses_no_wildcard_resource_or_service_wide_action(template):
    for fn_name, props in functions(template).items():
        statements = policy_statements(props)
        assert statements, f"{fn_name} has no inline policy statements"
        for statement in statements:
            if statement["Effect"] != "Allow":
                continue
            for action in as_list(statement["Action"]):
                assert action != "*" and not action.endswith(":*"), f"{fn_name} allows {action}"
                assert "*" not in action, f"{fn_name} allows the wildcard action {action}"
            for resource in as_list(statement["Resource"]):
                for value in if_branches(resource):
                    assert value != "*", f"{fn_name} allows {statement['Action']} on every resource"
                    assert isinstance(value, dict), f"{fn_name}: resource {value!r} is not a reference"


def test_generations_function_may_touch_only_the_table_the_secret_and_image_objects(template):
    props = functions(template)["GenerationsFunction"]
    statements = policy_statements(props)
    by_service: dict[str, list[dict[str, Any]]] = {}
    for statement in statements:
        for action in as_list(statement["Action"]):
            by_service.setdefault(action.split(":")[0], []).append(statement)
    assert set(by_service) == {"dynamodb", "secretsmanager", "s3"}

    (dynamodb,) = {id(s): s for s in by_service["dynamodb"]}.values()
    assert set(as_list(dynamodb["Action"])) == {
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "dynamodb:PutItem",
        "dynamodb:ConditionCheckItem",
    }
    assert dynamodb["Resource"] == {"Fn::GetAtt": ["GatewayTable", "Arn"]}  # no index ARN

    (secret,) = {id(s): s for s in by_service["secretsmanager"]}.values()
    assert as_list(secret["Action"]) == ["secretsmanager:GetSecretValue"]
    assert secret["Resource"] == {
        "Fn::If": ["CreateUpstreamApiKeySecret", {"Ref": "UpstreamApiKeySecret"}, {"Ref": "UpstreamApiKeySecretArn"}]
    }

    # the S3 statement exists only when storage is on
    raw = [s for policy in props["Policies"] for s in policy["Statement"]]
    s3_if = [s for s in raw if isinstance(s, dict) and "Fn::If" in s]
    assert len(s3_if) == 1
    condition, s3, otherwise = s3_if[0]["Fn::If"]
    assert condition == "StorageEnabled" and otherwise == {"Ref": "AWS::NoValue"}
    assert set(as_list(s3["Action"])) == {"s3:PutObject", "s3:GetObject"}
    assert s3["Resource"] == {"Fn::Sub": "${ImageBucket.Arn}/*"}


def test_models_function_can_only_get_items_from_the_table(template):
    statements = policy_statements(functions(template)["ModelsFunction"])
    assert len(statements) == 1
    assert as_list(statements[0]["Action"]) == ["dynamodb:GetItem"]
    assert statements[0]["Resource"] == {"Fn::GetAtt": ["GatewayTable", "Arn"]}


@pytest.mark.parametrize("fn_name", sorted(READ_ONLY_ACTIONS))
def test_read_only_functions_may_only_read_the_table_and_never_its_index(template, fn_name):
    statements = policy_statements(functions(template)[fn_name])
    assert [s["Effect"] for s in statements] == ["Allow"] * len(statements)
    actions = {action for s in statements for action in as_list(s["Action"])}
    assert actions == READ_ONLY_ACTIONS[fn_name]
    for statement in statements:
        assert as_list(statement["Resource"]) == [TABLE_ARN], f"{fn_name}: {statement['Resource']}"


def test_the_sweeper_runs_every_5_minutes_outside_the_request_timeout(template):
    sweeper = functions(template)["SweeperFunction"]
    assert sweeper["Handler"] == "handlers.sweeper.handler"
    (event,) = sweeper["Events"].values()
    assert event["Type"] == "Schedule"
    assert event["Properties"]["Schedule"] == "rate(5 minutes)"
    # It is not behind API Gateway: its own timeout, not the Globals' request timeout, and long
    # enough to walk every token.
    assert template["Resources"]["SweeperFunction"]["Properties"]["Timeout"] == 120
    assert sweeper["Timeout"] != template["Globals"]["Function"]["Timeout"]


def test_the_sweeper_may_list_tokens_on_the_index_and_release_holds_on_the_table(template):
    statements = policy_statements(functions(template)["SweeperFunction"])
    grants = {(action, json.dumps(s["Resource"], sort_keys=True))
              for s in statements for action in as_list(s["Action"])}
    table, index = json.dumps(TABLE_ARN), json.dumps({"Fn::Sub": "${GatewayTable.Arn}/index/gsi1"})
    assert grants == {
        ("dynamodb:Query", index),  # Ledger.list_tokens
        ("dynamodb:GetItem", table),  # Ledger.release: the balance after, the hold's state
        ("dynamodb:UpdateItem", table),  # Ledger.release: one transaction of an update ...
        ("dynamodb:PutItem", table),  # ... and the request record
    }


def test_each_function_has_a_log_group_with_retention_named_after_it(template):
    log_groups = resources_of_type(template, "AWS::Logs::LogGroup")
    named = {lg["Properties"]["LogGroupName"]["Fn::Sub"]: lg for lg in log_groups.values()}
    for fn_name in functions(template):
        group = named.get(f"/aws/lambda/${{{fn_name}}}")
        assert group is not None, f"no log group for {fn_name}"
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert template["Parameters"]["LogRetentionDays"]["Default"] == 30


# --------------------------------------------------------------------------- API


def test_api_is_a_regional_rest_api_with_a_prod_stage(template):
    api = template["Resources"]["ImagesApi"]
    assert api["Type"] == "AWS::Serverless::Api"
    props = api["Properties"]
    assert props["StageName"] == "prod"
    assert props["EndpointConfiguration"] == {"Type": "REGIONAL"} or props["EndpointConfiguration"] == "REGIONAL"
    assert props["TracingEnabled"] is True
    assert str(props["OpenApiVersion"]).startswith("3.")
    assert "StageName" not in template.get("Globals", {}).get("Api", {})


def test_api_accepts_multipart_as_binary(template):
    assert "multipart~1form-data" in template["Resources"]["ImagesApi"]["Properties"]["BinaryMediaTypes"]


def test_api_throttles_and_emits_metrics(template):
    settings = template["Resources"]["ImagesApi"]["Properties"]["MethodSettings"]
    catch_all = [s for s in settings if s["ResourcePath"] == "/*" and s["HttpMethod"] == "*"]
    assert catch_all, "no stage-wide method setting"
    assert catch_all[0]["ThrottlingBurstLimit"] > 0 and catch_all[0]["ThrottlingRateLimit"] > 0
    assert catch_all[0]["MetricsEnabled"] is True


def test_api_gateway_errors_answer_in_openai_error_shape(template):
    responses = template["Resources"]["ImagesApi"]["Properties"]["GatewayResponses"]
    assert set(EXPECTED_GATEWAY_RESPONSES) <= set(responses)
    for response_type, (status, code) in EXPECTED_GATEWAY_RESPONSES.items():
        response = responses[response_type]
        if status is not None:
            assert int(response["StatusCode"]) == status, response_type
        headers = response["ResponseParameters"]["Headers"]
        assert headers["Content-Type"] == "'application/json'", response_type
        assert headers["x-request-id"] == "context.requestId", response_type
        body = json.loads(render_gateway_template(response["ResponseTemplates"]["application/json"]))
        if code is not None:
            assert body["error"]["code"] == code, response_type


def test_every_gateway_response_template_is_valid_json_with_all_four_error_keys(template):
    responses = template["Resources"]["ImagesApi"]["Properties"]["GatewayResponses"]
    for response_type, response in responses.items():
        templates = response["ResponseTemplates"]
        assert set(templates) == {"application/json"}, response_type
        body = json.loads(render_gateway_template(templates["application/json"]))
        assert set(body) == {"error"}, response_type
        assert set(body["error"]) == {"message", "type", "param", "code"}, response_type
        assert isinstance(body["error"]["message"], str) and body["error"]["message"], response_type
        assert body["error"]["param"] is None, response_type


def test_request_too_large_points_to_json_image_url_references(template):
    response = template["Resources"]["ImagesApi"]["Properties"]["GatewayResponses"]["REQUEST_TOO_LARGE"]
    message = json.loads(render_gateway_template(response["ResponseTemplates"]["application/json"]))["error"][
        "message"
    ]
    assert "image_url" in message and "10 MB" in message


def test_integration_timeout_tells_sdks_not_to_retry_and_pay_twice(template):
    response = template["Resources"]["ImagesApi"]["Properties"]["GatewayResponses"]["INTEGRATION_TIMEOUT"]
    assert response["ResponseParameters"]["Headers"]["x-should-retry"] == "'false'"


# --------------------------------------------------------------------------- data


def test_table_has_the_keys_and_index_of_the_architecture(template):
    table = template["Resources"]["GatewayTable"]
    assert table["Type"] == "AWS::DynamoDB::Table"
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]} == {
        "pk": "S",
        "sk": "S",
        "gsi1pk": "S",
        "gsi1sk": "S",
    }
    assert props["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    (gsi,) = props["GlobalSecondaryIndexes"]
    assert gsi["IndexName"] == "gsi1"
    assert gsi["KeySchema"] == [
        {"AttributeName": "gsi1pk", "KeyType": "HASH"},
        {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
    ]
    assert gsi["Projection"] == {"ProjectionType": "ALL"}


def test_table_has_ttl_on_expires_at_pitr_and_encryption(template):
    props = template["Resources"]["GatewayTable"]["Properties"]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["SSESpecification"]["SSEEnabled"] is True


def test_table_is_retained_because_it_holds_money(template):
    table = template["Resources"]["GatewayTable"]
    assert table["DeletionPolicy"] == "Retain"
    assert table["UpdateReplacePolicy"] == "Retain"


def test_bucket_exists_only_with_storage_and_blocks_public_access(template):
    bucket = template["Resources"]["ImageBucket"]
    assert bucket["Type"] == "AWS::S3::Bucket"
    assert bucket["Condition"] == "StorageEnabled"
    props = bucket["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}


def test_bucket_is_encrypted(template):
    (rule,) = template["Resources"]["ImageBucket"]["Properties"]["BucketEncryption"][
        "ServerSideEncryptionConfiguration"
    ]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert rule["BucketKeyEnabled"] is True


def test_bucket_expires_images_and_aborts_incomplete_uploads(template):
    rules = template["Resources"]["ImageBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    enabled = [r for r in rules if r["Status"] == "Enabled"]
    assert any(r.get("ExpirationInDays") == {"Ref": "ImageRetentionDays"} for r in enabled)
    assert any(r.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation") == 1 for r in enabled)
    assert template["Parameters"]["ImageRetentionDays"]["Default"] == 1


def test_bucket_policy_denies_every_request_without_tls(template):
    policy = template["Resources"]["ImageBucketPolicy"]
    assert policy["Type"] == "AWS::S3::BucketPolicy"
    assert policy["Condition"] == "StorageEnabled"
    assert policy["Properties"]["Bucket"] == {"Ref": "ImageBucket"}
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    deny = [
        s
        for s in statements
        if s["Effect"] == "Deny"
        and s["Condition"].get("Bool", {}).get("aws:SecureTransport") in ("false", False)
        and as_list(s["Action"]) == ["s3:*"]
    ]
    assert deny, "no TLS-only statement"
    assert {"Fn::GetAtt": ["ImageBucket", "Arn"]} in deny[0]["Resource"]
    assert {"Fn::Sub": "${ImageBucket.Arn}/*"} in deny[0]["Resource"]


def test_outputs_give_base_url_table_bucket_and_secret(template):
    outputs = template["Outputs"]
    assert outputs["ApiBaseUrl"]["Value"] == {
        "Fn::Sub": "https://${ImagesApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/prod/v1"
    }
    assert outputs["TableName"]["Value"] == {"Ref": "GatewayTable"}
    assert outputs["ImageBucketName"]["Condition"] == "StorageEnabled"
    assert outputs["ImageBucketName"]["Value"] == {"Ref": "ImageBucket"}
    assert "UpstreamApiKeySecretId" in outputs


def test_every_parameter_the_brief_names_exists_with_its_default(template):
    params = template["Parameters"]
    expected_defaults = {
        "UpstreamBaseUrl": "https://api.openai.com/v1",
        "UpstreamApiKeySecretArn": "",
        "ImageStorage": "Enabled",
        "ImageRetentionDays": 1,
        "ImageUrlTtlSeconds": 3600,
        "RequestTimeoutSeconds": 29,
        "PriceMultiplier": "1",
        "RecordRetentionDays": 400,
        "LogRetentionDays": 30,
        "LogLevel": "INFO",
    }
    for name, default in expected_defaults.items():
        assert params[name]["Default"] == default, name
        assert params[name].get("Description"), f"{name} has no description"


# --------------------------------------------------------------------------- samconfig


def test_samconfig_names_the_stack_and_deploys_with_iam_capability():
    config = tomllib.loads((REPO_ROOT / "samconfig.toml").read_text(encoding="utf-8"))
    assert config["version"] == 0.1
    default = config["default"]
    assert default["global"]["parameters"]["stack_name"] == "image-gateway"
    assert default["build"]["parameters"]["cached"] is True
    assert default["build"]["parameters"]["parallel"] is True
    assert default["validate"]["parameters"]["lint"] is True
    deploy = default["deploy"]["parameters"]
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["confirm_changeset"] is True and deploy["resolve_s3"] is True
    assert deploy["region"]
    # every overridden parameter exists in the template
    template = load_template()
    for section in ("deploy", "local_invoke"):
        overrides = default[section]["parameters"].get("parameter_overrides", "")
        for pair in overrides.split():
            assert pair.split("=", 1)[0] in template["Parameters"], f"{section}: {pair}"


# --------------------------------------------------------------------------- events/


def test_the_sample_events_exist():
    assert {p.name for p in EVENT_FILES} >= {
        "generations_b64.json",
        "generations_url.json",
        "generations_invalid_size.json",
        "models_list.json",
        "model_retrieve.json",
        "pricing.json",
        "usage.json",
        "billing_subscription.json",
        "billing_usage.json",
    }


def test_every_get_route_has_a_sample_event(template):
    sampled = {(load_event(p)["httpMethod"], load_event(p)["resource"]) for p in EVENT_FILES}
    for (method, path), fn_name in template_routes(template).items():
        if path.startswith("/v1/"):
            assert (method, path) in sampled, f"no sample event for {method} {path} ({fn_name})"


@pytest.mark.parametrize("path", EVENT_FILES, ids=lambda p: p.name)
def test_each_event_is_a_rest_proxy_event_routed_to_an_existing_route(path, template):
    event = load_event(path)
    assert "version" not in event and "routeKey" not in event, "that is an HTTP API (v2) event"
    for key in (
        "resource",
        "path",
        "httpMethod",
        "headers",
        "multiValueHeaders",
        "queryStringParameters",
        "multiValueQueryStringParameters",
        "pathParameters",
        "stageVariables",
        "requestContext",
        "body",
        "isBase64Encoded",
    ):
        assert key in event, f"missing {key}"
    route = (event["httpMethod"], event["resource"])
    assert route in template_routes(template), f"{route} is not a route of the template"
    # the path is the resource with its {parameters} filled in from pathParameters
    parameters = event["pathParameters"] or {}
    assert set(parameters) == set(re.findall(r"\{([^}]+)\}", event["resource"]))
    assert event["path"] == re.sub(r"\{([^}]+)\}", lambda m: parameters[m.group(1)], event["resource"])
    query = event["queryStringParameters"]
    assert event["multiValueQueryStringParameters"] == ({k: [v] for k, v in query.items()} if query else None)

    context = event["requestContext"]
    assert context["resourcePath"] == event["resource"]
    assert context["httpMethod"] == event["httpMethod"]
    assert context["stage"] == "prod"
    assert context["path"] == "/prod" + event["path"]
    assert context["requestId"]
    assert context["domainName"] == event["headers"]["Host"]
    assert context["domainName"].startswith(context["apiId"] + ".execute-api.")

    assert event["multiValueHeaders"] == {name: [value] for name, value in event["headers"].items()}
    assert event["headers"]["Authorization"].startswith("Bearer sk-img-")
    if event["httpMethod"] == "POST":
        content_type = event["headers"]["Content-Type"]
        # API Gateway base64-encodes exactly the bodies whose type is a binary media type.
        assert event["isBase64Encoded"] is content_type.startswith("multipart/form-data")
        if event["isBase64Encoded"]:
            body = base64.b64decode(event["body"])
            assert b'name="image"' in body
        else:
            assert content_type == "application/json"
            body = event["body"].encode("utf-8")
            assert isinstance(json.loads(body), dict)
        assert int(event["headers"]["Content-Length"]) == len(body)
    else:
        assert event["isBase64Encoded"] is False
        assert event["body"] is None


def test_b64_event_sends_the_seed_quickstart_body():
    event = load_event(EVENTS_DIR / "generations_b64.json")
    assert json.loads(event["body"]) == SEED_QUICKSTART_BODY


def test_url_event_asks_for_a_low_quality_url():
    body = json.loads(load_event(EVENTS_DIR / "generations_url.json")["body"])
    assert body["model"] == "gpt-image-2"
    assert body["quality"] == "low"
    assert body["response_format"] == "url"
    assert body["size"] == "1024x1024"


def test_invalid_size_event_sends_a_size_gpt_image_2_rejects():
    body = json.loads(load_event(EVENTS_DIR / "generations_invalid_size.json")["body"])
    assert body["size"] == "1000x1000"  # 1000 is not a multiple of 16


def test_models_event_lists_models():
    event = load_event(EVENTS_DIR / "models_list.json")
    assert (event["httpMethod"], event["resource"]) == ("GET", "/v1/models")


def test_billing_events_ask_for_a_model_and_date_ranges():
    retrieve = load_event(EVENTS_DIR / "model_retrieve.json")
    assert (retrieve["resource"], retrieve["pathParameters"]) == ("/v1/models/{model}", {"model": "gpt-image-2"})
    for name in ("usage.json", "billing_usage.json"):
        query = load_event(EVENTS_DIR / name)["queryStringParameters"]
        assert set(query) == {"start_date", "end_date"}
        assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", value) for value in query.values())
