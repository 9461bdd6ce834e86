"""A validated image request as an immutable plan: the model, the options, the most it may cost,
and exactly what to send upstream.

`plan_request` is where the checks across fields and against the model happen (after pydantic
has checked each field): a request that passes it can be reserved for and sent.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from common.billing.catalog import Catalog, ModelSpec
from common.billing.pricing import effective_multiplier, reservation_for_generation
from common.billing.records import TokenRecord
from common.images.schemas import ImageOptions
from common.images.validation import check_options, resolve_model
from common.upstream.openai_images import ImageCall, UploadedFile

# Parameters that drive cost, kept with every request record.
COST_PARAMS = ("size", "quality", "n", "output_format", "background", "response_format", "stream",
               "partial_images", "input_fidelity")


@dataclass(frozen=True)
class Reference:
    """An input image of a JSON edit by reference, kept for the multipart fallback."""

    param: str  # where it came from, for errors: images[0].image_url, mask.image_url
    field: str  # "image" or "mask"
    url: str | None  # None: a file_id reference, which cannot be downloaded


@dataclass(frozen=True)
class Plan:
    endpoint: str  # "generations" or "edits"
    token: TokenRecord
    spec: ModelSpec
    options: ImageOptions
    multiplier: Decimal  # the token's prices: the platform's multiplier times its own
    reservation: Decimal  # the most it may cost, taken from the balance before the upstream is called
    call: ImageCall  # what is sent first
    references: tuple[Reference, ...] = ()  # a JSON edit's images, should the upstream refuse the JSON form
    input_images: int = 0

    @property
    def want_url(self) -> bool:
        return self.options.response_format == "url"

    @property
    def params(self) -> dict[str, Any]:
        """The cost-driving parameters as received, for the request record."""
        params = {k: self.call.fields[k] for k in COST_PARAMS if self.call.fields.get(k) is not None}
        return {**params, "input_images": self.input_images} if self.input_images else params


def plan_request(endpoint: str, options: ImageOptions, fields: Mapping[str, Any], token: TokenRecord, *,
                 catalog: Catalog, price_multiplier: Decimal, default_model: str, input_images: int = 0,
                 files: tuple[UploadedFile, ...] | None = None, references: tuple[Reference, ...] = ()) -> Plan:
    """The model this token may use, the checks across fields, and the reservation at its prices.
    `fields` are what the customer sent (unknown ones are forwarded), with the model resolved."""
    spec = resolve_model(options.model, catalog, default_model, token.allowed_models)
    check_options(options, spec)
    multiplier = effective_multiplier(price_multiplier, token.price_multiplier)
    reservation = reservation_for_generation(
        spec, catalog, prompt=options.prompt, n=options.n or 1, size=options.size, quality=options.quality,
        partial_images=(options.partial_images or 0) if options.stream else 0, multiplier=multiplier,
        input_image_tokens=input_images * catalog.input_image_tokens_per_image)
    # A known field sent as null means "not given" (OpenAI's nullable fields): left out, as the SDKs do,
    # so an upstream that knows fewer fields than the spec does not trip over it.
    sent = {k: v for k, v in fields.items() if not (v is None and k in type(options).model_fields)}
    return Plan(endpoint=endpoint, token=token, spec=spec, options=options, multiplier=multiplier,
                reservation=reservation, call=ImageCall(endpoint, {**sent, "model": spec.id}, files),
                references=references, input_images=input_images)
