"""An in-memory ImageStore: objects kept by key, URLs that name them (tests/contract/ proves it
behaves as the S3 store does)."""
from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass

from common.images.storage import CONTENT_TYPES

URL_PREFIX = "https://images.fake-store.invalid/"


@dataclass(frozen=True)
class StoredObject:
    data: bytes
    content_type: str


class FakeImageStore:
    def __init__(self, fail: bool = False) -> None:
        self.objects: dict[str, StoredObject] = {}
        self.fail = fail  # True: every put fails, as an unreachable bucket would
        self._lock = threading.Lock()

    def put_images(self, images: list[bytes], output_format: str) -> list[str]:
        if self.fail:
            raise OSError("the fake store is failing")
        urls = []
        for data in images:
            key = f"images/{secrets.token_urlsafe(24)}.{output_format}"
            with self._lock:
                self.objects[key] = StoredObject(data, CONTENT_TYPES.get(output_format, "application/octet-stream"))
            urls.append(URL_PREFIX + key)
        return urls

    def read(self, url: str) -> StoredObject:
        """What a GET of the URL would give (tests only)."""
        return self.objects[url.removeprefix(URL_PREFIX)]
