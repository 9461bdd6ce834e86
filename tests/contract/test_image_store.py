"""The ImageStore port's contract, against the in-memory fake and the S3 store on moto: one URL
per image, in the order given, each naming an object with exactly the bytes and the content type."""
from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from common.images.storage import S3ImageStore, s3_client
from tests.fakes.store import FakeImageStore


@pytest.fixture(params=["fake", "s3"])
def store_and_reader(request):
    """The store, and how to read back (bytes, content type) what a URL of it names."""
    if request.param == "fake":
        store = FakeImageStore()

        def read(url: str) -> tuple[bytes, str]:
            stored = store.read(url)
            return stored.data, stored.content_type
        return store, read
    aws = request.getfixturevalue("aws")
    s3 = s3_client()  # the client the deployed store is built with (SigV4 presigned URLs)
    store = S3ImageStore(aws.bucket, 600, s3)

    def read_s3(url: str) -> tuple[bytes, str]:
        parts = urlsplit(url)
        assert "X-Amz-Signature=" in parts.query and "X-Amz-Expires=600" in parts.query
        obj = s3.get_object(Bucket=aws.bucket, Key=parts.path.lstrip("/").removeprefix(f"{aws.bucket}/"))
        return obj["Body"].read(), obj["ContentType"]
    return store, read_s3


def test_one_image_gets_one_url_naming_its_bytes_and_type(store_and_reader):
    store, read = store_and_reader

    (url,) = store.put_images([b"\x89PNG one"], "png")

    assert read(url) == (b"\x89PNG one", "image/png")


def test_several_images_keep_their_order_and_get_distinct_urls(store_and_reader):
    store, read = store_and_reader
    images = [f"image {i}".encode() for i in range(5)]

    urls = store.put_images(images, "webp")

    assert len(set(urls)) == 5
    assert [read(url) for url in urls] == [(data, "image/webp") for data in images]


def test_jpeg_is_stored_as_image_jpeg(store_and_reader):
    store, read = store_and_reader

    (url,) = store.put_images([b"\xff\xd8\xff jpeg"], "jpeg")

    assert read(url)[1] == "image/jpeg"
