"""What the local stack needs from template.yaml, read from the template itself.

The deployed stack is defined once, in template.yaml; the local stack derives its routes, limits,
gateway responses, table schema and environment from it rather than repeating them, so a change
to the template shows up in `make run` without touching this package.

CloudFormation's short tags (!Ref, !Sub, !If ...) are loaded as their long forms ({"Ref": x},
{"Fn::Sub": y}) and `Template.resolve` evaluates the subset of intrinsic functions a template
like ours uses, with parameter defaults (or overrides) and the local stack's physical names.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# API Gateway's default (and, for REST APIs, maximum without a quota increase) integration timeout.
DEFAULT_INTEGRATION_TIMEOUT_MS = 29_000
# Lambda's defaults when a function says nothing.
DEFAULT_FUNCTION_TIMEOUT_S = 3
DEFAULT_MEMORY_MB = 128

PSEUDO_PARAMETERS = {
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "image-gateway-local",
    "AWS::StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/image-gateway-local/local",
    "AWS::NotificationARNs": [],
}


class TemplateError(Exception):
    """The template says something the local stack cannot (or does not yet) emulate."""


class _NoValue:
    """AWS::NoValue: removes the list item or property that resolves to it."""


NO_VALUE = _NoValue()


# --- loading ---------------------------------------------------------------------------------

class CfnLoader(yaml.SafeLoader):
    """A safe YAML loader that knows CloudFormation's short-form intrinsic tags."""


def _construct_intrinsic(loader: yaml.Loader, suffix: str, node: yaml.Node) -> dict:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        # !GetAtt Resource.Attribute (the attribute may itself contain dots)
        resource, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [resource, attribute]}
    return {f"Fn::{suffix}": value}


CfnLoader.add_multi_constructor("!", _construct_intrinsic)
# CloudFormation has no YAML timestamps: AWSTemplateFormatVersion 2010-09-09 is a string.
CfnLoader.add_constructor("tag:yaml.org,2002:timestamp", CfnLoader.construct_yaml_str)


