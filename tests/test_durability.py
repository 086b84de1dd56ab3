"""Nothing lost, nothing duplicated: parking, the retry consumer, per-person order, exactly-once
track events and the dead-letter replay, against moto SQS and DynamoDB and the sandbox."""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

import boto3

from devtools.gainsight_sandbox import Fault, Sandbox
from devtools.local import LocalAws, drain
from devtools.replay import main as replay_command
from devtools.replay import replay, waiting
from tests.helpers import group, identify, post, queue_depth, track


def test_a_senders_retries_publish_each_track_event_once(sandbox: Sandbox) -> None:
    # Given a batch with tracks (one without a messageId) and an identify
    anonymous = track("Feature Used", feature="export")
    del anonymous["messageId"]
    batch = [track(message_id="t1", n=1), track(message_id="t2", n=2), anonymous, identify()]
    # When the sender posts it three times (it never saw our answers)
    replies = [post("/v1/batch", {"batch": batch}) for _ in range(3)]
    # Then every post is answered delivered, and each track event was published once
    assert all(reply.outcomes == ["delivered"] * 4 for reply in replies)
    bodies = [event["body"] for event in sandbox.state.snapshot()["events"]]
    assert sorted(bodies, key=json.dumps) == [{"feature": "export"}, {"n": 1}, {"n": 2}]
    assert sandbox.state.count("event_publish") == 3


def test_a_senders_retry_of_an_event_the_retry_function_delivered_is_not_published_again(
    sandbox: Sandbox, aws: LocalAws
) -> None:
    # Given a track parked by the API function and then delivered by the retry function
    sandbox.fail(Fault(status=503, operation="event_publish", times=4))
    batch = {"batch": [track(message_id="once", n=1)]}
    assert post("/v1/batch", batch).outcomes == ["deferred"]
    drain(aws.queue)
    # When the sender, which never saw our answer, posts the batch again
    reply = post("/v1/batch", batch)
    # Then it is answered delivered and Gainsight holds it once
    assert reply.outcomes == ["delivered"]
    assert [e["body"] for e in sandbox.state.snapshot()["events"]] == [{"n": 1}]


def test_later_identifies_wait_behind_a_parked_one(sandbox: Sandbox, aws: LocalAws) -> None:
    # Given Gainsight refusing the person's first identify for longer than the request can wait
    sandbox.fail(Fault(status=503, operation="person_upsert", times=4))
    first = post("/v1/identify", identify(message_id="first", firstName="First", timezone="UTC"))
    assert first.outcomes == ["deferred"]
    # When the person's next identify arrives while Gainsight is fine again
    second = post("/v1/identify", identify(message_id="second", firstName="Second"))
    other = post("/v1/identify", identify(email="grace@example.com", message_id="other"))
    # Then it is parked behind the first instead of overtaking it; other people are not held up
    assert second.outcomes == ["deferred"]
    assert second.body["results"][0]["error"] == "queued for retry: an earlier event of this person is waiting"
    assert other.outcomes == ["delivered"]
    # And the retry consumer applies them in order
    drain(aws.queue)
    people = {p["Email"]: p for p in sandbox.state.snapshot()["people"]}
    assert (people["ada@example.com"]["FirstName"], people["ada@example.com"]["Timezone"]) == ("Second", "UTC")
    writes = [c.body for c in sandbox.state.calls if c.operation == "person_upsert" and c.status == 200]
    # Grace's at once; Ada's two came back together and were merged in order: one write, later values win
    assert [w["Email"] for w in writes] == ["grace@example.com", "ada@example.com"]
    assert (writes[1]["FirstName"], writes[1]["Name"], writes[1]["Timezone"]) == ("Second", "Second", "UTC")
    assert queue_depth(aws.queue) == 0
    assert boto3.client("dynamodb").scan(TableName="gainsight-destination-barriers")["Items"] == []


