"""The image flow: authenticate, validate, reserve, call upstream, store, settle.

Order matters for money: nothing is reserved before the request is known to be valid, nothing
is sent upstream before the reservation holds, and every path after the reservation ends in
exactly one settlement (charge the actual cost) or release (charge nothing).
"""
from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable

from aws_lambda_powertools.metrics import MetricUnit

from common.apigw import Request, json_response
from common.catalog import ModelSpec, get_catalog
from common.config import get_settings
from common.errors import ApiError, insufficient_quota, invalid_api_key, upstream_error
from common.ledger import Hold, Outcome, ReservationRefused, TokenRecord, get_ledger
from common.observability import logger, metrics
from common.pricing import (TokenUsage, cost_of, effective_multiplier, output_tokens_per_image,
                            reservation_for_generation)
from common.schemas import GenerationRequest, ImageOptions, ImagesResponse
from common.tokens import authenticate, forget
from common.uploads import UploadedFile
from common.upstream import Upstream, UpstreamReply, error_from_reply, get_upstream, rejects_json_form, rejects_parameter
from common.validation import check_options, parse_json_object, parse_model, resolve_model

# Time kept back from the deadline to store images, settle and answer before API Gateway gives up.
RESPONSE_MARGIN_SECONDS = 2.5
# Lambda returns at most 6,291,556 bytes of JSON (body, headers and envelope): keep room for the rest.
MAX_RESPONSE_BODY_BYTES = 6_200_000
# Parameters that drive cost, kept with every request record.
COST_PARAMS = ("size", "quality", "n", "output_format", "background", "response_format", "stream",
               "partial_images", "input_fidelity")


def image_url_not_available() -> ApiError:
    return ApiError(
        400,
        "response_format=url needs image storage, and this deployment has none configured. "
        "Omit response_format (or send b64_json) to receive the image as base64.",
        param="response_format",
        code="image_url_not_available",
    )


def response_too_large(size: int, job: ImageJob) -> ApiError:
    # Checked before settling: an answer Lambda cannot return must not be charged.
    hint = "" if job.options.response_format == "url" else "response_format=url, "
    return ApiError(
        400,
        f"The generated images come to {size / 1_000_000:.1f} MB as base64, more than the 6 MB a response can "
        f"carry here. Ask for {hint}fewer images (n), a smaller size, or output_format jpeg/webp with "
        "output_compression. You have not been charged.",
        param="response_format" if hint else "n",
        code="response_too_large",
    )


@dataclass
class ImageJob:
    """One metered call to the upstream, as validated: what to send and what it may cost."""

    endpoint: str  # "generations" or "edits"
    spec: ModelSpec
    options: ImageOptions
    payload: dict[str, Any]  # the JSON sent upstream (unknown fields kept), or the multipart text fields
    multiplier: Decimal
    reservation: Decimal
    files: list[UploadedFile] | None = None  # set: send as multipart/form-data with these files
    # For JSON edits: turns the job into multipart when the upstream refuses the JSON form.
    to_multipart: Callable[["ImageJob", float], None] | None = None
    params: dict[str, Any] = field(default_factory=dict)


def generate_images(request: Request) -> dict:
    """POST /v1/images/generations."""
    token = authenticate(request.header("authorization"), max_age_seconds=get_settings().token_cache_seconds)
    body = parse_json_object(request.body)
    job = plan_job("generations", parse_model(GenerationRequest, body), dict(body), token)
    return run_metered(request, token.key_hash, token.token_id, job)


def plan_job(endpoint: str, options: ImageOptions, payload: dict[str, Any], token: TokenRecord, *,
             input_images: int = 0, files: list[UploadedFile] | None = None,
             to_multipart: Callable[["ImageJob", float], None] | None = None) -> ImageJob:
    """A validated request as a job: the model it may use, its checks across fields, and the most
    it may cost (the reservation) at this token's prices."""
    settings, catalog = get_settings(), get_catalog()
    spec = resolve_model(options.model, catalog, settings.default_model, token.allowed_models)
    check_options(options, spec)
    multiplier = effective_multiplier(settings.price_multiplier, token.price_multiplier)
    reservation = reservation_for_generation(
        spec, catalog, prompt=options.prompt, n=options.n or 1, size=options.size, quality=options.quality,
        partial_images=(options.partial_images or 0) if options.stream else 0, multiplier=multiplier,
        input_image_tokens=input_images * catalog.input_image_tokens_per_image)
    return ImageJob(endpoint=endpoint, spec=spec, options=options, payload={**payload, "model": spec.id},
                    multiplier=multiplier, reservation=reservation, files=files, to_multipart=to_multipart,
                    params={"input_images": input_images} if input_images else {})


