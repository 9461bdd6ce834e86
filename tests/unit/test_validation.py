"""Request validation: every field of the seed's table and of OpenAI's generations request.

Each refusal must be what OpenAI would answer: HTTP 400, type invalid_request_error, the offending
`param`, an OpenAI-like `code`, and a body carrying all four keys.
"""
from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from common.billing.catalog import ModelSpec
from common.errors import ApiError
from common.images.schemas import GenerationRequest
from common.images.validation import (
    check_options,
    check_size,
    error_from_pydantic,
    parse_json_object,
    parse_model,
    resolve_model,
)

ERROR_KEYS = {"message", "type", "param", "code"}


# --------------------------------------------------------------------------- helpers



@pytest.fixture
def gpt_image_15(catalog) -> ModelSpec:
    return catalog.get("gpt-image-1.5")


def parse(**fields: Any) -> GenerationRequest:
    """A generation body with a valid prompt plus the given fields."""
    return parse_model(GenerationRequest, {"prompt": "a cat", **fields})


def refused(call, *args: Any, **kwargs: Any) -> ApiError:
    with pytest.raises(ApiError) as info:
        call(*args, **kwargs)
    return info.value


def assert_invalid_request(error: ApiError, *, param: str | None, code: str | None) -> None:
    """The OpenAI shape of a 400: status, type, param, code, and a body with all four keys."""
    assert error.status == 400
    assert error.type == "invalid_request_error"
    assert error.param == param
    assert error.code == code
    body = error.body()
    assert set(body) == {"error"}
    assert set(body["error"]) == ERROR_KEYS
    assert body["error"] == {"message": error.message, "type": "invalid_request_error", "param": param,
                             "code": code}
    assert isinstance(error.message, str) and error.message


def refused_field(**fields: Any) -> ApiError:
    return refused(parse, **fields)


# --------------------------------------------------------------------------- model

def test_unknown_model_is_refused_with_param_model_and_code_model_not_found(catalog):
    error = refused(resolve_model, "dall-e-9", catalog, "gpt-image-2", None)

    assert_invalid_request(error, param="model", code="model_not_found")
    assert "dall-e-9" in error.message


@pytest.mark.parametrize("model_id", ["gpt-image-2", "gpt-image-1.5", "gpt-image-1-mini"])
def test_every_catalog_model_resolves_to_its_own_spec(catalog, model_id):
    spec = resolve_model(model_id, catalog, "gpt-image-2", None)

    assert spec.id == model_id
    assert spec == catalog.get(model_id)


def test_absent_model_resolves_to_the_default_model(catalog):
    # Given a body without "model"
    options = parse()
    # When the model is resolved with gpt-image-1.5 as the deployment's default
    spec = resolve_model(options.model, catalog, "gpt-image-1.5", None)
    # Then the default is used
    assert options.model is None
    assert spec.id == "gpt-image-1.5"


def test_model_outside_the_tokens_allowed_models_is_refused_as_not_found(catalog):
    error = refused(resolve_model, "gpt-image-1.5", catalog, "gpt-image-2", ["gpt-image-2"])

    assert_invalid_request(error, param="model", code="model_not_found")


def test_model_inside_the_tokens_allowed_models_is_resolved(catalog):
    spec = resolve_model("gpt-image-1-mini", catalog, "gpt-image-2", ["gpt-image-2", "gpt-image-1-mini"])

    assert spec.id == "gpt-image-1-mini"


def test_empty_allowed_models_list_allows_no_model(catalog):
    error = refused(resolve_model, "gpt-image-2", catalog, "gpt-image-2", [])

    assert_invalid_request(error, param="model", code="model_not_found")


def test_default_model_is_refused_when_the_token_may_not_use_it(catalog):
    # Given no model in the request and a token limited to gpt-image-1.5
    # When the default (gpt-image-2) is resolved
    error = refused(resolve_model, None, catalog, "gpt-image-2", ["gpt-image-1.5"])
    # Then the token's restriction still applies
    assert_invalid_request(error, param="model", code="model_not_found")


@pytest.mark.parametrize("value", [123, True, ["gpt-image-2"], {"id": "gpt-image-2"}])
def test_non_string_model_is_refused_with_invalid_type(value):
    assert_invalid_request(refused_field(model=value), param="model", code="invalid_type")


# --------------------------------------------------------------------------- prompt

