"""`python -m admin`: the operator's token administration.

  python -m admin [--table NAME | --stack-name NAME | --local | --state-file PATH] COMMAND ...

Exit codes: 0 done, 1 the command failed (unknown token, balance too low, AWS error), 2 usage.
Secrets are printed once, by `create`, and never again: the table holds only their SHA-256.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Sequence

from admin import connect, values
from admin.values import money, when

PROG = "python -m admin"
CSV_HEADER = ["date", "model", "requests", "images", "text_input_tokens", "cached_text_input_tokens",
              "image_input_tokens", "image_output_tokens", "cost_usd"]


class Failure(Exception):
    """The command could not be done (exit 1)."""


class UsageError(Exception):
    """The command line asks for something impossible (exit 2)."""


# --------------------------------------------------------------------------- the parser

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Token administration for the image gateway: create customer tokens, fund and "
                    "adjust them, revoke them, and export their usage.",
        epilog="Which table: --table NAME or --stack-name NAME (deployed; AWS credentials from the usual "
               "places, --region/--profile to choose), or --local/--state-file PATH (a running `make run`; "
               "the default when .local/stack.json exists). Amounts are exact decimal USD.")
    where = parser.add_argument_group("which table (before the command)")
    where.add_argument("--table", metavar="NAME", help="the deployed DynamoDB table")
    where.add_argument("--stack-name", metavar="NAME", help="a deployed stack: use its TableName output")
    where.add_argument("--local", action="store_true",
                       help=f"the running local stack (`make run`), from {_shown(connect.DEFAULT_STATE_FILE)}")
    where.add_argument("--state-file", metavar="PATH",
                       help="a local stack's state file (implies --local; GATEWAY_STATE_FILE of `make run`)")
    where.add_argument("--region", help="AWS region of a deployed table (default: the AWS config)")
    where.add_argument("--profile", help="AWS profile of a deployed table (default: the AWS config)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    create = _command(commands, "create", cmd_create, "create a token and print its secret (once)",
                      "Create a token. Its secret is printed once and cannot be shown again: only its "
                      "SHA-256 is stored.")
    create.add_argument("--name", required=True, help="who the token is for (shown in list/show)")
    create.add_argument("--balance", required=True, type=values.usd, metavar="USD",
                        help="opening balance in USD, e.g. 25 or 12.50 (recorded as a deposit)")
    create.add_argument("--models", type=values.models, metavar="ID,ID",
                        help="allow only these models, e.g. gpt-image-2,gpt-image-1.5 (default: all)")
    expiry = create.add_mutually_exclusive_group()
    expiry.add_argument("--expires", type=values.day, metavar="YYYY-MM-DD",
                        help="last UTC day the token works (default: never expires)")
    expiry.add_argument("--expires-in-days", type=values.positive_days, metavar="N",
                        help="the token expires N days from now")
    create.add_argument("--multiplier", type=values.multiplier, metavar="X",
                        help="this token's price multiplier, on top of the platform's PRICE_MULTIPLIER, "
                             "e.g. 0.9 for 10%% off (default: 1)")
    create.add_argument("--json", action="store_true", help="print the token id and secret as JSON")

    listing = _command(commands, "list", cmd_list, "list tokens (never their secrets)",
                       "Every token with its balance, deposits, spending and in-flight holds. No secrets.")
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")

    show = _command(commands, "show", cmd_show, "one token: details, credit entries, holds, reconciliation",
                    "One token's details, its deposits and adjustments, its in-flight holds, and whether its "
                    "books balance: deposited - balance - holds = spent = the sum charged over its request records.")
    show.add_argument("token_id", metavar="TOKEN_ID")
    show.add_argument("--json", action="store_true", help="JSON instead of text")

    top_up = _command(commands, "top-up", cmd_top_up, "add money to a token (a deposit)",
                      "Add money to a token's balance, recorded as a deposit with its reason.")
    top_up.add_argument("token_id", metavar="TOKEN_ID")
    top_up.add_argument("amount", type=values.positive_usd, metavar="USD", help="amount in USD, more than zero")
    top_up.add_argument("--reason", required=True, help="why (kept with the deposit, e.g. an invoice number)")

    adjust = _command(commands, "adjust", cmd_adjust, "correct a balance by hand (+ or -)",
                      "Add or take back money by hand, recorded as an adjustment with its reason. A negative "
                      "adjustment never takes the balance below zero.")
    adjust.add_argument("token_id", metavar="TOKEN_ID")
    adjust.add_argument("amount", type=values.signed_usd, metavar="±USD", help="e.g. 1.50 or -0.25")
    adjust.add_argument("--reason", required=True, help="why (kept with the adjustment)")

    revoke = _command(commands, "revoke", cmd_revoke, "refuse every further request of a token",
                      "Revoke a token: its next request is refused with 401. Requests already in flight settle "
                      "normally. Revoking twice is harmless.")
    revoke.add_argument("token_id", metavar="TOKEN_ID")

    reactivate = _command(commands, "reactivate", cmd_reactivate, "undo a revoke",
                          "Make a revoked token active again (its expiry, if any, still applies).")
    reactivate.add_argument("token_id", metavar="TOKEN_ID")

    usage = _command(commands, "usage", cmd_usage, "daily usage of a token as CSV",
                     "Daily usage per model as CSV: " + ",".join(CSV_HEADER) + ". Dates are UTC and inclusive; "
                     "cost_usd is exact. Only charged requests count.")
    usage.add_argument("token_id", metavar="TOKEN_ID")
    usage.add_argument("--start", type=values.day, metavar="YYYY-MM-DD",
                       help="first day (default: the 1st of the current UTC month)")
    usage.add_argument("--end", type=values.day, metavar="YYYY-MM-DD", help="last day (default: today, UTC)")
    usage.add_argument("--output", "-o", metavar="FILE", help="write the CSV there instead of to stdout")
    return parser


def _command(commands: Any, name: str, run: Callable[..., int], summary: str, description: str):
    parser = commands.add_parser(name, help=summary, description=description)
    parser.set_defaults(run=run)
    return parser


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- the commands

def cmd_create(ledger: Any, args: argparse.Namespace) -> int:
    from common.billing.tokens import issue_token

    name = args.name.strip()
    if not name:
        raise UsageError("--name must not be empty")
    if args.models:
        _check_models(args.models)
    now = int(time.time())
    expires_at = None
    if args.expires is not None:
        expires_at = values.end_of_day(args.expires)
        if expires_at <= now:
            raise UsageError(f"--expires {args.expires} is in the past")
    elif args.expires_in_days is not None:
        expires_at = now + args.expires_in_days * 86400

    issued = issue_token(ledger, name=name, balance_usd=args.balance, allowed_models=args.models,
                         expires_at=expires_at, price_multiplier=args.multiplier, now=now)
    secret, token_id = issued.secret, issued.token_id

    warning = "This secret is shown only now and cannot be shown again (only its SHA-256 is stored)."
    if args.json:
        print(f"{warning} Store it now.", file=sys.stderr)
        _print_json({"token_id": token_id, "secret": secret, "name": name, "balance_usd": money(args.balance),
                     "expires_at": _iso(expires_at), "allowed_models": args.models,
                     "price_multiplier": money(args.multiplier) if args.multiplier is not None else None})
        return 0
    print(f"Created token {token_id} ({name}) with a balance of {money(args.balance)} USD.")
    details = [f"expires {when(expires_at)}" if expires_at else "",
               f"models {','.join(args.models)}" if args.models else "",
               f"price multiplier {money(args.multiplier)}" if args.multiplier is not None else ""]
    if any(details):
        print("  " + "; ".join(d for d in details if d))
    print()
    print(f"  secret: {secret}")
    print()
    print(f"{warning} Give it to the customer now; if it is lost, revoke {token_id} and create another.")
    return 0


def _check_models(names: list[str]) -> None:
    from common.billing.catalog import load_catalog

    # The deployment's catalog when this shell has it (MODEL_CATALOG_JSON), else the shipped one.
    known = load_catalog(os.environ.get("MODEL_CATALOG_JSON", "")).models
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UsageError(f"--models: unknown model {', '.join(unknown)} (the catalog has {', '.join(sorted(known))}; "
                         "set MODEL_CATALOG_JSON if the deployment serves another catalog)")


def cmd_list(ledger: Any, args: argparse.Namespace) -> int:
    tokens = sorted(ledger.list_tokens(), key=lambda t: (t.created_at, t.token_id))
    if args.json:
        _print_json([_token_summary(t) for t in tokens])
        return 0
    if not tokens:
        print("No tokens yet: `create` makes one.")
        return 0
    header = ["TOKEN_ID", "NAME", "STATUS", "BALANCE", "DEPOSITED", "SPENT", "HOLDS", "EXPIRES", "MODELS",
              "MULTIPLIER"]
    rows = [[t.token_id, t.name, _status(t), money(t.balance_usd), money(t.deposited_usd), money(t.spent_usd),
             str(len(t.holds)), when(t.expires_at), ",".join(t.allowed_models) if t.allowed_models else "all",
             money(t.price_multiplier) if t.price_multiplier is not None else "-"] for t in tokens]
    _print_table(header, rows, right={3, 4, 5, 6})
    return 0


def cmd_show(ledger: Any, args: argparse.Namespace) -> int:
    token = _find(ledger, args.token_id)
    entries = ledger.credit_entries(token.token_id)
    records = ledger.request_records(token.token_id)
    books = _reconcile(token, entries, records)
    holds = [{"request_id": rid, "amount_usd": money(hold.amount), "started_at": _iso(hold.started_at),
              "model": hold.model, "endpoint": hold.endpoint}
             for rid, hold in sorted(token.holds.items(), key=lambda kv: kv[1].started_at)]
    if args.json:
        _print_json({
            "token": _token_summary(token),
            "credit_entries": [{"entry_id": e.entry_id, "created_at": _iso(e.created_at), "kind": e.kind,
                                "amount_usd": money(e.amount_usd), "reason": e.reason} for e in entries],
            "holds": holds,
            "requests": len(records),
            "reconciliation": {key: money(value) if isinstance(value, Decimal) else value
                               for key, value in books.items()},
        })
        return 0

    summary = _token_summary(token)
    print(f"Token {token.token_id}")
    for label, value in (("name", token.name), ("status", _status(token)),
                         ("balance", f"{money(token.balance_usd)} USD"),
                         ("deposited", f"{money(token.deposited_usd)} USD"),
                         ("spent", f"{money(token.spent_usd)} USD"),
                         ("in flight", f"{money(books['held_usd'])} USD in {len(token.holds)} hold(s)"),
                         ("created", when(token.created_at)), ("expires", when(token.expires_at)),
                         ("models", ",".join(summary["allowed_models"] or []) or "all"),
                         ("multiplier", summary["price_multiplier"] or "1 (the platform's only)"),
                         ("requests", f"{len(records)} recorded")):
        print(f"  {label:<11}{value}")
    print()
    print("Credit entries (deposits and adjustments):")
    if entries:
        _print_table(["DATE", "KIND", "AMOUNT", "REASON"],
                     [[when(e.created_at), e.kind, money(e.amount_usd), e.reason] for e in entries],
                     right={2}, indent="  ")
    else:
        print("  none")
    print()
    print("In-flight holds:")
    if holds:
        _print_table(["REQUEST_ID", "AMOUNT", "STARTED", "MODEL", "ENDPOINT"],
                     [[rid, money(hold.amount), when(hold.started_at), hold.model, hold.endpoint]
                      for rid, hold in sorted(token.holds.items(), key=lambda kv: kv[1].started_at)],
                     right={1}, indent="  ")
    else:
        print("  none")
    print()
    print("Reconciliation (exact):")
    _print_table(None, [
        ["credit entries total", money(books["credited_usd"]), "= deposited", money(token.deposited_usd),
         _diff(books["credited_usd"], token.deposited_usd)],
        ["deposited - balance - holds", money(books["implied_spent_usd"]), "= spent", money(token.spent_usd),
         _diff(books["implied_spent_usd"], token.spent_usd)],
        [f"charged, {books['records']} request record(s)", money(books["charged_usd"]), "= spent",
         money(token.spent_usd), _diff(books["charged_usd"], token.spent_usd)],
    ], right={1, 3}, indent="  ")
    if books["reconciled"]:
        print("  reconciled")
    else:
        print("  NOT reconciled (request records older than the retention period are deleted by TTL, which "
              "lowers the charged sum; any other difference is a bookkeeping error)")
    return 0


def _reconcile(token: Any, entries: list[Any], records: list[Any]) -> dict[str, Any]:
    held = token.held_usd
    credited = sum((e.amount_usd for e in entries), Decimal(0))
    implied = token.deposited_usd - token.balance_usd - held
    charged = sum((r.charged_usd for r in records), Decimal(0))
    return {
        "held_usd": held,
        "credited_usd": credited,
        "implied_spent_usd": implied,
        "spent_usd": token.spent_usd,
        "charged_usd": charged,
        "records": len(records),
        "credits_difference_usd": credited - token.deposited_usd,
        "spent_difference_usd": implied - token.spent_usd,
        "records_difference_usd": charged - token.spent_usd,
        "reconciled": credited == token.deposited_usd and implied == token.spent_usd == charged,
    }


def _diff(value: Decimal, expected: Decimal) -> str:
    return "ok" if value == expected else f"differs by {money(value - expected)}"


def cmd_top_up(ledger: Any, args: argparse.Namespace) -> int:
    token = _find(ledger, args.token_id)
    balance = _credit(ledger, token, args.amount, "deposit", args.reason)
    print(f"Deposited {money(args.amount)} USD to {token.token_id}. Balance: {money(balance)} USD.")
    return 0


def cmd_adjust(ledger: Any, args: argparse.Namespace) -> int:
    token = _find(ledger, args.token_id)
    balance = _credit(ledger, token, args.amount, "adjustment", args.reason)
    print(f"Adjusted {token.token_id} by {'+' if args.amount > 0 else ''}{money(args.amount)} USD. "
          f"Balance: {money(balance)} USD.")
    return 0


def _credit(ledger: Any, token: Any, amount: Decimal, kind: str, reason: str) -> Decimal:
    if not reason.strip():
        raise UsageError("--reason must not be empty")
    try:
        return ledger.credit(token, amount, kind=kind, reason=reason)
    except ValueError as refused:
        current = ledger.find_token(token.token_id)
        balance = f" (balance {money(current.balance_usd)} USD)" if current else ""
        raise Failure(f"{refused}{balance}; nothing changed") from None


def cmd_revoke(ledger: Any, args: argparse.Namespace) -> int:
    token = _find(ledger, args.token_id)
    if token.status == "revoked":
        print(f"{token.token_id} was already revoked.")
        return 0
    ledger.set_status(token, "revoked")
    print(f"Revoked {token.token_id}: its requests are refused from now on (requests in flight settle normally). "
          f"Balance left: {money(token.balance_usd)} USD.")
    return 0


def cmd_reactivate(ledger: Any, args: argparse.Namespace) -> int:
    token = _find(ledger, args.token_id)
    if token.status == "active":
        print(f"{token.token_id} is already active.")
    else:
        ledger.set_status(token, "active")
        print(f"Reactivated {token.token_id}.")
    if token.expires_at is not None and token.expires_at <= time.time():
        print(f"Note: it expired {when(token.expires_at)}, so requests are still refused.")
    return 0


def cmd_usage(ledger: Any, args: argparse.Namespace) -> int:
    end = args.end or values.today()
    start = args.start or end.replace(day=1)  # default: this UTC month so far
    if start > end:
        raise UsageError(f"--start {start} is after --end {end}")
    token = _find(ledger, args.token_id)
    rows = ledger.daily_totals(token.token_id, start.isoformat(), end.isoformat())
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8", newline="") as file:
                _write_csv(file, rows)
        except OSError as error:
            raise Failure(f"cannot write {args.output}: {error.strerror or error}") from None
        print(f"Wrote {len(rows)} row(s) of {token.token_id} usage, {start} to {end}, to {args.output}.",
              file=sys.stderr)
    else:
        _write_csv(sys.stdout, rows)
    return 0


def _write_csv(file: Any, rows: list[Any]) -> None:
    writer = csv.writer(file, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for row in rows:
        writer.writerow([money(row.cost_usd) if name == "cost_usd" else getattr(row, name) for name in CSV_HEADER])


# --------------------------------------------------------------------------- helpers

def _find(ledger: Any, token_id: str) -> Any:
    token = ledger.find_token(token_id.strip())
    if token is None:
        raise Failure(f"no token with id {token_id!r} (`list` shows the ids; they look like tok_0123456789abcdef)")
    return token


def _status(token: Any) -> str:
    if token.status == "active" and token.expires_at is not None and token.expires_at <= time.time():
        return "expired"
    return token.status


def _iso(epoch: float | None) -> str | None:
    return when(epoch).replace(" ", "T") if epoch else None


def _token_summary(token: Any) -> dict[str, Any]:
    """What the operator may see of a token: never the secret, never its hash."""
    return {
        "token_id": token.token_id,
        "name": token.name,
        "status": _status(token),
        "balance_usd": money(token.balance_usd),
        "deposited_usd": money(token.deposited_usd),
        "spent_usd": money(token.spent_usd),
        "holds": len(token.holds),
        "held_usd": money(token.held_usd),
        "created_at": _iso(token.created_at),
        "expires_at": _iso(token.expires_at),
        "allowed_models": list(token.allowed_models) if token.allowed_models is not None else None,
        "price_multiplier": money(token.price_multiplier) if token.price_multiplier is not None else None,
    }


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def _print_table(header: list[str] | None, rows: list[list[str]], right: set[int] = frozenset(),
                 indent: str = "") -> None:
    lines = [header, *rows] if header else rows
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(lines[0]))]
    for row in lines:
        cells = [str(cell).rjust(widths[i]) if i in right else str(cell).ljust(widths[i]) for i, cell in enumerate(row)]
        print((indent + "  ".join(cells)).rstrip())


# --------------------------------------------------------------------------- entry point

def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help (0) or a usage error (2, already explained by argparse)
        return stop.code if isinstance(stop.code, int) else 2

    from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

    from common.billing.ledger import DynamoLedger

    target = None
    try:
        target = connect.resolve(table=args.table, stack_name=args.stack_name, local=args.local,
                                 state_file=args.state_file, region=args.region, profile=args.profile)
        return args.run(DynamoLedger(target.table, target.client), args)
    except UsageError as problem:
        return _fail(str(problem), 2)
    except connect.ConnectionProblem as problem:
        return _fail(str(problem), problem.exit_code)
    except Failure as problem:
        return _fail(str(problem), 1)
    except ClientError as error:
        details = error.response.get("Error", {})
        where = f" ({target.description})" if target else ""
        return _fail(f"AWS refused {error.operation_name}: {details.get('Code')}: {details.get('Message')}{where}", 1)
    except NoRegionError:
        return _fail("no AWS region: pass --region, or set AWS_REGION or a region in the AWS config", 1)
    except BotoCoreError as error:
        where = f" ({target.description})" if target else ""
        return _fail(f"{error}{where}", 1)
    except KeyboardInterrupt:
        return 130


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
