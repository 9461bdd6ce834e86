"""Parsing what the operator types (exact Decimals, UTC dates) and showing money and times."""
from __future__ import annotations

import argparse
import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

# Charges are exact to the token (0.0000005 USD is a real charge), so an adjustment may need more
# than cents; 10 places is well past any charge yet still catches a pasted float's noise.
MAX_PLACES = 10
_AMOUNT = re.compile(r"[0-9]+(?:\.[0-9]+)?|\.[0-9]+")


def _decimal(text: str, what: str, *, signed: bool) -> Decimal:
    raw = text.strip()
    sign = raw[0] if signed and raw[:1] in ("+", "-") else ""
    raw = raw[len(sign):]
    if not _AMOUNT.fullmatch(raw):
        example = "-2.50 or 2.50" if signed else "10 or 12.50"
        raise argparse.ArgumentTypeError(f"{what} must be a plain decimal number like {example}, not {text!r}")
    places = len(raw.partition(".")[2])
    if places > MAX_PLACES:
        raise argparse.ArgumentTypeError(f"{what} has {places} decimal places; at most {MAX_PLACES}")
    return Decimal(sign + raw)


def usd(text: str) -> Decimal:
    """A non-negative USD amount: `10`, `12.50`, `0.000125`."""
    return _decimal(text, "the amount", signed=False)


def positive_usd(text: str) -> Decimal:
    amount = _decimal(text, "the amount", signed=False)
    if amount <= 0:
        raise argparse.ArgumentTypeError("the amount must be more than zero")
    return amount


def signed_usd(text: str) -> Decimal:
    """An adjustment: `+1.25`, `-0.40`, `3`; never zero."""
    amount = _decimal(text, "the adjustment", signed=True)
    if amount == 0:
        raise argparse.ArgumentTypeError("an adjustment of zero changes nothing")
    return amount


def multiplier(text: str) -> Decimal:
    value = _decimal(text, "the multiplier", signed=False)
    if value <= 0:
        raise argparse.ArgumentTypeError("the multiplier must be more than zero (e.g. 0.9 for 10% off)")
    return value


def day(text: str) -> date:
    if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text.strip()):
        try:
            return date.fromisoformat(text.strip())
        except ValueError:
            pass
    raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)")


def positive_days(text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text.strip()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days (1 or more)")
    return int(text)


def models(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"{text!r}: give model ids separated by commas, "
                                         "e.g. gpt-image-2,gpt-image-1.5")
    return names


def today() -> date:
    return datetime.now(timezone.utc).date()


def end_of_day(value: date) -> int:
    """A token `--expires 2026-12-31` works through that UTC day: it expires at the next midnight."""
    return int(datetime.combine(value + timedelta(days=1), datetime.min.time(), timezone.utc).timestamp())


def money(value: Decimal) -> str:
    """Exact, plain digits (never 1E-7), as stored."""
    return format(value, "f")


def when(epoch: float | None) -> str:
    if not epoch:
        return "-"
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