def test_missing_prompt_is_refused_with_code_missing_required_parameter():
    error = refused(parse_model, GenerationRequest, {"model": "gpt-image-2"})

    assert_invalid_request(error, param="prompt", code="missing_required_parameter")
    assert error.message == "Missing required parameter: 'prompt'."


def test_empty_prompt_is_refused_with_code_empty_string():
    assert_invalid_request(refused_field(prompt=""), param="prompt", code="empty_string")


def test_prompt_of_exactly_32000_characters_is_accepted():
    assert len(parse(prompt="a" * 32_000).prompt) == 32_000


def test_prompt_longer_than_32000_characters_is_refused_with_param_prompt():
    error = refused_field(prompt="a" * 32_001)

    assert_invalid_request(error, param="prompt", code="string_above_max_length")
    assert "32001" in error.message


def test_prompt_limit_counts_characters_not_bytes():
    # 32,000 CJK characters are 96,000 UTF-8 bytes: still within the limit.
    assert len(parse(prompt="猫" * 32_000).prompt) == 32_000


@pytest.mark.parametrize("value", [123, None, True, ["a cat"], {"text": "a cat"}, 1.5])
def test_non_string_prompt_is_refused_with_code_invalid_type(value):
    assert_invalid_request(refused_field(prompt=value), param="prompt", code="invalid_type")


# --------------------------------------------------------------------------- n

@pytest.mark.parametrize("value", [1, 2, 10, None])
def test_n_from_1_to_10_or_null_is_accepted(value):
    assert parse(n=value).n == value


@pytest.mark.parametrize(("value", "code"), [
    (0, "integer_below_min_value"),
    (-1, "integer_below_min_value"),
    (11, "integer_above_max_value"),
    (10**30, "integer_above_max_value"),
])
def test_n_outside_1_to_10_is_refused_with_param_n(value, code):
    assert_invalid_request(refused_field(n=value), param="n", code=code)


@pytest.mark.parametrize("value", ["2", True, False, 2.0, [2]])
def test_n_that_is_not_a_json_integer_is_refused_with_code_invalid_type(value):
    assert_invalid_request(refused_field(n=value), param="n", code="invalid_type")


# --------------------------------------------------------------------------- size

@pytest.mark.parametrize("model_id", ["gpt-image-2", "gpt-image-1.5", "gpt-image-1-mini"])
@pytest.mark.parametrize("size", ["1024x1024", "1536x1024", "1024x1536", "auto", None])
def test_fixed_sizes_and_auto_are_accepted_for_every_model(catalog, model_id, size):
    options = parse(size=size)

    check_options(options, catalog.get(model_id))  # no exception
    assert options.size == size


@pytest.mark.parametrize("size", [
    "2048x1152",   # 2K landscape
    "3840x2160",   # 4K: longest side and pixel count both exactly at the limit
    "1024x3072",   # ratio exactly 3:1
    "3072x1024",
    "1024x640",    # 655,360 pixels: exactly the minimum
    "2560x1440",
    "1152x2048",
])
def test_custom_sizes_within_the_rules_are_accepted_for_gpt_image_2(gpt_image_2, size):
    check_size(size, gpt_image_2)  # no exception
    check_options(parse(size=size), gpt_image_2)


@pytest.mark.parametrize(("size", "problem"), [
    ("1000x1000", "multiples of 16"),
    ("1040x1000", "multiples of 16"),
    ("3072x1008", "at most 3 times the short side"),
    ("1008x3072", "at most 3 times the short side"),
    ("3856x1296", "longest side must be at most 3840"),
    ("512x512", "total pixels"),
    ("1024x624", "total pixels"),   # 638,976 pixels: just under the minimum
    ("3840x2176", "total pixels"),  # 8,355,840 pixels: just over the maximum
    ("2896x2896", "total pixels"),
])
def test_custom_size_breaking_a_rule_is_refused_with_param_size_naming_the_rule(gpt_image_2, size, problem):
    error = refused(check_size, size, gpt_image_2)

    assert_invalid_request(error, param="size", code="invalid_value")
    assert size in error.message
    assert problem in error.message


def test_custom_size_breaking_a_rule_is_refused_through_check_options(gpt_image_2):
    assert_invalid_request(refused(check_options, parse(size="512x512"), gpt_image_2),
                           param="size", code="invalid_value")


