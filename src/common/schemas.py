"""Wire shapes: what customers send and what the gateway answers, as pydantic models.

Request models allow extra fields: fields the gateway does not know are forwarded unchanged so
new upstream features keep working. Types are strict, as OpenAI's are: `"n": "2"` is refused.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

Prompt = Annotated[StrictStr, Field(min_length=1, max_length=32_000)]


class ImageOptions(BaseModel):
    """The fields generations and edits share."""

    model_config = ConfigDict(extra="allow")

    model: StrictStr | None = None
    prompt: Prompt
    n: Annotated[StrictInt, Field(ge=1, le=10)] | None = None
    size: StrictStr | None = None
    quality: Literal["low", "medium", "high", "auto"] | None = None
    background: Literal["transparent", "opaque", "auto"] | None = None
    output_format: Literal["png", "jpeg", "webp"] | None = None
    output_compression: Annotated[StrictInt, Field(ge=0, le=100)] | None = None
    moderation: Literal["low", "auto"] | None = None
    user: StrictStr | None = None
    response_format: Literal["url", "b64_json"] | None = None
    stream: StrictBool | None = None
    partial_images: Annotated[StrictInt, Field(ge=0, le=3)] | None = None


class GenerationRequest(ImageOptions):
    """POST /v1/images/generations."""


class ImageData(BaseModel):
    model_config = ConfigDict(extra="allow")
    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None


class ImagesResponse(BaseModel):
    """The upstream's answer; unknown fields are kept and passed back to the customer."""

    model_config = ConfigDict(extra="allow")
    created: int
    data: list[ImageData] = Field(min_length=1)
    usage: dict[str, Any] | None = None


class ModelObject(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "image-gateway"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelObject]
