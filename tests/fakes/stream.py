"""A response stream that records what a streaming handler sends, and when (the interface of
runtime.client.ResponseStream and of the local stack's stream)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class RecordingStream:
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    chunks: list[bytes] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # monotonic time of each chunk
    started_at: float | None = None
    closed: bool = False
    failure: tuple[str, str] | None = None

    def start(self, status_code: int, headers: dict[str, str] | None = None, cookies: list | None = None) -> None:
        assert self.status is None, "started twice"
        self.status, self.headers, self.started_at = status_code, dict(headers or {}), time.monotonic()

    def write(self, data: bytes | memoryview) -> None:
        assert self.status is not None and not self.closed, "write before start or after close"
        self.chunks.append(bytes(data))
        self.times.append(time.monotonic())

    def close(self) -> None:
        self.closed = True

    def fail(self, error_type: str, message: str) -> None:
        self.failure = (error_type, message)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)
