"""The billing routes over real HTTP against `make run`: the official SDK's models.retrieve, and
/v1/usage, /v1/pricing and the dashboard shapes agreeing with what a generation was charged."""
from __future__ import annotations

import json
import signal
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import openai
import pytest

from tests.integration.stack import Stack

pytestmark = pytest.mark.slow

QUICKSTART = {"model": "gpt-image-2", "prompt": "A futuristic skyline at dusk", "size": "1024x1024"}
KNOWN_USAGE = {"input_tokens": 41, "input_tokens_details": {"text_tokens": 41, "image_tokens": 0},
               "output_tokens": 1756, "total_tokens": 1797}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    running = Stack(tmp_path_factory.mktemp("billing_stack"))
    yield running
    assert running.stop(signal.SIGTERM) == 0


def exact(response) -> dict:
    """The JSON body with its numbers as written, digit for digit."""
    return json.loads(response.text, parse_float=Decimal, parse_int=Decimal)


def test_the_sdk_retrieves_a_model_and_raises_not_found_for_an_unknown_one(stack):
    client = openai.OpenAI(base_url=stack.state["base_url"], api_key=stack.state["token"], max_retries=0)
    model = client.models.retrieve("gpt-image-2")
    assert (model.id, model.object, model.owned_by) == ("gpt-image-2", "model", "image-gateway")
    assert model.created == 1776729600
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("nope")
    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"


def test_a_wrong_key_cannot_read_billing(stack):
    for path in ("/usage", "/pricing", "/dashboard/billing/subscription", "/dashboard/billing/usage"):
        reply = stack.http.get(stack.state["base_url"] + path, headers={"Authorization": "Bearer sk-img-wrong"},
                               timeout=10)
        assert reply.status_code == 401, path
        assert reply.json()["error"]["code"] == "invalid_api_key"


def test_usage_pricing_and_dashboard_agree_with_the_charge_of_a_generation(stack):
    # Given a fresh $1 token and one medium square image for which the upstream reports known usage
    token = stack.new_token("1")
    auth = {"Authorization": f"Bearer {token}"}
    base = stack.state["base_url"]
    stack.emulator("script", {"behaviours": [{"usage": KNOWN_USAGE}]})
    client = openai.OpenAI(base_url=base, api_key=token, max_retries=0)
    raw = client.images.with_raw_response.generate(**QUICKSTART, quality="medium")
    assert raw.headers["x-gateway-cost-usd"] == "0.052885"

    # /v1/usage: exactly the charge, and the balance the ledger holds
    today = datetime.now(timezone.utc).date()
    usage = stack.http.get(f"{base}/usage", headers=auth, timeout=10)
    assert usage.status_code == 200
    body = exact(usage)
    assert body["total_cost_usd"] == Decimal("0.052885")
    assert body["balance_usd"] == Decimal("0.947115") == stack.balance(token)
    assert (body["start_date"], body["end_date"]) == (today.replace(day=1).isoformat(), today.isoformat())
    [row] = body["data"]
    assert (row["date"], row["model"], row["requests"], row["images"]) == (today.isoformat(), "gpt-image-2", 1, 1)
    assert (row["text_input_tokens"], row["image_output_tokens"], row["cost_usd"]) == (41, 1756, Decimal("0.052885"))

    # The dashboard, asked as ChatGPT-Next-Web asks (first of the month to tomorrow, no /v1)
    root = base.removesuffix("/v1")
    query = {"start_date": today.replace(day=1).isoformat(), "end_date": (today + timedelta(days=1)).isoformat()}
    for dashboard_base in (base, root):
        dashboard = stack.http.get(f"{dashboard_base}/dashboard/billing/usage", params=query, headers=auth, timeout=10)
        assert dashboard.status_code == 200, dashboard.text
        cents = exact(dashboard)
        assert cents["total_usage"] == Decimal("5.2885")
        assert cents["daily_costs"][-1]["line_items"] == [{"name": "gpt-image-2", "cost": Decimal("5.2885")}]
        subscription = stack.http.get(f"{dashboard_base}/dashboard/billing/subscription", headers=auth, timeout=10)
        assert subscription.status_code == 200
        limits = exact(subscription)
        assert limits["hard_limit_usd"] == Decimal("1")
        # what such a front end shows: limit - used = what is left
        assert limits["hard_limit_usd"] - cents["total_usage"] / 100 == limits["balance_usd"] == Decimal("0.947115")

    # /v1/pricing lists the rates the charge was computed with
    pricing = exact(stack.http.get(f"{base}/pricing", headers=auth, timeout=10))
    rates = pricing["data"][0]["per_million_tokens"]
    assert (41 * rates["text_input"] + 1756 * rates["image_output"]) / 1_000_000 == Decimal("0.052885")
    assert pricing["data"][0]["per_image_estimates"]["1024x1024"]["medium"] == Decimal("0.053")


def test_a_bad_date_is_a_400_the_sdk_would_understand(stack):
    reply = stack.http.get(f"{stack.state['base_url']}/usage", params={"start_date": "2026-02-30"},
                           headers=stack.auth, timeout=10)
    assert reply.status_code == 400
    assert reply.json()["error"] == {"message": reply.json()["error"]["message"], "type": "invalid_request_error",
                                     "param": "start_date", "code": "invalid_value"}
