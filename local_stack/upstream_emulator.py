"""An OpenAI-like image upstream on 127.0.0.1, standing in for https://api.openai.com/v1.

The gateway must not be able to tell it apart from OpenAI where it matters: the same status codes,
error bodies, response shapes, usage numbers and real image bytes. Tests and the local stack drive
it in-process (``script()``, ``requests``, ``reset()``) or over HTTP (``/__emulator/...``).
Facts come from docs/ARCHITECTURE.md and the shared openai-images-wire reference.
"""
from __future__ import annotations

import argparse
import base64
import collections
import copy
import email.policy
import functools
import hashlib
import io
import json
import math
import re
import threading
import time
import uuid
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image, ImageDraw

MODELS = {"gpt-image-2": 1776729600, "gpt-image-1.5": 1765843200,
          "gpt-image-1-mini": 1759795200, "gpt-image-1": 1745366400}
MODEL_ALIASES = {"gpt-image-2-2026-04-21": "gpt-image-2", "chatgpt-image-latest": "gpt-image-1.5"}
DEFAULT_MODEL = "gpt-image-1"
STANDARD_SIZES = ("1024x1024", "1024x1536", "1536x1024")
# Output image tokens per image: (1024x1024, 1536x1024 / 1024x1536), by quality.
OUTPUT_TOKENS = {
    "gpt-image-2": ({"low": 196, "medium": 1756, "high": 7024}, {"low": 160, "medium": 1372, "high": 5488}),
    "older": ({"low": 272, "medium": 1056, "high": 4160}, {"low": 408, "medium": 1584, "high": 6240}),
}
QUALITY_FOR_AUTO = {"auto": "medium"}  # what the response reports and what tokens are counted at
INPUT_IMAGE_TOKENS = 194
PARTIAL_IMAGE_TOKENS = 100
MAX_EDIT_IMAGES = 16
IMAGE_MIME_TYPES = ("image/png", "image/jpeg", "image/webp")

_COMMON = {"prompt", "model", "n", "size", "quality", "background", "output_format",
           "output_compression", "user", "stream", "partial_images", "safety_identifier"}
GENERATION_FIELDS = _COMMON | {"moderation"}
EDIT_FORM_FIELDS = _COMMON | {"input_fidelity", "image", "image[]", "mask"}  # multipart has no moderation
EDIT_JSON_FIELDS = _COMMON | {"moderation", "input_fidelity", "images", "mask"}
BEHAVIOUR_KEYS = {"status", "body", "headers", "delay", "kind", "usage", "path", "times", "noise", "event_interval",
                  "fail_after_events"}
BEHAVIOUR_KINDS = {"malformed", "empty_data", "drop", "accept_response_format"}


class ApiError(Exception):
    """An OpenAI error answer: all four keys of ``error`` are always present."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None, type_: str = "invalid_request_error"):
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _quoted_list(values) -> str:
    """OpenAI's phrasing of allowed values: 'a', 'b', and 'c'."""
    quoted = [f"'{v}'" for v in values]
    return ", ".join(quoted[:-1]) + ", and " + quoted[-1] if len(quoted) > 2 else " and ".join(quoted)


def invalid_value(param: str, value, supported) -> ApiError:
    return ApiError(400, f"Invalid value: '{value}'. Supported values are: {_quoted_list(supported)}.",
                    param, "invalid_value")


def unknown_parameter(name: str) -> ApiError:
    return ApiError(400, f"Unknown parameter: '{name}'.", name, "unknown_parameter")


def missing_parameter(name: str) -> ApiError:
    return ApiError(400, f"Missing required parameter: '{name}'.", name, "missing_required_parameter")


def unsupported_mimetype(field: str, content_type: str | None) -> ApiError:
    return ApiError(400, f"Invalid file '{field}': unsupported mimetype ('{content_type}'). Supported file "
                    "formats are 'image/jpeg', 'image/png', and 'image/webp'.", field, "invalid_value")


# --------------------------------------------------------------------------- parameters

