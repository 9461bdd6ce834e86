"""GET /v1/models: the models this token may use, in OpenAI's list shape."""
from __future__ import annotations

from common.apigw import Request, json_response
from common.catalog import get_catalog
from common.schemas import ModelList, ModelObject
from common.tokens import authenticate


def list_models(request: Request) -> dict:
    token = authenticate(request.header("authorization"))
    catalog = get_catalog()
    allowed = token.allowed_models
    models = [
        ModelObject(id=model_id, created=spec.created)
        for model_id, spec in catalog.models.items()
        if allowed is None or model_id in allowed
    ]
    return json_response(200, ModelList(data=models).model_dump(), request.request_id)
