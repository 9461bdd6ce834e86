"""The gateway's ports: what the request flow needs from the world, as small protocols.

Each has one real adapter, built once per container by common.wiring, and an in-memory fake in
tests/fakes/; tests/contract/ runs the same suite against both, so a fake cannot drift from
the real thing.

  Ledger      tokens, balances, reservations, request records    common.billing.ledger (DynamoDB)
  ImageStore  images behind short-lived URLs                      common.images.storage (S3)
  Transport   HTTP POST to the upstream with bounded retries      common.upstream.transport (requests)
  Fetcher     SSRF-safe download of a customer's image URL        common.images.fetch
  Sink        where an answer goes: buffered, or a response stream common.web.sinks

Nothing imports this module at run time (only under TYPE_CHECKING): protocols cost cold-start
time to build and check nothing at run time.
"""
from __future__ import annotations

from decimal import Decimal
from collections.abc import Iterator
from typing import Any, Protocol

from common.billing.records import CreditEntry, Hold, Outcome, RequestRecord, Settlement, TokenRecord, UsageDay


class Ledger(Protocol):
    # tokens
    def get_token(self, key_hash: str) -> TokenRecord | None: ...
    def create_token(self, token: TokenRecord) -> None: ...
    def find_token(self, token_id: str) -> TokenRecord | None: ...
    def list_tokens(self) -> list[TokenRecord]: ...
    def credit(self, token: TokenRecord, amount: Decimal, *, kind: str, reason: str) -> Decimal: ...
    def set_status(self, token: TokenRecord, status: str) -> None: ...

    # money in flight: reserve, then exactly one of settle or release
    def reserve(self, token: TokenRecord, request_id: str, amount: Decimal, *, model: str = "",
                endpoint: str = "") -> Hold: ...
    def settle(self, hold: Hold, outcome: Outcome) -> Settlement: ...
    def release(self, hold: Hold, outcome: Outcome) -> Decimal: ...

    # reading what happened
    def daily_totals(self, token_id: str, start_date: str, end_date: str) -> list[UsageDay]: ...
    def request_records(self, token_id: str, start_iso: str = "", end_iso: str = "\uffff") -> list[RequestRecord]: ...
    def credit_entries(self, token_id: str) -> list[CreditEntry]: ...


class ImageStore(Protocol):
    def put_images(self, images: list[bytes], output_format: str) -> list[str]:
        """Store the images (in parallel when several); one URL per image, in order."""
        ...


class HttpReply(Protocol):
    status: int
    headers: Any  # case-insensitive mapping
    content: bytes  # empty when streamed
    elapsed_ms: int
    chunks: Iterator[bytes] | None  # a streamed event stream's bytes, as they arrive

    @property
    def streamed(self) -> bool: ...
    def close(self) -> None: ...
    def json(self) -> Any: ...


class Transport(Protocol):
    def post(self, path: str, *, deadline: float, json_body: Any = None, data: Any = None,
             files: Any = None, stream_events: bool = False) -> HttpReply:
        """POST under the upstream's base URL, retrying only while safe; `deadline` is monotonic.
        With `stream_events`, a 200 event stream comes back unread (`chunks`)."""
        ...


class FetchedImage(Protocol):
    data: bytes
    content_type: str
    filename: str


class Fetcher(Protocol):
    def fetch(self, url: str, *, param: str, index: int, deadline: float) -> FetchedImage: ...


class Sink(Protocol):
    max_body_bytes: int | None  # None: no limit (streamed)

    def start(self, status: int, headers: dict[str, str]) -> None: ...
    def write(self, chunk: bytes | memoryview) -> None: ...
    def close(self) -> None: ...
    def fail(self, error_type: str, message: str) -> None:
        """The answer cannot be completed (after start): end it so the client can tell."""
        ...


class ResponseStream(Protocol):
    """What runtime.client.ResponseStream and the local stack's stream both offer."""

    def start(self, status_code: int, headers: dict[str, str]) -> None: ...
    def write(self, data: bytes | memoryview) -> None: ...
    def close(self) -> None: ...
    def fail(self, error_type: str, message: str) -> None: ...