class ImageJob(collections.namedtuple(
        "ImageJob", "model prompt n width height quality background output_format compression stream "
                    "partial_images input_images response_format")):
    """A validated request: everything needed to render images and count tokens."""

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


def check_parameters(params: dict, allowed: set, accept_response_format: bool) -> None:
    """gpt-image models reject any parameter they do not know, response_format first of all."""
    if "response_format" in params and not accept_response_format:
        raise unknown_parameter("response_format")
    for name in params:
        if name not in allowed and name != "response_format":
            raise unknown_parameter(name)


def _integer(params: dict, name: str, default: int, low: int, high: int, from_form: bool) -> int:
    """Multipart sends numbers as strings; JSON must carry a real integer."""
    value = params.get(name)
    if value is None or (from_form and value == ""):
        return default
    if from_form:
        try:
            value = int(value)
        except ValueError:
            raise ApiError(400, f"Invalid type for '{name}': expected an integer, but got a string instead.",
                           name, "invalid_type") from None
    elif isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"Invalid type for '{name}': expected an integer, but got "
                       f"{type(value).__name__} instead.", name, "invalid_type")
    if value < low:
        raise ApiError(400, f"Invalid '{name}': integer below minimum value. Expected a value >= {low}, "
                       f"but got {value} instead.", name, "integer_below_min_value")
    if value > high:
        raise ApiError(400, f"Invalid '{name}': integer above maximum value. Expected a value <= {high}, "
                       f"but got {value} instead.", name, "integer_above_max_value")
    return value


def _choice(params: dict, name: str, choices: tuple, default: str) -> str:
    value = params.get(name)
    if value is None or value == "":
        return default
    if value not in choices:
        raise invalid_value(name, value, choices)
    return value


def _boolean(params: dict, name: str) -> bool:
    value = params.get(name)
    return value.strip().lower() in ("true", "1") if isinstance(value, str) else bool(value)


def parse_size(model: str, size) -> tuple[int, int]:
    """Fixed sizes for every model; gpt-image-2 also takes any WxH within the published limits."""
    if size in (None, "", "auto"):
        return 1024, 1024
    match = re.fullmatch(r"(\d+)x(\d+)", str(size))
    if match and (str(size) in STANDARD_SIZES or model == "gpt-image-2"):
        width, height = int(match[1]), int(match[2])
        problem = custom_size_problem(width, height)
        if problem:
            raise ApiError(400, f"Invalid size '{size}'. {problem}", "size", "invalid_value")
        return width, height
    raise invalid_value("size", size, STANDARD_SIZES + ("auto",))


def custom_size_problem(width: int, height: int) -> str | None:
    """The gpt-image-2 custom size rules; standard sizes satisfy all of them."""
    if width % 16 or height % 16:
        return "Width and height must both be multiples of 16."
    if max(width, height) > 3 * min(width, height):
        return "The ratio between the long and the short side must be at most 3:1."
    if max(width, height) > 3840:
        return "The longest side must be at most 3840 pixels."
    if not 655_360 <= width * height <= 8_294_400:
        return "The total number of pixels must be between 655,360 and 8,294,400."
    return None


