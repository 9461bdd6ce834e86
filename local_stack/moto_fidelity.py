"""Two corrections that make moto's DynamoDB behave like the real service where the ledger notices.

1. Atomic requests. DynamoDB applies each conditional write (and each transaction) atomically;
   moto checks the condition and then writes in plain Python, so two server threads can both
   pass the same `balance >= :amount` check. Worse, moto's request layer reads an item before
   an update (`copy.deepcopy` of the live item) outside any backend call, so a concurrent write
   to the same item can break that copy ("dictionary changed size during iteration"). One lock
   around each whole DynamoDB request, from parsing to the response, restores the guarantee the
   ledger's concurrency proofs rely on.
2. Cost of a transaction. moto backs up every table a TransactWriteItems touches with
   `copy.deepcopy` (once per action) in case it must roll back, so each settlement costs time in
   proportion to the table's size and a long `make run` slows down request by request. Here the
   transaction instead snapshots only the items it names and restores those on failure, which is
   the same outcome at a constant cost.

3. Cost of dispatch. moto's server lists its own package directory (about 90 `stat` calls) on
   every request to find the service; the list never changes while it runs, so it is cached.

`install()` is idempotent and only touches moto's in-process classes (the local stack runs moto
in its own process; the tests run it in theirs).
"""
from __future__ import annotations

import functools
import threading
from typing import Any

_LOCK = threading.RLock()
_INSTALLED = False
# Requests that change nothing; every other DynamoDB request counts as a write (for the local
# stack's autosave, which saves the table when this count moved).
_READS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems", "DescribeTable", "ListTables",
                    "DescribeTimeToLive", "DescribeContinuousBackups", "ListTagsOfResource"})
_writes = 0


def dynamodb_writes() -> int:
    """How many DynamoDB requests that may change data this process has served."""
    return _writes


def table_items(table_name: str, region: str = "us-east-1") -> list[dict[str, Any]]:
    """Every item of a table of this process's moto, as DynamoDB JSON, read at one instant (no
    request in between) and without the cost of a Scan over HTTP."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    with _LOCK:
        table = dynamodb_backends[DEFAULT_ACCOUNT_ID][region].get_table(table_name)
        return [item.to_json()["Attributes"] for item in table.all_items()]


def install() -> None:
    global _INSTALLED
    if _INSTALLED:
        return
    from moto import backends
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table
    from moto.dynamodb.responses import DynamoHandler

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules

    DynamoDBBackend.transact_write_items = _item_level_rollback(DynamoDBBackend.transact_write_items)
    # Every DynamoDB request (reads too: they must not see half a write) runs alone. Set on
    # DynamoHandler only: the other services keep BaseResponse's own call_action.
    DynamoHandler.call_action = _atomic_request(DynamoHandler.call_action)
    # moto's own whole-table backup becomes free; the item-level snapshot above does its job.
    Table.__deepcopy__ = lambda self, memo: self
    _INSTALLED = True


def _atomic_request(call_action: Any) -> Any:
    @functools.wraps(call_action)
    def locked(handler: Any) -> Any:
        global _writes
        with _LOCK:
            if handler._get_action() not in _READS:
                _writes += 1
            return call_action(handler)

    return locked


def _item_level_rollback(transact_write_items: Any) -> Any:
    @functools.wraps(transact_write_items)
    def transact(self: Any, transact_items: list[dict[str, Any]]) -> None:
        snapshot = []
        for action in transact_items:
            try:
                op = next(iter(action.values()))
                table = self.get_table(op["TableName"])
                if "Item" in op:
                    key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
                    if table.range_key_attr is not None:
                        key[table.range_key_attr] = op["Item"][table.range_key_attr]
                else:
                    key = op["Key"]
                current = self.get_item(op["TableName"], key)
            except Exception:
                continue  # moto itself will reject this action; nothing of ours to restore
            snapshot.append((op["TableName"], key, current.to_json()["Attributes"] if current else None))
        try:
            return transact_write_items(self, transact_items)
        except Exception:
            for table_name, key, attributes in reversed(snapshot):
                if attributes is None:
                    if self.get_item(table_name, key) is not None:
                        self.delete_item(table_name, key)
                else:
                    self.put_item(table_name, attributes)
            raise

    return transact
