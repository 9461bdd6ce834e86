"""The models the gateway serves and their prices, as data (common/billing/catalog.json).

The models are built on first use (`defer_build`): a function whose routes never read the catalog
(usage, billing, the sweeper) does not pay for building them on its cold start.

A deployment can replace the whole catalog with the `MODEL_CATALOG_JSON` setting (same shape),
so adding a model or changing a price is configuration, not code.
"""
from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

Quality = Literal["low", "medium", "high"]


class Rates(BaseModel):
    """USD per 1M tokens, by usage kind."""

    model_config = ConfigDict(frozen=True, defer_build=True)
    text_input: Decimal
    cached_text_input: Decimal
    image_input: Decimal
    image_output: Decimal


class OutputTokens(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)
    square: int
    non_square: int


class ModelSpec(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)
    id: str = ""
    created: int
    rates: Rates
    output_tokens: dict[Quality, OutputTokens]
    # gpt-image-2 takes any WxH within published rules; the others only the three fixed sizes.
    custom_sizes: bool = False
    # False: the upstream is known to reject `response_format` (gpt-image models); None: unknown.
    accepts_response_format: bool | None = None


class Catalog(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)
    models: dict[str, ModelSpec]
    # Worst-case reservations multiply the expected output tokens by this, so that a
    # reservation covers what the upstream may really bill.
    reservation_headroom: Decimal = Decimal("1.25")
    partial_image_output_tokens: int = 100
    # Worst-case image input tokens per input image of an edit (high input fidelity, large image).
    input_image_tokens_per_image: int = 6500

    @model_validator(mode="after")
    def _each_spec_knows_its_id(self) -> "Catalog":
        object.__setattr__(self, "models", {key: spec.model_copy(update={"id": key}) for key, spec in self.models.items()})
        return self

    def get(self, model_id: str) -> ModelSpec | None:
        return self.models.get(model_id)


def load_catalog(text: str = "") -> Catalog:
    """The catalog from its JSON text; the shipped catalog.json when the text is empty."""
    data = json.loads(text or Path(__file__).with_name("catalog.json").read_text(), parse_float=Decimal)
    data.pop("_comment", None)
    return Catalog.model_validate(data)
