"""GET /v1/models and GET /v1/models/{model}: the models this token may use, in OpenAI's shapes."""
from __future__ import annotations

from common.apigw import Request, json_response
from common.catalog import get_catalog
from common.errors import ApiError
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


def retrieve_model(request: Request) -> dict:
    """One model (the SDK's `client.models.retrieve(id)`); 404 when unknown or not allowed."""
    token = authenticate(request.header("authorization"))
    model_id = request.path_params.get("model", "")
    spec = get_catalog().models.get(model_id)
    if spec is None or (token.allowed_models is not None and model_id not in token.allowed_models):
        # The same answer for both: a token must not learn which models exist beyond its own.
        raise ApiError(404, f"The model '{model_id}' does not exist or you do not have access to it.",
                       param="model", code="model_not_found")
    return json_response(200, ModelObject(id=model_id, created=spec.created).model_dump(), request.request_id)