@pytest.mark.parametrize("model_id", ["gpt-image-2", "gpt-image-1.5"])
@pytest.mark.parametrize("size", ["big", "1024x", "x", "x1024", "", "1024*1024", "1024 by 1024",
                                  "1024x1024x1024", "0x0", "-1024x-1024", "AUTO"])
def test_garbage_size_is_refused_with_param_size(catalog, model_id, size):
    error = refused(check_size, size, catalog.get(model_id))

    assert_invalid_request(error, param="size", code="invalid_value")


@pytest.mark.parametrize("size", ["2048x1152", "3840x2160", "1024x640", "1254x836"])
def test_custom_size_is_refused_for_gpt_image_1_5_with_openais_wording(gpt_image_15, size):
    error = refused(check_size, size, gpt_image_15)

    assert_invalid_request(error, param="size", code="invalid_value")
    assert error.message.startswith(f"Invalid value: '{size}'. Supported values are: ")
    for fixed in ("'auto'", "'1024x1024'", "'1536x1024'", "'1024x1536'"):
        assert fixed in error.message


@pytest.mark.parametrize("value", [1024, ["1024x1024"], {"w": 1024}])
def test_non_string_size_is_refused_with_code_invalid_type(value):
    assert_invalid_request(refused_field(size=value), param="size", code="invalid_type")


@pytest.mark.parametrize("size", [" 2048x1152", "2048x1152 ", "2_048x1_152", "2048x 1152"])
def test_size_with_whitespace_or_digit_separators_is_refused_for_gpt_image_2(gpt_image_2, size):
    assert_invalid_request(refused(check_size, size, gpt_image_2), param="size", code="invalid_value")


# --------------------------------------------------------------------------- quality

@pytest.mark.parametrize("value", ["low", "medium", "high", "auto", None])
def test_every_published_quality_is_accepted(value):
    assert parse(quality=value).quality == value


@pytest.mark.parametrize("value", ["ultra", "HIGH", "standard", "hd", ""])
def test_unknown_quality_is_refused_with_param_quality_and_code_invalid_value(value):
    error = refused_field(quality=value)

    assert_invalid_request(error, param="quality", code="invalid_value")
    assert error.message.startswith(f"Invalid value: '{value}'. Supported values are: ")


@pytest.mark.parametrize("value", [1, True, ["high"]])
def test_non_string_quality_is_refused_with_param_quality(value):
    assert refused_field(quality=value).param == "quality"


# --------------------------------------------------------------------------- background / output_format

@pytest.mark.parametrize("value", ["transparent", "opaque", "auto", None])
def test_every_published_background_is_accepted(value):
    assert parse(background=value).background == value


@pytest.mark.parametrize("value", ["white", "TRANSPARENT", "none"])
def test_unknown_background_is_refused_with_param_background(value):
    assert_invalid_request(refused_field(background=value), param="background", code="invalid_value")


@pytest.mark.parametrize("value", ["png", "jpeg", "webp", None])
def test_every_published_output_format_is_accepted(value):
    assert parse(output_format=value).output_format == value


@pytest.mark.parametrize("value", ["gif", "jpg", "PNG", "avif"])
def test_unknown_output_format_is_refused_with_param_output_format(value):
    assert_invalid_request(refused_field(output_format=value), param="output_format", code="invalid_value")


def test_transparent_background_with_jpeg_is_refused_with_param_background(gpt_image_2):
    error = refused(check_options, parse(background="transparent", output_format="jpeg"), gpt_image_2)

    assert_invalid_request(error, param="background", code="invalid_value")


@pytest.mark.parametrize("output_format", ["png", "webp", None])
def test_transparent_background_with_png_webp_or_default_format_is_accepted(gpt_image_2, output_format):
    check_options(parse(background="transparent", output_format=output_format), gpt_image_2)  # no exception


@pytest.mark.parametrize("background", ["opaque", "auto", None])
def test_non_transparent_background_with_jpeg_is_accepted(gpt_image_2, background):
    check_options(parse(background=background, output_format="jpeg"), gpt_image_2)  # no exception


# --------------------------------------------------------------------------- output_compression

@pytest.mark.parametrize("output_format", ["jpeg", "webp"])
@pytest.mark.parametrize("value", [0, 1, 50, 99, 100])
def test_output_compression_from_0_to_100_with_jpeg_or_webp_is_accepted(gpt_image_2, output_format, value):
    options = parse(output_format=output_format, output_compression=value)

    check_options(options, gpt_image_2)  # no exception
    assert options.output_compression == value


