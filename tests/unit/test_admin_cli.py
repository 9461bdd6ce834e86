"""The operator's CLI (`python -m admin`), driven through `main(argv)` against moto in process with
the template's own table: token life cycle, money, reconciliation, usage CSV, connecting, errors."""
from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import boto3
import pytest

from admin import connect
from admin.__main__ import CSV_HEADER, main
from common.billing.ledger import DynamoLedger
from common.billing.records import Outcome
from common.billing.tokens import hash_secret

TABLE = "gateway"  # the table of the shared `aws` fixture (tests/conftest.py)
SECRET = re.compile(r"sk-img-[A-Za-z0-9_-]{43}")
TOKENS = {"text_input": 41, "cached_text_input": 0, "image_input": 0, "image_output": 1756}
COST = Decimal("0.052885")  # what TOKENS cost on gpt-image-2


@pytest.fixture(autouse=True)
def no_local_stack(monkeypatch, tmp_path):
    # A developer's running `make run` must not become these tests' default table.
    monkeypatch.setattr(connect, "DEFAULT_STATE_FILE", tmp_path / "no-stack.json")
    monkeypatch.delenv("GATEWAY_STATE_FILE", raising=False)


@pytest.fixture
def ledger(aws) -> DynamoLedger:
    assert aws.table == TABLE
    return DynamoLedger(aws.table, aws.dynamodb())


class Cli:
    def __init__(self, capsys):
        self.capsys = capsys

    def __call__(self, *argv: str, table: bool = True) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main((["--table", TABLE] if table else []) + list(argv))
        out, err = self.capsys.readouterr()
        return code, out, err

    def create(self, *options: str, name: str = "acme", balance: str = "10") -> tuple[str, str]:
        code, out, err = self("create", "--name", name, "--balance", balance, *options)
        assert code == 0, err
        [secret] = SECRET.findall(out)
        [token_id] = re.findall(r"tok_[0-9a-f]{16}", out)[:1]
        return secret, token_id


@pytest.fixture
def cli(ledger, capsys) -> Cli:
    return Cli(capsys)


def spend(ledger: DynamoLedger, secret: str, token_id: str, cost: Decimal = COST, model: str = "gpt-image-2",
          reserve: str = "0.3") -> None:
    """One real charged request: the reservation, then its settlement (as the image routes do)."""
    hold = ledger.reserve(ledger.get_token(hash_secret(secret)), uuid.uuid4().hex, Decimal(reserve), model=model,
                          endpoint="generations")
    ledger.settle(hold, Outcome(model=model, endpoint="generations", status=200, outcome="ok",
                                params={"size": "1024x1024"}, images=1, tokens=TOKENS,
                                cost_by_kind={"image_output": cost}, cost_usd=cost))


def table_text(ledger: DynamoLedger) -> str:
    return json.dumps(ledger.client.scan(TableName=TABLE)["Items"])


# --------------------------------------------------------------------------- create

def test_create_prints_the_secret_once_with_a_warning_and_stores_only_its_hash(cli, ledger):
    code, out, _ = cli("create", "--name", "acme", "--balance", "12.50")

    assert code == 0
    [secret] = SECRET.findall(out)
    assert "cannot be shown again" in out
    token = ledger.get_token(hash_secret(secret))
    assert token.name == "acme" and token.token_id in out
    assert (token.balance_usd, token.deposited_usd, token.status) == (Decimal("12.50"), Decimal("12.50"), "active")
    assert [(e.kind, e.amount_usd) for e in ledger.credit_entries(token.token_id)] == [("deposit", Decimal("12.50"))]
    assert secret not in table_text(ledger)


def test_create_stores_the_allowed_models_the_expiry_day_and_the_multiplier(cli, ledger):
    secret, _ = cli.create("--models", "gpt-image-2,gpt-image-1.5", "--expires", "2999-12-31",
                           "--multiplier", "0.9")

    token = ledger.get_token(hash_secret(secret))
    assert token.allowed_models == ("gpt-image-2", "gpt-image-1.5")
    assert token.price_multiplier == Decimal("0.9")
    # Works through the whole of that UTC day.
    assert token.expires_at == int(datetime(3000, 1, 1, tzinfo=timezone.utc).timestamp())