def build_job(params: dict, from_form: bool, input_images: int = 0) -> ImageJob:
    """Validate the shared generation/edit parameters the way OpenAI does for gpt-image models."""
    prompt = params.get("prompt")
    if prompt is None:
        raise missing_parameter("prompt")
    if not isinstance(prompt, str):
        raise ApiError(400, "Invalid type for 'prompt': expected a string.", "prompt", "invalid_type")
    if not prompt:
        raise ApiError(400, "Invalid 'prompt': empty string. Expected a string with minimum length 1, "
                       "but got an empty string instead.", "prompt", "empty_string")
    if len(prompt) > 32_000:
        raise ApiError(400, "Invalid 'prompt': string too long. Expected a string with maximum length "
                       f"32000, but got a string with length {len(prompt)} instead.", "prompt",
                       "string_above_max_length")
    model = params.get("model") or DEFAULT_MODEL
    if MODEL_ALIASES.get(model, model) not in MODELS:
        raise invalid_value("model", model, list(MODELS) + list(MODEL_ALIASES))
    model = MODEL_ALIASES.get(model, model)
    width, height = parse_size(model, params.get("size"))
    output_format = _choice(params, "output_format", ("png", "jpeg", "webp"), "png")
    background = _choice(params, "background", ("transparent", "opaque", "auto"), "auto")
    if background == "transparent" and output_format == "jpeg":
        raise ApiError(400, "Transparent background is not supported for output format 'jpeg'. "
                       "Use 'png' or 'webp'.", "background", "invalid_value")
    _choice(params, "moderation", ("low", "auto"), "auto")
    _choice(params, "input_fidelity", ("high", "low"), "low")
    response_format = _choice(params, "response_format", ("url", "b64_json"), "b64_json")
    quality = _choice(params, "quality", ("low", "medium", "high", "auto"), "auto")
    return ImageJob(
        model=model, prompt=prompt, width=width, height=height, output_format=output_format,
        n=_integer(params, "n", 1, 1, 10, from_form),
        quality=QUALITY_FOR_AUTO.get(quality, quality),
        background="transparent" if background == "transparent" else "opaque",
        compression=_integer(params, "output_compression", 100, 0, 100, from_form),
        stream=_boolean(params, "stream"),
        partial_images=_integer(params, "partial_images", 0, 0, 3, from_form),
        input_images=input_images, response_format=response_format,
    )


# --------------------------------------------------------------------------- usage

def output_tokens_per_image(job: ImageJob) -> int:
    """Published per-image output tokens; gpt-image-2 custom sizes scale the square figure by area."""
    square, non_square = OUTPUT_TOKENS["gpt-image-2" if job.model == "gpt-image-2" else "older"]
    if job.size == "1024x1024":
        return square[job.quality]
    if job.size in STANDARD_SIZES:
        return non_square[job.quality]
    return math.ceil(square[job.quality] * job.width * job.height / 1_048_576)


def build_usage(job: ImageJob) -> dict:
    """Text tokens estimated as ceil(len/4); each input image 194; each streamed partial image 100."""
    partials = job.partial_images * PARTIAL_IMAGE_TOKENS if job.stream else 0
    return usage_dict(max(1, math.ceil(len(job.prompt) / 4)), INPUT_IMAGE_TOKENS * job.input_images,
                      job.n * output_tokens_per_image(job) + partials)


def usage_dict(text: int, image_in: int, output: int) -> dict:
    return {"input_tokens": text + image_in,
            "input_tokens_details": {"text_tokens": text, "image_tokens": image_in},
            "output_tokens": output, "output_tokens_details": {"image_tokens": output, "text_tokens": 0},
            "total_tokens": text + image_in + output}


# --------------------------------------------------------------------------- images

def prompt_colour(prompt: str) -> tuple[int, int, int]:
    """A stable colour per prompt, so different prompts visibly give different images."""
    digest = hashlib.sha256(prompt.encode()).digest()
    return digest[0], digest[1], digest[2]


