"""The retry store against moto SQS and DynamoDB, with a recording wrapper where SQS's own
behaviour (five-minute deduplication, refusing one entry of a batch) has to be observed or forced."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from devtools.local import BARRIER_TABLE, LocalAws
from parking import Parcel, RetryStore, sequence


class RecordingSqs:
    """The real (moto) SQS client, recording what is sent and refusing the entries it is told to."""

    def __init__(self, refuse: set[str] | None = None) -> None:
        self.client = boto3.client("sqs")
        self.refuse = refuse or set()
        self.sent: list[dict[str, Any]] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        accepted = [e for e in Entries if e["Id"] not in self.refuse]
        self.sent += accepted
        reply = self.client.send_message_batch(QueueUrl=QueueUrl, Entries=accepted) if accepted else {}
        failed = [
            {"Id": e["Id"], "SenderFault": False, "Code": "InternalError"} for e in Entries if e["Id"] in self.refuse
        ]
        return {"Successful": reply.get("Successful", []), "Failed": failed}


class RecordingDynamoDb:
    """The real (moto) DynamoDB client, recording every update expression."""

    def __init__(self) -> None:
        self.client = boto3.client("dynamodb")
        self.exceptions = self.client.exceptions
        self.expressions: list[str] = []

    def update_item(self, **kwargs: Any) -> Any:
        self.expressions.append(kwargs["UpdateExpression"])
        return self.client.update_item(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def parcel(index: int, person: str = "email:ada@example.com", event_id: str | None = None) -> Parcel:
    return Parcel(index, person, event_id or f"e{index}", sequence(index), {"type": "identify", "n": index})


@pytest.fixture
def store(sandbox, aws: LocalAws) -> RetryStore:
    return RetryStore(aws.queue, BARRIER_TABLE, RecordingSqs(), RecordingDynamoDb())


def _sent(store: RetryStore) -> list[dict[str, Any]]:
    return store.sqs.sent  # type: ignore[attr-defined, no-any-return]


def test_an_event_still_parked_is_not_queued_twice_and_a_new_park_is_a_new_message(store: RetryStore) -> None:
    # Given an event parked, and parked again by a sender's retry while it still waits
    assert store.park([parcel(0)]) == {}
    assert store.park([parcel(0)]) == {}
    # Then it was queued once: a second copy would be applied after the person's newer events,
    # and SQS forgets deduplication ids after five minutes
    [first] = _sent(store)
    # When it is delivered and released, then fails again and is parked (within five minutes)
    position = json.loads(first["MessageBody"])["sequence"]
    store.release("email:ada@example.com", "e0", position)
    assert store.blocked(["email:ada@example.com"]) == set()
    assert store.park([parcel(0)]) == {}
    # Then it is a new message with a new deduplication id, which SQS does not drop
    assert len(_sent(store)) == 2
    assert _sent(store)[1]["MessageDeduplicationId"] != first["MessageDeduplicationId"]
    assert store.blocked(["email:ada@example.com"]) == {"email:ada@example.com"}


def test_release_only_lifts_the_entry_its_message_was_parked_with(store: RetryStore) -> None:
    store.park([parcel(0)])
    store.release("email:ada@example.com", "e0", "an-older-position")
    assert store.blocked(["email:ada@example.com"]) == {"email:ada@example.com"}


def test_many_events_of_one_person_fit_dynamodbs_expression_limit(store: RetryStore) -> None:
    assert store.park([parcel(n) for n in range(120)]) == {}
    assert max(len(expression) for expression in store.dynamodb.expressions) < 4096  # type: ignore[attr-defined]
    item = boto3.client("dynamodb").scan(TableName=BARRIER_TABLE)["Items"][0]
    assert len(item["parked"]["M"]) == 120
    assert len(_sent(store)) == 120


def test_after_a_refused_message_the_persons_later_batches_are_not_sent(aws: LocalAws, sandbox) -> None:
    # Given SQS refusing Ada's second event of twelve (sent ten to a call), and Grace's going through
    store = RetryStore(aws.queue, BARRIER_TABLE, RecordingSqs(refuse={"1"}), RecordingDynamoDb())
    parcels = [parcel(n) for n in range(12)] + [parcel(12, person="email:grace@example.com")]
    # When they are parked
    failed = store.park(parcels)
    # Then the refused one fails, and so do Ada's events that would have gone in a later call;
    # what SQS took in the same call stays parked; Grace is not held up by Ada
    assert sorted(failed) == [1, 10, 11]
    assert [e["Id"] for e in _sent(store)] == [str(n) for n in (0, *range(2, 10), 12)]
    # and the barrier keeps exactly what is queued, so the sender's retries queue behind it
    item = next(i for i in boto3.client("dynamodb").scan(TableName=BARRIER_TABLE)["Items"] if len(i["parked"]["M"]) > 1)
    assert len(item["parked"]["M"]) == 9