def test_create_with_expires_in_days_sets_the_expiry_that_many_days_ahead(cli, ledger):
    secret, _ = cli.create("--expires-in-days", "30")

    expected = time.time() + 30 * 86400
    assert abs(ledger.get_token(hash_secret(secret)).expires_at - expected) < 60


def test_create_with_json_prints_the_id_and_secret_and_warns_on_stderr(cli, ledger):
    code, out, err = cli("create", "--name", "acme", "--balance", "1", "--json")

    assert code == 0
    created = json.loads(out)
    assert SECRET.fullmatch(created["secret"])
    assert ledger.find_token(created["token_id"]).key_hash == hash_secret(created["secret"])
    assert "cannot be shown again" in err


@pytest.mark.parametrize("options", [
    ["--balance", "10abc"], ["--balance", "-5"], ["--balance", "1e3"], ["--balance", "nan"],
    ["--balance", "0.12345678901"], ["--balance", "10", "--multiplier", "0"],
    ["--balance", "10", "--multiplier", "abc"], ["--balance", "10", "--expires", "2030-02-30"],
    ["--balance", "10", "--expires", "2999-01-01", "--expires-in-days", "3"],
    ["--balance", "10", "--expires-in-days", "0"], ["--balance", "10", "--expires", "2000-01-01"],
    ["--balance", "10", "--models", "gpt-image-2,,x"], ["--balance", "10", "--models", "dall-e-9"],
    ["--balance", "10", "--name", "  "],
])
def test_create_refuses_bad_values_as_usage_errors_and_creates_nothing(cli, ledger, options):
    argv = ["create", *(["--name", "acme"] if "--name" not in options else []), *options]

    code, out, err = cli(*argv)

    assert code == 2
    assert "error" in err and not SECRET.search(out + err)
    assert ledger.list_tokens() == []


# --------------------------------------------------------------------------- list

def test_list_shows_every_token_with_its_money_but_never_a_secret_or_hash(cli, ledger):
    first, first_id = cli.create(name="acme", balance="10")
    second, second_id = cli.create("--models", "gpt-image-2", "--multiplier", "0.9", name="globex", balance="3")
    spend(ledger, first, first_id)

    code, out, _ = cli("list")

    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["TOKEN_ID", "NAME", "STATUS", "BALANCE", "DEPOSITED", "SPENT", "HOLDS", "EXPIRES",
                                "MODELS", "MULTIPLIER"]
    row = next(line.split() for line in lines if first_id in line)
    assert row[:7] == [first_id, "acme", "active", format(Decimal(10) - COST, "f"), "10", format(COST, "f"), "0"]
    assert next(line for line in lines if second_id in line).split()[-2:] == ["gpt-image-2", "0.9"]
    for secret in (first, second):
        assert secret not in out and hash_secret(secret) not in out


def test_list_as_json_has_exact_decimal_strings_and_no_secret_or_hash(cli, ledger):
    secret, token_id = cli.create(balance="10")
    ledger.reserve(ledger.get_token(hash_secret(secret)), "req-1", Decimal("0.25"))

    code, out, _ = cli("list", "--json")

    assert code == 0
    [token] = json.loads(out)
    assert token["token_id"] == token_id
    assert (token["balance_usd"], token["deposited_usd"], token["holds"], token["held_usd"]) == \
        ("9.75", "10", 1, "0.25")
    assert "key_hash" not in token and hash_secret(secret) not in out and secret not in out


def test_list_of_an_empty_table_says_how_to_create_a_token(cli):
    code, out, _ = cli("list")

    assert (code, "create" in out) == (0, True)


# --------------------------------------------------------------------------- show

