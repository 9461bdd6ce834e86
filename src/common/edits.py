"""POST /v1/images/edits, in both forms the platform accepts.

- JSON with `images[].image_url` (recommended): validated, forwarded upstream as JSON. If the
  upstream refuses the JSON form, the referenced images are fetched (SSRF-safe) and the request is
  sent once more as multipart.
- multipart/form-data (what the SDKs and curl send): parsed, each file checked from its bytes, and
  forwarded as multipart with the exact bytes, filenames and content types received.

Both then take the same metered path as generations (reserve, call, settle or release).
"""
from __future__ import annotations


from common.apigw import Request
from common.config import get_settings
from common.errors import ApiError
from common.images import ImageJob, plan_job, run_metered
from common.schemas import EditRequest, MultipartEditFields
from common.tokens import authenticate
from common.uploads import UploadedFile, parse_multipart
from common.validation import parse_json_object, parse_model


def edit_images(request: Request) -> dict:
    token = authenticate(request.header("authorization"), max_age_seconds=get_settings().token_cache_seconds)
    content_type = (request.header("content-type") or "").lower()
    if content_type.startswith("multipart/form-data"):
        upload = parse_multipart(request.body, request.header("content-type") or "")
        job = plan_job("edits", parse_model(MultipartEditFields, upload.typed_fields()), dict(upload.fields), token,
                       input_images=len(upload.images),
                       files=[*upload.images, *([upload.mask] if upload.mask else [])])
    elif content_type.startswith("application/json") or not content_type:
        body = parse_json_object(request.body)
        edit = parse_model(EditRequest, body)
        job = plan_job("edits", edit, dict(body), token, input_images=len(edit.images), to_multipart=_fetch_references)
    else:
        raise ApiError(415, "Send edits as application/json (images[].image_url) or multipart/form-data (image files).",
                       code="unsupported_media_type")
    return run_metered(request, token.key_hash, token.token_id, job)


def _fetch_references(job: ImageJob, deadline: float) -> None:
    """Turn a JSON edit's image references into uploaded files (the upstream refused JSON)."""
    references = [(f"images[{i}].image_url", ref, "image") for i, ref in enumerate(job.payload["images"])]
    if job.payload.get("mask"):
        references.append(("mask.image_url", job.payload["mask"], "mask"))
    if any("image_url" not in ref for _, ref, _ in references):
        raise ApiError(400, "The image service accepts only uploaded files, so file_id references cannot be used "
                       "here; send image_url references or upload the files as multipart/form-data.",
                       param="images", code="file_id_not_supported")
    from common.fetch import get_fetcher  # only this fallback downloads anything

    fetcher = get_fetcher()
    files = []
    for index, (param, ref, field) in enumerate(references):
        fetched = fetcher.fetch(ref["image_url"], param=param, index=index, deadline=deadline)
        files.append(UploadedFile(field=field, filename=fetched.filename, content_type=fetched.content_type,
                                  data=fetched.data))
    job.files = files
    job.payload = {k: v for k, v in job.payload.items() if k not in ("images", "mask")}
