"""Money: usage split by price kind, exact Decimal costs, the seed's estimates and worst-case reservations."""
from __future__ import annotations

import itertools
import math
from decimal import ROUND_HALF_UP, Decimal

import pytest

from common.billing.catalog import Catalog, ModelSpec
from common.billing.pricing import (
    KINDS,
    TokenUsage,
    cost_of,
    estimate_per_image,
    output_tokens_per_image,
    reservation_for_generation,
)
from local_stack.upstream_emulator import build_job, build_usage

MODELS = ("gpt-image-2", "gpt-image-1.5", "gpt-image-1-mini")
FIXED_SIZES = ("1024x1024", "1536x1024", "1024x1536")




def reserve(spec: ModelSpec, catalog: Catalog, *, prompt: str = "a cat", n: int = 1, size: str | None = "1024x1024",
            quality: str | None = "high", partial_images: int = 0, multiplier: Decimal = Decimal(1),
            input_image_tokens: int = 0) -> Decimal:
    return reservation_for_generation(spec, catalog, prompt=prompt, n=n, size=size, quality=quality,
                                      partial_images=partial_images, multiplier=multiplier,
                                      input_image_tokens=input_image_tokens)


# --------------------------------------------------------------------------- TokenUsage.from_upstream

def test_usage_is_split_into_text_cached_text_image_input_and_image_output():
    usage = TokenUsage.from_upstream({
        "input_tokens": 60,
        "input_tokens_details": {"text_tokens": 40, "image_tokens": 20, "cached_tokens": 15},
        "output_tokens": 1756,
        "output_tokens_details": {"image_tokens": 1756, "text_tokens": 0},
        "total_tokens": 1816,
    })

    assert usage == TokenUsage(text_input=25, cached_text_input=15, image_input=20, image_output=1756)


def test_openai_usage_without_cached_tokens_bills_all_text_input_as_uncached():
    usage = TokenUsage.from_upstream({"input_tokens": 41, "input_tokens_details": {"text_tokens": 41,
                                                                                   "image_tokens": 0},
                                      "output_tokens": 1756, "total_tokens": 1797})

    assert usage == TokenUsage(text_input=41, cached_text_input=0, image_input=0, image_output=1756)


def test_usage_without_input_details_counts_all_input_as_text():
    usage = TokenUsage.from_upstream({"input_tokens": 50, "output_tokens": 100})

    assert usage == TokenUsage(text_input=50, image_input=0, image_output=100)


def test_usage_with_only_image_details_counts_the_rest_of_the_input_as_text():
    usage = TokenUsage.from_upstream({"input_tokens": 250, "input_tokens_details": {"image_tokens": 194}})

    assert usage == TokenUsage(text_input=56, image_input=194)


def test_image_tokens_above_input_tokens_never_make_text_input_negative():
    usage = TokenUsage.from_upstream({"input_tokens": 100, "input_tokens_details": {"image_tokens": 194}})

    assert usage.text_input == 0
    assert usage.image_input == 194


def test_output_without_breakdown_is_billed_at_the_image_output_rate(gpt_image_2):
    usage = TokenUsage.from_upstream({"input_tokens": 0, "output_tokens": 1000})

    assert usage.image_output == 1000
    assert cost_of(usage, gpt_image_2).total == Decimal("0.03")  # 1000 x $30 / 1M


def test_output_text_tokens_in_the_breakdown_are_still_billed_as_image_output():
    usage = TokenUsage.from_upstream({"output_tokens": 1800,
                                      "output_tokens_details": {"image_tokens": 1756, "text_tokens": 44}})

    assert usage == TokenUsage(image_output=1800)


def test_cached_tokens_above_text_tokens_are_capped_at_the_text_tokens():
    usage = TokenUsage.from_upstream({"input_tokens": 30, "input_tokens_details": {"text_tokens": 10,
                                                                                   "cached_tokens": 25}})

    assert usage == TokenUsage(text_input=0, cached_text_input=10)


@pytest.mark.parametrize("usage", [None, {}, {"total_tokens": 10}])
def test_absent_or_empty_usage_is_all_zero(usage):
    assert TokenUsage.from_upstream(usage) == TokenUsage()


@pytest.mark.parametrize("garbage", ["50", -5, True, 3.7, None, [50], {"n": 50}, float("nan")])
def test_garbage_token_counts_are_ignored(garbage):
    usage = TokenUsage.from_upstream({
        "input_tokens": garbage,
        "input_tokens_details": {"text_tokens": garbage, "image_tokens": garbage, "cached_tokens": garbage},
        "output_tokens": garbage,
    })

    assert usage == TokenUsage()