def run_metered(request: Request, key_hash: str, token_id: str, job: ImageJob) -> dict:
    """Reserve, call upstream, then settle or release: the one path every image request takes."""
    settings = get_settings()
    want_url = job.options.response_format == "url"
    if want_url and not settings.storage_enabled and job.spec.accepts_response_format is False:
        # Certain to fail after the generation: refuse before anything is spent.
        raise image_url_not_available()
    logger.append_keys(token_id=token_id, model=job.spec.id)
    job.params = {**{k: job.payload[k] for k in COST_PARAMS if job.payload.get(k) is not None}, **job.params}
    hold = _reserve(key_hash, token_id, request.request_id, job)
    # The earlier of the function's own end and API Gateway's, less the time to answer.
    deadline = min(time.monotonic() + request.remaining_ms() / 1000,
                   request.started + settings.request_timeout_seconds) - RESPONSE_MARGIN_SECONDS
    upstream_ms = 0
    try:
        reply = _call_upstream(job, deadline, want_url)
        upstream_ms = reply.elapsed_ms
        if reply.status >= 400:
            raise error_from_reply(reply)
        answer = _parse_answer(reply, job)
        usage, basis = answer.usage, "upstream"
        if usage is None:
            # No usage block: bill the expected (not worst-case) cost rather than give images away.
            usage, basis = _expected_usage(job, answer.images), "estimate"
        cost = cost_of(usage, job.spec, job.multiplier)
        if want_url:
            _replace_b64_with_urls(answer, job)
        body = answer.serialized()
        if len(body) > MAX_RESPONSE_BODY_BYTES:
            raise response_too_large(len(body), job)
    except BaseException as exc:
        error = exc if isinstance(exc, ApiError) else None
        get_ledger().release(hold, Outcome(
            model=job.spec.id, endpoint=job.endpoint, status=error.status if error else 500,
            outcome=(error.code or error.type) if error else "internal_error", params=job.params,
            latency_ms=_ms_since(request.started), upstream_latency_ms=upstream_ms))
        raise
    charged, balance = get_ledger().settle(hold, Outcome(
        model=job.spec.id, endpoint=job.endpoint, status=200, outcome="ok" if basis == "upstream" else "ok_estimated",
        params=job.params, images=answer.images, usage_raw=answer.raw_usage, tokens=usage.as_dict(),
        cost_by_kind=cost.by_kind, cost_usd=cost.total, latency_ms=_ms_since(request.started),
        upstream_latency_ms=upstream_ms))
    metrics.add_metric(name="Images", unit=MetricUnit.Count, value=answer.images)
    metrics.add_metric(name="UpstreamLatency", unit=MetricUnit.Milliseconds, value=upstream_ms)
    metrics.add_metric(name="CostUSD", unit=MetricUnit.NoUnit, value=float(charged))
    logger.info("image request settled", extra={"images": answer.images, "charged_usd": str(charged),
                                                 "upstream_ms": upstream_ms, "billing_basis": basis})
    headers = {"x-gateway-cost-usd": str(charged), "x-gateway-balance-usd": str(balance)}
    response = json_response(200, body, request.request_id, headers)
    if answer.stream is not None:
        response["headers"]["Content-Type"] = "text/event-stream"
    return response


def _reserve(key_hash: str, token_id: str, request_id: str, job: ImageJob) -> Hold:
    amount = job.reservation
    try:
        return get_ledger().reserve(key_hash, token_id, request_id, amount, model=job.spec.id, endpoint=job.endpoint)
    except ReservationRefused as refused:
        if refused.reason != "insufficient":
            forget(key_hash)
            raise invalid_api_key() from None
        raise insufficient_quota(
            f"Your balance (${refused.balance}) does not cover this request's maximum cost of ${amount}. "
            "Top up your balance, or ask for fewer, smaller or lower-quality images.") from None


def _call_upstream(job: ImageJob, deadline: float, want_url: bool) -> UpstreamReply:
    """Send the job, adapting once to each refusal the platform knows how to work around:
    `response_format` refused (gpt-image models): send again without it; the JSON form of an
    edit refused: send the same edit as multipart."""
    upstream = get_upstream()
    reply = _send(upstream, job, deadline)
    adapted: set[str] = set()
    while True:
        if "response_format" not in adapted and "response_format" in job.payload \
                and rejects_parameter(reply, "response_format"):
            adapted.add("response_format")
            metrics.add_metric(name="ResponseFormatFallbacks", unit=MetricUnit.Count, value=1)
            logger.info("upstream rejected response_format; retrying without it", extra={"wanted_url": want_url})
            job.payload = {k: v for k, v in job.payload.items() if k != "response_format"}
        elif "json_form" not in adapted and job.files is None and job.to_multipart is not None \
                and rejects_json_form(reply):
            adapted.add("json_form")
            metrics.add_metric(name="MultipartFallbacks", unit=MetricUnit.Count, value=1)
            logger.info("upstream rejected the JSON edit; retrying as multipart")
            job.to_multipart(job, deadline)
        else:
            return reply
        reply = _send(upstream, job, deadline)


