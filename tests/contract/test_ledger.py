"""The Ledger port's contract: every test runs against the in-memory fake and the DynamoDB
ledger on moto (the template's own table): reservations, settlement, release, overdraft, exact
Decimal bookkeeping and concurrent reservations. A fake that passes this suite can stand in for
DynamoDB in the flow tests."""
from __future__ import annotations

import threading
import time
import uuid
from decimal import Decimal
from typing import Any

import pytest

from common.billing.ledger import DynamoLedger
from common.billing.pricing import TokenUsage
from common.billing.records import Hold, Outcome, ReservationRefused, TokenExists, TokenRecord, UnknownToken
from tests.fakes.ledger import FakeLedger

USAGE = {"input_tokens": 41, "input_tokens_details": {"text_tokens": 41, "image_tokens": 0},
         "output_tokens": 1756, "output_tokens_details": {"image_tokens": 1756, "text_tokens": 0},
         "total_tokens": 1797}
RESERVED = Decimal("0.263745")  # the reservation for "a cat", gpt-image-2, 1024x1024, high
COST = Decimal("0.052885")      # what USAGE costs on gpt-image-2
ALL_DAYS = ("0001-01-01", "9999-12-31")


@pytest.fixture(params=["fake", "dynamodb"])
def ledger(request):
    if request.param == "fake":
        return FakeLedger()
    aws = request.getfixturevalue("aws")
    return DynamoLedger(aws.table, aws.dynamodb())


class Account:
    """One token in the ledger, with helpers to read back what the ledger wrote."""

    def __init__(self, ledger: Any, balance: str = "10", **options: Any) -> None:
        self.ledger = ledger
        self.key_hash = uuid.uuid4().hex * 2
        self.token_id = "tok_" + uuid.uuid4().hex[:16]
        ledger.create_token(TokenRecord(key_hash=self.key_hash, token_id=self.token_id, name="unit",
                                        balance_usd=Decimal(balance), deposited_usd=Decimal(balance),
                                        created_at=int(time.time()), **options))

    def reserve(self, amount: Decimal | str, request_id: str | None = None) -> Hold:
        return self.ledger.reserve(self.token, request_id or uuid.uuid4().hex, Decimal(amount))

    @property
    def token(self) -> TokenRecord:
        return self.ledger.get_token(self.key_hash)

    @property
    def records(self):
        return self.ledger.request_records(self.token_id)

    @property
    def days(self):
        return self.ledger.daily_totals(self.token_id, *ALL_DAYS)

    def held(self) -> dict[str, Decimal]:
        return {rid: hold.amount for rid, hold in self.token.holds.items()}

    def invariant_gap(self) -> Decimal:
        """deposited - balance - holds - spent: zero when no money was created or lost."""
        token = self.token
        return token.deposited_usd - token.balance_usd - token.held_usd - token.spent_usd


def settle(ledger: Any, hold: Hold, outcome: Outcome) -> tuple[Decimal, Decimal]:
    settlement = ledger.settle(hold, outcome)
    return settlement.charged_usd, settlement.balance_usd


def charged_outcome(cost: Decimal = COST, usage: dict | None = USAGE, images: int = 1) -> Outcome:
    tokens = TokenUsage.from_upstream(usage).as_dict() if usage else {}
    return Outcome(model="gpt-image-2", endpoint="generations", status=200, outcome="ok",
                   params={"size": "1024x1024", "quality": "medium"}, images=images, usage_raw=usage,
                   tokens=tokens, cost_by_kind={"text_input": Decimal("0.000205"), "image_output": Decimal("0.05268")},
                   cost_usd=cost, latency_ms=1234, upstream_latency_ms=1100)


def failed_outcome(code: str = "upstream_timeout", status: int = 504) -> Outcome:
    return Outcome(model="gpt-image-2", endpoint="generations", status=status, outcome=code,
                   params={"size": "1024x1024"}, latency_ms=29000, upstream_latency_ms=28000)


# --------------------------------------------------------------------------- reserve