def test_one_garbage_count_does_not_hide_the_valid_ones():
    usage = TokenUsage.from_upstream({"input_tokens": 41, "input_tokens_details": {"text_tokens": 41,
                                                                                   "image_tokens": "194"},
                                      "output_tokens": 1756})

    assert usage == TokenUsage(text_input=41, image_input=0, image_output=1756)


@pytest.mark.parametrize("garbage", [None, "41", -1])
def test_garbage_text_tokens_fall_back_to_input_minus_image_tokens(garbage):
    usage = TokenUsage.from_upstream({"input_tokens": 41, "input_tokens_details": {"text_tokens": garbage,
                                                                                   "image_tokens": 0},
                                      "output_tokens": 1756})

    assert usage == TokenUsage(text_input=41, image_output=1756)


@pytest.mark.parametrize("details", ["n/a", [1, 2], 5])
def test_garbage_input_tokens_details_are_ignored(details):
    usage = TokenUsage.from_upstream({"input_tokens": 10, "input_tokens_details": details, "output_tokens": 5})

    assert usage == TokenUsage(text_input=10, image_output=5)


def test_as_dict_lists_every_price_kind():
    assert TokenUsage(1, 2, 3, 4).as_dict() == {"text_input": 1, "cached_text_input": 2, "image_input": 3,
                                                "image_output": 4}


# --------------------------------------------------------------------------- cost_of

def test_41_text_and_1756_image_output_tokens_on_gpt_image_2_cost_exactly_0_052885(gpt_image_2):
    cost = cost_of(TokenUsage(text_input=41, image_output=1756), gpt_image_2)

    assert cost.total == Decimal("0.052885")
    assert isinstance(cost.total, Decimal)
    assert cost.by_kind == {"text_input": Decimal("0.000205"), "cached_text_input": Decimal(0),
                            "image_input": Decimal(0), "image_output": Decimal("0.05268")}


@pytest.mark.parametrize(("kind", "rate"), [
    ("text_input", Decimal("5")),
    ("cached_text_input", Decimal("1.25")),
    ("image_input", Decimal("8")),
    ("image_output", Decimal("30")),
])
def test_each_usage_kind_is_billed_at_its_own_gpt_image_2_rate(gpt_image_2, kind, rate):
    # Given one million tokens of a single kind
    cost = cost_of(TokenUsage(**{kind: 1_000_000}), gpt_image_2)
    # Then the cost is that kind's published rate per 1M, and nothing else is billed
    assert cost.total == rate
    assert cost.by_kind[kind] == rate
    assert all(value == 0 for other, value in cost.by_kind.items() if other != kind)


def test_image_input_tokens_cost_more_than_the_same_text_tokens(gpt_image_2):
    image = cost_of(TokenUsage(image_input=194), gpt_image_2).total
    text = cost_of(TokenUsage(text_input=194), gpt_image_2).total

    assert image == Decimal("0.001552")  # 194 x $8 / 1M
    assert text == Decimal("0.00097")    # 194 x $5 / 1M


@pytest.mark.parametrize(("multiplier", "expected"), [
    (Decimal("1"), Decimal("0.052885")),
    (Decimal("1.1"), Decimal("0.0581735")),
    (Decimal("0.85"), Decimal("0.04495225")),
    (Decimal("2"), Decimal("0.10577")),
])
def test_price_multiplier_is_applied_exactly(gpt_image_2, multiplier, expected):
    cost = cost_of(TokenUsage(text_input=41, image_output=1756), gpt_image_2, multiplier)

    assert cost.total == expected
    assert cost.multiplier == multiplier
    assert sum(cost.by_kind.values()) == expected


def test_cost_of_a_single_token_is_exact_to_the_millionth_of_a_cent(catalog):
    mini = catalog.get("gpt-image-1-mini")

    assert cost_of(TokenUsage(cached_text_input=1), mini).total == Decimal("0.0000002")


def test_cost_by_kind_covers_every_kind_and_is_all_decimal(gpt_image_2):
    cost = cost_of(TokenUsage(1, 2, 3, 4), gpt_image_2, Decimal("1.3"))

    assert set(cost.by_kind) == set(KINDS)
    assert all(isinstance(value, Decimal) for value in cost.by_kind.values())
    assert isinstance(cost.total, Decimal)


def test_zero_usage_costs_exactly_zero(gpt_image_2):
    total = cost_of(TokenUsage(), gpt_image_2).total

    assert total == 0
    assert isinstance(total, Decimal)


# --------------------------------------------------------------------------- estimate_per_image (the seed's table)

SEED_TABLE = {
    ("1024x1024", "low"): "0.006", ("1024x1024", "medium"): "0.053", ("1024x1024", "high"): "0.211",
    ("1024x1536", "low"): "0.005", ("1024x1536", "medium"): "0.041", ("1024x1536", "high"): "0.165",
    ("1536x1024", "low"): "0.005", ("1536x1024", "medium"): "0.041", ("1536x1024", "high"): "0.165",
}


