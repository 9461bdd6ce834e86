"""Validation before anything is spent: a bad request is a 400 naming its `param`.

pydantic checks each field; the rules that involve several fields or the model's capabilities
(sizes, transparency, compression) are here, with OpenAI's wording where OpenAI has one.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from common.billing.catalog import Catalog, ModelSpec
from common.errors import ApiError, invalid_request
from common.billing.pricing import parse_size
from common.images.schemas import ImageOptions

if TYPE_CHECKING:
    from common.web.apigw import Request

FIXED_SIZES = ("1024x1024", "1536x1024", "1024x1536")
T = TypeVar("T", bound=BaseModel)

# Published rules for gpt-image-2 custom sizes.
MAX_EDGE, EDGE_MULTIPLE, MAX_RATIO = 3840, 16, 3
MIN_PIXELS, MAX_PIXELS = 655_360, 8_294_400


MAX_JSON_DEPTH = 32
TOO_DEEP = object()
JSON_TYPES = ("application/json",)  # and any application/*+json


def _has_lone_surrogate(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _problem_in(value: Any, limit: int) -> str | None:
    """Nesting past `limit`, or a string (key or value) holding a lone surrogate escape such as
    "\\ud800": Python's parser accepts both, and neither can be forwarded as JSON."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            if _has_lone_surrogate(item):
                return "lone_surrogate"
        elif isinstance(item, (dict, list)):
            if depth > limit:
                return "too_deep"
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return None


def refuse_encoded_body(request: Request) -> None:
    encoding = (request.header("content-encoding") or "identity").strip().lower()
    if encoding != "identity":
        # API Gateway passes compressed bodies through as they are; parsing them would be a guess.
        raise ApiError(415, f"Content-Encoding '{_shown(encoding)}' is not supported: send the request body "
                       "uncompressed.", code="unsupported_content_encoding")


def json_body(request: Request) -> dict[str, Any]:
    """The body of a JSON endpoint as an object, after its declared type and encoding are checked.
    A missing Content-Type is read as JSON (OpenAI's own curl examples always send one)."""
    refuse_encoded_body(request)
    media_type = (request.header("content-type") or "").split(";", 1)[0].strip().lower()
    if media_type and media_type not in JSON_TYPES and not (media_type.startswith("application/")
                                                             and media_type.endswith("+json")):
        raise ApiError(415, f"The request body must be JSON, sent with 'Content-Type: application/json' "
                       f"(got '{_shown(media_type)}').", code="unsupported_media_type")
    return parse_json_object(request.body)


def _shown(value: str) -> str:
    """A header value safe to echo in a message: printable, short."""
    return "".join(ch for ch in value if ch.isprintable())[:60]


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a 400. Only UTF-8 is JSON here (RFC 8259): other bytes
    would be read with replacement characters and sent on as something the customer never wrote."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as bad:
        raise ApiError(400, f"The request body is not valid UTF-8 (byte {bad.start}); JSON must be sent as UTF-8.",
                       code="invalid_encoding") from None
    try:
        data = json.loads(text)
    except RecursionError:  # Python's parser recurses per nesting level
        data = TOO_DEEP
    except ValueError:
        data = None
    problem = "too_deep" if data is TOO_DEEP else _problem_in(data, MAX_JSON_DEPTH)
    if problem == "too_deep":
        # Nothing legitimate nests this deep, and forwarding it would fail when it is written out.
        raise ApiError(400, f"The JSON body is nested more than {MAX_JSON_DEPTH} levels deep.", code="invalid_json")
    if problem == "lone_surrogate":
        raise ApiError(400, "The JSON body contains a \\u escape of a lone surrogate (such as \\ud800), "
                       "which is not a Unicode character.", code="invalid_json")
    if not isinstance(data, dict):
        raise ApiError(
            400,
            "We could not parse the JSON body of your request. The API expects a JSON object; "
            "send it with 'Content-Type: application/json'.",
            code=None,
        )
    return data