def test_show_gives_details_credit_entries_holds_and_says_reconciled(cli, ledger):
    secret, token_id = cli.create(balance="10")
    spend(ledger, secret, token_id)
    ledger.reserve(ledger.get_token(hash_secret(secret)), "req-in-flight", Decimal("0.2"), model="gpt-image-2",
                   endpoint="generations")

    code, out, _ = cli("show", token_id)

    assert code == 0
    assert "initial balance" in out and "deposit" in out
    assert "req-in-flight" in out
    assert "reconciled" in out and "NOT reconciled" not in out
    assert secret not in out and hash_secret(secret) not in out


def test_show_as_json_reconciles_exactly(cli, ledger):
    secret, token_id = cli.create(balance="10")
    spend(ledger, secret, token_id)
    spend(ledger, secret, token_id, cost=Decimal("0.0000005"))
    ledger.reserve(ledger.get_token(hash_secret(secret)), "req-in-flight", Decimal("0.2"))

    code, out, _ = cli("show", token_id, "--json")

    assert code == 0
    shown = json.loads(out)
    books = shown["reconciliation"]
    spent = COST + Decimal("0.0000005")
    assert books["reconciled"] is True
    assert Decimal(books["implied_spent_usd"]) == Decimal(books["charged_usd"]) == Decimal(books["spent_usd"]) == spent
    assert (books["records"], Decimal(books["held_usd"])) == (2, Decimal("0.2"))
    assert [h["request_id"] for h in shown["holds"]] == ["req-in-flight"]
    assert [(e["kind"], e["amount_usd"], e["reason"]) for e in shown["credit_entries"]] == \
        [("deposit", "10", "initial balance")]
    assert "key_hash" not in shown["token"] and hash_secret(secret) not in out


def test_show_reports_the_difference_when_the_books_do_not_balance(cli, ledger):
    secret, token_id = cli.create(balance="10")
    spend(ledger, secret, token_id)
    # Money that appeared from nowhere: the balance went up without an entry.
    ledger.client.update_item(TableName=TABLE, Key={"pk": {"S": f"KEY#{hash_secret(secret)}"}, "sk": {"S": "TOKEN"}},
                              UpdateExpression="SET balance_usd = balance_usd + :x",
                              ExpressionAttributeValues={":x": {"N": "1"}})

    code, out, _ = cli("show", token_id)

    assert code == 0
    assert "NOT reconciled" in out
    assert "differs by -1" in out


# --------------------------------------------------------------------------- top-up and adjust

def test_top_up_adds_a_deposit_with_its_reason_and_prints_the_new_balance(cli, ledger):
    secret, token_id = cli.create(balance="10")

    code, out, _ = cli("top-up", token_id, "5.25", "--reason", "invoice 42")

    assert code == 0 and "15.25" in out
    token = ledger.find_token(token_id)
    assert (token.balance_usd, token.deposited_usd) == (Decimal("15.25"), Decimal("15.25"))
    assert {(e.kind, e.amount_usd, e.reason) for e in ledger.credit_entries(token_id)} == \
        {("deposit", Decimal("10"), "initial balance"), ("deposit", Decimal("5.25"), "invoice 42")}


def test_a_negative_adjustment_within_the_balance_takes_money_back_with_its_entry(cli, ledger):
    _, token_id = cli.create(balance="10")

    code, out, _ = cli("adjust", token_id, "-2.5", "--reason", "duplicate top-up")

    assert code == 0 and "7.5" in out
    assert ledger.find_token(token_id).balance_usd == Decimal("7.5")
    assert {(e.kind, e.amount_usd) for e in ledger.credit_entries(token_id)} == \
        {("adjustment", Decimal("-2.5")), ("deposit", Decimal("10"))}


def test_a_negative_adjustment_beyond_the_balance_fails_and_changes_nothing(cli, ledger):
    _, token_id = cli.create(balance="10")
    before = table_text(ledger)

    code, out, err = cli("adjust", token_id, "-10.01", "--reason", "too much")

    assert code == 1
    assert "does not cover" in err and "balance 10 USD" in err and len(err.strip().splitlines()) == 1
    assert ledger.find_token(token_id).balance_usd == Decimal(10)
    assert table_text(ledger) == before