@pytest.mark.parametrize(("size", "quality"), list(SEED_TABLE))
def test_gpt_image_2_estimate_rounded_to_3_decimals_reproduces_the_seeds_table(gpt_image_2, size, quality):
    estimate = estimate_per_image(gpt_image_2, size, quality)

    assert isinstance(estimate, Decimal)
    assert estimate.quantize(Decimal("0.001"), rounding=ROUND_HALF_UP) == Decimal(SEED_TABLE[(size, quality)])


def test_estimate_applies_the_multiplier_exactly(gpt_image_2):
    # 1756 medium square tokens x $30 / 1M = 0.05268
    assert estimate_per_image(gpt_image_2, "1024x1024", "medium", Decimal("1.5")) == Decimal("0.07902")


# --------------------------------------------------------------------------- reservation_for_generation

def test_reservation_is_prompt_bytes_plus_64_text_tokens_and_output_with_25_percent_headroom(catalog, gpt_image_2):
    # "a cat" is 5 bytes: 69 text tokens x $5; 7024 high tokens x 1.25 = 8780 x $30
    assert reserve(gpt_image_2, catalog, prompt="a cat") == Decimal("0.000345") + Decimal("0.2634")


def emulator_usage_cost(spec: ModelSpec, *, prompt: str, n: int, size: str | None, quality: str | None,
                        stream: bool = False, partial_images: int = 0) -> Decimal:
    """What the upstream emulator (an OpenAI stand-in) would bill for this request."""
    params = {"model": spec.id, "prompt": prompt, "n": n}
    if size is not None:
        params["size"] = size
    if quality is not None:
        params["quality"] = quality
    if stream:
        params.update(stream=True, partial_images=partial_images)
    usage = TokenUsage.from_upstream(build_usage(build_job(params, from_form=False)))
    return cost_of(usage, spec).total


@pytest.mark.parametrize("model_id", MODELS)
@pytest.mark.parametrize("size", [*FIXED_SIZES, "auto", None])
@pytest.mark.parametrize("quality", ["low", "medium", "high", "auto", None])
def test_reservation_covers_the_emulators_billed_cost_for_every_size_quality_and_n(catalog, model_id, size, quality):
    spec = catalog.get(model_id)
    for n, prompt in itertools.product((1, 2, 10), ("a cat", "猫の写真 " * 200)):
        # Given what the upstream would bill for this request
        billed = emulator_usage_cost(spec, prompt=prompt, n=n, size=size, quality=quality)
        # When the gateway reserves before calling it
        reserved = reserve(spec, catalog, prompt=prompt, n=n, size=size, quality=quality)
        # Then the reservation (worst case) covers the bill (expected case)
        assert reserved >= billed, (n, prompt[:8])


@pytest.mark.parametrize("size", ["2048x1152", "3840x2160", "1024x3072", "1024x640", "2560x1440"])
@pytest.mark.parametrize("quality", ["low", "medium", "high", "auto"])
def test_reservation_covers_the_emulators_billed_cost_for_custom_sizes(catalog, gpt_image_2, size, quality):
    for n in (1, 4):
        billed = emulator_usage_cost(gpt_image_2, prompt="a cat", n=n, size=size, quality=quality)

        assert reserve(gpt_image_2, catalog, n=n, size=size, quality=quality) >= billed


@pytest.mark.parametrize("model_id", MODELS)
@pytest.mark.parametrize("partial_images", [0, 1, 2, 3])
def test_reservation_covers_the_emulators_billed_cost_when_streaming_partial_images(catalog, model_id,
                                                                                   partial_images):
    spec = catalog.get(model_id)
    for n in (1, 3):
        billed = emulator_usage_cost(spec, prompt="a cat", n=n, size="1024x1024", quality="high", stream=True,
                                     partial_images=partial_images)

        assert reserve(spec, catalog, n=n, size="1024x1024", quality="high",
                       partial_images=partial_images) >= billed


@pytest.mark.parametrize("model_id", MODELS)
def test_reservation_grows_strictly_with_n(catalog, model_id):
    spec = catalog.get(model_id)
    reservations = [reserve(spec, catalog, n=n) for n in range(1, 11)]

    assert all(a < b for a, b in zip(reservations, reservations[1:]))


def test_reservation_for_n_images_reserves_n_times_the_output(catalog, gpt_image_2):
    # 10 x 7024 x 1.25 = 87,800 output tokens x $30, plus 69 text tokens x $5
    assert reserve(gpt_image_2, catalog, n=10) == Decimal("2.634") + Decimal("0.000345")


