"""POST /v1/images/edits through the handler: JSON references and multipart uploads."""
from __future__ import annotations

import base64
import hashlib
import io
import os
from decimal import Decimal

import pytest
import requests
from PIL import Image

PROMPT = "在天空中加入热气球"
EDIT_USAGE = {"input_tokens": 250, "input_tokens_details": {"text_tokens": 56, "image_tokens": 194},
              "output_tokens": 1756, "output_tokens_details": {"image_tokens": 1756, "text_tokens": 0},
              "total_tokens": 2006}


def image_bytes(fmt: str = "PNG", size=(64, 64), color=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA" if fmt == "PNG" else "RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def multipart(files: list[tuple[str, tuple]], fields: dict[str, str]) -> tuple[bytes, str]:
    """A body exactly as `requests` (and so the official Python SDK's httpx, and curl -F) encode it."""
    # (None, value) parts are plain form fields: multipart even when there are no files.
    parts = [(name, (None, value)) for name, value in fields.items()] + files
    prepared = requests.Request("POST", "http://x", files=parts).prepare()
    return prepared.body, prepared.headers["Content-Type"]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- JSON form ---------------------------------------------------------------------------------

def test_json_edit_with_a_data_url_is_forwarded_as_json_and_billed_per_kind(gateway):
    token = gateway.token("1")
    gateway.emulator.script({"usage": EDIT_USAGE})
    body = {"model": "gpt-image-2", "prompt": "换种风格", "size": "1024x1024", "quality": "medium",
            "images": [{"image_url": data_url(image_bytes())}]}
    reply = gateway.edit(body, token)
    assert reply.status == 200
    [received] = gateway.emulator.requests
    assert received["json"]["images"] == body["images"]
    # 56 text x $5 + 194 image input x $8 + 1,756 image output x $30, per 1M tokens
    assert reply.headers["x-gateway-cost-usd"] == "0.054512"
    assert gateway.balance(token) == Decimal("1") - Decimal("0.054512")


def test_the_seed_json_example_with_an_https_url_is_forwarded_unchanged(gateway):
    token = gateway.token()
    body = {"model": "gpt-image-2", "prompt": "换种风格", "size": "1024x1024", "quality": "medium",
            "images": [{"image_url": "https://example.com/base-image.png"}]}
    reply = gateway.edit(body, token)
    assert reply.status == 200
    assert gateway.emulator.requests[0]["json"] == body


def test_json_edit_refused_as_json_is_retried_once_as_multipart_with_the_same_bytes(gateway):
    token = gateway.token()
    original, mask = image_bytes("JPEG"), image_bytes("PNG", color=(0, 0, 0, 0))
    gateway.emulator.script({"path": "/edits", "status": 415, "body": {"error": {
        "message": "Unsupported content type: 'application/json'.", "type": "invalid_request_error",
        "param": None, "code": "unsupported_media_type"}}})
    reply = gateway.edit({"prompt": PROMPT, "images": [{"image_url": data_url(original, "image/jpeg")}],
                          "mask": {"image_url": data_url(mask)}, "n": 2}, token)
    assert reply.status == 200
    first, second = gateway.emulator.requests
    assert first["json"] is not None and second["json"] is None
    assert [(f["field"], f["content_type"], f["sha256"]) for f in second["files"]] == [
        ("image", "image/jpeg", sha(original)), ("mask", "image/png", sha(mask))]
    assert second["form"]["n"] == "2" and second["form"]["prompt"] == PROMPT
    assert "images" not in second["form"]


def test_json_edit_with_file_ids_cannot_fall_back_and_costs_nothing(gateway):
    token = gateway.token()
    gateway.emulator.script({"path": "/edits", "status": 415, "body": {"error": {
        "message": "Unsupported content type", "type": "invalid_request_error", "param": None, "code": None}}})
    reply = gateway.edit({"prompt": PROMPT, "images": [{"file_id": "file-abc"}]}, token)
    assert (reply.status, reply.error["code"]) == (400, "file_id_not_supported")
    assert gateway.balance(token) == Decimal("10")


@pytest.mark.parametrize("body, param", [
    ({"prompt": PROMPT}, "images"),
    ({"prompt": PROMPT, "images": []}, "images"),
    ({"prompt": PROMPT, "images": [{"image_url": "https://example.com/a.png"}] * 17}, "images"),
    ({"prompt": PROMPT, "images": [{"image_url": "http://example.com/a.png"}]}, "images[0].image_url"),
    ({"prompt": PROMPT, "images": [{"image_url": "https://e.com/a.png", "file_id": "f"}]}, "images[0]"),
    ({"prompt": PROMPT, "images": [{}]}, "images[0]"),
    ({"prompt": PROMPT, "images": [{"image_url": "https://e.com/a.png"}], "mask": {"url": "x"}}, "mask.url"),
    ({"prompt": PROMPT, "images": [{"image_url": "https://e.com/a.png"}], "input_fidelity": "max"}, "input_fidelity"),
    ({"prompt": "", "images": [{"image_url": "https://e.com/a.png"}]}, "prompt"),
    ({"prompt": PROMPT, "images": [{"image_url": "https://e.com/a.png"}], "size": "999x999"}, "size"),
])
def test_bad_json_edits_are_400_naming_the_param_with_no_upstream_call_and_no_charge(gateway, body, param):
    token = gateway.token()
    reply = gateway.edit(body, token)
    assert (reply.status, reply.error["param"]) == (400, param)
    assert gateway.emulator.requests == []
    assert gateway.balance(token) == Decimal("10")


FAKE_PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(64)  # a signature, then noise


@pytest.mark.parametrize("url", [
    "https://127.0.0.1/a.png", "https://[::1]/a.png", "https://169.254.169.254/latest/meta-data/",
    "https://10.0.0.7/a.png", "https://192.168.1.1/a.png", "https://localhost/a.png", "https://x.localhost/a.png",
    "https://2130706433/a.png", "https://user:secret@example.com/a.png", "https://example.com/a.png\r\nX-Evil: 1",
    "https://example.com/a b.png", "data:image/png;base64,not base64!", data_url(b"GIF89a" + bytes(20), "image/png"),
    data_url(FAKE_PNG), data_url(image_bytes(), "text/plain"), "data:image/png,rawbytes",
])
@pytest.mark.parametrize("where", ["images", "mask"])
def test_json_image_urls_are_checked_by_the_fetchers_rules_before_anything_is_spent(gateway, url, where):
    # Given an internal, malformed or undecodable image URL in the first image or the mask
    token = gateway.token()
    good = {"image_url": data_url(image_bytes())}
    body = {"prompt": PROMPT, "images": [{"image_url": url}, good]} if where == "images" else \
        {"prompt": PROMPT, "images": [good], "mask": {"image_url": url}}
    # When the edit is sent
    reply = gateway.edit(body, token)
    # Then it is a 400 naming the exact field, the upstream never hears of it, and it is free
    assert reply.status == 400, reply.error
    assert reply.error["param"] == ("images[0].image_url" if where == "images" else "mask.image_url")
    assert gateway.emulator.requests == [] and gateway.balance(token) == Decimal("10")


def test_a_json_mask_of_other_dimensions_than_the_first_image_is_a_400(gateway):
    token = gateway.token()
    body = {"prompt": PROMPT, "images": [{"image_url": data_url(image_bytes(size=(64, 64)))}],
            "mask": {"image_url": data_url(image_bytes(size=(32, 64)))}}
    reply = gateway.edit(body, token)
    assert (reply.status, reply.error["param"]) == (400, "mask.image_url")
    assert "32x64" in reply.error["message"] and "64x64" in reply.error["message"]
    assert gateway.emulator.requests == []


def test_a_public_https_image_url_is_forwarded_without_being_fetched(gateway):
    reply = gateway.edit({"prompt": PROMPT, "images": [{"image_url": "https://93.184.216.34/a.png"}]}, gateway.token())
    assert reply.status == 200


# --- multipart form ----------------------------------------------------------------------------

def test_the_seed_curl_multipart_example_forwards_image_and_mask_byte_for_byte(gateway):
    token = gateway.token()
    base, mask = image_bytes(), image_bytes(color=(0, 0, 0, 0))
    body, content_type = multipart(
        [("image", ("base.png", base, "image/png")), ("mask", ("mask.png", mask, "image/png"))],
        {"model": "gpt-image-2", "prompt": PROMPT})
    reply = gateway.edit(body, token, content_type=content_type)
    assert reply.status == 200, reply.raw["body"]
    [received] = gateway.emulator.requests
    assert received["form"] == {"model": "gpt-image-2", "prompt": PROMPT}
    assert received["files"] == [
        {"field": "image", "filename": "base.png", "content_type": "image/png", "sha256": sha(base), "size": len(base)},
        {"field": "mask", "filename": "mask.png", "content_type": "image/png", "sha256": sha(mask), "size": len(mask)}]


@pytest.mark.parametrize("field", ["image[]", "image"])
def test_several_images_go_upstream_as_image_brackets_in_order(gateway, field):
    token = gateway.token()
    images = [image_bytes("PNG", color=(i * 40, 0, 0)) for i in range(3)] + [image_bytes("WEBP")]
    names = ["a.png", "b.png", "c.png", "d.webp"]
    types = ["image/png"] * 3 + ["image/webp"]
    body, content_type = multipart([(field, (n, b, t)) for n, b, t in zip(names, images, types)],
                                   {"prompt": PROMPT, "n": "1", "stream": "false", "user": ""})
    reply = gateway.edit(body, token, content_type=content_type)
    assert reply.status == 200, reply.raw["body"]
    received = gateway.emulator.requests[0]
    assert [(f["field"], f["filename"], f["content_type"], f["sha256"]) for f in received["files"]] == [
        ("image[]", n, t, sha(b)) for n, t, b in zip(names, types, images)]
    # The SDK's strings are forwarded exactly as they came (`false`, and "" for None).
    assert received["form"]["stream"] == "false" and received["form"]["user"] == ""


def test_raw_bytes_declared_as_octet_stream_are_sent_with_their_real_type(gateway):
    token = gateway.token()
    jpeg = image_bytes("JPEG")
    body, content_type = multipart([("image", ("upload", jpeg, "application/octet-stream"))], {"prompt": PROMPT})
    reply = gateway.edit(body, token, content_type=content_type)
    assert reply.status == 200
    assert gateway.emulator.requests[0]["files"][0]["content_type"] == "image/jpeg"


def test_multipart_edit_in_url_mode_returns_stored_image_urls(gateway):
    token = gateway.token()
    body, content_type = multipart([("image", ("base.png", image_bytes(), "image/png"))],
                                   {"prompt": PROMPT, "response_format": "url"})
    reply = gateway.edit(body, token, content_type=content_type)
    assert reply.status == 200
    assert gateway.store.read(reply.json["data"][0]["url"]).content_type == "image/png"
    first, second = gateway.emulator.requests
    assert first["form"]["response_format"] == "url" and "response_format" not in second["form"]


@pytest.mark.parametrize("files, fields, param, code", [
    ([], {"prompt": PROMPT}, "image", "missing_required_parameter"),
    ([("image[]", (f"{i}.png", image_bytes(), "image/png")) for i in range(17)], {"prompt": PROMPT}, "image",
     "too_many_images"),
    ([("image", ("notes.png", b"just some text, not an image", "image/png"))], {"prompt": PROMPT}, "image",
     "invalid_image_format"),
    ([("image", ("a.png", image_bytes(), "image/png")), ("mask", ("mask.png", image_bytes("JPEG"), "image/png"))],
     {"prompt": PROMPT}, "mask", "invalid_image_format"),
    ([("image", ("a.png", image_bytes(), "image/png"))], {"prompt": PROMPT, "n": "eleven"}, "n", "invalid_type"),
    ([("image", ("fake.png", FAKE_PNG, "image/png"))], {"prompt": PROMPT}, "image", "invalid_image_format"),
    ([("image", ("a.png", image_bytes(size=(64, 64)), "image/png")),
      ("mask", ("mask.png", image_bytes(size=(64, 32)), "image/png"))], {"prompt": PROMPT}, "mask", "invalid_image"),
    ([("image", ("a.png", image_bytes(), "image/png"))], {"prompt": PROMPT, "style": "natural"}, "style",
     "unsupported_parameter"),
    ([("image", ("a.png", image_bytes(), "image/png"))], {}, "prompt", "missing_required_parameter"),
])
def test_bad_multipart_edits_are_refused_with_no_upstream_call_and_no_charge(gateway, files, fields, param, code):
    token = gateway.token()
    body, content_type = multipart(files, fields)
    reply = gateway.edit(body, token, content_type=content_type)
    assert (reply.status, reply.error["param"], reply.error["code"]) == (400, param, code)
    assert gateway.emulator.requests == []
    assert gateway.balance(token) == Decimal("10")


def test_a_file_past_the_per_file_limit_is_413_pointing_to_json_references(gateway, monkeypatch):
    from common.images import uploads

    monkeypatch.setattr(uploads, "MAX_FILE_BYTES", 1024)
    token = gateway.token()
    noisy = io.BytesIO()
    Image.frombytes("RGB", (64, 64), os.urandom(64 * 64 * 3)).save(noisy, format="PNG")  # incompressible
    body, content_type = multipart([("image", ("big.png", noisy.getvalue(), "image/png"))],
                                   {"prompt": PROMPT})
    reply = gateway.edit(body, token, content_type=content_type)
    assert reply.status == 413
    assert reply.error["code"] == "request_too_large" and "image_url" in reply.error["message"]
    assert gateway.emulator.requests == []


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain"])
def test_an_unsupported_content_type_is_415(gateway, content_type):
    reply = gateway.edit("prompt=hello", gateway.token(), content_type=content_type)
    assert (reply.status, reply.error["code"]) == (415, "unsupported_media_type")


def test_a_file_sent_as_a_text_field_is_a_400_naming_it_not_a_500(gateway):
    # curl -F 'image=<base.png' sends the file's bytes as a text field, which are not UTF-8
    token = gateway.token("1")
    body, content_type = multipart([], {"prompt": PROMPT})
    boundary = content_type.split("boundary=")[1].encode()
    png_as_text = (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="image"\r\n\r\n' + image_bytes()
                   + b"\r\n")
    reply = gateway.edit(png_as_text + body, token, content_type=content_type)

    assert (reply.status, reply.error["param"], reply.error["code"]) == (400, "image", "invalid_multipart")
    assert "-F 'image=@" in reply.error["message"]
    assert gateway.emulator.requests == [] and gateway.balance(token) == Decimal("1")