def test_a_positive_adjustment_adds_money(cli, ledger):
    _, token_id = cli.create(balance="1")

    code, out, _ = cli("adjust", token_id, "+0.0000005", "--reason", "rounding goodwill")

    assert code == 0 and "+0.0000005" in out
    assert ledger.find_token(token_id).balance_usd == Decimal("1.0000005")


@pytest.mark.parametrize("argv", [
    ["top-up", "{id}", "0", "--reason", "x"], ["top-up", "{id}", "-1", "--reason", "x"],
    ["top-up", "{id}", "5"], ["top-up", "{id}", "5", "--reason", "  "], ["adjust", "{id}", "0", "--reason", "x"],
    ["adjust", "{id}", "1.5.2", "--reason", "x"],
])
def test_bad_amounts_or_a_missing_reason_are_usage_errors_and_change_nothing(cli, ledger, argv):
    _, token_id = cli.create(balance="10")
    before = table_text(ledger)

    code, _, err = cli(*[arg.format(id=token_id) for arg in argv])

    assert code == 2 and "error" in err
    assert table_text(ledger) == before


# --------------------------------------------------------------------------- revoke

def test_revoke_refuses_the_next_reservation_and_is_idempotent(cli, ledger):
    secret, token_id = cli.create(balance="10")

    first = cli("revoke", token_id)
    second = cli("revoke", token_id)

    assert (first[0], second[0]) == (0, 0)
    assert "already revoked" in second[1]
    assert ledger.find_token(token_id).status == "revoked"
    with pytest.raises(Exception, match="revoked"):
        ledger.reserve(ledger.get_token(hash_secret(secret)), "req-after", Decimal("0.1"))


def test_reactivate_makes_a_revoked_token_active_again(cli, ledger):
    _, token_id = cli.create(balance="10")
    cli("revoke", token_id)

    code, out, _ = cli("reactivate", token_id)

    assert code == 0 and ledger.find_token(token_id).status == "active"


# --------------------------------------------------------------------------- usage

def test_usage_prints_this_months_daily_totals_per_model_as_exact_csv(cli, ledger):
    secret, token_id = cli.create(balance="10")
    spend(ledger, secret, token_id)
    spend(ledger, secret, token_id)
    spend(ledger, secret, token_id, cost=Decimal("0.0000005"), model="gpt-image-1.5")
    today = datetime.now(timezone.utc).date().isoformat()

    code, out, _ = cli("usage", token_id)

    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == CSV_HEADER
    assert out.splitlines()[0] == ("date,model,requests,images,text_input_tokens,cached_text_input_tokens,"
                                   "image_input_tokens,image_output_tokens,cost_usd")
    assert rows[1][:8] == [today, "gpt-image-1.5", "1", "1", "41", "0", "0", "1756"]
    assert rows[2][:8] == [today, "gpt-image-2", "2", "2", "82", "0", "0", "3512"]
    assert rows[1][8] == "0.0000005"  # plain digits, never 5E-7
    assert Decimal(rows[2][8]) == 2 * COST and re.fullmatch(r"[0-9]+\.[0-9]+", rows[2][8])
    assert len(rows) == 3


def test_usage_outside_the_range_is_only_the_header(cli, ledger):
    secret, token_id = cli.create(balance="10")
    spend(ledger, secret, token_id)
    yesterday = (datetime.now(timezone.utc).date() - timedelta(days=1)).isoformat()

    code, out, _ = cli("usage", token_id, "--start", "2020-01-01", "--end", yesterday)

    assert code == 0 and out.splitlines() == [",".join(CSV_HEADER)]


def test_usage_writes_the_csv_to_a_file_with_output(cli, ledger, tmp_path):
    secret, token_id = cli.create(balance="10")
    spend(ledger, secret, token_id)
    target = tmp_path / "usage.csv"

    code, out, err = cli("usage", token_id, "--output", str(target))

    assert code == 0 and out == "" and str(target) in err
    rows = list(csv.reader(target.open(newline="")))
    assert rows[0] == CSV_HEADER and rows[1][2] == "1" and Decimal(rows[1][8]) == COST


