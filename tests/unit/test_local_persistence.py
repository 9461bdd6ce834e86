"""The local stack's saved table: DynamoDB JSON written as text and read back unchanged."""
import json

from local_stack.persistence import _from_json, _to_json, demo_secret


def test_every_attribute_type_survives_the_round_trip_through_json_text():
    item = {"pk": {"S": "KEY#x"}, "n": {"N": "0.052885"}, "b": {"B": b"\x00\xffraw"}, "bs": {"BS": [b"a", b"\x01"]},
            "m": {"M": {"holds": {"M": {"r1": {"M": {"amount": {"N": "1"}}}}}}}, "l": {"L": [{"S": "a"}, {"B": b"\x02"}]},
            "ss": {"SS": ["a", "b"]}, "flag": {"BOOL": True}, "none": {"NULL": True}}

    assert _from_json(json.loads(json.dumps(_to_json(item)))) == item


def test_the_demo_secret_is_saved_on_first_start_and_reused_after(tmp_path):
    first = demo_secret(tmp_path, None, "sk-img-first")
    second = demo_secret(tmp_path, None, "sk-img-second")

    assert first == second == "sk-img-first"
    assert (tmp_path / "demo-token").stat().st_mode & 0o077 == 0  # readable by its owner only


def test_a_given_demo_secret_wins_over_the_saved_one(tmp_path):
    demo_secret(tmp_path, None, "sk-img-saved")

    assert demo_secret(tmp_path, "sk-img-given", "sk-img-new") == "sk-img-given"