@pytest.mark.parametrize("model_id", MODELS)
def test_reservation_grows_strictly_with_partial_images(catalog, model_id):
    spec = catalog.get(model_id)
    reservations = [reserve(spec, catalog, partial_images=p) for p in range(4)]

    assert all(a < b for a, b in zip(reservations, reservations[1:]))


def test_each_partial_image_reserves_100_output_tokens_with_headroom(catalog, gpt_image_2):
    difference = reserve(gpt_image_2, catalog, partial_images=3) - reserve(gpt_image_2, catalog, partial_images=0)

    assert difference == Decimal(math.ceil(300 * Decimal("1.25"))) * 30 / 1_000_000  # 375 tokens x $30 / 1M


def test_cjk_prompt_reserves_by_utf8_bytes_not_characters(catalog, gpt_image_2):
    # Given two prompts of 1,000 characters: ASCII (1,000 bytes) and CJK (3,000 bytes)
    ascii_prompt, cjk_prompt = "a" * 1000, "猫" * 1000
    # When both are reserved
    difference = reserve(gpt_image_2, catalog, prompt=cjk_prompt) - reserve(gpt_image_2, catalog, prompt=ascii_prompt)
    # Then the CJK one reserves 2,000 more text tokens at $5 / 1M
    assert difference == Decimal("0.01")


def test_longest_cjk_prompt_reservation_covers_one_token_per_byte(catalog, gpt_image_2):
    prompt = "猫" * 32_000
    text_only = reserve(gpt_image_2, catalog, prompt=prompt) - reserve(gpt_image_2, catalog, prompt="")

    assert text_only == Decimal(96_000) * 5 / 1_000_000


def test_input_image_tokens_are_reserved_at_the_image_input_rate(catalog, gpt_image_2):
    difference = reserve(gpt_image_2, catalog, input_image_tokens=194 * 16) - reserve(gpt_image_2, catalog)

    assert difference == Decimal(194 * 16) * 8 / 1_000_000


def test_reservation_applies_the_multiplier_exactly(catalog, gpt_image_2):
    base = reserve(gpt_image_2, catalog)

    assert reserve(gpt_image_2, catalog, multiplier=Decimal("1.2")) == base * Decimal("1.2")


@pytest.mark.parametrize(("size", "area_factor"), [
    ("2048x2048", Decimal(4)), ("2048x1024", Decimal(2)), ("1024x640", Decimal("0.625")),
])
def test_custom_size_output_tokens_scale_with_area(gpt_image_2, size, area_factor):
    tokens = output_tokens_per_image(gpt_image_2, size, "high", worst_case=True)

    assert tokens == 7024 * area_factor


def test_4k_custom_size_output_tokens_are_the_square_figure_scaled_by_area_rounded_up(gpt_image_2):
    assert output_tokens_per_image(gpt_image_2, "3840x2160", "high", worst_case=True) == \
        math.ceil(Decimal(7024 * 3840 * 2160) / (1024 * 1024))


def test_custom_size_reservation_scales_its_output_with_area(catalog, gpt_image_2):
    # 2048x2048 is 4x the pixels of 1024x1024: 4 x 7024 x 1.25 output tokens
    difference = reserve(gpt_image_2, catalog, size="2048x2048") - reserve(gpt_image_2, catalog, size="1024x1024")

    assert difference == Decimal(3 * 8780) * 30 / 1_000_000


@pytest.mark.parametrize("quality", ["auto", None])
def test_unspecified_quality_reserves_as_high(catalog, gpt_image_2, quality):
    assert reserve(gpt_image_2, catalog, quality=quality) == reserve(gpt_image_2, catalog, quality="high")


@pytest.mark.parametrize("model_id", MODELS)
@pytest.mark.parametrize("size", ["auto", None])
def test_auto_size_reserves_the_costlier_of_square_and_non_square(catalog, model_id, size):
    spec = catalog.get(model_id)
    costliest = max(reserve(spec, catalog, size=s) for s in FIXED_SIZES)

    assert reserve(spec, catalog, size=size) == costliest


@pytest.mark.parametrize("model_id", MODELS)
def test_no_float_appears_in_any_amount(catalog, model_id):
    spec = catalog.get(model_id)
    amounts = [
        reserve(spec, catalog, prompt="猫", n=3, size="auto", quality=None, partial_images=2,
                multiplier=Decimal("1.07"), input_image_tokens=194),
        estimate_per_image(spec, "1024x1024", "medium", Decimal("1.07")),
        cost_of(TokenUsage(1, 2, 3, 4), spec, Decimal("1.07")).total,
        *cost_of(TokenUsage(1, 2, 3, 4), spec).by_kind.values(),
        *(getattr(spec.rates, kind) for kind in KINDS),
    ]

    assert all(isinstance(amount, Decimal) for amount in amounts), [type(a) for a in amounts]