def test_usage_with_start_after_end_is_a_usage_error(cli):
    _, token_id = cli.create(balance="1")

    assert cli("usage", token_id, "--start", "2025-02-01", "--end", "2025-01-31")[0] == 2


# --------------------------------------------------------------------------- errors and help

@pytest.mark.parametrize("argv", [
    ["show", "tok_0000000000000000"], ["top-up", "tok_0000000000000000", "1", "--reason", "x"],
    ["adjust", "tok_0000000000000000", "-1", "--reason", "x"], ["revoke", "tok_0000000000000000"],
    ["reactivate", "tok_0000000000000000"], ["usage", "tok_0000000000000000"],
])
def test_an_unknown_token_id_fails_with_one_clear_line(cli, argv):
    code, out, err = cli(*argv)

    assert code == 1
    assert out == ""
    assert err.count("\n") == 1 and "no token with id 'tok_0000000000000000'" in err


def test_help_exits_0_and_names_every_command(cli):
    code, out, _ = cli("--help", table=False)

    assert code == 0
    for command in ("create", "list", "show", "top-up", "adjust", "revoke", "reactivate", "usage"):
        assert command in out


def test_an_unknown_command_is_a_usage_error(cli):
    assert cli("delete-everything")[0] == 2


def test_a_missing_table_fails_with_the_aws_error_in_one_line(ledger, capsys):
    code = main(["--table", "no-such-table", "list"])

    err = capsys.readouterr().err
    assert code == 1 and "ResourceNotFoundException" in err and err.count("\n") == 1


# --------------------------------------------------------------------------- connecting

def test_stack_name_uses_the_stacks_table_name_output(ledger, capsys):
    boto3.client("cloudformation").create_stack(StackName="image-gateway", TemplateBody=json.dumps({
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"ApiBaseUrl": {"Value": "https://example.invalid/prod/v1"}, "TableName": {"Value": TABLE}}}))

    code = main(["--stack-name", "image-gateway", "create", "--name", "via-stack", "--balance", "2"])

    assert code == 0
    assert [t.name for t in ledger.list_tokens()] == ["via-stack"]


def test_stack_name_of_a_missing_stack_fails_with_one_line(ledger, capsys):
    code = main(["--stack-name", "nope", "list"])

    err = capsys.readouterr().err
    assert code == 1 and "nope" in err and err.count("\n") == 1


def test_a_stack_without_a_table_name_output_fails_clearly(ledger, capsys):
    boto3.client("cloudformation").create_stack(StackName="other", TemplateBody=json.dumps({
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}, "Outputs": {"Other": {"Value": "x"}}}))

    code = main(["--stack-name", "other", "list"])

    assert code == 1 and "no TableName output" in capsys.readouterr().err


def test_without_a_table_stack_or_local_state_it_exits_2_naming_the_three_ways(aws_env, capsys):
    code = main(["list"])

    err = capsys.readouterr().err
    assert code == 2
    assert "--table" in err and "--stack-name" in err and "--local" in err and err.count("\n") == 1


def test_two_ways_at_once_are_a_usage_error(aws_env, capsys):
    assert main(["--table", "t", "--stack-name", "s", "list"]) == 2
    assert main(["--local", "--region", "eu-west-1", "list"]) == 2


def test_a_deployed_table_without_a_region_fails_saying_how_to_give_one(aws_env, monkeypatch, capsys):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)

    code = main(["--table", "t", "list"])

    assert code == 1 and "--region" in capsys.readouterr().err