@functools.lru_cache(maxsize=64)
def render_image(width: int, height: int, output_format: str, transparent: bool,
                 compression: int, colour: tuple, noise: bool = False) -> tuple[bytes, str]:
    """A real image (vertical gradient, white to ``colour``), encoded once and cached as (bytes, base64).

    Every row is one colour, so PNG compresses it to a few KB and a repeat costs nothing. With
    ``noise`` the pixels are random instead (seeded by the colour, so still cached): a PNG as large
    as a real photo's or larger (about 3 bytes a pixel, 4.7 MB at 1536x1024), for size tests.
    Transparent images keep an opaque ellipse on a fully transparent (alpha 0) surround.
    """
    size = (width, height)
    if noise:
        seed = hashlib.sha256(bytes(colour)).digest()
        pixels = b"".join(hashlib.sha256(seed + i.to_bytes(4, "big")).digest() for i in range(width * height * 3 // 32 + 1))
        image = Image.frombytes("RGB", size, pixels[:width * height * 3])
    else:
        gradient = Image.linear_gradient("L").resize(size)
        image = Image.composite(Image.new("RGB", size, colour), Image.new("RGB", size, (255, 255, 255)), gradient)
    if transparent:
        alpha = Image.new("L", size, 0)
        ImageDraw.Draw(alpha).ellipse((width // 8, height // 8, width * 7 // 8, height * 7 // 8), fill=255)
        image.putalpha(alpha)
    buffer = io.BytesIO()
    if output_format == "png":
        image.save(buffer, "PNG", compress_level=6)
    else:
        image.save(buffer, output_format.upper(), quality=max(1, compression))
    data = buffer.getvalue()
    return data, base64.b64encode(data).decode("ascii")


def image_for(job: ImageJob, noise: bool = False) -> tuple[bytes, str]:
    compression = 100 if job.output_format == "png" else job.compression
    return render_image(job.width, job.height, job.output_format, job.background == "transparent",
                        compression, prompt_colour(job.prompt), noise)


# --------------------------------------------------------------------------- request bodies

def parse_multipart(content_type: str, body: bytes) -> tuple[dict, list[dict]]:
    """Split multipart/form-data with the stdlib MIME parser: (string fields, file parts with bytes)."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise ApiError(400, "Could not parse multipart form data.", None, None)
    form, files = {}, []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if part.get_filename() is None:
            form[name] = payload.decode("utf-8", "replace")
        else:
            files.append({"field": name, "filename": part.get_filename(),
                          "content_type": part.get("content-type") and part.get_content_type(),
                          "data": payload})
    return form, files


def count_json_edit_images(params: dict) -> int:
    """JSON edits: 1-16 ``images``, each exactly one of image_url / file_id (data URLs must be images)."""
    images = params.get("images")
    if not images:
        raise missing_parameter("images")
    if not isinstance(images, list) or len(images) > MAX_EDIT_IMAGES:
        raise ApiError(400, f"Invalid 'images': expected an array of 1 to {MAX_EDIT_IMAGES} items.",
                       "images", "invalid_value")
    for index, item in enumerate(images):
        refs = [key for key in ("image_url", "file_id") if isinstance(item, dict) and item.get(key)]
        if len(refs) != 1:
            raise ApiError(400, f"Invalid 'images[{index}]': provide exactly one of 'image_url' or 'file_id'.",
                           f"images[{index}]", "invalid_value")
        url = str(item.get("image_url") or "")
        if url.startswith("data:") and not url.startswith(tuple(f"data:{m}" for m in IMAGE_MIME_TYPES)):
            raise unsupported_mimetype(f"images[{index}]", url[5:].split(";")[0])
    return len(images)


def count_form_edit_images(files: list[dict]) -> int:
    """Multipart edits: ``image`` / ``image[]`` parts (1-16) plus an optional ``mask``, all real image types."""
    images = [f for f in files if f["field"] in ("image", "image[]")]
    if not images:
        raise missing_parameter("image")
    if len(images) > MAX_EDIT_IMAGES:
        raise ApiError(400, f"Invalid 'image': at most {MAX_EDIT_IMAGES} images are allowed.", "image",
                       "invalid_value")
    for part in files:
        if part["content_type"] not in IMAGE_MIME_TYPES:
            raise unsupported_mimetype(part["field"].removesuffix("[]"), part["content_type"] or
                                       "application/octet-stream")
    return len(images)


# --------------------------------------------------------------------------- scripting

def validate_behaviour(behaviour: dict) -> dict:
    """Catch typos at scripting time, not as a confusing 'normal' answer later."""
    if not isinstance(behaviour, dict):
        raise ValueError(f"a behaviour must be a dict, got {behaviour!r}")
    unknown = set(behaviour) - BEHAVIOUR_KEYS
    if unknown:
        raise ValueError(f"unknown behaviour keys {sorted(unknown)}; allowed: {sorted(BEHAVIOUR_KEYS)}")
    if "kind" in behaviour and behaviour["kind"] not in BEHAVIOUR_KINDS:
        raise ValueError(f"unknown behaviour kind {behaviour['kind']!r}; allowed: {sorted(BEHAVIOUR_KINDS)}")
    return {**copy.deepcopy(behaviour), "_left": int(behaviour.get("times", 1))}


# --------------------------------------------------------------------------- HTTP

class _Handler(BaseHTTPRequestHandler):
    """One HTTP exchange. Keep-alive (HTTP/1.1) and no Nagle keep repeated requests at ~1 ms."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # noqa: A002 - silence per-request stderr lines
        pass

    # ---- plumbing
    def _send(self, status: int, body: bytes | str, headers: dict | None = None,
              content_type: str = "application/json") -> None:
        data = body.encode() if isinstance(body, str) else body
        headers = {k.lower(): str(v) for k, v in (headers or {}).items()}
        headers.setdefault("content-type", content_type)
        headers.setdefault("x-request-id", "req_" + uuid.uuid4().hex)
        headers["content-length"] = str(len(data))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_json(self, status: int, payload) -> None:
        self._send(status, json.dumps(payload))

    def _dispatch(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.split("?")[0]
        try:
            if path.startswith("/__emulator/"):
                self._control(path, body)
            elif path.startswith("/v1/"):
                self._api(path, body)
            else:
                raise ApiError(404, f"Invalid URL ({self.command} {path})")
        except ApiError as error:
            self._send_json(error.status, error.body)
        except ConnectionError:  # the client went away (e.g. it timed out during a scripted delay)
            self.close_connection = True
        except Exception as error:  # an emulator bug must still look like an upstream 500
            self._send_json(500, ApiError(500, f"The server had an error while processing your request. "
                                          f"({type(error).__name__}: {error})", type_="server_error").body)

    do_GET = do_POST = _dispatch

    # ---- control endpoints
    def _control(self, path: str, body: bytes) -> None:
        emulator = self.server.emulator
        if path == "/__emulator/script" and self.command == "POST":
            try:
                behaviours = json.loads(body or b"{}").get("behaviours", [])
                self._send_json(200, {"queued": emulator._queue(behaviours)})
            except (ValueError, AttributeError) as error:
                self._send_json(400, {"error": str(error)})
        elif path == "/__emulator/requests" and self.command == "GET":
            self._send_json(200, {"requests": emulator.requests})
        elif path == "/__emulator/reset" and self.command == "POST":
            emulator.reset()
            self._send_json(200, {"reset": True})
        elif path.startswith("/__emulator/files/") and self.command == "GET":
            name = path.rsplit("/", 1)[1]
            data = emulator._files.get(name)
            if data is None:
                raise ApiError(404, f"No such file: {name}")
            self._send(200, data, content_type="image/" + name.rsplit(".", 1)[1])
        else:
            raise ApiError(404, f"Invalid URL ({self.command} {path})")

    # ---- the emulated API
    def _api(self, path: str, body: bytes) -> None:
        """Record, authenticate (before any script), apply the next behaviour, else answer like OpenAI."""
        emulator = self.server.emulator
        record, params, files = self._describe(body)
        emulator._record(record)
        self._check_auth(emulator.api_key)
        if path == "/v1/models" and self.command == "GET":
            data = [{"id": m, "object": "model", "created": c, "owned_by": "openai"} for m, c in MODELS.items()]
            return self._send_json(200, {"object": "list", "data": data})
        if path not in ("/v1/images/generations", "/v1/images/edits") or self.command != "POST":
            raise ApiError(404, f"Invalid URL ({self.command} {path})")
        behaviour = emulator._take_behaviour(path)
        time.sleep(float(behaviour.get("delay", 0)))
        if self._answer_scripted(behaviour):
            return
        job = self._validate(path, params, files, behaviour.get("kind") == "accept_response_format")
        usage = behaviour["usage"] if "usage" in behaviour else build_usage(job)
        if job.stream:
            return self._stream(job, usage, "image_edit" if path.endswith("edits") else "image_generation", behaviour)
        data = [] if behaviour.get("kind") == "empty_data" else self._image_items(job, bool(behaviour.get("noise")))
        self._send_json(200, {"created": int(time.time()), "data": data, "background": job.background,
                              "output_format": job.output_format, "quality": job.quality,
                              "size": job.size, "usage": usage})

    def _describe(self, body: bytes) -> tuple[dict, dict | None, list | None]:
        """Parse the body once; the record keeps what a test needs to prove exact forwarding."""
        content_type = self.headers.get("Content-Type", "")
        params = files = form = parsed = None
        try:
            if content_type.lower().startswith("multipart/form-data"):
                form, files = parse_multipart(content_type, body)
                params = {**form, **{f["field"]: True for f in files}}
            elif body:
                parsed = json.loads(body)
                params = parsed
        except (ValueError, ApiError):
            params = None
        record = {"method": self.command, "path": self.path,
                  "headers": {k.lower(): v for k, v in self.headers.items()},
                  "json": parsed, "form": form,
                  "files": None if files is None else [
                      {"field": f["field"], "filename": f["filename"], "content_type": f["content_type"],
                       "sha256": hashlib.sha256(f["data"]).hexdigest(), "size": len(f["data"])} for f in files],
                  "raw_sha256": hashlib.sha256(body).hexdigest(), "time": time.time()}
        return record, params, files

    def _check_auth(self, api_key: str) -> None:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Bearer ") or not header[7:].strip():
            raise ApiError(401, "You didn't provide an API key. You need to provide your API key in an "
                           "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                           None, "invalid_api_key")
        given = header[7:].strip()
        if given != api_key:
            masked = given[:3] + "*" * max(len(given) - 7, 0) + given[-4:] if len(given) > 8 else "*" * len(given)
            raise ApiError(401, f"Incorrect API key provided: {masked}. You can find your API key at "
                           "https://platform.openai.com/account/api-keys.", None, "invalid_api_key")

    def _answer_scripted(self, behaviour: dict) -> bool:
        """Answers that bypass the normal flow: explicit status, truncated JSON, dropped connection."""
        kind = behaviour.get("kind")
        if kind == "drop":
            self.close_connection = True
            return True
        if kind == "malformed":
            self._send(200, '{"data": [')
            return True
        if "status" in behaviour:
            body = behaviour.get("body", "")
            self._send(int(behaviour["status"]), body if isinstance(body, str) else json.dumps(body),
                       behaviour.get("headers"))
            return True
        return False

    def _validate(self, path: str, params: dict | None, files: list | None, accept_rf: bool) -> ImageJob:
        if not isinstance(params, dict):
            raise ApiError(400, "We could not parse the JSON body of your request. (HINT: This likely means "
                           "you aren't using your HTTP library correctly. The OpenAI API expects a JSON "
                           "payload, but what was sent was not valid JSON.)")
        if path.endswith("generations"):
            check_parameters(params, GENERATION_FIELDS, accept_rf)
            return build_job(params, from_form=False)
        if files is not None:
            check_parameters(params, EDIT_FORM_FIELDS, accept_rf)
            return build_job(params, from_form=True, input_images=count_form_edit_images(files))
        check_parameters(params, EDIT_JSON_FIELDS, accept_rf)
        return build_job(params, from_form=False, input_images=count_json_edit_images(params))

    def _image_items(self, job: ImageJob, noise: bool = False) -> list[dict]:
        data, b64 = image_for(job, noise)
        if job.response_format != "url":
            return [{"b64_json": b64} for _ in range(job.n)]
        port = self.server.server_address[1]
        return [{"url": f"http://127.0.0.1:{port}/__emulator/files/"
                        f"{self.server.emulator._store_file(data, job.output_format)}"} for _ in range(job.n)]

    def _stream(self, job: ImageJob, usage: dict, prefix: str, behaviour: dict) -> None:
        """SSE: the partial images, then one completed event per image.

        With n > 1 the request's usage rides on the last completed event and the earlier ones carry
        zeros, so a gateway that sums the events and one that keeps the last both bill it once.
        ``event_interval`` seconds pass before each event (as a real generation takes its time);
        ``fail_after_events`` drops the connection after that many events.
        """
        self.send_response(200)
        for name, value in (("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"),
                            ("x-request-id", "req_" + uuid.uuid4().hex), ("Connection", "close")):
            self.send_header(name, value)
        self.end_headers()
        _, b64 = image_for(job, bool(behaviour.get("noise")))
        common = {"b64_json": b64, "size": job.size, "quality": job.quality, "background": job.background,
                  "output_format": job.output_format, "created_at": int(time.time())}
        events = [(f"{prefix}.partial_image", {"type": f"{prefix}.partial_image", **common, "partial_image_index": i})
                  for i in range(job.partial_images)]
        events += [(f"{prefix}.completed", {"type": f"{prefix}.completed", **common,
                                            "usage": usage if i == job.n - 1 else usage_dict(0, 0, 0)})
                   for i in range(job.n)]
        fail_after = behaviour.get("fail_after_events")
        for sent, (name, payload) in enumerate(events):
            if fail_after is not None and sent >= int(fail_after):
                self.close_connection = True
                return
            time.sleep(float(behaviour.get("event_interval", 0)))
            self._event(name, payload)

    def _event(self, name: str, payload: dict) -> None:
        self.wfile.write(f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode())
        self.wfile.flush()


# --------------------------------------------------------------------------- public API

class UpstreamEmulator:
    """An OpenAI-like image API on loopback; see the module docstring and docs/ARCHITECTURE.md."""

    def __init__(self, api_key: str = "sk-upstream-emulator", host: str = "127.0.0.1", port: int = 0):
        self.api_key = api_key
        self.host = host
        self.port = port
        self.base_url = ""
        self._lock = threading.Lock()
        self._script: list[dict] = []
        self._requests: list[dict] = []
        self._files: dict[str, bytes] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        """Bind (port 0 picks a free port) and serve from a daemon thread; returns the /v1 base URL."""
        if self._server is None:
            self._server = ThreadingHTTPServer((self.host, self.port), _Handler)  # daemon threads
            self._server.emulator = self  # the handler's way back to the recorder and the script
            self._thread = threading.Thread(target=self._server.serve_forever, name="upstream-emulator",
                                            daemon=True)
            self._thread.start()
            self.base_url = f"http://{self.host}:{self._server.server_address[1]}/v1"
        return self.base_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = self._thread = None

    def script(self, *behaviours: dict) -> None:
        """Queue behaviours; each is consumed by the next matching /v1/images/* request (FIFO)."""
        self._queue(behaviours)

    @property
    def requests(self) -> list[dict]:
        with self._lock:
            return copy.deepcopy(self._requests)

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self._requests.clear()
            self._files.clear()

    def _queue(self, behaviours) -> int:
        checked = [validate_behaviour(b) for b in behaviours]
        with self._lock:
            self._script.extend(checked)
        return len(checked)

    def _take_behaviour(self, path: str) -> dict:
        """The first queued behaviour whose ``path`` filter matches; ``times`` keeps it for k requests."""
        with self._lock:
            for index, item in enumerate(self._script):
                if item.get("path", "") in path:
                    item["_left"] -= 1
                    if item["_left"] <= 0:
                        del self._script[index]
                    return item
        return {}

    def _record(self, record: dict) -> None:
        with self._lock:
            self._requests.append(record)

    def _store_file(self, data: bytes, extension: str) -> str:
        name = f"{uuid.uuid4().hex}.{extension}"
        with self._lock:
            self._files[name] = data
        return name


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the OpenAI-like upstream emulator on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="sk-upstream-emulator")
    args = parser.parse_args(argv)
    emulator = UpstreamEmulator(api_key=args.api_key, port=args.port)
    print(emulator.start(), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()


if __name__ == "__main__":
    main()
