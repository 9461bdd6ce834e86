"""POST /v1/images/edits, in both forms the platform accepts.

- JSON with `images[].image_url` (recommended): validated (each URL by the rules the fetcher
  applies, each data URL decoded), forwarded upstream as JSON. If the upstream refuses the JSON
  form, the flow fetches the referenced images (SSRF-safe) and sends the edit once more as
  multipart; the references travel in the Plan for that.
- multipart/form-data (what the SDKs and curl send): parsed, each file checked from its bytes, and
  forwarded as multipart with the exact bytes, filenames and content types received.

Both then take the same metered flow as generations (reserve, send, settle or release).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from common.images.flow import run
from common.images.inputs import MAX_INPUT_BYTES, check_image_url, check_mask, networks
from common.images.plan import Plan, Reference, plan_request
from common.images.schemas import EditRequest, MultipartEditFields
from common.images.validation import json_body, parse_model, refuse_encoded_body
from common.web.apigw import Request, Response

if TYPE_CHECKING:
    from common.images.flow import ImageDeps


def edit_images(request: Request, deps: ImageDeps) -> Response:
    token = deps.tokens.authenticate(request.header("authorization"), cached=True)
    content_type = request.header("content-type") or ""
    prices = {"catalog": deps.catalog, "price_multiplier": deps.settings.price_multiplier,
              "default_model": deps.settings.default_model}
    plan: Plan
    if content_type.lower().startswith("multipart/form-data"):
        from common.images.uploads import parse_multipart  # only multipart edits need the parser

        refuse_encoded_body(request)
        upload = parse_multipart(request.body, content_type)
        plan = plan_request("edits", parse_model(MultipartEditFields, upload.typed_fields()), upload.fields, token,
                            input_images=len(upload.images), files=(*upload.images, *([upload.mask] if upload.mask else [])),
                            **prices)
    else:
        body = json_body(request)
        edit = parse_model(EditRequest, body)
        references = tuple(Reference(f"images[{i}].image_url", "image", ref.image_url) for i, ref in enumerate(edit.images))
        if edit.mask is not None:
            references += (Reference("mask.image_url", "mask", edit.mask.image_url),)
        check_references(references, deps)
        plan = plan_request("edits", edit, body, token, input_images=len(edit.images), references=references, **prices)
    return run(plan, request, deps)


def check_references(references: tuple[Reference, ...], deps: ImageDeps) -> None:
    """Every image URL by the fetcher's rules before anything is reserved; the mask of data URLs
    against the first image's dimensions."""
    allowed = networks(deps.settings.fetch_allowed_networks)
    sizes = {ref.param: check_image_url(ref.url, ref.param, allowed, MAX_INPUT_BYTES)
             for ref in references if ref.url is not None}
    check_mask(sizes.get("images[0].image_url"), sizes.get("mask.image_url"), "mask.image_url")
