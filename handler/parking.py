"""Durable retry at the edge: the SQS FIFO retry queue and the per-person barrier in DynamoDB.

A parked event is one SQS message in the person's message group, plus one entry in the person's
barrier item (`parked`: event id -> sequence). While a person has entries, their new events are
parked behind them; the retry consumer releases an entry once its event is delivered or rejected,
and only handles a person's oldest parked event, so nothing overtakes an event in the DLQ.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from errors import DestinationError

SQS_BATCH = 10
HOLD_CHUNK = 25  # barrier entries per UpdateItem: well inside DynamoDB's 4 KB expression limit
DYNAMODB_BATCH_GET = 100
BARRIER_TTL_SECONDS = 15 * 24 * 3600  # longer than SQS keeps a message (14 days at most)


class ParkingError(DestinationError):
    """The retry queue or the barrier table could not be written: the sender must retry."""

    status_code = 503
    retryable = True

    def __init__(self, message: str) -> None:
        super().__init__(message, code="parking_failed")


@dataclass(frozen=True, slots=True)
class Parcel:
    """One event to park, with its place in its person's order."""

    index: int
    person: str  # the person key (see mapping.person_key)
    event_id: str
    sequence: str
    event: Any
    reason: str | None = None

    def message(self) -> str:
        body = {"event": self.event, "person": self.person, "eventId": self.event_id, "sequence": self.sequence}
        return json.dumps(body | {"reason": self.reason}, separators=(",", ":"))


