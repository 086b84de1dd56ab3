"""The retry store against moto SQS and DynamoDB, with a recording wrapper where SQS's own
behaviour (five-minute deduplication, refusing one entry of a batch) has to be observed or forced."""

from __future__ import annotations

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


def test_a_repark_after_release_is_a_new_message_not_a_duplicate(store: RetryStore) -> None:
    # Given an event parked, and parked again by a sender's retry while it waits
    assert store.park([parcel(0)]) == {}
    assert store.park([parcel(0)]) == {}
    first, again = store.sqs.sent  # type: ignore[attr-defined]
    # Then the second is the same message to SQS (deduplicated) at the same barrier position
    assert first["MessageDeduplicationId"] == again["MessageDeduplicationId"]
    # When it is delivered and released, then fails again and is parked within five minutes
    store.release("email:ada@example.com", "e0")
    assert store.park([parcel(0)]) == {}
    # Then it gets a new deduplication id: SQS remembers ids for five minutes even after deletion
    assert store.sqs.sent[-1]["MessageDeduplicationId"] != first["MessageDeduplicationId"]  # type: ignore[attr-defined]
    assert store.blocked(["email:ada@example.com"]) == {"email:ada@example.com"}


def test_many_events_of_one_person_fit_dynamodbs_expression_limit(store: RetryStore) -> None:
    assert store.park([parcel(n) for n in range(120)]) == {}
    assert max(len(expression) for expression in store.dynamodb.expressions) < 4096  # type: ignore[attr-defined]
    item = boto3.client("dynamodb").scan(TableName=BARRIER_TABLE)["Items"][0]
    assert len(item["parked"]["M"]) == 120


def test_after_a_refused_message_the_persons_later_events_are_not_sent(aws: LocalAws, sandbox) -> None:
    # Given SQS refusing Ada's second event of three, and Grace's events going through
    store = RetryStore(aws.queue, BARRIER_TABLE, RecordingSqs(refuse={"1"}), RecordingDynamoDb())
    parcels = [parcel(0), parcel(1), parcel(2), parcel(3, person="email:grace@example.com")]
    # When they are parked
    failed = store.park(parcels)
    # Then Ada's refused event and the one after it fail, so the sender retries both, in order
    # (the later one reached SQS in the same batch: its retry is deduplicated or idempotent);
    # her first and Grace's are parked, and Ada's barrier keeps only her first
    assert sorted(failed) == [1, 2]
    assert [e["Id"] for e in store.sqs.sent] == ["0", "2", "3"]  # type: ignore[attr-defined]
    items = {
        i["person"]["S"]: i["parked"]["M"] for i in boto3.client("dynamodb").scan(TableName=BARRIER_TABLE)["Items"]
    }
    assert sorted(len(parked) for parked in items.values()) == [1, 1]
    assert store.waiting_before("email:ada@example.com", ["e2"], parcels[2].sequence)  # e2 must wait behind e0