def test_reserve_takes_the_amount_from_the_balance_and_records_a_hold(ledger):
    account = Account(ledger, balance="10")

    hold = account.reserve(RESERVED, "req-1")

    token = account.token
    assert token.balance_usd == Decimal("9.736255")
    assert account.held() == {"req-1": RESERVED}
    assert abs(token.holds["req-1"].started_at - time.time()) < 60
    assert (hold.amount, hold.balance_after, hold.request_id) == (RESERVED, Decimal("9.736255"), "req-1")


def test_reservation_of_exactly_the_balance_is_accepted_and_leaves_zero(ledger):
    account = Account(ledger, balance="0.263745")

    hold = account.reserve(RESERVED)

    assert hold.balance_after == 0
    assert account.token.balance_usd == 0


def test_reservation_above_the_balance_is_refused_as_insufficient_with_the_balance_and_changes_nothing(ledger):
    # Given a balance below the reservation
    account = Account(ledger, balance="0.2")
    before = account.token
    # When reserving
    with pytest.raises(ReservationRefused) as info:
        account.reserve(RESERVED)
    # Then the refusal says why and how much is left, and the token is untouched
    assert info.value.reason == "insufficient"
    assert info.value.balance == Decimal("0.2")
    assert account.token == before


def test_revoked_token_is_refused_as_revoked_and_changes_nothing(ledger):
    account = Account(ledger, balance="10", status="revoked")
    before = account.token

    with pytest.raises(ReservationRefused) as info:
        account.reserve(RESERVED)

    assert info.value.reason == "revoked"
    assert account.token == before


def test_expired_token_is_refused_as_expired_and_changes_nothing(ledger):
    account = Account(ledger, balance="10", expires_at=int(time.time()) - 60)
    before = account.token

    with pytest.raises(ReservationRefused) as info:
        account.reserve(RESERVED)

    assert info.value.reason == "expired"
    assert account.token == before


def test_token_expiring_in_the_future_can_reserve(ledger):
    account = Account(ledger, balance="10", expires_at=int(time.time()) + 3600)

    assert account.reserve(RESERVED).balance_after == Decimal("9.736255")


def test_unknown_token_is_refused_as_unknown_and_no_token_appears(ledger):
    with pytest.raises(ReservationRefused) as info:
        ledger.reserve(TokenRecord(key_hash="0" * 64, token_id="tok_nobody", name=""), "req-1", RESERVED)

    assert info.value.reason == "unknown"
    assert ledger.get_token("0" * 64) is None and ledger.list_tokens() == []


# --------------------------------------------------------------------------- settle

def test_settle_charges_exactly_the_cost_and_refunds_the_rest_of_the_reservation(ledger):
    account = Account(ledger, balance="10")
    hold = account.reserve(RESERVED, "req-1")

    charged, balance = settle(ledger, hold, charged_outcome())

    assert charged == COST
    assert balance == Decimal("9.947115")
    token = account.token
    assert token.balance_usd == Decimal("9.947115")
    assert token.spent_usd == COST
    assert token.holds == {}


def test_settle_writes_one_request_record_with_usage_cost_by_kind_and_charge(ledger):
    account = Account(ledger, balance="10")
    hold = account.reserve(RESERVED, "req-1")

    ledger.settle(hold, charged_outcome())

    (record,) = account.records
    assert (record.request_id, record.token_id, record.model, record.endpoint) == \
        ("req-1", account.token_id, "gpt-image-2", "generations")
    assert record.usage_raw == USAGE
    assert record.cost_by_kind == {"text_input": Decimal("0.000205"), "image_output": Decimal("0.05268")}
    assert record.tokens == {"text_input": 41, "cached_text_input": 0, "image_input": 0, "image_output": 1756}
    assert (record.charged_usd, record.cost_usd, record.reserved_usd, record.uncollected_usd) == (COST, COST, RESERVED, 0)
    assert (record.outcome, record.status, record.images) == ("ok", 200, 1)
    assert record.params == {"size": "1024x1024", "quality": "medium"}
    assert (record.latency_ms, record.upstream_latency_ms) == (1234, 1100)
    assert record.expires_at == record.created_at + 400 * 86400