def digest(value: str) -> str:
    """A fixed-size, opaque id: SQS group/dedup ids and table keys carry no personal data."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:64]


def parking_id(event: Any) -> str:
    """A parked event's identity: its whole content. A sender's retry of the same event parks it
    once (SQS deduplication); two different events that share a messageId both stay."""
    return (
        "sha256:"
        + hashlib.sha256(json.dumps(event, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()
    )


def sequence(index: int) -> str:
    """Sortable position of a parked event: parking time, then its index in the request."""
    return f"{time.time_ns():020d}-{index:06d}"


class RetryStore:
    """The retry queue and the barrier table, through boto3 clients created once per container."""

    def __init__(self, queue_url: str, barrier_table: str, sqs: Any, dynamodb: Any) -> None:
        self.queue_url = queue_url
        self.table = barrier_table
        self.sqs = sqs
        self.dynamodb = dynamodb

    def blocked(self, persons: Iterable[str]) -> set[str]:
        """Which of these persons have parked events.

        Raises:
            ParkingError: when the barrier table cannot be read.
        """
        keys = sorted(set(persons))
        found: set[str] = set()
        by_digest = {digest(p): p for p in keys}
        try:
            for start in range(0, len(keys), DYNAMODB_BATCH_GET):
                request = {
                    self.table: {
                        "Keys": [{"person": {"S": digest(p)}} for p in keys[start : start + DYNAMODB_BATCH_GET]],
                        "ProjectionExpression": "person",
                        "ConsistentRead": True,  # a park a moment ago must hold the next request back
                    }
                }
                while request:
                    reply = self.dynamodb.batch_get_item(RequestItems=request)
                    found |= {by_digest[item["person"]["S"]] for item in reply["Responses"].get(self.table, [])}
                    request = reply.get("UnprocessedKeys") or {}
        except Exception as error:  # botocore raises many types; all mean "not readable now"
            raise ParkingError(f"barrier table could not be read ({type(error).__name__})") from error
        return found

    def park(self, parcels: Sequence[Parcel], executor: Executor | None = None) -> dict[int, ParkingError]:
        """Park the parcels, each person's in order; the indexes that could not be parked, with why.

        An event still parked from an earlier request (a sender's retry) is not sent again: its
        message is already queued, and a second copy would be applied after newer events.
        """
        failed: dict[int, ParkingError] = {}
        by_person: dict[str, list[Parcel]] = {}
        for parcel in sorted(parcels, key=lambda p: p.index):
            by_person.setdefault(parcel.person, []).append(parcel)
        holds = {person: _run(executor, self._hold, person, own) for person, own in by_person.items()}
        fresh: list[Parcel] = []
        for person, own in by_person.items():
            try:
                positions = holds[person].result()
            except Exception as error:
                failed |= dict.fromkeys((p.index for p in own), _parking_error("barrier", error))
                continue
            fresh += [p for p in own if positions[p.event_id] == p.sequence]
        unsent = self._send(sorted(fresh, key=lambda p: p.index))
        for parcel in fresh:
            if parcel.index in unsent:
                self._release_quietly(parcel)
        return failed | unsent

    def _send(self, parcels: Sequence[Parcel]) -> dict[int, ParkingError]:
        """Send parcels in order, ten to a call across people. Once one of a person's is refused,
        their later ones are not sent: they would overtake it when the sender retries it."""
        failed: dict[int, ParkingError] = {}
        stopped: set[str] = set()
        pending = list(parcels)
        while pending:
            chunk = [p for p in pending if p.person not in stopped][:SQS_BATCH]
            if not chunk:
                break
            sent = {id(p) for p in chunk}
            pending = [p for p in pending if id(p) not in sent]
            entries = [
                {
                    "Id": str(p.index),
                    "MessageBody": p.message(),
                    "MessageGroupId": digest(p.person),
                    # With its barrier position: a re-park after the first was delivered and released
                    # is a new message, not a duplicate SQS drops for the next five minutes.
                    "MessageDeduplicationId": digest(f"{p.event_id}@{p.sequence}"),
                }
                for p in chunk
            ]
            try:
                reply = self.sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
                refused = {int(entry["Id"]) for entry in reply.get("Failed", [])}
                reason = ParkingError("event could not be parked for retry: the retry queue refused it")
            except Exception as error:
                refused = {p.index for p in chunk}
                reason = _parking_error("queue", error)
            for parcel in chunk:
                if parcel.index in refused:
                    failed[parcel.index] = reason
                    stopped.add(parcel.person)
        stopped_error = ParkingError("event could not be parked for retry: an earlier event of this person was not")
        return failed | {p.index: stopped_error for p in pending}

    def waiting_before(self, person: str, event_ids: Iterable[str], position: str) -> bool:
        """Whether an older parked event of this person, not among `event_ids`, is still waiting
        (in flight elsewhere or in the dead-letter queue)."""
        reply = self.dynamodb.get_item(TableName=self.table, Key={"person": {"S": digest(person)}}, ConsistentRead=True)
        parked = reply.get("Item", {}).get("parked", {}).get("M", {})
        mine = {digest(event_id) for event_id in event_ids}
        return any(entry["S"] < position for key, entry in parked.items() if key not in mine)

    def release(self, person: str, event_id: str, position: str) -> None:
        """Drop a delivered or rejected event from its person's barrier, if the entry is the one
        its message was parked with; the item goes when empty."""
        key = {"person": {"S": digest(person)}}
        conditional_failed = self.dynamodb.exceptions.ConditionalCheckFailedException
        try:
            # The condition also stops UpdateItem from creating an empty item for a person with none.
            self.dynamodb.update_item(
                TableName=self.table,
                Key=key,
                UpdateExpression="REMOVE parked.#e",
                ConditionExpression="parked.#e = :position",
                ExpressionAttributeNames={"#e": digest(event_id)},
                ExpressionAttributeValues={":position": {"S": position}},
            )
        except conditional_failed:
            return  # not parked, or parked again since under another position
        with contextlib.suppress(conditional_failed):  # other events of this person are still parked
            self.dynamodb.delete_item(
                TableName=self.table,
                Key=key,
                ConditionExpression="size(parked) = :zero",
                ExpressionAttributeValues={":zero": {"N": "0"}},
            )

    def _hold(self, person: str, parcels: Sequence[Parcel]) -> dict[str, str]:
        """Enter the parcels in the person's barrier; each one's position (the one stored first,
        if the same event is still parked). On failure the entries this call made are removed."""
        key = {"person": {"S": digest(person)}}
        positions: dict[str, str] = {}
        try:
            return self._enter(key, parcels, positions)
        except Exception:
            for parcel in parcels:
                if positions.get(parcel.event_id) == parcel.sequence:
                    self._release_quietly(parcel)
            raise

    def _enter(self, key: dict[str, Any], parcels: Sequence[Parcel], positions: dict[str, str]) -> dict[str, str]:
        for attempt in (1, 2):
            try:
                self.dynamodb.update_item(
                    TableName=self.table,
                    Key=key,
                    UpdateExpression="SET parked = if_not_exists(parked, :empty), expiresAt = :expires",
                    ExpressionAttributeValues={
                        ":empty": {"M": {}},
                        ":expires": {"N": str(int(time.time()) + BARRIER_TTL_SECONDS)},
                    },
                )
                for start in range(0, len(parcels), HOLD_CHUNK):
                    chunk = parcels[start : start + HOLD_CHUNK]
                    names = {f"#e{n}": digest(p.event_id) for n, p in enumerate(chunk)}
                    values = {f":s{n}": {"S": p.sequence} for n, p in enumerate(chunk)}
                    assignments = ", ".join(
                        f"parked.#e{n} = if_not_exists(parked.#e{n}, :s{n})" for n in range(len(chunk))
                    )
                    reply = self.dynamodb.update_item(
                        TableName=self.table,
                        Key=key,
                        UpdateExpression=f"SET {assignments}",
                        ExpressionAttributeNames=names,
                        ExpressionAttributeValues=values,
                        ReturnValues="ALL_NEW",
                    )
                    parked = reply["Attributes"]["parked"]["M"]
                    positions.update({p.event_id: parked[digest(p.event_id)]["S"] for p in chunk})
                return positions
            except ClientError as error:
                # A release deleted the emptied item between our two updates: enter again, once.
                if attempt == 2 or error.response["Error"]["Code"] != "ValidationException":
                    raise
        raise AssertionError("unreachable")

    def _release_quietly(self, parcel: Parcel) -> None:
        try:
            self.release(parcel.person, parcel.event_id, parcel.sequence)
        except Exception:  # the barrier entry expires with its TTL
            return


def _run(executor: Executor | None, function: Callable[..., Any], *args: Any) -> Future[Any]:
    """Run on the executor when there is one (parking many people at once), else right here."""
    if executor is not None:
        return executor.submit(function, *args)
    future: Future[Any] = Future()
    try:
        future.set_result(function(*args))
    except Exception as error:
        future.set_exception(error)
    return future


def _parking_error(what: str, error: Exception) -> ParkingError:
    return ParkingError(f"event could not be parked for retry: {what} unavailable ({type(error).__name__})")
