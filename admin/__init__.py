"""The operator's command-line tool: `python -m admin` (token administration).

Creates, lists, shows, funds, adjusts, revokes tokens and exports their daily usage, against the
deployed table (`--table`, `--stack-name`) or a running `make run` (`--local`). Everything goes
through `common.billing.ledger.DynamoLedger` (the Ledger port), the only module that writes the
table, and tokens are made by `common.billing.tokens.issue_token`, as everywhere else.
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# `from common.x import y`, as everywhere else (docs/ARCHITECTURE.md): src/ must be importable when
# the tool runs as `python -m admin` from the repository root.
_SRC = str(REPO_ROOT / "src")
if _SRC not in sys.path:
    sys.path.insert(0, _SRC)