@pytest.mark.parametrize(("value", "code"), [(101, "integer_above_max_value"), (-1, "integer_below_min_value")])
def test_output_compression_outside_0_to_100_is_refused_with_param_output_compression(value, code):
    error = refused_field(output_format="jpeg", output_compression=value)

    assert_invalid_request(error, param="output_compression", code=code)


@pytest.mark.parametrize("value", ["80", 80.0, True])
def test_output_compression_that_is_not_an_integer_is_refused_with_code_invalid_type(value):
    error = refused_field(output_format="jpeg", output_compression=value)

    assert_invalid_request(error, param="output_compression", code="invalid_type")


@pytest.mark.parametrize("output_format", ["png", None])
def test_output_compression_with_png_is_refused_with_param_output_compression(gpt_image_2, output_format):
    # Given png, explicitly or as the default format
    options = parse(output_format=output_format, output_compression=80)
    # Then compression is refused, naming output_compression (not output_format)
    error = refused(check_options, options, gpt_image_2)

    assert_invalid_request(error, param="output_compression", code="invalid_value")


# --------------------------------------------------------------------------- moderation, user, response_format

@pytest.mark.parametrize("value", ["low", "auto", None])
def test_every_published_moderation_is_accepted(value):
    assert parse(moderation=value).moderation == value


@pytest.mark.parametrize("value", ["high", "off", "LOW", ""])
def test_unknown_moderation_is_refused_with_param_moderation_and_code_invalid_value(value):
    assert_invalid_request(refused_field(moderation=value), param="moderation", code="invalid_value")


@pytest.mark.parametrize("value", [0, True, ["low"]])
def test_non_string_moderation_is_refused_with_param_moderation(value):
    error = refused_field(moderation=value)

    assert error.status == 400
    assert error.param == "moderation"


def test_user_string_is_accepted_unchanged():
    assert parse(user="user-42 ✓").user == "user-42 ✓"


@pytest.mark.parametrize("value", [42, True, ["u"], {"id": "u"}])
def test_non_string_user_is_refused_with_code_invalid_type(value):
    assert_invalid_request(refused_field(user=value), param="user", code="invalid_type")


@pytest.mark.parametrize("value", ["url", "b64_json", None])
def test_response_format_url_or_b64_json_is_accepted(value):
    assert parse(response_format=value).response_format == value


@pytest.mark.parametrize("value", ["png", "URL", "base64", ""])
def test_unknown_response_format_is_refused_with_param_response_format(value):
    assert_invalid_request(refused_field(response_format=value), param="response_format", code="invalid_value")


# --------------------------------------------------------------------------- stream, partial_images

@pytest.mark.parametrize("value", [True, False, None])
def test_boolean_stream_is_accepted(value):
    assert parse(stream=value).stream is value


@pytest.mark.parametrize("value", ["true", "false", 1, 0, "1"])
def test_stream_that_is_not_a_json_boolean_is_refused_with_code_invalid_type(value):
    assert_invalid_request(refused_field(stream=value), param="stream", code="invalid_type")


@pytest.mark.parametrize("value", [0, 1, 2, 3, None])
def test_partial_images_from_0_to_3_is_accepted(value):
    assert parse(stream=True, partial_images=value).partial_images == value


@pytest.mark.parametrize(("value", "code"), [
    (4, "integer_above_max_value"), (-1, "integer_below_min_value"), ("2", "invalid_type"), (True, "invalid_type"),
])
def test_partial_images_outside_0_to_3_or_not_an_integer_is_refused_with_param_partial_images(value, code):
    assert_invalid_request(refused_field(stream=True, partial_images=value), param="partial_images", code=code)


# --------------------------------------------------------------------------- unknown fields

def test_unknown_fields_are_kept_in_model_extra_to_be_forwarded():
    extra = {"safety_identifier": "hash-1", "input_fidelity": "high", "future": {"nested": [1, 2]}}

    options = parse(**extra)

    assert options.model_extra == extra


def test_known_fields_do_not_appear_in_model_extra():
    options = parse(model="gpt-image-2", n=2, size="1024x1024", quality="high")

    assert options.model_extra == {}


# --------------------------------------------------------------------------- every error's shape

