"""The gateway's ports: what the request flow needs from the world, as small protocols.

Each has one real adapter, built once per container by common.wiring, and an in-memory fake in
tests/fakes/; tests/contract/ runs the same suite against both, so a fake cannot drift from
the real thing.

  Ledger      tokens, balances, reservations, request records    common.billing.ledger (DynamoDB)
  ImageStore  images behind short-lived URLs                      common.images.storage (S3)
  Transport   HTTP POST to the upstream with bounded retries      common.upstream.transport (requests)
  Fetcher     SSRF-safe download of a customer's image URL        common.images.fetch
"""
from __future__ import annotations

from decimal import Decimal
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
    content: bytes
    elapsed_ms: int

    def json(self) -> Any: ...


class Transport(Protocol):
    def post(self, path: str, *, deadline: float, json_body: Any = None, data: Any = None,
             files: Any = None) -> HttpReply:
        """POST under the upstream's base URL, retrying only while safe; `deadline` is monotonic."""
        ...


class FetchedImage(Protocol):
    data: bytes
    content_type: str
    filename: str


class Fetcher(Protocol):
    def fetch(self, url: str, *, param: str, index: int, deadline: float) -> FetchedImage: ...
