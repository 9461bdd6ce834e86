"""The metered flow every image request takes, as small steps over values:

    Plan (frozen) -> reserve -> send -> price -> deliver -> settle -> Response
                        \\_____________ release, on every failure path __/

Order matters for money: nothing is reserved before the request is valid (the Plan), nothing is
sent upstream before the reservation holds, and every path after the reservation ends in exactly
one settlement (charge the actual cost) or release (charge nothing).

Status before bytes. A JSON answer (b64 or url) is parsed once, priced and settled, and only then
becomes a Response with the exact cost in its headers; an answer the connection cannot carry (a
buffered Lambda answer's 6 MB) is refused before anything is charged. In b64 mode the body is
the upstream's own bytes, passed through, never re-encoded. An event stream (stream=true) is 200
as soon as the upstream answers 200: its events are relayed as they arrive (`relay`), with
keep-alive comments while the upstream is silent, and the settlement comes from the completed
events' usage at its end; an upstream failure after that ends the stream with an error event and
no charge.

Each step takes values and returns a new one; the only state is in the ports (ledger, store,
upstream) handed in with `deps`.
"""
from __future__ import annotations

import base64
import binascii
import json
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from common.billing.catalog import Catalog
from common.billing.pricing import Cost, TokenUsage, cost_of, output_tokens_per_image
from common.billing.records import Hold, Outcome, ReservationRefused, Settlement
from common.billing.tokens import Tokens
from common.config import Settings
from common.errors import ApiError, insufficient_quota, invalid_api_key, upstream_error, upstream_timeout
from common.images.plan import Plan, Reference
from common.observability import logger, metrics
from common.upstream.openai_images import (Answer, Event, ImageCall, OpenAIImages, UploadedFile, add_usage,
                                           customer_error, error_event, events_of, is_event_stream, parse_answer,
                                           rejects_json_form, rejects_parameter)
from common.upstream.transport import TransportError
from common.web.apigw import Request, Response

# Time kept back from the deadline to store images, settle and answer before API Gateway gives up.
RESPONSE_MARGIN_SECONDS = 2.5
# An event stream that has been silent this long gets a comment line, so that no proxy on the way
# (API Gateway's streaming idle limit is 5 minutes) takes the quiet for a dead connection.
KEEPALIVE_SECONDS = 15.0
KEEPALIVE = b": keep-alive\n\n"


if TYPE_CHECKING:  # protocols, for the type checker only: nothing to build at cold start
    from typing import Protocol

    from common.ports import Fetcher, HttpReply, ImageStore, Ledger

    class ImageDeps(Protocol):
        """What the flow is handed (common.wiring.Container, or the tests' own with fakes)."""

        settings: Settings
        catalog: Catalog
        tokens: Tokens
        ledger: Ledger
        upstream: OpenAIImages
        store: ImageStore | None
        fetcher: Fetcher


def image_url_not_available() -> ApiError:
    return ApiError(
        400,
        "response_format=url needs image storage, and this deployment has none configured. "
        "Omit response_format (or send b64_json) to receive the image as base64.",
        param="response_format",
        code="image_url_not_available",
    )


def response_too_large(size: int, plan: Plan) -> ApiError:
    # Checked before settling: an answer that cannot be delivered must not be charged.
    hint = "" if plan.want_url else "response_format=url, "
    return ApiError(
        400,
        f"The generated images come to {size / 1_000_000:.1f} MB as base64, more than the 6 MB a response can "
        f"carry here. Ask for {hint}fewer images (n), a smaller size, or output_format jpeg/webp with "
        "output_compression. You have not been charged.",
        param="response_format" if hint else "n",
        code="response_too_large",
    )


# --- the values the steps hand on -------------------------------------------------------------

@dataclass(frozen=True)
class Exchange:
    """What was finally sent upstream, and what came back."""

    call: ImageCall
    reply: HttpReply
    adaptations: tuple[str, ...] = ()  # "response_format", "json_form": refusals worked around, in order


@dataclass(frozen=True)
class Charge:
    usage: TokenUsage
    cost: Cost
    basis: str  # "upstream" (its usage block) or "estimate" (it sent none)


@dataclass(frozen=True)
class Delivery:
    body: bytes
    content_type: str