BAD_BODIES = [
    ({}, "prompt", "missing_required_parameter"),
    ({"prompt": ""}, "prompt", "empty_string"),
    ({"prompt": "a" * 32_001}, "prompt", "string_above_max_length"),
    ({"prompt": 7}, "prompt", "invalid_type"),
    ({"prompt": "a", "n": 0}, "n", "integer_below_min_value"),
    ({"prompt": "a", "n": 11}, "n", "integer_above_max_value"),
    ({"prompt": "a", "n": "2"}, "n", "invalid_type"),
    ({"prompt": "a", "size": 5}, "size", "invalid_type"),
    ({"prompt": "a", "quality": "x"}, "quality", "invalid_value"),
    ({"prompt": "a", "background": "x"}, "background", "invalid_value"),
    ({"prompt": "a", "output_format": "x"}, "output_format", "invalid_value"),
    ({"prompt": "a", "output_compression": 101}, "output_compression", "integer_above_max_value"),
    ({"prompt": "a", "moderation": "x"}, "moderation", "invalid_value"),
    ({"prompt": "a", "user": 1}, "user", "invalid_type"),
    ({"prompt": "a", "response_format": "x"}, "response_format", "invalid_value"),
    ({"prompt": "a", "stream": "yes"}, "stream", "invalid_type"),
    ({"prompt": "a", "partial_images": 4}, "partial_images", "integer_above_max_value"),
    ({"prompt": "a", "model": 1}, "model", "invalid_type"),
]


@pytest.mark.parametrize(("body", "param", "code"), BAD_BODIES,
                         ids=[f"{p}-{c}" for _, p, c in BAD_BODIES])
def test_every_field_refusal_is_a_400_invalid_request_error_with_all_four_keys(body, param, code):
    assert_invalid_request(refused(parse_model, GenerationRequest, body), param=param, code=code)


# --------------------------------------------------------------------------- parse_json_object

def test_json_object_body_is_returned_as_a_dict():
    assert parse_json_object(b'{"prompt": "\xe7\x8c\xab", "n": 2}') == {"prompt": "猫", "n": 2}


@pytest.mark.parametrize("body", [b"", b"not json", b"{\"prompt\": ", b"[]", b"[{\"prompt\": \"a\"}]",
                                  b"\"prompt\"", b"null", b"42", b"prompt=a+cat"])
def test_body_that_is_not_a_json_object_is_refused_as_a_400_without_param(body):
    error = refused(parse_json_object, body)

    assert_invalid_request(error, param=None, code=None)
    assert "JSON" in error.message


@pytest.mark.parametrize("body", [b'{"prompt": "a cat \xff"}', b"\xff\xfe\x00{", b'{"prompt": "\xe7\x8c"}'])
def test_a_body_that_is_not_utf8_is_refused_rather_than_read_with_replacement_characters(body):
    error = refused(parse_json_object, body)

    assert_invalid_request(error, param=None, code="invalid_encoding")
    assert "UTF-8" in error.message


@pytest.mark.parametrize("depth", [33, 2_000, 20_000])
def test_json_nested_deeper_than_32_levels_is_a_400_not_a_crash(depth):
    for body in (b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth):
        assert_invalid_request(refused(parse_json_object, body), param=None, code="invalid_json")


def test_json_nested_32_levels_deep_is_still_accepted():
    assert parse_json_object(b'{"a":' * 31 + b"1" + b"}" * 31)["a"]


# --------------------------------------------------------------------------- error_from_pydantic

class _Image(BaseModel):
    image_url: str


class _Edit(BaseModel):
    images: list[_Image]


def _validation_error(model: type[BaseModel], data: Any) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    return info.value


def test_nested_missing_field_is_named_with_openais_param_path():
    error = error_from_pydantic(_validation_error(_Edit, {"images": [{"image_url": "u"}, {}]}))

    assert_invalid_request(error, param="images[1].image_url", code="missing_required_parameter")
    assert error.message == "Missing required parameter: 'images[1].image_url'."


def test_wrong_container_type_is_reported_as_invalid_type_naming_the_json_type():
    error = error_from_pydantic(_validation_error(_Edit, {"images": "a.png"}))

    assert_invalid_request(error, param="images", code="invalid_type")
    assert error.message == "Invalid type for 'images': expected an array, but got a string instead."


def test_only_the_first_of_several_pydantic_errors_is_reported():
    # prompt is checked before n in the model's field order
    error = refused(parse_model, GenerationRequest, {"prompt": "", "n": 0})

    assert error.param == "prompt"