def _send(upstream: Upstream, job: ImageJob, deadline: float) -> UpstreamReply:
    path = f"/images/{job.endpoint}"
    if job.files is None:
        return upstream.post(path, json_body=job.payload, deadline=deadline)
    # One file goes in a part named `image`, several in `image[]` (what both official SDKs send).
    image_field = "image" if sum(f.field != "mask" for f in job.files) == 1 else "image[]"
    files = [("mask" if f.field == "mask" else image_field, (f.filename, f.data, f.content_type)) for f in job.files]
    return upstream.post(path, data=form_fields(job.payload), files=files, deadline=deadline)


def form_fields(payload: dict[str, Any]) -> list[tuple[str, str]]:
    """Multipart text fields: strings as they are (a multipart request's own fields are forwarded
    exactly); JSON values written the way the SDKs write them."""
    fields = []
    for name, value in payload.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif not isinstance(value, str):
            value = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
        fields.append((name, value))
    return fields


@dataclass
class Answer:
    """A successful upstream answer: JSON (ImagesResponse) or a buffered event stream."""

    body: dict[str, Any] | None
    stream: bytes | None
    raw_usage: dict[str, Any] | None
    images: int

    @property
    def usage(self) -> TokenUsage | None:
        return TokenUsage.from_upstream(self.raw_usage) if self.raw_usage else None

    def serialized(self) -> str:
        if self.stream is not None:
            return self.stream.decode("utf-8")
        return json.dumps(self.body, separators=(",", ":"))


def _parse_answer(reply: UpstreamReply, job: ImageJob) -> Answer:
    content_type = (reply.headers.get("content-type") or "").lower()
    if content_type.startswith("text/event-stream"):
        return _parse_stream(reply.content)
    body = reply.json()
    if not isinstance(body, dict):
        raise upstream_error()
    try:
        parsed = ImagesResponse.model_validate(body)
    except ValueError:
        raise upstream_error("The image service answered without images. You have not been charged.") from None
    if any(not (item.b64_json or item.url) for item in parsed.data):
        raise upstream_error("The image service answered without images. You have not been charged.")
    return Answer(body=body, stream=None, raw_usage=parsed.usage, images=len(parsed.data))


def _parse_stream(content: bytes) -> Answer:
    """Buffered SSE: the events pass through unchanged; usage comes from the completed events."""
    usage: dict[str, Any] = {}
    completed = 0
    for block in content.decode("utf-8", "replace").split("\n\n"):
        data = "".join(line[5:].strip() for line in block.splitlines() if line.startswith("data:"))
        if not data or data == "[DONE]":
            continue
        try:
            event = json.loads(data)
        except ValueError:
            raise upstream_error() from None
        if str(event.get("type", "")).endswith(".completed"):
            completed += 1
            usage = _add_usage(usage, event.get("usage") or {})
    if not completed:
        raise upstream_error("The image service's stream ended without an image. You have not been charged.")
    return Answer(body=None, stream=content, raw_usage=usage or None, images=completed)


def _add_usage(total: dict[str, Any], usage: dict[str, Any]) -> dict[str, Any]:
    out = dict(total)
    for key, value in usage.items():
        if isinstance(value, dict):
            out[key] = _add_usage(out.get(key) or {}, value)
        elif isinstance(value, int):
            out[key] = out.get(key, 0) + value
    return out


def _replace_b64_with_urls(answer: Answer, job: ImageJob) -> None:
    if answer.body is None:
        raise ApiError(400, "response_format=url cannot be combined with stream=true.", param="response_format",
                       code="invalid_value")
    items = answer.body["data"]
    pending = [i for i, item in enumerate(items) if not item.get("url")]
    if not pending:
        return  # the upstream gave URLs itself
    if not get_settings().storage_enabled:
        raise image_url_not_available()
    from common.storage import get_image_store  # only url mode needs S3

    try:
        images = [base64.b64decode(items[i]["b64_json"], validate=True) for i in pending]
    except (binascii.Error, ValueError, TypeError):
        raise upstream_error("The image service returned an undecodable image. You have not been charged.") from None
    output_format = answer.body.get("output_format") or job.options.output_format or "png"
    try:
        urls = get_image_store().put_images(images, output_format)
    except Exception:
        logger.exception("storing images failed")
        raise ApiError(502, "The generated image could not be stored. You have not been charged; please retry.",
                       type="server_error", code="image_storage_failed") from None
    for i, url in zip(pending, urls):
        item = {k: v for k, v in items[i].items() if k != "b64_json"}
        item["url"] = url
        items[i] = item


def _expected_usage(job: ImageJob, images: int) -> TokenUsage:
    per_image = output_tokens_per_image(job.spec, job.options.size, job.options.quality, worst_case=False)
    return TokenUsage(text_input=max(len(job.options.prompt) // 4, 1), image_output=images * per_image)


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
