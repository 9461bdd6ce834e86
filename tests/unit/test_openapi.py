"""The OpenAPI document: generated from the request models, published, and readable by tools."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.images.schemas import EditRequest, GenerationRequest, MultipartEditFields
from common.web.openapi import openapi_document

PUBLISHED = Path(__file__).parents[2] / "docs" / "openapi.json"


def test_the_published_document_is_exactly_what_the_models_generate():
    # `make openapi` rewrites it; this fails while the committed copy is stale.
    assert json.loads(PUBLISHED.read_text()) == json.loads(json.dumps(openapi_document()))


@pytest.mark.parametrize("model", [GenerationRequest, EditRequest, MultipartEditFields])
def test_every_field_the_gateway_validates_is_described_with_its_rules(model):
    schema = openapi_document()["components"]["schemas"][model.__name__]
    assert set(model.model_fields) <= set(schema["properties"])
    assert set(schema["required"]) == {name for name, field in model.model_fields.items() if field.is_required()}


def test_the_document_says_what_is_refused():
    props = openapi_document()["components"]["schemas"]["GenerationRequest"]["properties"]
    assert props["n"]["anyOf"][0] == {"type": "integer", "minimum": 1, "maximum": 10}
    assert props["prompt"]["maxLength"] == 32_000
    assert props["user"] == {"title": "User", "type": "string"}  # not nullable
    assert "3840" in props["size"]["description"]


def test_multipart_edits_list_the_files_and_the_same_text_fields_as_json():
    edit = openapi_document()["paths"]["/v1/images/edits"]["post"]["requestBody"]["content"]
    form = edit["multipart/form-data"]["schema"]
    assert {"image", "mask"} <= set(form["properties"]) and set(form["required"]) == {"image", "prompt"}
    assert set(MultipartEditFields.model_fields) <= set(form["properties"])
    assert edit["application/json"]["schema"] == {"$ref": "#/components/schemas/EditRequest"}


def test_every_route_but_the_document_itself_needs_a_bearer_token():
    document = openapi_document()
    assert document["security"] == [{"bearer": []}]
    open_routes = {path for path, ops in document["paths"].items() for op in ops.values() if op.get("security") == []}
    assert open_routes == {"/v1/openapi.json"}


def test_a_schema_aware_tool_loads_the_document_and_finds_every_operation():
    import schemathesis

    schema = schemathesis.openapi.from_dict(openapi_document())
    operations = {(op.ok().method.upper(), op.ok().path) for op in schema.get_all_operations()}
    assert ("POST", "/v1/images/generations") in operations and ("POST", "/v1/images/edits") in operations
    assert len(operations) == sum(len(ops) for ops in openapi_document()["paths"].values())
