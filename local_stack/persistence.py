"""Local state that survives a restart of `make run`: the table's items, saved to a file.

moto keeps everything in memory, so without this every token, balance and request record would
be gone at the next start. The table is saved as DynamoDB JSON (`GATEWAY_DATA_DIR`, default
`.local/data/`), within `AUTOSAVE_SECONDS` of a change and once more on a clean stop, by a
replace of the whole file (a reader or a crash never sees half of it); the next start loads it
back into the fresh table. Images in the bucket are not kept: presigned URLs name moto's port,
which changes from run to run, so they could not be opened after a restart anyway.
"""
from __future__ import annotations

import base64
import json
import threading
from pathlib import Path
from typing import Any

from local_stack import aws, moto_fidelity

FORMAT_VERSION = 1
TABLE_FILE = "dynamodb.json"
DEMO_TOKEN_FILE = "demo-token"
AUTOSAVE_SECONDS = 2.0
BATCH = 25  # BatchWriteItem's limit


class SnapshotError(Exception):
    """The saved state cannot be read back."""


def _to_json(value: Any) -> Any:
    """A DynamoDB attribute value as JSON: binary values (bytes) become base64 text."""
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {key: _to_json(v) for key, v in value.items()}
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    return value


def _from_json(value: Any, type_key: str = "") -> Any:
    """The inverse of _to_json: the text under a `B` or in a `BS` is binary again."""
    if type_key == "B":
        return base64.b64decode(value)
    if type_key == "BS":
        return [base64.b64decode(v) for v in value]
    if isinstance(value, dict):
        return {key: _from_json(v, key) for key, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


class TableSnapshot:
    """One table of the local moto server, saved to and restored from `directory`."""

    def __init__(self, endpoint: str, table: str, directory: Path) -> None:
        self.table = table
        self.path = directory / TABLE_FILE
        self._client = aws.client("dynamodb", endpoint)
        self._saved_at_write = -1
        self._lock = threading.Lock()

    def restore(self) -> int:
        """Load the saved items into the (empty) table; the number of items loaded."""
        if not self.path.is_file():
            return 0
        try:
            saved = json.loads(self.path.read_text(encoding="utf-8"))
            items = [_from_json(item) for item in saved["items"]]
            if saved.get("version") != FORMAT_VERSION:
                raise ValueError(f"version {saved.get('version')!r}, expected {FORMAT_VERSION}")
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise SnapshotError(f"{self.path}: cannot read the saved local state ({error}); move it away, or start "
                                "clean with GATEWAY_FRESH=1") from None
        for start in range(0, len(items), BATCH):
            pending = {self.table: [{"PutRequest": {"Item": item}} for item in items[start:start + BATCH]]}
            while pending:
                pending = self._client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
        self._saved_at_write = moto_fidelity.dynamodb_writes()
        return len(items)

    def save_if_changed(self) -> bool:
        """Save when the table may have changed since the last save; True when it saved."""
        with self._lock:
            writes = moto_fidelity.dynamodb_writes()
            if writes == self._saved_at_write:
                return False
            items = moto_fidelity.table_items(self.table)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_name(self.path.name + ".tmp")
            partial.write_text(json.dumps({"version": FORMAT_VERSION, "table": self.table,
                                           "items": [_to_json(item) for item in items]}), encoding="utf-8")
            partial.replace(self.path)
            self._saved_at_write = writes
            return True


class Autosave:
    """Saves a snapshot every AUTOSAVE_SECONDS when something changed, and once more at stop()."""

    def __init__(self, snapshot: TableSnapshot, interval: float = AUTOSAVE_SECONDS) -> None:
        self.snapshot = snapshot
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="local-state-autosave", daemon=True)

    def start(self) -> "Autosave":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.snapshot.save_if_changed()
            except Exception:  # noqa: BLE001 - a failed save is retried at the next tick and at stop
                continue

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.snapshot.save_if_changed()


def demo_secret(directory: Path, given: str | None, new_secret: str) -> str:
    """The demo token's secret: the given one (GATEWAY_DEMO_TOKEN), else the one saved by an
    earlier start, else `new_secret`, which is saved for the next start (readable by you only)."""
    path = directory / DEMO_TOKEN_FILE
    if given:
        return given
    try:
        saved = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        saved = ""
    if saved:
        return saved
    directory.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.write_text(new_secret + "\n", encoding="utf-8")
    return new_secret