def test_settle_adds_the_charge_to_the_daily_total(ledger):
    account = Account(ledger, balance="10")
    hold = account.reserve(RESERVED, "req-1")

    ledger.settle(hold, charged_outcome())

    (day,) = account.days
    assert (day.date, day.model) == (time.strftime('%Y-%m-%d', time.gmtime(hold.started_at)), "gpt-image-2")
    assert day.cost_usd == COST
    assert (day.requests, day.images) == (1, 1)
    assert (day.text_input_tokens, day.image_output_tokens) == (41, 1756)


def test_two_settled_requests_add_up_in_one_daily_total(ledger):
    account = Account(ledger, balance="10")
    first, second = account.reserve(RESERVED), account.reserve(RESERVED)

    ledger.settle(first, charged_outcome())
    ledger.settle(second, charged_outcome(cost=Decimal("0.000001"), images=2))

    (day,) = account.days
    assert day.cost_usd == Decimal("0.052886")
    assert (day.requests, day.images) == (2, 3)
    assert len(account.records) == 2


def test_settling_twice_charges_once(ledger):
    # Given a settled request
    account = Account(ledger, balance="10")
    hold = account.reserve(RESERVED, "req-1")
    ledger.settle(hold, charged_outcome())
    # When the same settlement is retried
    charged, balance = settle(ledger, hold, charged_outcome())
    # Then nothing more is charged or recorded
    assert charged == 0
    assert balance == Decimal("9.947115")
    assert account.token.balance_usd == Decimal("9.947115")
    assert account.token.spent_usd == COST
    assert len(account.records) == 1
    (day,) = account.days
    assert (day.cost_usd, day.requests) == (COST, 1)


def test_settling_the_whole_reservation_leaves_nothing_to_refund(ledger):
    account = Account(ledger, balance="1")
    hold = account.reserve(RESERVED)

    charged, balance = settle(ledger, hold, charged_outcome(cost=RESERVED))

    assert charged == RESERVED
    assert balance == account.token.balance_usd == Decimal("0.736255")


# --------------------------------------------------------------------------- release

def test_release_refunds_everything_and_records_the_failure_with_charged_zero(ledger):
    account = Account(ledger, balance="10")
    hold = account.reserve(RESERVED, "req-1")

    balance = ledger.release(hold, failed_outcome("upstream_timeout", 504))

    assert balance == Decimal("10")
    token = account.token
    assert (token.balance_usd, token.spent_usd, token.holds) == (Decimal("10"), 0, {})
    (record,) = account.records
    assert (record.charged_usd, record.cost_usd) == (0, 0)
    assert (record.outcome, record.status) == ("upstream_timeout", 504)
    assert record.reserved_usd == RESERVED
    assert record.usage_raw is None
    assert account.days == []


def test_releasing_twice_refunds_once(ledger):
    account = Account(ledger, balance="10")
    hold = account.reserve(RESERVED, "req-1")
    ledger.release(hold, failed_outcome())

    assert ledger.release(hold, failed_outcome()) == Decimal("10")
    assert account.token.balance_usd == Decimal("10")
    assert len(account.records) == 1


def test_release_after_settle_changes_nothing(ledger):
    account = Account(ledger, balance="10")
    hold = account.reserve(RESERVED, "req-1")
    ledger.settle(hold, charged_outcome())
    before = account.token

    ledger.release(hold, failed_outcome())

    assert account.token == before
    assert len(account.records) == 1


# --------------------------------------------------------------------------- cost above the reservation

def test_cost_above_the_reservation_takes_the_excess_from_the_balance_when_it_covers_it(ledger):
    account = Account(ledger, balance="5")
    hold = account.reserve("1")

    charged, balance = settle(ledger, hold, charged_outcome(cost=Decimal("1.2")))

    assert charged == Decimal("1.2")
    assert balance == account.token.balance_usd == Decimal("3.8")
    (record,) = account.records
    assert (record.charged_usd, record.uncollected_usd) == (Decimal("1.2"), 0)