# --- the flow ---------------------------------------------------------------------------------

def run(plan: Plan, request: Request, deps: ImageDeps) -> Response:
    if plan.want_url and deps.store is None and plan.spec.accepts_response_format is False:
        # Certain to fail after the generation: refuse before anything is spent.
        raise image_url_not_available()
    logger.append_keys(token_id=plan.token.token_id, model=plan.spec.id)
    hold = reserve(plan, request.request_id, deps.ledger, deps.tokens)
    timeout = deps.settings.streaming_timeout_seconds if request.streamed else deps.settings.request_timeout_seconds
    deadline = deadline_for(request, timeout)
    exchange: Exchange | None = None
    try:
        exchange = send(plan, deadline, deps.upstream, deps.fetcher)
        if is_event_stream(exchange.reply):
            # From here the relay owns the reservation: it settles or releases at the stream's end.
            return Response(200, {"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                  "x-request-id": request.request_id},
                            relay(plan, request, hold, exchange, deps.ledger, deadline))
        answer = parse_answer(exchange.reply)
        charge = price(plan, answer.raw_usage, answer.images)
        delivery = deliver(plan, answer, deps.store, request.max_response_bytes)
    except BaseException as exc:
        deps.ledger.release(hold, failed(plan, exc, request.started, exchange))
        raise
    settlement = deps.ledger.settle(hold, succeeded(plan, answer.raw_usage, answer.images, charge, request.started,
                                                    exchange))
    observe(answer.images, charge, settlement, exchange)
    return respond(request, delivery, settlement)


def deadline_for(request: Request, integration_timeout_seconds: float) -> float:
    """The earlier of the function's own end and API Gateway's, less the time to answer."""
    return min(time.monotonic() + request.remaining_ms() / 1000,
               request.started + integration_timeout_seconds) - RESPONSE_MARGIN_SECONDS


def reserve(plan: Plan, request_id: str, ledger: Ledger, tokens: Tokens) -> Hold:
    try:
        return ledger.reserve(plan.token, request_id, plan.reservation, model=plan.spec.id, endpoint=plan.endpoint)
    except ReservationRefused as refused:
        if refused.reason != "insufficient":
            tokens.forget(plan.token.key_hash)  # revoked, expired or gone since it was cached
            raise invalid_api_key() from None
        raise insufficient_quota(
            f"Your balance (${refused.balance}) does not cover this request's maximum cost of ${plan.reservation}. "
            "Top up your balance, or ask for fewer, smaller or lower-quality images.") from None


def send(plan: Plan, deadline: float, upstream: OpenAIImages, fetcher: Fetcher) -> Exchange:
    """Send the plan's call, adapting once to each refusal the platform knows how to work
    around, each time with a new call: `response_format` refused (gpt-image models): the same
    without it; the JSON form of an edit refused: the same edit as multipart, its images fetched."""
    call = plan.call
    adaptations: tuple[str, ...] = ()
    while True:
        reply = upstream.send(call, deadline)
        if "response_format" not in adaptations and "response_format" in call.fields \
                and rejects_parameter(reply, "response_format"):
            metrics.add_metric(name="ResponseFormatFallbacks", unit=MetricUnit.Count, value=1)
            logger.info("upstream rejected response_format; retrying without it", extra={"wanted_url": plan.want_url})
            call, adaptations = call.without("response_format"), (*adaptations, "response_format")
        elif "json_form" not in adaptations and call.files is None and plan.references and rejects_json_form(reply):
            metrics.add_metric(name="MultipartFallbacks", unit=MetricUnit.Count, value=1)
            logger.info("upstream rejected the JSON edit; retrying as multipart")
            call = call.as_multipart(fetch_references(plan.references, fetcher, deadline))
            adaptations = (*adaptations, "json_form")
        else:
            return Exchange(call, reply, adaptations)


def fetch_references(references: tuple[Reference, ...], fetcher: Fetcher, deadline: float) -> tuple[UploadedFile, ...]:
    """A JSON edit's referenced images, downloaded (SSRF-safe) to be sent as files."""
    if any(ref.url is None for ref in references):
        raise ApiError(400, "The image service accepts only uploaded files, so file_id references cannot be used "
                       "here; send image_url references or upload the files as multipart/form-data.",
                       param="images", code="file_id_not_supported")
    files = []
    for index, ref in enumerate(references):
        fetched = fetcher.fetch(ref.url or "", param=ref.param, index=index, deadline=deadline)
        files.append(UploadedFile(field=ref.field, filename=fetched.filename, content_type=fetched.content_type,
                                  data=fetched.data))
    return tuple(files)


def price(plan: Plan, raw_usage: dict[str, Any] | None, images: int) -> Charge:
    """Every kind of token at its own rate, from the upstream's usage. With no usage block, the
    expected (not worst-case) cost, rather than give the images away."""
    if raw_usage:
        usage, basis = TokenUsage.from_upstream(raw_usage), "upstream"
    else:
        per_image = output_tokens_per_image(plan.spec, plan.options.size, plan.options.quality, worst_case=False)
        usage = TokenUsage(text_input=max(len(plan.options.prompt) // 4, 1), image_output=images * per_image)
        basis = "estimate"
    return Charge(usage, cost_of(usage, plan.spec, plan.multiplier), basis)


def deliver(plan: Plan, answer: Answer, store: ImageStore | None, max_body_bytes: int | None) -> Delivery:
    """The body the customer gets: in b64 mode the upstream's JSON exactly as it came; in url
    mode the same answer with its images stored and replaced by URLs."""
    if plan.want_url:
        body = answer.response.model_dump(exclude_unset=True)
        output_format = body.get("output_format") or plan.options.output_format or "png"
        body["data"] = stored_as_urls(body["data"], output_format, store)
        delivery = Delivery(json.dumps(body, separators=(",", ":")).encode("utf-8"), "application/json")
    else:
        delivery = Delivery(answer.raw, "application/json")
    if max_body_bytes is not None and len(delivery.body) > max_body_bytes:
        raise response_too_large(len(delivery.body), plan)
    return delivery


def stored_as_urls(items: list[dict[str, Any]], output_format: str, store: ImageStore | None) -> list[dict[str, Any]]:
    """The answer's images with every base64 one stored and replaced by its URL (new items)."""
    pending = [i for i, item in enumerate(items) if not item.get("url")]
    if not pending:
        return items  # the upstream gave URLs itself
    if store is None:
        raise image_url_not_available()
    try:
        images = [base64.b64decode(items[i]["b64_json"], validate=True) for i in pending]
    except (binascii.Error, ValueError, TypeError):
        raise upstream_error("The image service returned an undecodable image. You have not been charged.") from None
    try:
        urls = dict(zip(pending, store.put_images(images, output_format)))
    except Exception:
        logger.exception("storing images failed")
        raise ApiError(502, "The generated image could not be stored. You have not been charged; please retry.",
                       type="server_error", code="image_storage_failed") from None
    return [{**{k: v for k, v in item.items() if k != "b64_json"}, "url": urls[i]} if i in urls else item
            for i, item in enumerate(items)]


def succeeded(plan: Plan, raw_usage: dict[str, Any] | None, images: int, charge: Charge, started: float,
              exchange: Exchange | None) -> Outcome:
    return Outcome(
        model=plan.spec.id, endpoint=plan.endpoint, status=200,
        outcome="ok" if charge.basis == "upstream" else "ok_estimated", params=plan.params, images=images,
        usage_raw=raw_usage, tokens=charge.usage.as_dict(), cost_by_kind=charge.cost.by_kind,
        cost_usd=charge.cost.total, latency_ms=_ms_since(started),
        upstream_latency_ms=exchange.reply.elapsed_ms if exchange else 0)


def failed(plan: Plan, exc: BaseException, started: float, exchange: Exchange | None) -> Outcome:
    error = exc if isinstance(exc, ApiError) else None
    return Outcome(
        model=plan.spec.id, endpoint=plan.endpoint, status=error.status if error else 500,
        outcome=(error.code or error.type) if error else "internal_error", params=plan.params,
        latency_ms=_ms_since(started), upstream_latency_ms=exchange.reply.elapsed_ms if exchange else 0)


def observe(images: int, charge: Charge, settlement: Settlement, exchange: Exchange) -> None:
    metrics.add_metric(name="Images", unit=MetricUnit.Count, value=images)
    metrics.add_metric(name="UpstreamLatency", unit=MetricUnit.Milliseconds, value=exchange.reply.elapsed_ms)
    metrics.add_metric(name="CostUSD", unit=MetricUnit.NoUnit, value=float(settlement.charged_usd))
    logger.info("image request settled", extra={"images": images, "charged_usd": str(settlement.charged_usd),
                                                 "upstream_ms": exchange.reply.elapsed_ms, "billing_basis": charge.basis})


# --- stream=true: events relayed as they arrive ----------------------------------------------------

def relay(plan: Plan, request: Request, hold: Hold, exchange: Exchange, ledger: Ledger,
          deadline: float) -> Iterator[bytes]:
    """The upstream's events, passed on unchanged as each arrives, keep-alive comments while it is
    silent; at the end the settlement from the completed events' usage (and a comment with the
    charge, which clients ignore), or, if the upstream fails or ends without an image, an error
    event and the reservation released. A client that went away is not seen here (API Gateway
    gives the function no signal): the relay still runs to the upstream's end and settles, because
    the generation was made and paid for upstream."""
    pump = _EventPump(events_of(exchange.reply.chunks or iter(())))
    usage: dict[str, Any] = {}
    completed = 0
    finished = False
    try:
        for event in pump.events(deadline, request.started):
            if event is None:
                yield KEEPALIVE
                continue
            if event.failed:
                raise upstream_error("The image service failed while generating. You have not been charged.")
            if event.completed:
                completed += 1
                usage = add_usage(usage, (event.data or {}).get("usage") or {})
            yield event.raw
        if not completed:
            raise upstream_error("The image service's stream ended without an image. You have not been charged.")
        charge = price(plan, usage or None, completed)
        settlement = ledger.settle(hold, succeeded(plan, usage or None, completed, charge, request.started, exchange))
        finished = True
        observe(completed, charge, settlement, exchange)
        yield (f": x-gateway-cost-usd={settlement.charged_usd} "
               f"x-gateway-balance-usd={settlement.balance_usd}\n\n").encode()
    except Exception as exc:
        error = exc if isinstance(exc, ApiError) else customer_error(exc) if isinstance(exc, TransportError) else \
            ApiError(500, "The gateway had an internal error. You have not been charged.", type="server_error",
                     code="internal_error")
        if not isinstance(exc, (ApiError, TransportError)):
            logger.exception("relaying the event stream failed")
        ledger.release(hold, failed(plan, error, request.started, exchange))
        finished = True
        yield error_event(error)
    finally:
        pump.stop()
        exchange.reply.close()
        if not finished:  # the consumer stopped reading: nothing was settled
            ledger.release(hold, failed(plan, ApiError(499, "client closed", code="client_closed"), request.started,
                                        exchange))


class _EventPump:
    """Reads the upstream's events on a thread of its own, so that the relay can send keep-alives
    while a read waits; a small queue bounds how far it reads ahead of the customer."""

    _END = object()

    def __init__(self, events: Iterator[Event]) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=4)
        self._stopped = threading.Event()
        self._events = events
        threading.Thread(target=self._run, name="upstream-events", daemon=True).start()

    def _run(self) -> None:
        try:
            for event in self._events:
                if not self._put(event):
                    return
            self._put(self._END)
        except BaseException as exc:  # noqa: BLE001 - handed to the relay, which decides
            self._put(exc)

    def _put(self, item: object) -> bool:
        while not self._stopped.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def events(self, deadline: float, started: float) -> Iterator[Event | None]:
        """Each event as it comes; None when KEEPALIVE_SECONDS passed without one."""
        while True:
            wait = min(KEEPALIVE_SECONDS, deadline - time.monotonic())
            if wait <= 0:
                raise upstream_timeout(time.monotonic() - started)
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                if time.monotonic() < deadline:
                    yield None
                continue
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def stop(self) -> None:
        self._stopped.set()


def respond(request: Request, delivery: Delivery, settlement: Settlement) -> Response:
    return Response(200, {"Content-Type": delivery.content_type, "x-request-id": request.request_id,
                          "x-gateway-cost-usd": str(settlement.charged_usd),
                          "x-gateway-balance-usd": str(settlement.balance_usd)}, delivery.body)


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
