"""Wire shapes: what customers send and what the gateway answers, as pydantic models.

Every model is built on first use (`defer_build`): each function's container builds only the
shapes its route needs, which keeps cold starts short. Request models allow extra fields: fields the gateway does not know are forwarded unchanged so
new upstream features keep working. Types are strict, as OpenAI's are: `"n": "2"` is refused.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator, model_validator

Prompt = Annotated[StrictStr, Field(min_length=1, max_length=32_000)]


class ImageOptions(BaseModel):
    """The fields generations and edits share."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    model: Annotated[StrictStr, Field(min_length=1)] | None = Field(
        None, description="A model of GET /v1/models; the deployment's default (gpt-image-2) when absent.")
    prompt: Prompt
    n: Annotated[StrictInt, Field(ge=1, le=10)] | None = Field(None, description="Images to make (1-10).")
    size: StrictStr | None = Field(None, description=(
        "auto, 1024x1024, 1536x1024 or 1024x1536; gpt-image-2 also WIDTHxHEIGHT with both sides multiples of 16, "
        "at most 3840, long side at most 3x the short, 655,360 to 8,294,400 pixels."))
    quality: Literal["low", "medium", "high", "auto"] | None = None
    background: Literal["transparent", "opaque", "auto"] | None = None
    output_format: Literal["png", "jpeg", "webp"] | None = None
    output_compression: Annotated[StrictInt, Field(ge=0, le=100)] | None = None
    moderation: Literal["low", "auto"] | None = None
    # Not nullable in OpenAI's spec (the SDKs type it `str`): absent is fine, null is refused.
    user: StrictStr = Field(default=None, json_schema_extra=lambda schema: schema.pop("default", None))  # type: ignore[assignment]
    # dall-e-3 only; known here so that a typo is named, refused for the token-billed models sold here.
    style: Literal["vivid", "natural"] | None = None
    response_format: Literal["url", "b64_json"] | None = Field(None, description=(
        "b64_json (default) or url: a presigned URL of the image stored by the gateway."))
    stream: StrictBool | None = Field(None, description="Answer as server-sent events (not with response_format=url).")
    partial_images: Annotated[StrictInt, Field(ge=0, le=3)] | None = None


class GenerationRequest(ImageOptions):
    """POST /v1/images/generations."""


class ImageReference(BaseModel):
    """One input image (or the mask) of a JSON edit: exactly one of `image_url` or `file_id`."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    image_url: Annotated[StrictStr, Field(min_length=1, max_length=20_971_520)] | None = None
    file_id: Annotated[StrictStr, Field(min_length=1)] | None = None

    @field_validator("image_url")
    @classmethod
    def _https_or_data_url(cls, value: str | None) -> str | None:
        if value is not None and not (value.startswith("https://") or value.startswith("data:image/")):
            raise ValueError("image_url must be an https URL or a data:image/...;base64, URL")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> "ImageReference":
        if (self.image_url is None) == (self.file_id is None):
            raise ValueError("give exactly one of image_url or file_id")
        return self


class EditRequest(ImageOptions):
    """POST /v1/images/edits as JSON (the form the platform recommends)."""

    images: Annotated[list[ImageReference], Field(min_length=1, max_length=16)]
    mask: ImageReference | None = None
    input_fidelity: Literal["high", "low"] | None = None


class MultipartEditFields(ImageOptions):
    """The non-file fields of a multipart edit, typed as in the JSON form."""

    input_fidelity: Literal["high", "low"] | None = None


class ImageData(BaseModel):
    model_config = ConfigDict(extra="allow", defer_build=True)
    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None


class ImagesResponse(BaseModel):
    """The upstream's answer; unknown fields are kept and passed back to the customer."""

    model_config = ConfigDict(extra="allow", defer_build=True)
    created: int
    data: list[ImageData] = Field(min_length=1)
    usage: dict[str, Any] | None = None


class ModelObject(BaseModel):
    model_config = ConfigDict(defer_build=True)
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "image-gateway"


class ModelList(BaseModel):
    model_config = ConfigDict(defer_build=True)
    object: Literal["list"] = "list"
    data: list[ModelObject]
