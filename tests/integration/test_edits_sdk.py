"""Edits as customers send them, against `make run`: the official SDK's `images.edit`, the seed's
curl examples (multipart and JSON), with what the upstream receives checked byte for byte."""
from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
from pathlib import Path

import openai
import pytest
import requests
from PIL import Image


pytestmark = pytest.mark.slow

PROMPT = "在天空中加入热气球"


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pictures")
    made = {}
    for name, fmt, color in [("base.png", "PNG", (30, 120, 200, 255)), ("second.png", "PNG", (200, 30, 30, 255)),
                             ("third.jpg", "JPEG", (10, 200, 10)), ("mask.png", "PNG", (0, 0, 0, 0))]:
        image = Image.new("RGBA" if fmt == "PNG" else "RGB", (96, 96), color)
        image.save(folder / name, format=fmt)
        made[name] = folder / name
    return made


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def decoded_png(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert image.format == "PNG"
    return image


def test_sdk_edit_with_one_file_sends_it_upstream_as_image_byte_for_byte(stack, client, pictures):
    with open(pictures["base.png"], "rb") as image:
        result = client.images.edit(model="gpt-image-2", image=image, prompt=PROMPT, size="1024x1024")
    assert decoded_png(result.data[0].b64_json).size == (1024, 1024)
    [received] = stack.emulator("requests")
    assert [(f["field"], f["filename"], f["content_type"], f["sha256"]) for f in received["files"]] == [
        ("image", "base.png", "image/png", sha(pictures["base.png"]))]


def test_sdk_edit_with_several_files_and_a_mask_keeps_order_bytes_and_types(stack, client, pictures):
    names = ["base.png", "second.png", "third.jpg"]
    handles = [open(pictures[name], "rb") for name in names]
    try:
        with open(pictures["mask.png"], "rb") as mask:
            result = client.images.edit(model="gpt-image-2", image=handles, mask=mask, prompt=PROMPT)
    finally:
        for handle in handles:
            handle.close()
    assert len(result.data) == 1
    [received] = stack.emulator("requests")
    assert [(f["field"], f["filename"], f["sha256"]) for f in received["files"]] == [
        *[("image[]", name, sha(pictures[name])) for name in names], ("mask", "mask.png", sha(pictures["mask.png"]))]
    assert [f["content_type"] for f in received["files"]] == ["image/png", "image/png", "image/jpeg", "image/png"]


def test_sdk_edit_in_url_mode_returns_a_url_serving_the_png(client, pictures):
    with open(pictures["base.png"], "rb") as image:
        result = client.images.edit(model="gpt-image-2", image=image, prompt=PROMPT, response_format="url")
    fetched = requests.get(result.data[0].url, timeout=10)
    assert fetched.status_code == 200 and fetched.headers["Content-Type"] == "image/png"


def test_the_seed_curl_multipart_example_works_unchanged(stack, pictures):
    stack.emulator("reset")
    base = stack.state["base_url"].removesuffix("/v1")
    command = ["curl", "-s", "-X", "POST", f"{base}/v1/images/edits",
               "-H", f"Authorization: Bearer {stack.state['token']}",
               "-F", "model=gpt-image-2", "-F", f"image=@{pictures['base.png']}",
               "-F", f"mask=@{pictures['mask.png']}", "-F", f"prompt={PROMPT}"]
    answer = json.loads(subprocess.run(command, capture_output=True, check=True, timeout=60).stdout)
    assert decoded_png(answer["data"][0]["b64_json"])
    [received] = stack.emulator("requests")
    assert [(f["field"], f["sha256"]) for f in received["files"]] == [
        ("image", sha(pictures["base.png"])), ("mask", sha(pictures["mask.png"]))]
    assert received["form"] == {"model": "gpt-image-2", "prompt": PROMPT}


def test_the_seed_curl_json_example_with_an_https_url_works_unchanged(stack):
    stack.emulator("reset")
    base = stack.state["base_url"].removesuffix("/v1")
    body = {"model": "gpt-image-2", "prompt": "换种风格", "size": "1024x1024", "quality": "medium",
            "images": [{"image_url": "https://example.com/base-image.png"}]}
    command = ["curl", "-s", "-X", "POST", f"{base}/v1/images/edits",
               "-H", f"Authorization: Bearer {stack.state['token']}", "-H", "Content-Type: application/json",
               "-d", json.dumps(body, ensure_ascii=False)]
    answer = json.loads(subprocess.run(command, capture_output=True, check=True, timeout=60).stdout)
    assert answer["data"][0]["b64_json"]
    assert stack.emulator("requests")[0]["json"] == body


def test_a_json_edit_with_a_data_url_works_through_the_stack(stack, pictures):
    stack.emulator("reset")
    data_url = "data:image/png;base64," + base64.b64encode(pictures["base.png"].read_bytes()).decode()
    response = stack.http.post(f"{stack.state['base_url']}/images/edits", headers=stack.auth, timeout=30,
                               json={"model": "gpt-image-2", "prompt": PROMPT, "images": [{"image_url": data_url}]})
    assert response.status_code == 200
    assert stack.emulator("requests")[0]["json"]["images"][0]["image_url"] == data_url


def test_a_text_file_named_png_is_refused_and_costs_nothing(stack, client, tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("not an image at all")
    before = stack.balance(stack.state["token"])
    with open(fake, "rb") as image, pytest.raises(openai.BadRequestError) as caught:
        client.images.edit(model="gpt-image-2", image=image, prompt=PROMPT)
    assert (caught.value.param, caught.value.code) == ("image", "invalid_image_format")
    assert stack.emulator("requests") == []
    assert stack.balance(stack.state["token"]) == before


def test_an_upload_too_large_for_lambda_is_a_413_in_openais_shape(stack, client, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(7 * 1024 * 1024))
    with open(big, "rb") as image, pytest.raises(openai.APIStatusError) as caught:
        client.images.edit(model="gpt-image-2", image=image, prompt=PROMPT)
    assert caught.value.status_code == 413
    assert set(caught.value.response.json()["error"]) == {"message", "type", "param", "code"}
    assert stack.emulator("requests") == []