def test_cost_above_reservation_and_balance_empties_the_balance_and_records_the_uncollected_rest(ledger):
    # Given 1.5 deposited, 1 reserved (0.5 left), and an upstream bill of 3
    account = Account(ledger, balance="1.5")
    hold = account.reserve("1")
    # When settling
    charged, balance = settle(ledger, hold, charged_outcome(cost=Decimal("3")))
    # Then everything there was is charged, the balance stops at zero, and the rest is recorded
    assert charged == Decimal("1.5")
    assert balance == 0
    token = account.token
    assert (token.balance_usd, token.spent_usd, token.holds) == (0, Decimal("1.5"), {})
    (record,) = account.records
    assert (record.cost_usd, record.charged_usd, record.uncollected_usd) == (Decimal("3"), Decimal("1.5"), Decimal("1.5"))
    (day,) = account.days
    assert day.cost_usd == Decimal("1.5")


def test_cost_above_a_reservation_that_took_the_whole_balance_charges_only_the_reservation(ledger):
    account = Account(ledger, balance="1")
    hold = account.reserve("1")

    charged, balance = settle(ledger, hold, charged_outcome(cost=Decimal("1.000001")))

    assert (charged, balance) == (Decimal("1"), 0)
    assert account.token.balance_usd == 0
    (record,) = account.records
    assert record.uncollected_usd == Decimal("0.000001")


# --------------------------------------------------------------------------- bookkeeping

def test_deposited_minus_balance_minus_holds_equals_spent_exactly_after_a_mix_of_operations(ledger):
    account = Account(ledger, balance="3.1415926535")
    costs = iter([Decimal("0.052885"), Decimal("0.000002"), Decimal("0.21072"), Decimal("0.000345")])

    settled_low = account.reserve(RESERVED)            # settled below the reservation
    released = account.reserve("0.5")                  # released (failed upstream)
    settled_high = account.reserve("0.000001")        # settled above the reservation, covered
    in_flight = account.reserve("0.1234567")           # still held
    ledger.settle(settled_low, charged_outcome(cost=next(costs)))
    ledger.release(released, failed_outcome())
    ledger.settle(settled_high, charged_outcome(cost=next(costs)))
    twice = account.reserve(RESERVED)
    ledger.settle(twice, charged_outcome(cost=next(costs)))
    ledger.settle(twice, charged_outcome(cost=next(costs)))  # retried settlement: no effect
    with pytest.raises(ReservationRefused):
        account.reserve("100")                             # refused

    token = account.token
    assert account.held() == {in_flight.request_id: Decimal("0.1234567")}
    assert token.spent_usd == Decimal("0.052885") + Decimal("0.000002") + Decimal("0.21072")
    assert account.invariant_gap() == 0
    assert sum(r.charged_usd for r in account.records) == token.spent_usd
    assert sum(d.cost_usd for d in account.days) == token.spent_usd
    assert all(isinstance(v, Decimal) for v in (token.balance_usd, token.spent_usd, token.deposited_usd))


def test_invariant_holds_after_an_uncollectable_overdraft(ledger):
    account = Account(ledger, balance="1.5")
    ledger.settle(account.reserve("1"), charged_outcome(cost=Decimal("3")))

    assert account.invariant_gap() == 0


def test_reserving_the_same_request_id_twice_takes_the_amount_once(ledger):
    account = Account(ledger, balance="10")
    account.reserve("1", "req-dup")
    try:
        account.reserve("1", "req-dup")
    except ReservationRefused:
        pass

    assert account.invariant_gap() == 0


# --------------------------------------------------------------------------- concurrency

def test_20_concurrent_reservations_on_a_balance_covering_7_admit_exactly_7(ledger):
    # Given a balance that covers 7 reservations of 1 (and half of an 8th)
    account = Account(ledger, balance="7.5")
    start = threading.Barrier(20)
    holds: list[Hold] = []
    refusals: list[ReservationRefused] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def attempt(index: int) -> None:
        start.wait()
        try:
            hold = account.reserve("1", f"req-{index}")
            with lock:
                holds.append(hold)
        except ReservationRefused as refused:
            with lock:
                refusals.append(refused)
        except BaseException as exc:  # pragma: no cover - reported below
            with lock:
                errors.append(exc)

    # When 20 threads reserve at once
    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # Then exactly 7 are admitted, each saw a distinct non-negative balance, and 13 are refused
    assert errors == []
    assert len(holds) == 7
    assert sorted(h.balance_after for h in holds) == [Decimal(k) + Decimal("0.5") for k in range(7)]
    assert len(refusals) == 13
    assert {r.reason for r in refusals} == {"insufficient"}
    token = account.token
    assert token.balance_usd == Decimal("0.5")
    assert len(token.holds) == 7
    assert account.invariant_gap() == 0


