"""The customer's read-only billing routes through their handlers: GET /v1/models/{model},
/v1/pricing, /v1/usage and the /v1/dashboard/billing/* shapes, after real (emulated) generations."""
from __future__ import annotations

import importlib
import json
import time
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

QUICKSTART = {"model": "gpt-image-2", "prompt": "A futuristic skyline at dusk", "size": "1024x1024",
              "quality": "medium"}
# 41 text tokens at $5/1M + 1,756 image output tokens at $30/1M = $0.000205 + $0.05268
KNOWN_USAGE = {"input_tokens": 41, "input_tokens_details": {"text_tokens": 41, "image_tokens": 0},
               "output_tokens": 1756, "total_tokens": 1797}
KNOWN_COST = Decimal("0.052885")

READ_ROUTES = ["/v1/models/gpt-image-2", "/v1/pricing", "/v1/usage", "/v1/dashboard/billing/subscription",
               "/v1/dashboard/billing/usage", "/dashboard/billing/subscription", "/dashboard/billing/usage"]


def today() -> date:
    return datetime.now(timezone.utc).date()


def midnight_epoch(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp())


def generate_known(gateway, token: str) -> None:
    gateway.emulator.script({"usage": KNOWN_USAGE})
    reply = gateway.generate(QUICKSTART, token)
    assert reply.status == 200, reply.raw["body"][:500]
    assert reply.headers["x-gateway-cost-usd"] == str(KNOWN_COST)


def exact(reply, *keys: str) -> Decimal:
    """A number of the JSON body read as written (digit for digit), not through a float."""
    value = json.loads(reply.raw["body"], parse_float=Decimal, parse_int=Decimal)
    for key in keys:
        value = value[key]
    return value


# --- GET /v1/models/{model} --------------------------------------------------------------------

def test_retrieving_a_model_answers_the_model_object_the_list_has(gateway):
    token = gateway.token()
    reply = gateway.get("/v1/models/gpt-image-2", token)
    assert reply.status == 200
    assert reply.json == {"id": "gpt-image-2", "object": "model", "created": 1776729600, "owned_by": "image-gateway"}
    listed = {m["id"]: m for m in gateway.models(token).json["data"]}
    assert listed["gpt-image-2"] == reply.json
    assert reply.headers["x-request-id"]


@pytest.mark.parametrize("model", ["nope", "dall-e-3", "GPT-IMAGE-2"])
def test_retrieving_an_unknown_model_is_a_404_model_not_found(gateway, model):
    reply = gateway.get("/v1/models/{model}", gateway.token(), path_params={"model": model})
    assert reply.status == 404
    assert reply.json == {"error": {
        "message": f"The model '{model}' does not exist or you do not have access to it.",
        "type": "invalid_request_error", "param": "model", "code": "model_not_found"}}


def test_allowed_models_are_respected_by_list_retrieve_and_pricing(gateway):
    token = gateway.token(allowed_models=["gpt-image-1-mini"])
    assert [m["id"] for m in gateway.models(token).json["data"]] == ["gpt-image-1-mini"]
    assert gateway.get("/v1/models/gpt-image-1-mini", token).status == 200
    refused = gateway.get("/v1/models/gpt-image-2", token)
    # Not allowed looks exactly like unknown.
    assert (refused.status, refused.error["code"], refused.error["param"]) == (404, "model_not_found", "model")
    assert [entry["model"] for entry in gateway.get("/v1/pricing", token).json["data"]] == ["gpt-image-1-mini"]


# --- GET /v1/pricing ---------------------------------------------------------------------------

def test_pricing_at_multiplier_1_gives_the_catalog_rates_and_the_platform_table(gateway):
    reply = gateway.get("/v1/pricing", gateway.token())
    assert reply.status == 200
    body = reply.json
    assert (body["object"], body["currency"], body["multiplier"]) == ("pricing", "usd", 1)
    assert [entry["model"] for entry in body["data"]] == ["gpt-image-2", "gpt-image-1.5", "gpt-image-1-mini"]
    gpt_image_2 = body["data"][0]
    assert gpt_image_2["per_million_tokens"] == {"text_input": 5, "cached_text_input": 1.25, "image_input": 8,
                                                 "image_output": 30}
    # The seed's table: $0.006 / $0.053 / $0.211 square, $0.005 / $0.041 / $0.165 portrait and landscape.
    assert gpt_image_2["per_image_estimates"] == {
        "1024x1024": {"low": 0.006, "medium": 0.053, "high": 0.211},
        "1024x1536": {"low": 0.005, "medium": 0.041, "high": 0.165},
        "1536x1024": {"low": 0.005, "medium": 0.041, "high": 0.165},
    }
    assert gpt_image_2["per_image_estimates_exact"] == {
        "1024x1024": {"low": 0.00588, "medium": 0.05268, "high": 0.21072},
        "1024x1536": {"low": 0.0048, "medium": 0.04116, "high": 0.16464},
        "1536x1024": {"low": 0.0048, "medium": 0.04116, "high": 0.16464},
    }
    mini = body["data"][2]
    assert mini["per_million_tokens"] == {"text_input": 2, "cached_text_input": 0.2, "image_input": 2.5,
                                          "image_output": 8}
    assert mini["per_image_estimates_exact"]["1024x1024"]["medium"] == 0.008448  # 1056 x $8 / 1M


