"""Image storage for response_format=url: S3 objects behind short-lived presigned GET URLs.

This is the only module with an S3 client. Keys are unguessable (192 random bits) and objects
expire by the bucket's lifecycle rule; URLs expire sooner (IMAGE_URL_TTL_SECONDS).
"""
from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any


CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


class S3ImageStore:
    def __init__(self, bucket: str, url_ttl_seconds: int, client: Any) -> None:
        self.bucket = bucket
        self.url_ttl_seconds = url_ttl_seconds
        self.client = client  # a boto3 S3 client (SigV4), created once per container (s3_client below)

    def put_image(self, data: bytes, output_format: str) -> str:
        """Store one image; return a presigned GET URL for it."""
        day = datetime.now(timezone.utc).strftime("%Y/%m/%d")
        key = f"images/{day}/{secrets.token_urlsafe(24)}.{output_format}"
        self.client.put_object(
            Bucket=self.bucket, Key=key, Body=data, ContentType=CONTENT_TYPES.get(output_format, "application/octet-stream")
        )
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.url_ttl_seconds
        )

    def put_images(self, images: list[bytes], output_format: str) -> list[str]:
        """Store several images in parallel, keeping their order."""
        if len(images) == 1:
            return [self.put_image(images[0], output_format)]
        with ThreadPoolExecutor(max_workers=min(len(images), 8)) as pool:
            return list(pool.map(lambda data: self.put_image(data, output_format), images))


def s3_client() -> Any:
    """The S3 client the store needs: SigV4 presigned URLs, a pool for parallel puts."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(signature_version="s3v4", max_pool_connections=10,
                                            retries={"mode": "standard"}))