def test_a_dead_lettered_event_holds_its_person_until_replayed(sandbox: Sandbox, aws: LocalAws, capsys) -> None:
    # Given a person's identify that keeps failing until it is dead-lettered, and a later one
    sandbox.fail(Fault(status=503, operation="person_upsert", times=1000))
    post("/v1/identify", identify(message_id="old", firstName="Old"))
    sandbox.state.faults.scripted.clear()
    post("/v1/identify", identify(message_id="new", firstName="New"))
    sandbox.fail(Fault(status=503, operation="person_upsert", times=1000))
    drain(aws.queue)
    # Then both end in the dead-letter queue: the later one never overtook the older one
    assert queue_depth(aws.queue) == 0
    sqs = boto3.client("sqs")
    assert waiting(sqs, aws.dlq) == 2
    urls = ["--queue-url", aws.queue, "--dead-letter-url", aws.dlq]
    capsys.readouterr()  # what the handler printed (EMF metrics) so far
    replay_command([*urls, "--dry-run"])
    assert capsys.readouterr().out == "2 events in the dead-letter queue; nothing moved\n"
    assert sandbox.state.snapshot()["people"] == []
    # When the cause is fixed and the dead-letter queue replayed
    sandbox.state.faults.scripted.clear()
    replay_command(urls)
    assert capsys.readouterr().out == "replayed 2 events (identify: 2); 0 left\n"
    drain(aws.queue)
    # Then both are applied, in order
    [person] = sandbox.state.snapshot()["people"]
    assert person["FirstName"] == "New"
    assert queue_depth(aws.dlq) == 0


def test_a_parked_event_that_became_invalid_is_rejected_and_released(sandbox: Sandbox, aws: LocalAws, monkeypatch):
    sandbox.fail(Fault(status=503, operation="event_publish", times=4))
    assert post("/v1/track", track("Ticket Closed")).outcomes == ["deferred"]
    monkeypatch.delenv("SHARED_SECRET_PARAM")  # the operator removed the shared secret meanwhile
    counts = drain(aws.queue)
    assert counts == {"invocations": 1, "acknowledged": 1, "retried": 0}
    assert boto3.client("dynamodb").scan(TableName="gainsight-destination-barriers")["Items"] == []


# -- the fault run ----------------------------------------------------------------------


def _workload(rng: random.Random, numbers: range) -> list[dict[str, Any]]:
    """Valid and invalid events over 40 people and 8 companies; every track has a unique marker."""
    events: list[dict[str, Any]] = []
    for n in numbers:
        email = f"person{rng.randrange(40)}@example.com"
        kind = rng.choices(["track", "identify", "group", "invalid"], weights=[40, 30, 20, 10])[0]
        if kind == "track":
            event = track(rng.choice(["Ticket Closed", "Feature Used"]), message_id=f"t{n}", marker=n)
            event["context"] = {"traits": {"email": email}}
        elif kind == "identify":
            event = identify(email=email, message_id=f"i{n}", timezone=f"tz{n}")
        elif kind == "group":
            event = group(f"Company {rng.randrange(8)}", email=email, message_id=f"g{n}")
        else:
            event = rng.choice([identify(email=None, message_id=f"x{n}"), {"type": "page", "messageId": f"x{n}"}])
        events.append(event)
    return events


def test_fault_run_loses_and_duplicates_nothing(sandbox: Sandbox, aws: LocalAws, monkeypatch) -> None:
    # Given Gainsight answering a third of all calls with 5xx, 429s, timeouts or dropped connections
    # (a read timeout well above what a loaded CI machine needs for an answer: only the sandbox's
    # injected hangs time out, never a call the sandbox was still completing)
    monkeypatch.setenv("DELIVERY_BUDGET_SECONDS", "4")
    monkeypatch.setenv("GAINSIGHT_READ_TIMEOUT", "1")
    monkeypatch.setenv("GAINSIGHT_MAX_RETRIES", "2")
    faults = sandbox.state.faults
    faults.random_rate, faults.random_timeout, faults.rng = 0.33, 1.5, random.Random(11)
    rng = random.Random(3)
    batches = [_workload(rng, range(start, start + 100)) for start in (0, 100, 200)]
    # When a few hundred events go in through the API
    outcomes: Counter[str] = Counter()
    rejected: dict[str, str] = {}
    for batch in batches:
        reply = post("/v1/batch", {"batch": batch})
        assert reply.status == 200
        outcomes.update(reply.outcomes)
        rejected |= {r["messageId"]: r["error"] for r in reply.body["results"] if r["outcome"] == "rejected"}
    # and the retry queue is drained while Gainsight still misbehaves
    drain(aws.queue, rounds=200)
    sqs = boto3.client("sqs")
    dead_lettered = waiting(sqs, aws.dlq)
    # then, with Gainsight healthy again, the dead-letter queue is replayed and drained
    faults.random_rate = 0.0
    replay(sqs, aws.dlq, aws.queue)
    drain(aws.queue, rounds=200)

    # Then every valid event is in Gainsight exactly once and every invalid one was rejected with its reason
    events = [e for batch in batches for e in batch]
    valid = [e for e in events if not e["messageId"].startswith("x")]
    state = sandbox.state.snapshot()
    published = Counter(e["body"]["marker"] for e in state["events"])
    people = {p["Email"]: p for p in state["people"]}
    companies = {c["Gsid"]: c["Name"] for c in state["companies"]}

    def landed(event: dict[str, Any]) -> bool:
        if event["type"] == "track":
            return published[event["properties"]["marker"]] >= 1
        email = event["traits"]["email"] if event["type"] == "identify" else event["context"]["traits"]["email"]
        person = people.get(email)
        if person is None:
            return False
        if event["type"] == "group":
            return event["traits"]["name"] in {companies[g] for g in person["companies"]}
        return True

    lost = [e["messageId"] for e in valid if not landed(e)]
    duplicated = [marker for marker, count in published.items() if count > 1]
    print(
        f"\nfault run: {len(events)} events, at intake {dict(outcomes)}; dead-lettered {dead_lettered} then replayed; "
        f"delivered {len(valid) - len(lost)}, rejected {len(rejected)}, lost {len(lost)}, "
        f"duplicated {len(duplicated)}; Gainsight calls {state['calls']['total']}"
    )
    assert lost == []
    assert duplicated == []
    assert set(rejected) == {e["messageId"] for e in events if e["messageId"].startswith("x")}
    assert all(rejected.values())
    assert outcomes["deferred"] > 0  # the faults really did force events through the retry queue
    assert queue_depth(aws.queue) == queue_depth(aws.dlq) == 0
    # The last identify of each person won: per-person order held through all the retries
    for email, person in people.items():
        identifies = [e for e in valid if e["type"] == "identify" and e["traits"]["email"] == email]
        if identifies:
            assert person["Timezone"] == identifies[-1]["traits"]["timezone"], email