def test_pricing_applies_the_deployment_and_token_multipliers_and_matches_the_charge(gateway, monkeypatch):
    # Given a platform margin of 1.5 and a customer discount of 0.8: 1.2 in all
    monkeypatch.setattr(gateway.deps, "settings", gateway.deps.settings.model_copy(update={"price_multiplier": Decimal("1.5")}))
    token = gateway.token(price_multiplier=Decimal("0.8"))
    reply = gateway.get("/v1/pricing", token)
    assert exact(reply, "multiplier") == Decimal("1.2")
    entry = reply.json["data"][0]
    assert entry["per_million_tokens"] == {"text_input": 6, "cached_text_input": 1.5, "image_input": 9.6,
                                           "image_output": 36}
    assert entry["per_image_estimates_exact"]["1024x1024"] == {"low": 0.007056, "medium": 0.063216,
                                                               "high": 0.252864}
    assert entry["per_image_estimates"]["1024x1024"] == {"low": 0.007, "medium": 0.063, "high": 0.253}
    # Then a request is charged exactly at the listed rates
    rates = json.loads(reply.raw["body"], parse_float=Decimal, parse_int=Decimal)["data"][0]["per_million_tokens"]
    expected = (41 * rates["text_input"] + 1756 * rates["image_output"]) / Decimal(1_000_000)
    gateway.emulator.script({"usage": KNOWN_USAGE})
    charged = gateway.generate(QUICKSTART, token)
    assert Decimal(charged.headers["x-gateway-cost-usd"]) == expected == Decimal("0.063462")


def test_pricing_with_only_a_token_multiplier(gateway):
    reply = gateway.get("/v1/pricing", gateway.token(price_multiplier=Decimal("0.8")))
    assert exact(reply, "multiplier") == Decimal("0.8")
    entry = reply.json["data"][0]
    assert entry["per_million_tokens"] == {"text_input": 4, "cached_text_input": 1, "image_input": 6.4,
                                           "image_output": 24}
    assert entry["per_image_estimates_exact"]["1024x1536"] == {"low": 0.00384, "medium": 0.032928,
                                                               "high": 0.131712}


# --- GET /v1/usage -----------------------------------------------------------------------------

def test_usage_after_a_generation_reports_the_exact_cost_tokens_and_balance(gateway):
    token = gateway.token("10")
    generate_known(gateway, token)
    reply = gateway.get("/v1/usage", token)
    assert reply.status == 200
    now = today()
    assert reply.json == {
        "object": "usage", "balance_usd": 9.947115, "total_cost_usd": 0.052885,
        "start_date": now.replace(day=1).isoformat(), "end_date": now.isoformat(),
        "data": [{"date": now.isoformat(), "model": "gpt-image-2", "requests": 1, "images": 1,
                  "text_input_tokens": 41, "cached_text_input_tokens": 0, "image_input_tokens": 0,
                  "image_output_tokens": 1756, "cost_usd": 0.052885}],
    }
    assert exact(reply, "total_cost_usd") == KNOWN_COST
    assert exact(reply, "balance_usd") == gateway.balance(token) == Decimal("9.947115")


def test_usage_sums_requests_of_a_day_and_across_models_exactly(gateway):
    token = gateway.token("10")
    for _ in range(3):
        generate_known(gateway, token)
    gateway.emulator.script({"usage": {"input_tokens": 7, "input_tokens_details": {"text_tokens": 7},
                                       "output_tokens": 272}})
    assert gateway.generate({**QUICKSTART, "model": "gpt-image-1-mini"}, token).status == 200
    reply = gateway.get("/v1/usage", token, query={"start_date": today().isoformat()})
    rows = {row["model"]: row for row in reply.json["data"]}
    assert set(rows) == {"gpt-image-2", "gpt-image-1-mini"}
    assert (rows["gpt-image-2"]["requests"], rows["gpt-image-2"]["image_output_tokens"]) == (3, 3 * 1756)
    mini_cost = (7 * Decimal(2) + 272 * Decimal(8)) / Decimal(1_000_000)  # 0.00219
    assert exact(reply, "total_cost_usd") == 3 * KNOWN_COST + mini_cost == Decimal("0.160845")
    assert exact(reply, "balance_usd") == Decimal("10") - Decimal("0.160845")


