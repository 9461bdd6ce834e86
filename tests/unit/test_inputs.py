"""Input images of an edit: headers decoded to dimensions, image URLs held to the fetcher's rules."""
from __future__ import annotations

import base64
import io
import os

import pytest
from PIL import Image

from common.errors import ApiError
from common.images.imagetypes import MAX_SIDE, describe_image
from common.images.inputs import check_image_url, check_mask, checked_image, networks

PARAM = "images[0].image_url"


def pillow(fmt: str, size=(37, 23), mode="RGB", **options) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, (10, 200, 30, 128)[: len(mode)]).save(out, format=fmt, **options)
    return out.getvalue()


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


# --- headers ------------------------------------------------------------------------------------

@pytest.mark.parametrize("data, content_type", [
    (pillow("PNG"), "image/png"),
    (pillow("PNG", mode="RGBA"), "image/png"),
    (pillow("JPEG"), "image/jpeg"),
    (pillow("JPEG", progressive=True), "image/jpeg"),
    (pillow("JPEG", exif=Image.Exif().tobytes()), "image/jpeg"),  # an APP1 segment before the frame
    (pillow("WEBP"), "image/webp"),  # lossy: VP8
    (pillow("WEBP", lossless=True), "image/webp"),  # VP8L
    (pillow("WEBP", mode="RGBA"), "image/webp"),  # alpha: VP8X
])
def test_the_dimensions_pillow_wrote_are_read_back_from_the_header(data, content_type):
    info = describe_image(data)
    assert info is not None and (info.content_type, info.width, info.height) == (content_type, 37, 23)


@pytest.mark.parametrize("data", [
    b"\x89PNG\r\n\x1a\n" + os.urandom(64),  # a signature, then noise
    pillow("PNG")[:20],  # cut inside IHDR
    pillow("PNG")[:29] + b"\0\0\0\0" + pillow("PNG")[33:],  # IHDR with a wrong CRC
    b"\xff\xd8\xff" + os.urandom(5),
    b"\xff\xd8\xff\xda\x00\x08" + bytes(16),  # scan data before any frame header
    b"RIFF\x00\x00\x00\x00WEBPVP8 " + bytes(16),  # no key-frame start code
    b"GIF89a" + bytes(20),
    b"",
])
def test_bytes_that_only_look_like_an_image_do_not_decode(data):
    assert describe_image(data) is None


def test_an_image_larger_than_any_upstream_takes_is_refused():
    data = pillow("PNG", size=(MAX_SIDE + 1, 1))
    with pytest.raises(ApiError) as refused:
        checked_image(data, "The image", "image")
    assert refused.value.param == "image" and f"{MAX_SIDE + 1}x1" in refused.value.message


# --- image URLs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("url, words", [
    ("https://127.0.0.1/a.png", "loopback"),
    ("https://0x7f.1/a.png", "loopback"),
    ("https://017700000001/a.png", "loopback"),
    ("https://[::ffff:169.254.169.254]/", "link-local"),
    ("https://172.16.0.1/a.png", "private"),
    ("https://100.64.0.1/a.png", "shared"),
    ("https://LOCALHOST./a.png", "loopback"),
    ("https://api.localhost/a.png", "loopback"),
    ("http://example.com/a.png", "only https"),
    ("https://u:p@example.com/a.png", "user name or password"),
    ("https://example.com/\x00.png", "control characters"),
    ("https://exa mple.com/a.png", "whitespace"),
    ("https://example.com:99999/a.png", "not a valid URL"),
    ("https://ex<ample.com/a.png", "valid host name"),
    ("data:image/gif;base64,R0lGODlh", "must be data:image/png"),
    ("data:image/png,plain", "base64-encoded"),
    ("data:image/png;base64,@@@@", "not valid base64"),
    (data_url(b"\x89PNG\r\n\x1a\n" + bytes(40)), "can be decoded"),
])
def test_image_urls_the_fetcher_would_refuse_are_refused_up_front_naming_the_param(url, words):
    with pytest.raises(ApiError) as refused:
        check_image_url(url, PARAM, networks(()))
    assert (refused.value.status, refused.value.param) == (400, PARAM)
    assert words in refused.value.message


def test_a_data_url_image_is_decoded_to_its_dimensions():
    info = check_image_url(data_url(pillow("WEBP"), "image/webp"), PARAM, networks(()))
    assert info is not None and info.size == "37x23"


@pytest.mark.parametrize("url", ["https://example.com/a.png?sig=1", "https://93.184.216.34/a.png",
                                 "https://[2606:2800:220:1:248:1893:25c8:1946]/a.png", "https://deadbeef.cafe/a.png"])
def test_public_https_urls_pass_without_being_fetched(url):
    assert check_image_url(url, PARAM, networks(())) is None


def test_an_address_inside_the_allowed_networks_passes():
    assert check_image_url("https://10.1.2.3/a.png", PARAM, networks(["10.0.0.0/8"])) is None


def test_the_mask_must_be_a_png_of_the_first_images_dimensions():
    image, png_mask = describe_image(pillow("JPEG")), describe_image(pillow("PNG"))
    check_mask(image, png_mask, "mask")  # same dimensions, png: fine
    for mask, words in ((describe_image(pillow("WEBP")), "PNG"), (describe_image(pillow("PNG", size=(23, 37))), "23x37")):
        with pytest.raises(ApiError) as refused:
            check_mask(image, mask, "mask")
        assert refused.value.param == "mask" and words in refused.value.message