def _park_directly(aws: LocalAws, event: dict[str, Any], position: str) -> None:
    """Park an event as a request would, at a chosen barrier position."""
    from devtools.local import BARRIER_TABLE
    from parking import Parcel, RetryStore, parking_id

    store = RetryStore(aws.queue, BARRIER_TABLE, boto3.client("sqs"), boto3.client("dynamodb"))
    assert store.park([Parcel(0, "email:ada@example.com", parking_id(event), position, event)]) == {}


def test_the_retry_consumer_applies_a_persons_events_in_barrier_order(sandbox: Sandbox, aws: LocalAws) -> None:
    # Given two requests that queued one person's identifies out of turn (the later one first)
    _park_directly(aws, identify(message_id="later", firstName="Later"), "00000000000000000002-000000")
    _park_directly(
        aws, identify(message_id="earlier", firstName="Earlier", timezone="UTC"), "00000000000000000001-000000"
    )
    # When the consumer takes them
    drain(aws.queue)
    # Then they are applied in barrier order: the later one's values win
    [person] = sandbox.state.snapshot()["people"]
    assert (person["FirstName"], person["Timezone"]) == ("Later", "UTC")


def test_after_a_failure_the_consumer_keeps_the_persons_later_events_parked(sandbox: Sandbox, aws: LocalAws) -> None:
    from devtools.local import LambdaContext, sqs_records
    from retry_app import lambda_handler as retry_handler

    # Given a person's parked track, then their parked identify, and Gainsight refusing the track
    ada = {"context": {"traits": {"email": "ada@example.com"}}}
    _park_directly(aws, track(message_id="t1") | ada, "00000000000000000001-000000")
    _park_directly(aws, identify(message_id="i2", firstName="Ada"), "00000000000000000002-000000")
    sandbox.fail(Fault(status=503, operation="event_publish", times=100))
    sqs = boto3.client("sqs")
    messages = sqs.receive_message(QueueUrl=aws.queue, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
    assert len(messages) == 2
    # When the consumer runs once
    arn = sqs.get_queue_attributes(QueueUrl=aws.queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    response = retry_handler({"Records": sqs_records(messages, arn)}, LambdaContext(timeout_seconds=20))
    # Then both come back, and the identify stays in the barrier: the person's new events keep waiting
    assert {f["itemIdentifier"] for f in response["batchItemFailures"]} == {m["MessageId"] for m in messages}
    [item] = boto3.client("dynamodb").scan(TableName="gainsight-destination-barriers")["Items"]
    assert len(item["parked"]["M"]) == 2
    assert post("/v1/identify", identify(message_id="i3", firstName="Newer")).outcomes == ["deferred"]
