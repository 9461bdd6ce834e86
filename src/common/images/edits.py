"""POST /v1/images/edits, in both forms the platform accepts.

- JSON with `images[].image_url` (recommended): validated, forwarded upstream as JSON. If the
  upstream refuses the JSON form, the flow fetches the referenced images (SSRF-safe) and sends
  the edit once more as multipart; the references travel in the Plan for that.
- multipart/form-data (what the SDKs and curl send): parsed, each file checked from its bytes, and
  forwarded as multipart with the exact bytes, filenames and content types received.

Both then take the same metered flow as generations (reserve, send, settle or release).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from common.errors import ApiError
from common.images.flow import run
from common.images.plan import Plan, Reference, plan_request
from common.images.schemas import EditRequest, MultipartEditFields
from common.images.validation import parse_json_object, parse_model
from common.web.apigw import Request, Response

if TYPE_CHECKING:
    from common.images.flow import ImageDeps


def edit_images(request: Request, deps: ImageDeps) -> Response:
    token = deps.tokens.authenticate(request.header("authorization"), cached=True)
    content_type = (request.header("content-type") or "").lower()
    prices = {"catalog": deps.catalog, "price_multiplier": deps.settings.price_multiplier,
              "default_model": deps.settings.default_model}
    plan: Plan
    if content_type.startswith("multipart/form-data"):
        from common.images.uploads import parse_multipart  # only multipart edits need the parser

        upload = parse_multipart(request.body, request.header("content-type") or "")
        plan = plan_request("edits", parse_model(MultipartEditFields, upload.typed_fields()), upload.fields, token,
                            input_images=len(upload.images), files=(*upload.images, *([upload.mask] if upload.mask else [])),
                            **prices)
    elif content_type.startswith("application/json") or not content_type:
        body = parse_json_object(request.body)
        edit = parse_model(EditRequest, body)
        references = tuple(Reference(f"images[{i}].image_url", "image", ref.image_url) for i, ref in enumerate(edit.images))
        if edit.mask is not None:
            references += (Reference("mask.image_url", "mask", edit.mask.image_url),)
        plan = plan_request("edits", edit, body, token, input_images=len(edit.images), references=references, **prices)
    else:
        raise ApiError(415, "Send edits as application/json (images[].image_url) or multipart/form-data (image files).",
                       code="unsupported_media_type")
    return run(plan, request, deps)
