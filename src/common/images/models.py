"""GET /v1/models and GET /v1/models/{model}: the models this token may use, in OpenAI's shapes."""
from __future__ import annotations

from common.errors import ApiError
from common.images.schemas import ModelList, ModelObject
from common.web.apigw import Request, Response, json_response
from common.wiring import Container


def list_models(request: Request, deps: Container) -> Response:
    token = deps.tokens.authenticate(request.header("authorization"))
    models = [ModelObject(id=model_id, created=spec.created)
              for model_id, spec in deps.catalog.models.items() if token.may_use(model_id)]
    return json_response(200, ModelList(data=models).model_dump(), request.request_id)


def retrieve_model(request: Request, deps: Container) -> Response:
    """One model (the SDK's `client.models.retrieve(id)`); 404 when unknown or not allowed."""
    token = deps.tokens.authenticate(request.header("authorization"))
    model_id = request.path_params.get("model", "")
    spec = deps.catalog.get(model_id)
    if spec is None or not token.may_use(model_id):
        # The same answer for both: a token must not learn which models exist beyond its own.
        raise ApiError(404, f"The model '{model_id}' does not exist or you do not have access to it.",
                       param="model", code="model_not_found")
    return json_response(200, ModelObject(id=model_id, created=spec.created).model_dump(), request.request_id)
