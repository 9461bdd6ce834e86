"""The upstream emulator behaves like OpenAI's image API wherever the gateway can notice."""
import base64
import hashlib
import io
import json
import time

import pytest
import requests
from openai import OpenAI
from PIL import Image


RESPONSE_FORMAT_ERROR = {"error": {"message": "Unknown parameter: 'response_format'.",
                                   "type": "invalid_request_error", "param": "response_format",
                                   "code": "unknown_parameter"}}


@pytest.fixture(scope="module")
def http():
    with requests.Session() as session:
        yield session


def auth(emu):
    return {"Authorization": f"Bearer {emu.api_key}"}


def generate(emu, http, **body):
    body.setdefault("prompt", "a lighthouse at dusk")
    return http.post(f"{emu.base_url}/images/generations", json=body, headers=auth(emu), timeout=10)


def png_bytes(size=(64, 64), colour=(200, 30, 30, 255)):
    buffer = io.BytesIO()
    Image.new("RGBA", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def decode(item) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(item["b64_json"])))


def sse_events(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


# ---------------------------------------------------------------- auth and models

def test_missing_or_wrong_api_key_gets_openai_401(emu, http):
    wrong = http.post(f"{emu.base_url}/images/generations", json={"prompt": "x"},
                      headers={"Authorization": "Bearer sk-wrong-key-123456"})
    missing = http.get(f"{emu.base_url}/models")
    assert wrong.status_code == missing.status_code == 401
    error = wrong.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_api_key"
    assert error["param"] is None
    assert error["message"].startswith("Incorrect API key provided: sk-") and "3456" in error["message"]
    assert "sk-wrong-key-123456" not in error["message"]
    assert missing.json()["error"]["code"] == "invalid_api_key"
    assert wrong.headers["x-request-id"].startswith("req_")


def test_models_lists_the_gpt_image_models(emu, http):
    body = http.get(f"{emu.base_url}/models", headers=auth(emu)).json()
    assert body["object"] == "list"
    assert {m["id"] for m in body["data"]} == {"gpt-image-2", "gpt-image-1.5", "gpt-image-1-mini", "gpt-image-1"}
    assert all(m["object"] == "model" and m["owned_by"] == "openai" for m in body["data"])


# ---------------------------------------------------------------- generations

def test_response_format_is_rejected_with_the_exact_openai_body(emu, http):
    for value in ("b64_json", "url", None):
        response = generate(emu, http, model="gpt-image-1", response_format=value)
        assert response.status_code == 400
        assert response.json() == RESPONSE_FORMAT_ERROR
        assert response.headers["content-type"] == "application/json"


def test_generation_returns_png_of_requested_size_with_usage(emu, http):
    response = generate(emu, http, model="gpt-image-2", size="1536x1024", quality="high", n=2)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"].startswith("req_")
    body = response.json()
    assert len(body["data"]) == 2
    image = decode(body["data"][0])
    assert (image.format, image.size) == ("PNG", (1536, 1024))
    assert (body["size"], body["quality"], body["output_format"], body["background"]) == \
        ("1536x1024", "high", "png", "opaque")
    assert isinstance(body["created"], int)
    text = -(-len("a lighthouse at dusk") // 4)
    assert body["usage"] == {"input_tokens": text,
                             "input_tokens_details": {"text_tokens": text, "image_tokens": 0},
                             "output_tokens": 2 * 5488,
                             "output_tokens_details": {"image_tokens": 2 * 5488, "text_tokens": 0},
                             "total_tokens": text + 2 * 5488}


@pytest.mark.parametrize("model, size, quality, tokens", [
    ("gpt-image-2", "auto", "low", 196), ("gpt-image-2", "1024x1024", "auto", 1756),
    ("gpt-image-2", "1024x1024", "high", 7024), ("gpt-image-2", "1024x1536", "medium", 1372),
    ("gpt-image-2", "2048x2048", "medium", 1756 * 4), ("gpt-image-2", "1280x720", "low", 173),
    ("gpt-image-1", "1024x1024", "high", 4160), ("gpt-image-1.5", "1536x1024", "low", 408),
    ("gpt-image-1-mini", "1024x1536", "medium", 1584),
])
def test_output_tokens_follow_the_published_per_image_figures(emu, http, model, size, quality, tokens):
    body = generate(emu, http, model=model, size=size, quality=quality, output_format="jpeg").json()
    assert body["usage"]["output_tokens"] == tokens
    assert body["quality"] == ("medium" if quality == "auto" else quality)


@pytest.mark.parametrize("fmt, pil_format", [("jpeg", "JPEG"), ("webp", "WEBP"), ("png", "PNG")])
def test_each_output_format_is_a_real_image_of_that_format(emu, http, fmt, pil_format):
    body = generate(emu, http, model="gpt-image-1.5", size="1024x1536", output_format=fmt,
                    output_compression=50).json()
    image = decode(body["data"][0])
    assert (image.format, image.size, body["output_format"]) == (pil_format, (1024, 1536), fmt)


def test_output_compression_changes_the_encoded_size(emu, http):
    small = generate(emu, http, output_format="jpeg", output_compression=10).json()["data"][0]["b64_json"]
    large = generate(emu, http, output_format="jpeg", output_compression=100).json()["data"][0]["b64_json"]
    assert len(small) < len(large)


@pytest.mark.parametrize("fmt", ["png", "webp"])
def test_transparent_background_has_fully_transparent_pixels(emu, http, fmt):
    body = generate(emu, http, background="transparent", output_format=fmt).json()
    image = decode(body["data"][0])
    assert image.mode == "RGBA" and body["background"] == "transparent"
    low, high = image.getchannel("A").getextrema()
    assert (low, high) == (0, 255)


def test_different_prompts_give_different_images(emu, http):
    first = generate(emu, http, prompt="a red fox").json()["data"][0]["b64_json"]
    second = generate(emu, http, prompt="a blue whale").json()["data"][0]["b64_json"]
    assert first != second


def test_custom_size_is_accepted_for_gpt_image_2(emu, http):
    body = generate(emu, http, model="gpt-image-2", size="2048x1152", output_format="jpeg").json()
    assert body["size"] == "2048x1152"
    assert decode(body["data"][0]).size == (2048, 1152)


@pytest.mark.parametrize("model, size", [
    ("gpt-image-2", "1000x1000"),   # not multiples of 16
    ("gpt-image-2", "3840x1088"),   # ratio above 3:1
    ("gpt-image-2", "4096x2304"),   # longest side above 3840
    ("gpt-image-2", "768x768"),     # fewer than 655,360 pixels
    ("gpt-image-1", "2048x2048"),   # fixed-size model
    ("gpt-image-2", "big"),
])
def test_bad_sizes_are_rejected_as_invalid_value(emu, http, model, size):
    response = generate(emu, http, model=model, size=size)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "size"
    assert response.json()["error"]["code"] == "invalid_value"


def test_fixed_size_model_names_the_supported_sizes(emu, http):
    error = generate(emu, http, model="gpt-image-1", size="1254x836").json()["error"]
    assert error["message"] == ("Invalid value: '1254x836'. Supported values are: '1024x1024', "
                                "'1024x1536', '1536x1024', and 'auto'.")


@pytest.mark.parametrize("body, param, code", [
    ({"prompt": None}, "prompt", "missing_required_parameter"),
    ({"model": "dall-e-9"}, "model", "invalid_value"),
    ({"n": 0}, "n", "integer_below_min_value"),
    ({"n": 11}, "n", "integer_above_max_value"),
    ({"n": "2"}, "n", "invalid_type"),
    ({"quality": "hd"}, "quality", "invalid_value"),
    ({"background": "transparent", "output_format": "jpeg"}, "background", "invalid_value"),
    ({"partial_images": 4, "stream": True}, "partial_images", "integer_above_max_value"),
    ({"style": "vivid"}, "style", "unknown_parameter"),
])
def test_invalid_parameters_get_openai_shaped_400s(emu, http, body, param, code):
    body = {"prompt": "p", **body}
    if body["prompt"] is None:
        del body["prompt"]
    response = http.post(f"{emu.base_url}/images/generations", json=body, headers=auth(emu))
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")


def test_streaming_sends_partial_images_then_completed_with_usage(emu, http):
    response = generate(emu, http, model="gpt-image-2", stream=True, partial_images=2, quality="low")
    assert response.headers["content-type"] == "text/event-stream"
    events = sse_events(response.text)
    assert [name for name, _ in events] == ["image_generation.partial_image"] * 2 + ["image_generation.completed"]
    assert [data["partial_image_index"] for _, data in events[:2]] == [0, 1]
    completed = events[-1][1]
    assert completed["type"] == "image_generation.completed"
    assert decode(completed).size == (1024, 1024)
    assert {"size", "quality", "background", "output_format", "created_at"} <= set(completed)
    assert completed["usage"]["output_tokens"] == 196 + 2 * 100


# ---------------------------------------------------------------- edits

def test_multipart_edit_with_one_image_records_the_file(emu, http):
    image = png_bytes()
    response = http.post(f"{emu.base_url}/images/edits", headers=auth(emu),
                         files={"image": ("in.png", image, "image/png")},
                         data={"prompt": "add a hat", "model": "gpt-image-1.5", "size": "1024x1024"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert decode(body["data"][0]).size == (1024, 1024)
    assert body["usage"]["input_tokens_details"]["image_tokens"] == 194
    record = emu.requests[-1]
    assert record["form"] == {"prompt": "add a hat", "model": "gpt-image-1.5", "size": "1024x1024"}
    assert record["json"] is None
    assert record["files"] == [{"field": "image", "filename": "in.png", "content_type": "image/png",
                                "sha256": hashlib.sha256(image).hexdigest(), "size": len(image)}]


def test_multipart_edit_with_two_images_and_a_mask_counts_only_the_images(emu, http):
    first, second, mask = png_bytes(colour=(1, 2, 3, 255)), png_bytes(colour=(4, 5, 6, 255)), png_bytes()
    response = http.post(f"{emu.base_url}/images/edits", headers=auth(emu), data={"prompt": "merge", "n": "2"},
                         files=[("image[]", ("a.png", first, "image/png")),
                                ("image[]", ("b.webp", second, "image/webp")),
                                ("mask", ("m.png", mask, "image/png"))])
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["data"]) == 2
    assert body["usage"]["input_tokens_details"]["image_tokens"] == 2 * 194
    files = emu.requests[-1]["files"]
    assert [(f["field"], f["sha256"]) for f in files] == [
        ("image[]", hashlib.sha256(first).hexdigest()), ("image[]", hashlib.sha256(second).hexdigest()),
        ("mask", hashlib.sha256(mask).hexdigest())]


def test_octet_stream_image_is_rejected_like_openai(emu, http):
    response = http.post(f"{emu.base_url}/images/edits", headers=auth(emu), data={"prompt": "x"},
                         files={"image": ("blob", png_bytes(), "application/octet-stream")})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "Invalid file 'image': unsupported mimetype ('application/octet-stream'). "
        "Supported file formats are 'image/jpeg', 'image/png', and 'image/webp'.")


def test_edit_without_an_image_is_rejected(emu, http):
    response = http.post(f"{emu.base_url}/images/edits", headers=auth(emu),
                         files={"prompt": (None, "x")})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "image"


def test_multipart_edit_rejects_response_format_too(emu, http):
    response = http.post(f"{emu.base_url}/images/edits", headers=auth(emu),
                         data={"prompt": "x", "response_format": "b64_json"},
                         files={"image": ("in.png", png_bytes(), "image/png")})
    assert (response.status_code, response.json()) == (400, RESPONSE_FORMAT_ERROR)


def test_json_edit_with_image_urls_is_accepted_and_recorded(emu, http):
    data_url = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    body = {"model": "gpt-image-2", "prompt": "make it night",
            "images": [{"image_url": data_url}, {"image_url": "https://example.com/a.png"}],
            "mask": {"image_url": data_url}, "output_format": "webp", "quality": "low"}
    response = http.post(f"{emu.base_url}/images/edits", headers=auth(emu), json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert decode(result["data"][0]).format == "WEBP"
    assert result["usage"]["input_tokens_details"]["image_tokens"] == 2 * 194
    assert emu.requests[-1]["json"] == body and emu.requests[-1]["files"] is None


def test_json_edit_without_images_is_rejected(emu, http):
    response = http.post(f"{emu.base_url}/images/edits", headers=auth(emu), json={"prompt": "x", "images": []})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "images"


# ---------------------------------------------------------------- recording

def test_every_v1_request_is_recorded_with_headers_and_body_hash(emu, http):
    raw = json.dumps({"prompt": "p", "response_format": "url"}).encode()
    http.post(f"{emu.base_url}/images/generations", data=raw,
              headers={**auth(emu), "Content-Type": "application/json", "X-Custom": "yes"})
    http.get(f"{emu.base_url}/models")
    first, second = emu.requests
    assert (first["method"], first["path"]) == ("POST", "/v1/images/generations")
    assert first["headers"]["x-custom"] == "yes"
    assert first["headers"]["authorization"] == f"Bearer {emu.api_key}"
    assert first["json"] == {"prompt": "p", "response_format": "url"}
    assert first["raw_sha256"] == hashlib.sha256(raw).hexdigest()
    assert first["form"] is None and first["files"] is None
    assert first["time"] <= second["time"]
    assert second["path"] == "/v1/models"


# ---------------------------------------------------------------- scripted behaviours

def test_scripted_status_is_passed_through_with_headers(emu, http):
    rate_limited = {"error": {"message": "Rate limit reached", "type": "requests",
                              "param": None, "code": "rate_limit_exceeded"}}
    emu.script({"status": 429, "headers": {"Retry-After": "1"}, "body": rate_limited},
               {"status": 503, "body": "upstream unavailable", "headers": {"Content-Type": "text/plain"}})
    first, second, third = generate(emu, http), generate(emu, http), generate(emu, http)
    assert first.status_code == 429 and first.json() == rate_limited
    assert first.headers["retry-after"] == "1" and first.headers["x-request-id"].startswith("req_")
    assert (second.status_code, second.text, second.headers["content-type"]) == \
        (503, "upstream unavailable", "text/plain")
    assert third.status_code == 200


def test_scripted_moderation_block_is_a_normal_status_behaviour(emu, http):
    blocked = {"error": {"message": "Your request was rejected by the safety system.",
                         "type": "image_generation_user_error", "param": None, "code": "moderation_blocked"}}
    emu.script({"status": 400, "body": blocked})
    response = generate(emu, http, response_format="url")  # scripted answers bypass validation
    assert (response.status_code, response.json()) == (400, blocked)
    assert response.headers["content-type"] == "application/json"


def test_scripted_delay_then_normal_answer(emu, http):
    emu.script({"delay": 0.3})
    started = time.monotonic()
    response = generate(emu, http)
    assert time.monotonic() - started >= 0.3
    assert response.status_code == 200 and response.json()["data"]


def test_scripted_malformed_and_empty_data(emu, http):
    emu.script({"kind": "malformed"}, {"kind": "empty_data"})
    malformed, empty = generate(emu, http), generate(emu, http)
    assert (malformed.status_code, malformed.text) == (200, '{"data": [')
    with pytest.raises(ValueError):
        malformed.json()
    assert empty.status_code == 200
    assert empty.json()["data"] == [] and empty.json()["usage"]["output_tokens"] > 0


def test_scripted_drop_closes_the_connection_without_an_answer(emu):
    emu.script({"kind": "drop"})
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{emu.base_url}/images/generations", json={"prompt": "x"}, headers=auth(emu), timeout=5)
    assert len(emu.requests) == 1


def test_accept_response_format_serves_a_url_to_a_real_image(emu, http):
    emu.script({"kind": "accept_response_format"}, {"kind": "accept_response_format"})
    body = generate(emu, http, response_format="url", n=2).json()
    urls = [item["url"] for item in body["data"]]
    assert all(url.startswith(emu.base_url.removesuffix("/v1") + "/__emulator/files/") for url in urls)
    fetched = http.get(urls[0])  # no auth, like a presigned URL
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(fetched.content)).size == (1024, 1024)
    as_b64 = generate(emu, http, response_format="b64_json").json()
    assert "b64_json" in as_b64["data"][0]
    assert generate(emu, http, response_format="url").json() == RESPONSE_FORMAT_ERROR


def test_scripted_usage_replaces_the_computed_usage(emu, http):
    usage = {"input_tokens": 1, "input_tokens_details": {"text_tokens": 1, "image_tokens": 0, "cached_tokens": 7},
             "output_tokens": 2, "total_tokens": 3}
    emu.script({"usage": usage})
    body = generate(emu, http).json()
    assert body["usage"] == usage and len(body["data"]) == 1


def test_times_applies_a_behaviour_to_several_requests(emu, http):
    emu.script({"status": 500, "body": {"error": {"message": "boom", "type": "server_error",
                                                  "param": None, "code": None}}, "times": 2})
    statuses = [generate(emu, http).status_code for _ in range(3)]
    assert statuses == [500, 500, 200]


def test_path_filter_skips_requests_to_other_endpoints(emu, http):
    emu.script({"status": 502, "body": {"error": {"message": "bad gateway", "type": "server_error",
                                                  "param": None, "code": None}}, "path": "/edits"})
    assert generate(emu, http).status_code == 200
    assert http.get(f"{emu.base_url}/models", headers=auth(emu)).status_code == 200
    edit = http.post(f"{emu.base_url}/images/edits", headers=auth(emu), data={"prompt": "x"},
                     files={"image": ("a.png", png_bytes(), "image/png")})
    assert edit.status_code == 502
    assert generate(emu, http).status_code == 200


def test_unknown_behaviour_keys_are_refused_at_scripting_time(emu):
    with pytest.raises(ValueError):
        emu.script({"stauts": 500})
    with pytest.raises(ValueError):
        emu.script({"kind": "explode"})


# ---------------------------------------------------------------- control endpoints

def test_http_control_endpoints_script_list_and_reset(emu, http):
    root = emu.base_url.removesuffix("/v1")
    queued = http.post(f"{root}/__emulator/script", json={"behaviours": [
        {"status": 418, "body": {"error": {"message": "teapot", "type": "x", "param": None, "code": None}}}]})
    assert (queued.status_code, queued.json()) == (200, {"queued": 1})
    assert generate(emu, http).status_code == 418
    listed = http.get(f"{root}/__emulator/requests").json()["requests"]
    assert [r["path"] for r in listed] == ["/v1/images/generations"]
    assert http.post(f"{root}/__emulator/script", json={"behaviours": [{"delay": 1}]}).status_code == 200
    assert http.post(f"{root}/__emulator/reset").status_code == 200
    assert http.get(f"{root}/__emulator/requests").json() == {"requests": []}
    started = time.monotonic()
    assert generate(emu, http).status_code == 200 and time.monotonic() - started < 1  # script cleared
    assert http.post(f"{root}/__emulator/script", json={"behaviours": [{"bogus": 1}]}).status_code == 400


def test_reset_clears_script_and_recorded_requests(emu, http):
    emu.script({"status": 500, "body": "x"})
    generate(emu, http, prompt="first")
    emu.script({"status": 500, "body": "x"})
    emu.reset()
    assert emu.requests == []
    assert generate(emu, http).status_code == 200


# ---------------------------------------------------------------- the official SDK

def test_official_openai_sdk_can_generate_and_edit(emu, tmp_path):
    client = OpenAI(base_url=emu.base_url, api_key=emu.api_key, max_retries=0, timeout=10)
    generated = client.images.generate(model="gpt-image-1.5", prompt="a small robot", size="1024x1536")
    assert Image.open(io.BytesIO(base64.b64decode(generated.data[0].b64_json))).size == (1024, 1536)
    assert generated.usage.output_tokens == 1584 and generated.size == "1024x1536"

    source = tmp_path / "source.png"
    source.write_bytes(png_bytes())
    with open(source, "rb") as image:
        edited = client.images.edit(model="gpt-image-2", image=image, prompt="paint it blue", quality="low")
    assert edited.usage.input_tokens_details.image_tokens == 194
    record = emu.requests[-1]
    assert record["files"][0]["content_type"] == "image/png"
    assert record["files"][0]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert record["form"]["prompt"] == "paint it blue"

    with open(source, "rb") as first, open(source, "rb") as second:
        client.images.edit(model="gpt-image-2", image=[first, second], prompt="two")
    assert [f["field"] for f in emu.requests[-1]["files"]] == ["image[]", "image[]"]

    stream = client.images.generate(model="gpt-image-2", prompt="streamed", stream=True, partial_images=1)
    types = [event.type for event in stream]
    assert types == ["image_generation.partial_image", "image_generation.completed"]


def test_official_sdk_maps_scripted_errors_to_its_exceptions(emu):
    import openai
    client = OpenAI(base_url=emu.base_url, api_key=emu.api_key, max_retries=0, timeout=10)
    with pytest.raises(openai.BadRequestError) as bad:
        client.images.generate(model="gpt-image-1", prompt="x", response_format="b64_json")
    assert bad.value.code == "unknown_parameter"
    emu.script({"status": 429, "headers": {"Retry-After": "1"}, "body": {"error": {
        "message": "slow down", "type": "requests", "param": None, "code": "rate_limit_exceeded"}}})
    with pytest.raises(openai.RateLimitError):
        client.images.generate(model="gpt-image-1", prompt="x")
    with pytest.raises(openai.AuthenticationError):
        OpenAI(base_url=emu.base_url, api_key="sk-nope-0000", max_retries=0).images.generate(prompt="x")