def _param(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_TYPE_NAMES = {"int_type": "an integer", "string_type": "a string", "bool_type": "a boolean",
               "int_from_float": "an integer", "list_type": "an array", "dict_type": "an object",
               "model_type": "an object"}


def _json_type(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
            dict: "an object", type(None): "null"}.get(type(value), "a value")


def _quoted(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else json.dumps(value)


def error_from_pydantic(exc: ValidationError) -> ApiError:
    """The first pydantic error, in OpenAI's words and codes."""
    err = exc.errors(include_url=False)[0]
    kind, param, ctx, value = err["type"], _param(err["loc"]), err.get("ctx") or {}, err.get("input")
    if kind == "missing":
        return invalid_request(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")
    if kind == "string_too_short":
        return invalid_request(
            f"Invalid '{param}': empty string. Expected a string with minimum length {ctx.get('min_length')}, "
            "but got an empty string instead.", param=param, code="empty_string")
    if kind == "string_too_long":
        return invalid_request(
            f"Invalid '{param}': string too long. Expected a string with maximum length {ctx.get('max_length')}, "
            f"but got a string with length {len(value)} instead.", param=param, code="string_above_max_length")
    if kind in ("greater_than_equal", "greater_than"):
        return invalid_request(
            f"Invalid '{param}': integer below minimum value. Expected a value >= {ctx.get('ge', ctx.get('gt'))}, "
            f"but got {value} instead.", param=param, code="integer_below_min_value")
    if kind in ("less_than_equal", "less_than"):
        return invalid_request(
            f"Invalid '{param}': integer above maximum value. Expected a value <= {ctx.get('le', ctx.get('lt'))}, "
            f"but got {value} instead.", param=param, code="integer_above_max_value")
    if kind == "value_error":
        message = str(err["msg"]).removeprefix("Value error, ")
        return invalid_request(f"Invalid '{param}': {message}.", param=param, code="invalid_value")
    if kind in ("too_short", "too_long"):
        return invalid_request(f"Invalid '{param}': {err['msg']}.", param=param, code="invalid_value")
    if kind == "literal_error":
        return invalid_request(
            f"Invalid value: {_quoted(value)}. Supported values are: {ctx.get('expected')}.",
            param=param, code="invalid_value")
    if kind in _TYPE_NAMES:
        return invalid_request(
            f"Invalid type for '{param}': expected {_TYPE_NAMES[kind]}, but got {_json_type(value)} instead.",
            param=param, code="invalid_type")
    return invalid_request(f"Invalid '{param}': {err['msg']}.", param=param, code="invalid_value")


def parse_model(model: type[T], data: dict[str, Any]) -> T:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error_from_pydantic(exc) from None


def resolve_model(requested: str | None, catalog: Catalog, default: str, allowed: tuple[str, ...] | None) -> ModelSpec:
    model_id = requested or default
    spec = catalog.get(model_id)
    if spec is None or (allowed is not None and model_id not in allowed):
        raise ApiError(
            400, f"The model '{model_id}' does not exist or you do not have access to it.",
            param="model", code="model_not_found")
    return spec


def check_size(size: str | None, spec: ModelSpec) -> None:
    if size is None or size == "auto" or size in FIXED_SIZES:
        return
    supported = "Supported values are: 'auto', '1024x1024', '1536x1024', and '1024x1536'"
    try:
        dims = parse_size(size)
    except ValueError:
        dims = None
    if dims is None or not spec.custom_sizes:
        raise invalid_request(f"Invalid value: '{size}'. {supported}"
                              + (", or WIDTHxHEIGHT within the custom size rules." if spec.custom_sizes else "."),
                              param="size")
    width, height = dims
    problems = []
    if width % EDGE_MULTIPLE or height % EDGE_MULTIPLE:
        problems.append(f"both sides must be multiples of {EDGE_MULTIPLE}")
    if max(width, height) > MAX_EDGE:
        problems.append(f"the longest side must be at most {MAX_EDGE}")
    if min(width, height) <= 0 or max(width, height) > MAX_RATIO * min(width, height):
        problems.append(f"the long side must be at most {MAX_RATIO} times the short side")
    if not MIN_PIXELS <= width * height <= MAX_PIXELS:
        problems.append(f"the total pixels must be between {MIN_PIXELS:,} and {MAX_PIXELS:,}")
    if problems:
        raise invalid_request(f"Invalid size '{size}' for {spec.id}: " + "; ".join(problems) + ".", param="size")


def check_options(options: ImageOptions, spec: ModelSpec) -> None:
    """Rules across fields, for generations and edits alike."""
    check_size(options.size, spec)
    output_format = options.output_format or "png"
    if options.background == "transparent" and output_format == "jpeg":
        raise invalid_request(
            "Transparent background requires output_format 'png' or 'webp'.", param="background")
    if options.output_compression is not None and output_format == "png":
        raise invalid_request(
            "output_compression is only supported with output_format 'jpeg' or 'webp'.", param="output_compression")
    if options.style is not None:
        raise invalid_request(f"style is only supported for dall-e-3; {spec.id} does not take it.", param="style",
                              code="unsupported_parameter")
    if options.stream and options.response_format == "url":
        # Streamed events carry the images themselves; refused before anything is spent.
        raise invalid_request(
            "response_format=url cannot be combined with stream=true: streamed events carry the images as base64. "
            "Drop stream, or drop response_format.", param="response_format")