# --------------------------------------------------------------------------- tokens and credits

def test_a_created_token_reads_back_as_given_with_nothing_spent_and_its_deposit_recorded(ledger):
    account = Account(ledger, balance="2.5", allowed_models=("gpt-image-2",), price_multiplier=Decimal("0.9"),
                      expires_at=int(time.time()) + 3600)

    token = account.token
    assert (token.token_id, token.name, token.status) == (account.token_id, "unit", "active")
    assert (token.balance_usd, token.deposited_usd, token.spent_usd) == (Decimal("2.5"), Decimal("2.5"), 0)
    assert (token.allowed_models, token.price_multiplier) == (("gpt-image-2",), Decimal("0.9"))
    assert ledger.find_token(account.token_id) == token
    (entry,) = ledger.credit_entries(account.token_id)
    assert (entry.kind, entry.amount_usd, entry.reason) == ("deposit", Decimal("2.5"), "initial balance")


def test_creating_a_token_with_a_key_that_exists_fails_and_keeps_the_first(ledger):
    account = Account(ledger, balance="1")

    with pytest.raises(TokenExists):
        ledger.create_token(TokenRecord(key_hash=account.key_hash, token_id="tok_other", name="other",
                                        balance_usd=Decimal(5), deposited_usd=Decimal(5)))

    assert account.token.balance_usd == Decimal("1") and ledger.find_token("tok_other") is None


def test_tokens_are_listed_by_id_and_found_by_id(ledger):
    accounts = [Account(ledger, balance="1") for _ in range(3)]

    assert [t.token_id for t in ledger.list_tokens()] == sorted(a.token_id for a in accounts)
    assert ledger.find_token("tok_unknown") is None


def test_credits_move_balance_and_deposits_together_with_an_entry_each(ledger):
    account = Account(ledger, balance="1")

    assert ledger.credit(account.token, Decimal("2"), kind="deposit", reason="invoice 1") == Decimal("3")
    assert ledger.credit(account.token, Decimal("-0.5"), kind="adjustment", reason="refund") == Decimal("2.5")

    token = account.token
    assert (token.balance_usd, token.deposited_usd) == (Decimal("2.5"), Decimal("2.5"))
    assert sorted((e.kind, e.amount_usd) for e in ledger.credit_entries(account.token_id)) == \
        [("adjustment", Decimal("-0.5")), ("deposit", Decimal("1")), ("deposit", Decimal("2"))]
    assert account.invariant_gap() == 0


def test_a_negative_adjustment_below_zero_is_refused_and_changes_nothing(ledger):
    account = Account(ledger, balance="1")
    before = account.token

    with pytest.raises(ValueError):
        ledger.credit(account.token, Decimal("-1.01"), kind="adjustment", reason="too much")

    assert account.token == before and len(ledger.credit_entries(account.token_id)) == 1


def test_a_revoked_token_can_be_reactivated_and_an_unknown_one_cannot_be_changed(ledger):
    account = Account(ledger, balance="1")

    ledger.set_status(account.token, "revoked")
    assert account.token.status == "revoked"
    ledger.set_status(account.token, "active")
    assert account.token.status == "active"
    with pytest.raises(UnknownToken):
        ledger.set_status(TokenRecord(key_hash="f" * 64, token_id="tok_nobody", name=""), "revoked")


def test_daily_totals_and_records_are_read_by_date_range(ledger):
    account = Account(ledger, balance="10")
    hold = account.reserve(RESERVED, "req-1")
    ledger.settle(hold, charged_outcome())
    today = time.strftime("%Y-%m-%d", time.gmtime(hold.started_at))

    assert len(ledger.daily_totals(account.token_id, today, today)) == 1
    assert ledger.daily_totals(account.token_id, "2000-01-01", "2000-01-31") == []
    assert [r.request_id for r in ledger.request_records(account.token_id, today, today + "\uffff")] == ["req-1"]
    assert ledger.request_records(account.token_id, "2000-01-01", "2000-01-02") == []