def test_usage_of_a_range_without_requests_is_empty(gateway):
    token = gateway.token()
    generate_known(gateway, token)
    reply = gateway.get("/v1/usage", token, query={"start_date": "2020-01-01", "end_date": "2020-01-31"})
    assert reply.status == 200
    assert (reply.json["data"], reply.json["total_cost_usd"]) == ([], 0)
    assert (reply.json["start_date"], reply.json["end_date"]) == ("2020-01-01", "2020-01-31")


def test_usage_with_only_an_end_date_starts_at_the_first_of_its_month(gateway):
    reply = gateway.get("/v1/usage", gateway.token(), query={"end_date": "2026-02-17"})
    assert (reply.json["start_date"], reply.json["end_date"]) == ("2026-02-01", "2026-02-17")


@pytest.mark.parametrize("route", ["/v1/usage", "/v1/dashboard/billing/usage"])
@pytest.mark.parametrize("query, param", [
    ({"start_date": "2026-1-01"}, "start_date"),
    ({"start_date": "20260101"}, "start_date"),
    ({"start_date": "yesterday"}, "start_date"),
    ({"end_date": "2026-02-30"}, "end_date"),
    ({"end_date": "2026-13-01"}, "end_date"),
    ({"end_date": ""}, "end_date"),
    ({"start_date": "1969-12-31", "end_date": "1970-01-05"}, "start_date"),
    ({"start_date": "2026-03-02", "end_date": "2026-03-01"}, "start_date"),
    ({"start_date": "2024-01-01", "end_date": "2025-01-02"}, "end_date"),  # more than 366 days
])
def test_bad_dates_are_a_400_naming_the_param(gateway, route, query, param):
    reply = gateway.get(route, gateway.token(), query=query)
    assert reply.status == 400
    assert (reply.error["type"], reply.error["param"], reply.error["code"]) == (
        "invalid_request_error", param, "invalid_value")
    assert set(reply.error) == {"message", "type", "param", "code"}


def test_a_whole_leap_year_is_the_longest_range(gateway):
    token = gateway.token()
    # /v1/usage: both dates inclusive
    assert gateway.get("/v1/usage", token, query={"start_date": "2024-01-01", "end_date": "2024-12-31"}).status == 200
    assert gateway.get("/v1/usage", token, query={"start_date": "2024-01-01", "end_date": "2025-01-01"}).status == 400
    # dashboard: end_date exclusive, so one day later
    dashboard = gateway.get("/v1/dashboard/billing/usage", token,
                            query={"start_date": "2024-01-01", "end_date": "2025-01-01"})
    assert dashboard.status == 200 and len(dashboard.json["daily_costs"]) == 366


# --- GET /v1/dashboard/billing/subscription ----------------------------------------------------

def test_subscription_says_what_the_token_was_funded_with_and_until_when(gateway):
    expiry = int(time.time()) + 30 * 86400
    token = gateway.token("25", expires_at=expiry)
    generate_known(gateway, token)
    reply = gateway.get("/v1/dashboard/billing/subscription", token)
    assert reply.status == 200
    assert reply.json == {
        "object": "billing_subscription", "has_payment_method": True, "soft_limit_usd": 25, "hard_limit_usd": 25,
        "system_hard_limit_usd": 25, "access_until": expiry, "plan": {"title": "prepaid", "id": "prepaid"},
        "balance_usd": 24.947115,
    }
    assert exact(reply, "balance_usd") == Decimal("24.947115")


def test_subscription_of_a_token_without_expiry_has_access_until_0(gateway):
    reply = gateway.get("/v1/dashboard/billing/subscription", gateway.token("0.5"))
    assert (reply.json["access_until"], reply.json["hard_limit_usd"]) == (0, 0.5)


# --- GET /v1/dashboard/billing/usage -----------------------------------------------------------