def test_the_local_state_file_points_the_client_at_moto_with_dummy_credentials(aws_env, tmp_path, monkeypatch):
    state = tmp_path / "stack.json"
    state.write_text(json.dumps({"moto_endpoint": "http://127.0.0.1:5999", "table": "image-gateway-local",
                                 "pid": os.getpid()}))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAREALLOOKINGKEY")

    target = connect.resolve(state_file=state)

    assert target.table == "image-gateway-local"
    assert target.client.meta.endpoint_url == "http://127.0.0.1:5999"
    assert target.client.meta.region_name == "us-east-1"
    assert target.client._request_signer._credentials.access_key == "testing"


def test_the_local_state_file_is_the_default_when_it_exists(aws_env, tmp_path, monkeypatch):
    state = tmp_path / "stack.json"
    state.write_text(json.dumps({"moto_endpoint": "http://127.0.0.1:5999", "table": "local-table",
                                 "pid": os.getpid()}))
    monkeypatch.setattr(connect, "DEFAULT_STATE_FILE", state)

    assert connect.resolve().table == "local-table"


def test_the_state_file_make_run_was_told_to_write_is_the_default_when_set(aws_env, tmp_path, monkeypatch):
    state = tmp_path / "elsewhere.json"
    state.write_text(json.dumps({"moto_endpoint": "http://127.0.0.1:5999", "table": "their-table",
                                 "pid": os.getpid()}))
    monkeypatch.setenv("GATEWAY_STATE_FILE", str(state))

    assert connect.resolve().table == "their-table"


def test_a_state_file_of_a_stack_that_has_stopped_fails_with_a_hint(aws_env, tmp_path, capsys):
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    state = tmp_path / "stack.json"
    state.write_text(json.dumps({"moto_endpoint": "http://127.0.0.1:9", "table": "t", "pid": finished.pid}))

    code = main(["--state-file", str(state), "list"])

    err = capsys.readouterr().err
    assert code == 1 and "make run" in err and err.count("\n") == 1


def test_a_local_stack_that_does_not_answer_fails_in_one_line(aws_env, tmp_path, capsys):
    state = tmp_path / "stack.json"
    state.write_text(json.dumps({"moto_endpoint": "http://127.0.0.1:9", "table": "t",
                                 "pid": os.getpid()}))

    code = main(["--local", "--state-file", str(state), "list"])

    err = capsys.readouterr().err
    assert code == 1 and "127.0.0.1:9" in err and err.count("\n") == 1


def test_a_missing_state_file_named_on_the_command_line_says_to_start_make_run(aws_env, tmp_path, capsys):
    code = main(["--state-file", str(tmp_path / "missing.json"), "list"])

    err = capsys.readouterr().err
    assert code == 1 and "make run" in err


# --------------------------------------------------------------------------- what the local stack publishes

@pytest.fixture
def local_stack(tmp_path):
    from local_stack.stack import LocalStack

    stack = LocalStack(environ={"GATEWAY_LOG": "stdout"}, console=io.StringIO())
    stack.published_state_path = tmp_path / ".local" / "stack.json"
    stack.moto_endpoint, stack.table = "http://127.0.0.1:5999", "image-gateway-local"
    return stack


def test_the_local_stack_publishes_its_state_for_the_cli_and_removes_it_on_stop(local_stack):
    local_stack._publish_state()

    published = json.loads(local_stack.published_state_path.read_text())
    assert (published["moto_endpoint"], published["table"], published["pid"]) == \
        ("http://127.0.0.1:5999", "image-gateway-local", os.getpid())
    local_stack.stop()
    assert not local_stack.published_state_path.exists()


def test_the_local_stack_leaves_the_state_of_another_running_stack_alone(local_stack):
    path = local_stack.published_state_path
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"pid": 1, "table": "theirs"}))  # pid 1 always runs

    local_stack._publish_state()
    local_stack.stop()

    assert json.loads(path.read_text())["table"] == "theirs"


def test_the_local_stack_replaces_the_state_a_stopped_stack_left_behind(local_stack):
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    path = local_stack.published_state_path
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"pid": finished.pid, "table": "stale"}))

    local_stack._publish_state()

    assert json.loads(path.read_text())["table"] == "image-gateway-local"
    local_stack.stop()
