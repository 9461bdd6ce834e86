"""What a customer can read about their own money: daily usage, the balance, and the two
`/v1/dashboard/billing/*` shapes that OpenAI front ends (ChatGPT-Next-Web, one-api) read.

Everything comes from the ledger's daily totals (one item per UTC day and model) and the token
record; sums are Decimal, exact to the token, and become JSON numbers only at the edge.
"""
from __future__ import annotations

import re
from dataclasses import asdict
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from common.errors import invalid_request
from common.web.apigw import Request, Response, json_response
from common.wiring import Container

DATE_FORMAT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
MAX_RANGE_DAYS = 366
EARLIEST = date(1970, 1, 1)  # day timestamps are Unix epochs
CENTS = Decimal(100)


def today() -> date:
    return datetime.now(timezone.utc).date()


def query_date(request: Request, name: str) -> date | None:
    """An optional `YYYY-MM-DD` query parameter; a 400 naming it when it is not a real date."""
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        if not DATE_FORMAT.fullmatch(raw):
            raise ValueError(raw)
        parsed = date.fromisoformat(raw)
        if parsed < EARLIEST:
            raise ValueError(raw)
        return parsed
    except ValueError:
        raise invalid_request(f"Invalid '{name}': expected a date as YYYY-MM-DD, got {raw!r}.",
                              param=name) from None


def _check_span(start: date, end: date, days: int) -> None:
    if start > end:
        raise invalid_request(f"Invalid 'start_date': {start.isoformat()} is after end_date {end.isoformat()}.",
                              param="start_date")
    if days > MAX_RANGE_DAYS:
        raise invalid_request(f"Invalid 'end_date': a query covers at most {MAX_RANGE_DAYS} days, "
                              f"this one {days}.", param="end_date")


def _epoch(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp())


# --- GET /v1/usage ---------------------------------------------------------------------------

def usage(request: Request, deps: Container) -> Response:
    """Daily totals per model, both dates inclusive (UTC days).

    Defaults: from the first day of end_date's month (the current month when neither is given)
    to today. Every charged request of the token is shown, whatever models it may use today.
    """
    token = deps.tokens.authenticate(request.header("authorization"))
    start, end = query_date(request, "start_date"), query_date(request, "end_date")
    end = end or today()
    start = start or end.replace(day=1)
    _check_span(start, end, (end - start).days + 1)
    rows = deps.ledger.daily_totals(token.token_id, start.isoformat(), end.isoformat())
    payload = {
        "object": "usage",
        "balance_usd": token.balance_usd,
        "total_cost_usd": sum((row.cost_usd for row in rows), Decimal(0)),
        "start_date": start.isoformat(),
        "end_date": end.isoformat(),
        "data": [asdict(row) for row in rows],
    }
    return json_response(200, payload, request.request_id)


# --- GET /v1/dashboard/billing/subscription --------------------------------------------------

def billing_subscription(request: Request, deps: Container) -> Response:
    """OpenAI's legacy subscription shape for a prepaid token: the limit is what it was funded with.

    Front ends show `hard_limit_usd` as the total and `total_usage` of the usage endpoint as the
    used part; `balance_usd` (not in OpenAI's shape) is what the token can still spend now.
    """
    token = deps.tokens.authenticate(request.header("authorization"))
    payload: dict[str, Any] = {
        "object": "billing_subscription",
        "has_payment_method": True,
        "soft_limit_usd": token.deposited_usd,
        "hard_limit_usd": token.deposited_usd,
        "system_hard_limit_usd": token.deposited_usd,
        "access_until": token.expires_at or 0,
        "plan": {"title": "prepaid", "id": "prepaid"},
        "balance_usd": token.balance_usd,
    }
    return json_response(200, payload, request.request_id)


# --- GET /v1/dashboard/billing/usage ---------------------------------------------------------

def billing_usage(request: Request, deps: Container) -> Response:
    """OpenAI's legacy usage shape: costs in cents (USD x 100), one entry per UTC day.

    end_date is EXCLUSIVE, as it was on OpenAI's endpoint that these clients were written for:
    ChatGPT-Next-Web asks for start_date = first of the month and end_date = tomorrow to include
    today, and clients that add up consecutive windows ([Jan 1, Feb 1) + [Feb 1, Mar 1)) count
    no day twice. (one-api sends end_date = today, so its figure leaves out today, as it did
    against OpenAI.) start_date == end_date is an empty range, not an error. Defaults: the first
    of the current month to tomorrow, i.e. this month so far.
    """
    token = deps.tokens.authenticate(request.header("authorization"))
    start, end = query_date(request, "start_date"), query_date(request, "end_date")
    end = end or today() + timedelta(days=1)
    start = start or (end - timedelta(days=1)).replace(day=1)
    _check_span(start, end, (end - start).days)
    days = [start + timedelta(days=offset) for offset in range((end - start).days)]
    rows = (deps.ledger.daily_totals(token.token_id, days[0].isoformat(), days[-1].isoformat())
            if days else [])
    by_day: dict[str, list[dict[str, Any]]] = {day.isoformat(): [] for day in days}
    for row in rows:
        by_day[row.date].append({"name": row.model, "cost": row.cost_usd * CENTS})
    payload = {
        "object": "list",
        "total_usage": sum((row.cost_usd for row in rows), Decimal(0)) * CENTS,
        "daily_costs": [{"timestamp": _epoch(day), "line_items": by_day[day.isoformat()]} for day in days],
    }
    return json_response(200, payload, request.request_id)