def test_dashboard_usage_is_in_cents_per_day_and_agrees_with_usage(gateway):
    token = gateway.token("10")
    generate_known(gateway, token)
    now = today()
    # What ChatGPT-Next-Web asks for: the first of the month to tomorrow (end_date exclusive)
    query = {"start_date": now.replace(day=1).isoformat(), "end_date": (now + timedelta(days=1)).isoformat()}
    reply = gateway.get("/v1/dashboard/billing/usage", token, query=query)
    assert reply.status == 200
    body = reply.json
    assert body["object"] == "list"
    assert body["total_usage"] == 5.2885
    assert exact(reply, "total_usage") == KNOWN_COST * 100 == exact(gateway.get("/v1/usage", token),
                                                                     "total_cost_usd") * 100
    days = body["daily_costs"]
    assert [d["timestamp"] for d in days] == [midnight_epoch(now.replace(day=d)) for d in range(1, now.day + 1)]
    assert days[-1]["line_items"] == [{"name": "gpt-image-2", "cost": 5.2885}]
    assert all(d["line_items"] == [] for d in days[:-1])
    # Without dates: the same (this month so far)
    assert gateway.get("/v1/dashboard/billing/usage", token).json == body
    # And what ChatGPT-Next-Web really calls (no /v1) answers the same
    assert gateway.get("/dashboard/billing/usage", token, query=query).json == body


def test_dashboard_usage_end_date_is_exclusive(gateway):
    token = gateway.token()
    generate_known(gateway, token)
    now = today().isoformat()
    # one-api asks for end_date = today: today's usage is not in it (as against OpenAI)
    up_to_today = gateway.get("/v1/dashboard/billing/usage", token, query={"start_date": now, "end_date": now})
    assert up_to_today.json == {"object": "list", "total_usage": 0, "daily_costs": []}
    tomorrow = (today() + timedelta(days=1)).isoformat()
    today_only = gateway.get("/v1/dashboard/billing/usage", token, query={"start_date": now, "end_date": tomorrow})
    assert today_only.json["total_usage"] == 5.2885
    assert len(today_only.json["daily_costs"]) == 1


def test_the_unversioned_subscription_path_answers_the_same(gateway):
    token = gateway.token()
    assert (gateway.get("/dashboard/billing/subscription", token).json
            == gateway.get("/v1/dashboard/billing/subscription", token).json)


# --- authentication ----------------------------------------------------------------------------

@pytest.mark.parametrize("route", READ_ROUTES)
def test_every_billing_route_needs_a_valid_token(gateway, route):
    for token in (None, "sk-img-not-a-real-token"):
        reply = gateway.get(route, token)
        assert reply.status == 401
        assert reply.json == {"error": {
            "message": "Incorrect API key provided. You can find your API key in the platform console.",
            "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}


@pytest.mark.parametrize("route", READ_ROUTES)
def test_revocation_takes_effect_at_once_on_the_read_routes(gateway, route):
    # Given a token that has just been used (its record is in the image routes' cache)
    token = gateway.token()
    generate_known(gateway, token)
    assert gateway.get(route, token).status == 200
    # When the operator revokes it, then the next read is refused
    gateway.revoke(token)
    assert gateway.get(route, token).status == 401


def test_an_expired_token_is_refused(gateway):
    token = gateway.token(expires_at=int(time.time()) - 1)
    assert gateway.get("/v1/dashboard/billing/subscription", token).status == 401


def test_a_token_sees_only_its_own_usage(gateway):
    spender, other = gateway.token(), gateway.token()
    generate_known(gateway, spender)
    assert gateway.get("/v1/usage", other).json["data"] == []
    assert gateway.get("/v1/dashboard/billing/usage", other).json["total_usage"] == 0


@pytest.mark.parametrize("name", ["model_retrieve.json", "pricing.json", "usage.json", "billing_subscription.json",
                                  "billing_usage.json"])
def test_the_sample_events_are_served_by_their_handlers(gateway, name):
    # What `sam local invoke <Function> -e events/<name>` sends, with a real token in place of the placeholder
    from tests.functional.conftest import ROOT, FakeContext, Reply, _get_route

    event = json.loads((ROOT / "events" / name).read_text())
    token = gateway.token()
    event["headers"]["Authorization"] = f"Bearer {token}"
    event["multiValueHeaders"]["Authorization"] = [f"Bearer {token}"]
    route, _ = _get_route(event["resource"], event["pathParameters"] or {})
    module, _, attribute = route.handler.rpartition(".")
    reply = Reply(getattr(importlib.import_module(module), attribute)(event, FakeContext()))
    assert reply.status == 200, reply.raw["body"]
    assert reply.headers["x-request-id"] == event["requestContext"]["requestId"]
