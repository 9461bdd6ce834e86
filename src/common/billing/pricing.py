"""Money: what a request may cost (the reservation) and what it did cost (from upstream usage).

Every usage kind is billed at its own rate (peers bill image tokens at text rates; we do not),
all arithmetic is Decimal, and nothing is rounded: a charge is exact to the token.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from common.billing.catalog import Catalog, ModelSpec

MILLION = Decimal(1_000_000)
SQUARE_PIXELS = 1024 * 1024
KINDS = ("text_input", "cached_text_input", "image_input", "image_output")


@dataclass(frozen=True)
class TokenUsage:
    """Upstream usage split by the kinds that have distinct prices."""

    text_input: int = 0
    cached_text_input: int = 0
    image_input: int = 0
    image_output: int = 0

    @classmethod
    def from_upstream(cls, usage: dict[str, Any] | None) -> "TokenUsage":
        usage = usage if isinstance(usage, dict) else {}
        details = usage.get("input_tokens_details")
        details = details if isinstance(details, dict) else {}
        input_tokens = _int(usage.get("input_tokens"))
        image_in = _int(details.get("image_tokens"))
        text_in = details["text_tokens"] if _is_count(details.get("text_tokens")) else max(input_tokens - image_in, 0)
        # cached_tokens is not in the images usage today; when it appears it is part of the text input.
        cached = min(_int(details.get("cached_tokens")), text_in)
        # All output is billed at the image-output rate, breakdown or not: an images endpoint's
        # output is images, and peers that fell back to the text rate under-billed.
        output = _int(usage.get("output_tokens"))
        return cls(text_input=text_in - cached, cached_text_input=cached, image_input=image_in, image_output=output)

    def as_dict(self) -> dict[str, int]:
        return {kind: getattr(self, kind) for kind in KINDS}


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _int(value: Any) -> int:
    return value if _is_count(value) else 0


@dataclass(frozen=True)
class Cost:
    by_kind: dict[str, Decimal]
    multiplier: Decimal

    @property
    def total(self) -> Decimal:
        return sum(self.by_kind.values(), Decimal(0))


def effective_multiplier(platform: Decimal, token: Decimal | None) -> Decimal:
    """What a token's prices are scaled by: the deployment's multiplier times the token's own."""
    return platform * (token if token is not None else Decimal(1))


def cost_of(usage: TokenUsage, spec: ModelSpec, multiplier: Decimal = Decimal(1)) -> Cost:
    rates = spec.rates
    by_kind = {kind: getattr(usage, kind) * getattr(rates, kind) * multiplier / MILLION for kind in KINDS}
    return Cost(by_kind=by_kind, multiplier=multiplier)


SIZE_PATTERN = re.compile(r"([0-9]{1,5})x([0-9]{1,5})")


def parse_size(size: str | None) -> tuple[int, int] | None:
    """`WxH` (plain digits) to (W, H); None for `auto`/absent; ValueError otherwise."""
    if not size or size == "auto":
        return None
    match = SIZE_PATTERN.fullmatch(size)
    if match is None:
        raise ValueError(f"not a WIDTHxHEIGHT size: {size!r}")
    return int(match.group(1)), int(match.group(2))


def output_tokens_per_image(spec: ModelSpec, size: str | None, quality: str | None, *, worst_case: bool) -> int:
    """Output image tokens one image is expected to cost (or may cost, with worst_case)."""
    if quality not in ("low", "medium", "high"):
        quality = "high" if worst_case else "medium"
    table = spec.output_tokens[quality]
    dims = parse_size(size)
    if dims is None:
        return max(table.square, table.non_square) if worst_case else table.square
    width, height = dims
    if width == height == 1024:
        return table.square
    if {width, height} == {1024, 1536}:
        return table.non_square
    # Custom sizes: scale the larger of the two references by area.
    return math.ceil(max(table.square, table.non_square) * width * height / SQUARE_PIXELS)


def reservation_for_generation(
    spec: ModelSpec, catalog: Catalog, *, prompt: str, n: int, size: str | None, quality: str | None,
    partial_images: int, multiplier: Decimal, input_image_tokens: int = 0,
) -> Decimal:
    """The most this request can reasonably cost: reserved before the upstream is called."""
    # A byte-level BPE token is at least one byte, so the UTF-8 length bounds the prompt's tokens.
    text_tokens = len(prompt.encode("utf-8")) + 64
    per_image = output_tokens_per_image(spec, size, quality, worst_case=True)
    output = n * (per_image + partial_images * catalog.partial_image_output_tokens)
    worst = TokenUsage(
        text_input=text_tokens,
        image_input=input_image_tokens,
        image_output=math.ceil(output * catalog.reservation_headroom),
    )
    return cost_of(worst, spec, multiplier).total


def estimate_per_image(spec: ModelSpec, size: str, quality: str, multiplier: Decimal = Decimal(1)) -> Decimal:
    """Display estimate for one image (output tokens only), as in the platform's table."""
    tokens = output_tokens_per_image(spec, size, quality, worst_case=False)
    return tokens * spec.rates.image_output * multiplier / MILLION
