"""POST /v1/images/generations: authenticate, validate into a Plan, then the metered flow."""
from __future__ import annotations

from typing import TYPE_CHECKING

from common.images.flow import run
from common.images.plan import plan_request
from common.images.schemas import GenerationRequest
from common.images.validation import json_body, parse_model
from common.web.apigw import Request, Response

if TYPE_CHECKING:
    from common.images.flow import ImageDeps


def generate_images(request: Request, deps: ImageDeps) -> Response:
    token = deps.tokens.authenticate(request.header("authorization"), cached=True)
    body = json_body(request)
    plan = plan_request("generations", parse_model(GenerationRequest, body), body, token, catalog=deps.catalog,
                        price_multiplier=deps.settings.price_multiplier, default_model=deps.settings.default_model)
    return run(plan, request, deps)
