"""The gateway's own OpenAPI document, built from the pydantic models that validate requests.

Served at GET /v1/openapi.json (its own small function) and published as `docs/openapi.json`
(`make openapi` writes it; a test keeps the two equal), so customers and tools read the same
rules the gateway enforces: a field added to a request model shows up here with no second copy.
"""
from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import models_json_schema

from common.images.inputs import MAX_INPUT_BYTES
from common.images.schemas import EditRequest, GenerationRequest, ImagesResponse, ModelList, ModelObject, \
    MultipartEditFields
from common.images.uploads import MAX_FILE_BYTES, MAX_IMAGES
from common.web.apigw import Request, Response, json_response

TITLE = "Image gateway API"
VERSION = "1"


class ErrorDetail(BaseModel):
    model_config = ConfigDict(defer_build=True)
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """Every non-2xx answer: the shape the official SDKs parse into their error classes."""

    model_config = ConfigDict(defer_build=True)
    error: ErrorDetail


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _multipart_edit(schemas: dict[str, Any]) -> dict[str, Any]:
    """The multipart form of an edit: the same fields as text parts, plus the files."""
    fields = schemas["MultipartEditFields"]
    binary = {"type": "string", "format": "binary", "contentMediaType": "image/png"}
    files = {
        "image": {"description": f"One to {MAX_IMAGES} PNG, JPEG or WebP files (repeat the part, or name it "
                                 f"image[]), each at most {MAX_FILE_BYTES // 2**20} MB.",
                  "type": "array", "items": binary, "minItems": 1, "maxItems": MAX_IMAGES},
        "mask": {**binary, "description": "A PNG with the first image's dimensions; transparent areas are edited."},
    }
    return {**fields, "properties": {**files, **fields["properties"]}, "required": ["image", *fields["required"]]}


def _operation(summary: str, responses: dict[str, Any], *, request: dict[str, Any] | None = None,
               parameters: list[dict[str, Any]] | None = None, secured: bool = True) -> dict[str, Any]:
    errors = {str(status): {"description": text, "content": {"application/json": {"schema": _ref("ErrorResponse")}}}
              for status, text in ((400, "Invalid request: `param` names the field"),
                                   (401, "Missing, unknown, revoked or expired token"),
                                   (429, "Insufficient balance, or rate limited"), (500, "Gateway error"))}
    operation: dict[str, Any] = {"summary": summary, "responses": {**responses, **(errors if secured else {})}}
    if request is not None:
        operation["requestBody"] = {"required": True, "content": request}
    if parameters:
        operation["parameters"] = parameters
    if not secured:
        operation["security"] = []
    return operation


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _date(name: str, text: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": text,
            "schema": {"type": "string", "format": "date"}}


@cache
def openapi_document() -> dict[str, Any]:
    models = (GenerationRequest, EditRequest, MultipartEditFields, ImagesResponse, ModelList, ModelObject,
              ErrorResponse)
    _, top = models_json_schema([(m, "validation") for m in models], ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = top["$defs"]
    images = {
        "200": {"description": "The images (base64 by default, presigned URLs with response_format=url). "
                               "Headers x-gateway-cost-usd and x-gateway-balance-usd carry the charge.",
                "content": {"application/json": {"schema": _ref("ImagesResponse")},
                            "text/event-stream": {"schema": {"type": "string"},
                                                  "description": "With stream=true: OpenAI's image events."}}},
    }
    ranged = [_date("start_date", "First day (UTC), YYYY-MM-DD"), _date("end_date", "Last day (UTC), YYYY-MM-DD")]
    account = {"type": "object", "additionalProperties": True}
    paths = {
        "/v1/images/generations": {"post": _operation(
            "Create images from a prompt", images,
            request={"application/json": {"schema": _ref("GenerationRequest")}})},
        "/v1/images/edits": {"post": _operation(
            "Edit images: JSON with images[].image_url (https or data URLs up to "
            f"{MAX_INPUT_BYTES // 2**20} MB each), or multipart uploads", images,
            request={"application/json": {"schema": _ref("EditRequest")},
                     "multipart/form-data": {"schema": _multipart_edit(schemas)}})},
        "/v1/models": {"get": _operation("The models this token may use", {"200": _json(_ref("ModelList"), "Models")})},
        "/v1/models/{model}": {"get": _operation(
            "One model", {"200": _json(_ref("ModelObject"), "The model"),
                          "404": _json(_ref("ErrorResponse"), "No such model for this token")},
            parameters=[{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}])},
        "/v1/pricing": {"get": _operation("This token's prices per model (USD)", {"200": _json(account, "Prices")})},
        "/v1/usage": {"get": _operation("Daily usage per model, both dates inclusive",
                                        {"200": _json(account, "Usage")}, parameters=ranged)},
        "/v1/dashboard/billing/subscription": {"get": _operation(
            "OpenAI's legacy subscription shape for a prepaid token", {"200": _json(account, "Subscription")})},
        "/v1/dashboard/billing/usage": {"get": _operation(
            "OpenAI's legacy usage shape (cents; end_date exclusive)", {"200": _json(account, "Usage")},
            parameters=ranged)},
        "/v1/openapi.json": {"get": _operation("This document", {"200": _json({"type": "object"}, "OpenAPI 3.1")},
                                               secured=False)},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": VERSION,
                 "description": "OpenAI-compatible image generation and editing, billed per token."},
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "A platform token (sk-img-...)"}}},
    }


def serve_openapi(request: Request, deps: object) -> Response:
    """GET /v1/openapi.json: the document, with this deployment's base URL as its server."""
    document = {**openapi_document(), "servers": [{"url": request.base_url}]}
    return json_response(200, document, request.request_id, {"Cache-Control": "public, max-age=300"})


if __name__ == "__main__":  # make openapi
    import json

    print(json.dumps(openapi_document(), indent=2, ensure_ascii=False))
