"""Which upstream the local gateway talks to: a real one (UPSTREAM_BASE_URL) or the emulator.

Either way the API key ends up only in the moto secret, as in AWS: the functions read it from
Secrets Manager, never from their environment.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any


class UpstreamError(Exception):
    pass


@dataclass
class Upstream:
    base_url: str
    api_key: str
    emulator: Any = None  # the running UpstreamEmulator, or None for a real upstream

    @property
    def description(self) -> str:
        return f"emulator at {self.base_url}" if self.emulator else f"{self.base_url} (real)"

    def stop(self) -> None:
        if self.emulator is not None:
            self.emulator.stop()


def start_upstream(base_url: str | None, api_key: str | None) -> Upstream:
    if base_url:
        if not api_key:
            raise UpstreamError("UPSTREAM_BASE_URL is set but UPSTREAM_API_KEY is not")
        return Upstream(base_url.rstrip("/"), api_key)
    from local_stack.upstream_emulator import UpstreamEmulator

    # A random key per run: the emulator refuses anything else, so a request that reached it
    # proves the function read the key from the secret.
    api_key = "sk-emulator-" + secrets.token_urlsafe(24)
    emulator = UpstreamEmulator(api_key=api_key, host="127.0.0.1", port=0)
    return Upstream(emulator.start(), api_key, emulator)
