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
from common.catalog import get_catalog
from common.config import get_settings
from common.errors import ApiError
from common.images import ImageJob, run_metered
from common.pricing import effective_multiplier, reservation_for_generation
from common.schemas import EditRequest, ImageOptions, MultipartEditFields
from common.tokens import authenticate
from common.uploads import UploadedFile, parse_multipart
from common.validation import check_options, parse_json_object, parse_model, resolve_model


def edit_images(request: Request) -> dict:
    settings, catalog = get_settings(), get_catalog()
    token = authenticate(request.header("authorization"), max_age_seconds=settings.token_cache_seconds)
    content_type = (request.header("content-type") or "").lower()
    if content_type.startswith("multipart/form-data"):
        upload = parse_multipart(request.body, request.header("content-type") or "")
        options: ImageOptions = parse_model(MultipartEditFields, upload.typed_fields())
        payload: dict = dict(upload.fields)
        files: list[UploadedFile] | None = [*upload.images, *([upload.mask] if upload.mask else [])]
        input_images = len(upload.images)
    elif content_type.startswith("application/json") or not content_type:
        body = parse_json_object(request.body)
        options = edit = parse_model(EditRequest, body)
        payload, files, input_images = dict(body), None, len(edit.images)
    else:
        raise ApiError(415, "Send edits as application/json (images[].image_url) or multipart/form-data (image files).",
                       code="unsupported_media_type")
    spec = resolve_model(options.model, catalog, settings.default_model, token.allowed_models)
    check_options(options, spec)
    payload["model"] = spec.id
    multiplier = effective_multiplier(settings.price_multiplier, token.price_multiplier)
    job = ImageJob(
        endpoint="edits",
        spec=spec,
        options=options,
        payload=payload,
        files=files,
        multiplier=multiplier,
        reservation=reservation_for_generation(
            spec, catalog, prompt=options.prompt, n=options.n or 1, size=options.size, quality=options.quality,
            partial_images=(options.partial_images or 0) if options.stream else 0, multiplier=multiplier,
            input_image_tokens=input_images * catalog.input_image_tokens_per_image),
        to_multipart=_fetch_references if files is None else None,
    )
    job.params["input_images"] = input_images
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
