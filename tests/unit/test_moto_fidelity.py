"""moto's DynamoDB as the tests and the local stack run it (local_stack/moto_fidelity.py): each
request is atomic, as DynamoDB's are, even where moto's own request layer reads an item outside
its backend (the copy it takes of an item before an update)."""
from __future__ import annotations

import copy
import threading

import pytest

import moto.dynamodb.responses as moto_responses

KEY = {"pk": {"S": "KEY#one"}, "sk": {"S": "TOKEN"}}


@pytest.fixture
def dynamodb(aws):
    client = aws.dynamodb()
    client.put_item(TableName=aws.table, Item={**KEY, "holds": {"M": {}}})
    return client


def add_hold(client, name: str) -> None:
    client.update_item(TableName="gateway", Key=KEY, UpdateExpression="SET holds.#h = :one",
                       ExpressionAttributeNames={"#h": name}, ExpressionAttributeValues={":one": {"N": "1"}})


def test_an_update_of_an_item_cannot_run_while_another_request_is_copying_that_item(dynamodb, monkeypatch):
    # Given moto's request layer copying the item before an update, slowed down so that the copy
    # is still going on when a second update of the same item arrives
    inside_copy, second_done = threading.Event(), threading.Event()
    overlapped: list[bool] = []
    real_deepcopy = copy.deepcopy

    def slow_deepcopy(value, *args, **kwargs):
        if threading.current_thread().name == "first" and not inside_copy.is_set():
            inside_copy.set()
            # Without request-level atomicity the second update finishes within this wait.
            overlapped.append(second_done.wait(0.5))
        return real_deepcopy(value, *args, **kwargs)

    monkeypatch.setattr(moto_responses.copy, "deepcopy", slow_deepcopy)

    # When two updates of the same item are sent at once
    first = threading.Thread(target=add_hold, args=(dynamodb, "a"), name="first")
    first.start()
    assert inside_copy.wait(5), "moto no longer copies the item before an update: revisit moto_fidelity"

    def second() -> None:
        add_hold(dynamodb, "b")
        second_done.set()

    other = threading.Thread(target=second, name="second")
    other.start()
    first.join(10)
    other.join(10)

    # Then the second waited for the first to finish, and both holds are there
    assert overlapped == [False]
    item = dynamodb.get_item(TableName="gateway", Key=KEY, ConsistentRead=True)["Item"]
    assert set(item["holds"]["M"]) == {"a", "b"}


def test_forty_concurrent_updates_of_one_map_all_land(dynamodb):
    # Given forty threads released at once, each adding its own entry to the same map
    start = threading.Barrier(40)
    errors: list[BaseException] = []

    def attempt(index: int) -> None:
        start.wait()
        try:
            add_hold(dynamodb, f"req-{index}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    # Then none failed and every entry is in the item
    assert errors == []
    item = dynamodb.get_item(TableName="gateway", Key=KEY, ConsistentRead=True)["Item"]
    assert len(item["holds"]["M"]) == 40