def load(path: str | Path) -> dict:
    with open(path, encoding="utf-8") as stream:
        document = yaml.load(stream, Loader=CfnLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(document, dict) or "Resources" not in document:
        raise TemplateError(f"{path}: not a CloudFormation template (no Resources)")
    return document


# --- what the local stack extracts -----------------------------------------------------------

@dataclass(frozen=True)
class Route:
    method: str  # upper case; ANY matches every method
    path: str  # the template path, e.g. /v1/models/{id}
    function: str  # logical id
    handler: str  # module.function, e.g. handlers.generations.handler
    code_uri: Path  # absolute directory that goes on sys.path
    timeout_s: float  # the function's Timeout
    memory_mb: int
    integration_timeout_ms: int
    streaming: bool = False  # ResponseTransferMode: RESPONSE_STREAM (API Gateway response streaming)


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    handler: str  # module.function
    code_uri: Path  # absolute directory that goes on sys.path
    timeout_s: float
    memory_mb: int


@dataclass(frozen=True)
class GatewayResponse:
    status: int | None  # None: the response type's own default
    headers: dict[str, str]  # header name -> mapping expression ('literal' or context.x)
    templates: dict[str, str]  # content type -> body template


@dataclass(frozen=True)
class ApiSpec:
    logical_id: str
    stage: str
    binary_media_types: tuple[str, ...]
    gateway_responses: dict[str, GatewayResponse]
    routes: tuple[Route, ...]


@dataclass(frozen=True)
class TableSpec:
    logical_id: str
    key_schema: list[dict]
    attribute_definitions: list[dict]
    billing_mode: str
    global_secondary_indexes: list[dict] = field(default_factory=list)
    local_secondary_indexes: list[dict] = field(default_factory=list)
    provisioned_throughput: dict | None = None
    ttl_attribute: str | None = None


class Template:
    """template.yaml plus the values its parameters take locally."""

    def __init__(self, path: str | Path, parameters: dict[str, str] | None = None):
        self.path = Path(path).resolve()
        self.root = self.path.parent
        self.document = load(self.path)
        self.resources: dict[str, dict] = self.document.get("Resources") or {}
        self.globals: dict = self.document.get("Globals") or {}
        declared = self.document.get("Parameters") or {}
        unknown = set(parameters or {}) - set(declared)
        if unknown:
            raise TemplateError(f"parameter overrides for undeclared parameters: {sorted(unknown)}")
        self.parameters: dict[str, Any] = {}
        for name, spec in declared.items():
            if parameters and name in parameters:
                self.parameters[name] = str(parameters[name])
            elif "Default" in spec:
                default = spec["Default"]
                # CloudFormation hands every scalar parameter over as a string.
                self.parameters[name] = default if isinstance(default, list) else str(default)

    # -- intrinsic functions --

    def resolve(self, value: Any, refs: dict[str, Any] | None = None,
                attributes: dict[tuple[str, str], Any] | None = None) -> Any:
        """Evaluate intrinsic functions. `refs`/`attributes` give resources their local values;
        a reference to anything else raises TemplateError, which is the point: the local stack
        must not silently invent a value the template expects AWS to provide."""
        return _Resolver(self, refs or {}, attributes or {}).value(value)

    def condition(self, name: str) -> bool:
        return _Resolver(self, {}, {}).condition(name)

    def active(self, logical_id: str) -> bool:
        """Whether the resource exists under the current parameters (its Condition holds)."""
        resource = self.resources.get(logical_id)
        if resource is None:
            return False
        condition = resource.get("Condition")
        return condition is None or self.condition(condition)

    def of_type(self, resource_type: str) -> dict[str, dict]:
        return {
            logical_id: resource for logical_id, resource in self.resources.items()
            if resource.get("Type") == resource_type and self.active(logical_id)
        }

    # -- functions and routes --

    def _function_property(self, properties: dict, name: str, default: Any = None) -> Any:
        if name in properties:
            return properties[name]
        return (self.globals.get("Function") or {}).get(name, default)

    def _api_properties(self, logical_id: str) -> dict:
        # SAM merges Globals.Api into every AWS::Serverless::Api (and the implicit one).
        merged = dict(self.globals.get("Api") or {})
        merged.update((self.resources.get(logical_id) or {}).get("Properties") or {})
        return merged

    def function(self, function_id: str) -> FunctionSpec:
        """One AWS::Serverless::Function as the local stack runs it: handler, code, limits."""
        function = self.of_type("AWS::Serverless::Function").get(function_id)
        if function is None:
            known = ", ".join(sorted(self.of_type("AWS::Serverless::Function")))
            raise TemplateError(f"no function {function_id} in the template (it has {known})")
        properties = function.get("Properties") or {}
        handler = self.resolve(self._function_property(properties, "Handler"))
        code_uri = self.resolve(self._function_property(properties, "CodeUri", "."))
        if not isinstance(handler, str) or not isinstance(code_uri, str):
            raise TemplateError(f"{function_id}: Handler and CodeUri must be strings (local code)")
        return FunctionSpec(
            logical_id=function_id, handler=handler, code_uri=(self.root / code_uri).resolve(),
            timeout_s=float(self.resolve(self._function_property(properties, "Timeout", DEFAULT_FUNCTION_TIMEOUT_S))),
            memory_mb=int(self.resolve(self._function_property(properties, "MemorySize", DEFAULT_MEMORY_MB))))

    @property
    def api(self) -> ApiSpec:
        routes: list[Route] = []
        api_ids: set[str] = set()
        for function_id, function in self.of_type("AWS::Serverless::Function").items():
            properties = function.get("Properties") or {}
            events = {
                name: event for name, event in (properties.get("Events") or {}).items()
                if event.get("Type") == "Api"
            }
            if not events:
                continue
            spec = self.function(function_id)
            handler, timeout, memory = spec.handler, spec.timeout_s, spec.memory_mb
            for event_name, event in events.items():
                event_properties = event.get("Properties") or {}
                rest_api = event_properties.get("RestApiId")
                # Without RestApiId SAM puts the route on its implicit API.
                api_ids.add(rest_api["Ref"] if isinstance(rest_api, dict) and "Ref" in rest_api
                            else "ServerlessRestApi")
                method = str(self.resolve(event_properties.get("Method", "any"))).upper()
                path = self.resolve(event_properties.get("Path"))
                if not isinstance(path, str) or not path.startswith("/"):
                    raise TemplateError(f"{function_id}.Events.{event_name}: Path must start with /")
                timeout_ms = event_properties.get("TimeoutInMillis")
                # SAM honours exactly this literal; anything else (even a !Ref to it) deploys buffered.
                streaming = event_properties.get("ResponseTransferMode") == "RESPONSE_STREAM"
                routes.append(Route(
                    method="ANY" if method == "ANY" else method,
                    path=path,
                    function=function_id,
                    handler=handler,
                    code_uri=spec.code_uri,
                    timeout_s=timeout,
                    memory_mb=memory,
                    integration_timeout_ms=(int(self.resolve(timeout_ms)) if timeout_ms is not None
                                            else DEFAULT_INTEGRATION_TIMEOUT_MS),
                    streaming=streaming,
                ))
        if not routes:
            raise TemplateError("no AWS::Serverless::Function has an Api event: nothing to serve")
        if len(api_ids) > 1:
            raise TemplateError(f"routes spread over several APIs {sorted(api_ids)}; "
                                "the local stack serves one")
        (api_id,) = api_ids
        properties = self._api_properties(api_id)
        # The implicit API's stage is "Prod"; an explicit one must name its StageName.
        stage = str(self.resolve(properties.get("StageName", "Prod")))
        binary = tuple(str(t).replace("~1", "/")
                       for t in (self.resolve(properties.get("BinaryMediaTypes")) or []))
        seen: set[tuple[str, str]] = set()
        for route in routes:
            if (route.method, route.path) in seen:
                raise TemplateError(f"duplicate route {route.method} {route.path}")
            seen.add((route.method, route.path))
        return ApiSpec(api_id, stage, binary, self._gateway_responses(api_id, properties),
                       tuple(routes))

    def _gateway_responses(self, api_id: str, properties: dict) -> dict[str, GatewayResponse]:
        responses: dict[str, GatewayResponse] = {}
        # 1. OpenAPI extension in a DefinitionBody
        body = properties.get("DefinitionBody") or {}
        for kind, spec in (body.get("x-amazon-apigateway-gateway-responses") or {}).items():
            responses[kind] = _gateway_response(
                spec.get("statusCode"),
                _strip_header_prefix(spec.get("responseParameters") or {}),
                spec.get("responseTemplates") or {}, self)
        # 2. SAM's GatewayResponses property
        for kind, spec in (properties.get("GatewayResponses") or {}).items():
            headers = ((spec.get("ResponseParameters") or {}).get("Headers")) or {}
            responses[kind] = _gateway_response(spec.get("StatusCode"), headers,
                                                spec.get("ResponseTemplates") or {}, self)
        # 3. AWS::ApiGateway::GatewayResponse resources attached to this API
        for resource in self.of_type("AWS::ApiGateway::GatewayResponse").values():
            spec = resource.get("Properties") or {}
            if spec.get("RestApiId") != {"Ref": api_id}:
                continue
            responses[str(self.resolve(spec["ResponseType"]))] = _gateway_response(
                spec.get("StatusCode"), _strip_header_prefix(spec.get("ResponseParameters") or {}),
                spec.get("ResponseTemplates") or {}, self)
        return responses

    # -- data stores --

    def table(self, logical_id: str = "GatewayTable") -> TableSpec | None:
        if not self.active(logical_id):
            return None
        properties = self.resolve((self.resources[logical_id].get("Properties") or {}))
        ttl = properties.get("TimeToLiveSpecification") or {}
        return TableSpec(
            logical_id=logical_id,
            key_schema=properties["KeySchema"],
            attribute_definitions=properties["AttributeDefinitions"],
            billing_mode=properties.get("BillingMode", "PROVISIONED"),
            global_secondary_indexes=properties.get("GlobalSecondaryIndexes") or [],
            local_secondary_indexes=properties.get("LocalSecondaryIndexes") or [],
            provisioned_throughput=properties.get("ProvisionedThroughput"),
            ttl_attribute=ttl.get("AttributeName") if str(ttl.get("Enabled")).lower() == "true" else None,
        )

    # -- environment --

    def environment(self) -> dict[str, Any]:
        """Environment variable name -> unresolved expression, over Globals and every function.

        All functions share one process locally, so one name must mean one thing everywhere."""
        merged: dict[str, Any] = {}
        sources = [((self.globals.get("Function") or {}).get("Environment") or {}).get("Variables") or {}]
        for function in self.of_type("AWS::Serverless::Function").values():
            sources.append((((function.get("Properties") or {}).get("Environment") or {})
                            .get("Variables")) or {})
        for variables in sources:
            for name, expression in variables.items():
                if name in merged and merged[name] != expression:
                    raise TemplateError(f"environment variable {name} differs between functions; "
                                        "the local stack runs every function in one process")
                merged[name] = expression
        return merged


def _strip_header_prefix(parameters: dict) -> dict[str, str]:
    prefix = "gatewayresponse.header."
    return {k[len(prefix):]: v for k, v in parameters.items() if k.startswith(prefix)}


def _gateway_response(status: Any, headers: dict, templates: dict, template: Template) -> GatewayResponse:
    status = template.resolve(status)
    return GatewayResponse(
        status=int(status) if status not in (None, "") else None,
        headers={str(k): str(template.resolve(v)) for k, v in headers.items()},
        templates={str(k): str(template.resolve(v)) for k, v in templates.items()},
    )


_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


class _Resolver:
    def __init__(self, template: Template, refs: dict[str, Any], attributes: dict[tuple[str, str], Any]):
        self.template = template
        self.refs = refs
        self.attributes = attributes

    def value(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.value(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, argument), = value.items()
            if key == "Ref":
                return self.ref(argument)
            if key == "Condition" and isinstance(argument, str):
                return self.condition(argument)
            if key.startswith("Fn::"):
                return self.function(key[4:], argument)
        resolved = {k: self.value(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in PSEUDO_PARAMETERS:
            return PSEUDO_PARAMETERS[name]
        if name in self.template.parameters:
            return self.template.parameters[name]
        if name in self.refs:
            return self.refs[name]
        if name in self.template.resources:
            raise TemplateError(f"the local stack has no local value for !Ref {name}")
        raise TemplateError(f"!Ref {name}: no such parameter or resource (or no default)")

    def get_att(self, resource: str, attribute: str) -> Any:
        if (resource, attribute) in self.attributes:
            return self.attributes[(resource, attribute)]
        raise TemplateError(f"the local stack has no local value for !GetAtt {resource}.{attribute}")

    def condition(self, name: str) -> bool:
        conditions = self.template.document.get("Conditions") or {}
        if name not in conditions:
            raise TemplateError(f"unknown condition {name}")
        return bool(self.value(conditions[name]))

    def function(self, name: str, argument: Any) -> Any:
        if name == "If":
            condition, if_true, if_false = argument
            # Only the chosen branch is evaluated, as in CloudFormation: the other one may refer
            # to a resource that does not exist under these parameters.
            return self.value(if_true if self.condition(condition) else if_false)
        if name == "Equals":
            left, right = (self.value(a) for a in argument)
            return str(left) == str(right) if not isinstance(left, (list, dict)) else left == right
        if name == "Not":
            return not self.value(argument[0])
        if name == "And":
            return all(self.value(a) for a in argument)
        if name == "Or":
            return any(self.value(a) for a in argument)
        if name == "Sub":
            return self.sub(argument)
        if name == "Join":
            delimiter, items = argument
            return str(delimiter).join(str(i) for i in self.value(items))
        if name == "Select":
            index, items = argument
            return self.value(items)[int(self.value(index))]
        if name == "Split":
            delimiter, text = argument
            return str(self.value(text)).split(delimiter)
        if name == "GetAtt":
            resource, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
            return self.get_att(resource, self.value(attribute))
        if name == "FindInMap":
            mapping, first, second = (self.value(a) for a in argument[:3])
            try:
                return self.template.document["Mappings"][mapping][first][second]
            except KeyError as missing:
                raise TemplateError(f"!FindInMap {mapping}/{first}/{second}: {missing} not found") from None
        if name == "GetAZs":
            region = self.value(argument) or PSEUDO_PARAMETERS["AWS::Region"]
            return [f"{region}{zone}" for zone in "abcdef"]
        if name == "Base64":
            import base64
            return base64.b64encode(str(self.value(argument)).encode()).decode()
        raise TemplateError(f"Fn::{name} is not supported by the local stack")

    def sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        variables = {k: self.value(v) for k, v in variables.items()}

        def replace(match: re.Match) -> str:
            name = match.group(1)
            if name.startswith("!"):  # ${!Literal} is the escape for a literal ${Literal}
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                return str(self.get_att(*name.split(".", 1)))
            return str(self.ref(name))

        return _SUB_VARIABLE.sub(replace, text)
