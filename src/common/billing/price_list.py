"""GET /v1/pricing: what this token pays, per model it may use.

Rates are the catalog's USD per 1M tokens times the token's effective multiplier (the deployment's
PRICE_MULTIPLIER times the token's own), which is exactly what a request is charged with. The
per-image estimates are the platform's display table (output tokens only) at the same rates:
`per_image_estimates` rounded to 3 decimals as shown on a price page, `per_image_estimates_exact`
unrounded for anyone who computes with them.
"""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from common.billing.catalog import ModelSpec
from common.billing.pricing import KINDS, effective_multiplier, estimate_per_image
from common.web.apigw import Request, Response, json_response
from common.wiring import Container

ESTIMATE_SIZES = ("1024x1024", "1024x1536", "1536x1024")
ESTIMATE_QUALITIES = ("low", "medium", "high")
DISPLAY_STEP = Decimal("0.001")


def price_list(request: Request, deps: Container) -> Response:
    token = deps.tokens.authenticate(request.header("authorization"))
    multiplier = effective_multiplier(deps.settings.price_multiplier, token.price_multiplier)
    data = [model_prices(spec, multiplier) for model_id, spec in deps.catalog.models.items() if token.may_use(model_id)]
    payload = {"object": "pricing", "currency": "usd", "multiplier": multiplier, "data": data}
    return json_response(200, payload, request.request_id)


def model_prices(spec: ModelSpec, multiplier: Decimal) -> dict[str, Any]:
    exact = {
        size: {quality: estimate_per_image(spec, size, quality, multiplier) for quality in ESTIMATE_QUALITIES}
        for size in ESTIMATE_SIZES
    }
    return {
        "model": spec.id,
        "per_million_tokens": {kind: getattr(spec.rates, kind) * multiplier for kind in KINDS},
        "per_image_estimates": {
            size: {quality: value.quantize(DISPLAY_STEP, rounding=ROUND_HALF_UP) for quality, value in row.items()}
            for size, row in exact.items()
        },
        "per_image_estimates_exact": exact,
    }
