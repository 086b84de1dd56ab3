"""Nothing lost, nothing duplicated, nothing reordered: the event store, the drain, exactly-once track
events and the replay of rejected events, against moto DynamoDB and the Gainsight sandbox, with
faults injected where AWS really fails (tests/faults.py) as well as in Gainsight."""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from clock import Clock

import gainsight
import ingest
from devtools.events import find
from devtools.gainsight_sandbox import Fault, Sandbox
from devtools.local import drain
from devtools.replay import Replayed, replay
from devtools.replay import main as replay_command
from devtools.replay import rejected as rejected_events
from settings import settings
from store import Stored
from tests.conftest import clear_caches
from tests.faults import AwsFaults, DeadThreads, FunctionDied
from tests.helpers import Reply, configure, dynamodb_requests, group, identify, post, stored, track


def handler_dynamodb() -> Any:
    """The DynamoDB client of the handler's (warm) container."""
    return ingest.container(settings()).store.dynamodb


def unanswered_publishes(monkeypatch: pytest.MonkeyPatch) -> set[int]:
    """The markers of track events whose publish, some attempt of it, the function sent and got no
    answer to (a read timeout, a dropped connection): as far as it knows, Gainsight may have stored
    them, as when the sandbox drops an answer on purpose. A busy machine makes some on its own."""
    unanswered: set[int] = set()
    send = gainsight.Gainsight._send

    def watched(self: gainsight.Gainsight, operation: str, method: str, path: str, body: Any, *args: Any, **kw: Any):
        answered = False
        try:
            response = send(self, operation, method, path, body, *args, **kw)
            history = response.retries.history if response.retries else ()
            answered = all(attempt.status is not None for attempt in history)
            return response
        finally:
            if operation == "event_publish" and not answered:
                unanswered.add(body.get("marker"))

    monkeypatch.setattr(gainsight.Gainsight, "_send", watched)
    return unanswered


def person(sandbox: Sandbox, email: str = "ada@example.com") -> dict[str, Any]:
    return next(p for p in sandbox.state.snapshot()["people"] if p["Email"] == email)


def blocked(*entities: str) -> frozenset[str]:
    """Which of these entities the store says have parked events."""
    import time

    return ingest.container(settings()).store.lookup(entities, (), time.monotonic() + 5).blocked


# -- exactly once --------------------------------------------------------------------------------


def test_a_senders_retries_publish_each_track_event_once(sandbox: Sandbox) -> None:
    # Given a batch with tracks and an identify
    batch = [track(message_id="t1", n=1), track(message_id="t2", n=2), identify()]
    # When the sender posts it three times (it never saw our answers)
    replies = [post("/v1/batch", {"batch": batch}) for _ in range(3)]
    # Then every post is answered delivered, and each track event was published once
    assert all(reply.outcomes == ["delivered"] * 3 for reply in replies)
    assert sorted(e["body"].get("n", 0) for e in sandbox.state.snapshot()["events"]) == [1, 2]
    assert sandbox.state.count("event_publish") == 2


def test_events_without_a_messageid_are_never_collapsed(sandbox: Sandbox) -> None:
    # Given two identical track events without a messageId (the README's curl line, sent twice)
    anonymous = track("Feature Used", feature="export")
    del anonymous["messageId"]
    # When they come in one batch, and once more in another request
    first = post("/v1/batch", {"batch": [anonymous, anonymous]})
    again = post("/v1/track", anonymous)
    # Then each is its own event: delivered, given a fresh messageId that its result names, and published
    assert first.outcomes == ["delivered", "delivered"] and again.outcomes == ["delivered"]
    ids = [r["messageId"] for r in first.body["results"] + again.body["results"]]
    assert len(set(ids)) == 3 and all(isinstance(i, str) and len(i) == 36 for i in ids)
    assert sandbox.state.count("event_publish") == 3


def test_a_resend_of_an_event_the_drain_delivered_is_not_applied_again(sandbox: Sandbox) -> None:
    # Given Ada's first identify parked, then delivered by the drain, then a newer identify delivered
    sandbox.fail(Fault(status=503, operation="person_upsert", times=4))
    first = identify(message_id="first", firstName="First")
    assert post("/v1/identify", first).outcomes == ["deferred"]
    drain()
    assert post("/v1/identify", identify(message_id="second", firstName="Second")).outcomes == ["delivered"]
    writes = sandbox.state.count("person_upsert")
    # When the sender, which never saw our first answer, sends the first identify again
    reply = post("/v1/identify", first)
    # Then it is answered delivered and not applied again over the newer one
    assert reply.outcomes == ["delivered"]
    assert person(sandbox)["FirstName"] == "Second"
    assert sandbox.state.count("person_upsert") == writes


def test_a_publish_whose_success_cannot_be_recorded_is_not_published_again_by_us(sandbox: Sandbox) -> None:
    # Given DynamoDB refusing every write of "delivered" records (throttled after the SDK's retries)
    AwsFaults(random.Random(1), error_rate=1.0, only=frozenset({"BatchWriteItem"})).install(handler_dynamodb())
    # When a track event is published
    reply = post("/v1/track", track(message_id="once", n=1))
    # Then it is answered delivered, is not parked for another try, and was published once
    assert reply.outcomes == ["delivered"]
    assert stored() == []
    drain()
    assert sandbox.state.count("event_publish") == 1


def test_once_publishes_cannot_be_recorded_no_more_are_made_and_the_rest_wait(sandbox: Sandbox) -> None:
    # Given DynamoDB refusing every write of "delivered" records, but parking still possible
    AwsFaults(random.Random(1), error_rate=1.0, only=frozenset({"BatchWriteItem"})).install(handler_dynamodb())
    # When 20 track events of 20 people arrive
    batch = [track(message_id=f"t{n}", marker=n) | {"userId": f"u{n}"} for n in range(20)]
    reply = post("/v1/batch", {"batch": batch})
    # Then no more than one flight of them is published unrecorded; the rest are parked, unpublished
    concurrency = settings().concurrency
    assert Counter(reply.outcomes) == {"delivered": concurrency, "deferred": 20 - concurrency}
    assert sandbox.state.count("event_publish") == concurrency
    # And once DynamoDB is back, the drain delivers those, each once
    clear_caches()
    drain()
    assert stored() == []
    assert sorted(e["body"]["marker"] for e in sandbox.state.snapshot()["events"]) == list(range(20))


def test_a_track_delivered_beside_one_whose_parking_failed_is_not_published_again(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, fake_clock: Any
) -> None:
    # Given Ada's two track events in one batch, Gainsight taking only one call (429 for the
    # other), and DynamoDB throttling every transaction until the request's deadline
    monkeypatch.setenv("GAINSIGHT_MAX_RETRIES", "0")
    monkeypatch.setenv("DELIVERY_BUDGET_SECONDS", "3")
    clear_caches()
    sandbox.state.faults.quota_per_minute = 1
    faults = AwsFaults(random.Random(1), error_rate=1.0, only=frozenset({"TransactWriteItems"}))
    faults.install(handler_dynamodb())
    batch = {"batch": [track(message_id=f"t{n}", marker=n) | {"userId": "u1"} for n in (1, 2)]}
    # When the batch arrives, the one that failed cannot be parked, so the sender is told 503
    first = post("/v1/batch", batch)
    assert first.status == 503 and sorted(first.outcomes) == ["delivered", "failed"]
    # and the sender resends it once DynamoDB and Gainsight are well again
    faults.error_rate = 0.0
    sandbox.state.faults.quota_per_minute = None
    again = post("/v1/batch", batch)
    # Then the one delivered first was recorded as such: answered delivered, not published again
    delivered = first.outcomes.index("delivered")
    assert again.outcomes[delivered] == "delivered"
    published = Counter(e["body"]["marker"] for e in sandbox.state.snapshot()["events"])
    assert published[delivered + 1] == 1 and max(published.values()) == 1
    # (the other waits, parked, for the budget Gainsight's 429 took: it is the drain's, once)
    assert again.outcomes[1 - delivered] in ("delivered", "deferred")


def test_the_drain_does_not_publish_again_what_it_delivered_but_could_not_settle(sandbox: Sandbox) -> None:
    # Given a parked track, and the drain's settling transaction failing once it has published it
    sandbox.fail(Fault(status=503, operation="event_publish", times=4))
    assert post("/v1/track", track(message_id="once", n=1)).outcomes == ["deferred"]
    faults = AwsFaults(random.Random(1), error_rate=1.0, only=frozenset({"TransactWriteItems"}))
    faults.install(handler_dynamodb())
    drain()
    assert sandbox.state.count("event_publish") == 5
    # When the drain runs again, once DynamoDB is back
    faults.error_rate = 0.0
    drain()
    # Then it records the delivery instead of publishing again
    assert stored() == []
    assert sandbox.state.count("event_publish") == 5
    assert [e["body"] for e in sandbox.state.snapshot()["events"]] == [{"n": 1}]


# -- nothing lost: a park is all or nothing ------------------------------------------------------


@pytest.mark.parametrize("fault", ["throttled", "died"])
def test_a_park_that_fails_leaves_nothing_behind_and_the_resend_is_delivered(sandbox: Sandbox, fault, monkeypatch):
    # Given Gainsight failing Ada's identify and DynamoDB failing (or the function dying at) the park
    monkeypatch.setenv("DELIVERY_BUDGET_SECONDS", "3")
    sandbox.fail(Fault(status=503, operation="person_upsert", times=4))
    rates = {"error_rate": 1.0} if fault == "throttled" else {"die_before_rate": 1.0}
    faults = AwsFaults(random.Random(1), only=frozenset({"TransactWriteItems"}), **rates)
    faults.install(handler_dynamodb())
    batch = {"batch": [identify(message_id="i1", firstName="Ada"), track(message_id="t1", n=1) | {"userId": "u1"}]}
    # When the batch arrives
    if fault == "throttled":
        reply = post("/v1/batch", batch)
        # Then the sender is told to retry: nothing was parked, no entity waits behind a phantom
        assert (reply.status, reply.outcomes) == (503, ["failed", "failed"])
    else:
        with pytest.raises(FunctionDied):
            post("/v1/batch", batch)
        clear_caches()  # the next invocation is a new function
    assert stored() == []
    assert blocked("email:ada@example.com", "user:u1") == frozenset()
    # And its resend, with Gainsight and DynamoDB healthy again, is delivered at once
    faults.error_rate = faults.die_before_rate = 0.0
    sandbox.state.faults.scripted.clear()
    assert post("/v1/batch", batch).outcomes == ["delivered", "delivered"]
    assert person(sandbox)["FirstName"] == "Ada"


# -- order per entity ---------------------------------------------------------------------------


def test_the_drain_merges_a_persons_events_across_several_reads_of_the_queue(sandbox: Sandbox) -> None:
    # Given 150 identify events of Ada parked (Gainsight down), 1.5 MB: more than one read of the
    # queue answers (DynamoDB answers at most 1 MB a read)
    sandbox.fail(Fault(status=503, operation="person_upsert", times=4))
    batch = [identify(message_id=f"i{n}", firstName=f"F{n}", notes="x" * 10_000) for n in range(150)]
    assert set(post("/v1/batch", {"batch": batch}).outcomes) == {"deferred"}
    writes = sandbox.state.count("person_upsert")
    # When the drain runs once
    drain()
    # Then all of them are applied in one write, the newest values last
    assert stored("parked") == []
    assert sandbox.state.count("person_upsert") == writes + 1
    assert person(sandbox)["FirstName"] == "F149"


def test_a_company_keeps_the_order_of_its_group_events_across_people(sandbox: Sandbox) -> None:
    # Given Ada's group event for Acme parked because Gainsight refused the company write
    sandbox.fail(Fault(status=503, operation="company_insert", times=1))
    sandbox.fail(Fault(status=503, operation="company_query", times=4))
    older = post("/v1/group", group("Acme", email="ada@example.com", message_id="g-ada", employees=6228))
    assert older.outcomes == ["deferred"]
    # When Grace's newer group event for the same company arrives with Gainsight healthy
    newer = post("/v1/group", group("Acme", email="grace@example.com", message_id="g-grace", employees=7000))
    # Then it waits behind Ada's instead of overtaking it
    assert newer.outcomes == ["deferred"]
    drain()
    [company] = sandbox.state.snapshot()["companies"]
    assert company["Employees"] == 7000
    assert {p["Email"] for p in sandbox.state.snapshot()["people"]} == {"ada@example.com", "grace@example.com"}


def test_an_identify_ties_its_user_id_to_the_email_so_a_later_track_waits(sandbox: Sandbox) -> None:
    # Given identify(userId u9, email) parked
    sandbox.fail(Fault(status=503, operation="person_upsert", times=4))
    ident = identify(message_id="i-u9", firstName="Nine") | {"userId": "u9"}
    assert post("/v1/identify", ident).outcomes == ["deferred"]
    # When a track carrying only userId u9 arrives
    later = track(message_id="t-u9", n=9) | {"userId": "u9"}
    # Then it waits behind the identify, and the drain applies both in order
    assert post("/v1/track", later).outcomes == ["deferred"]
    drain()
    applied = [c.operation for c in sandbox.state.calls if c.status == 200]
    assert applied == ["person_upsert", "event_publish"]


def test_a_person_whose_company_was_written_waits_only_for_the_link(sandbox: Sandbox, monkeypatch) -> None:
    # Given Ada's and Grace's group events for Acme in one batch: the company is written (merged),
    # then Ada's People PUT fails (one call at a time, no retries: hers is first) and Grace's goes through
    monkeypatch.setenv("GAINSIGHT_MAX_RETRIES", "0")
    monkeypatch.setenv("GAINSIGHT_CONCURRENCY", "1")
    sandbox.fail(Fault(status=503, operation="person_upsert"))
    batch = [
        group("Acme", email="ada@example.com", message_id="g-ada", employees=1),
        group("Acme", email="grace@example.com", message_id="g-grace", employees=2),
    ]
    reply = post("/v1/batch", {"batch": batch})
    assert reply.outcomes == ["deferred", "delivered"]
    # When a newer group event for Acme arrives, and the drain runs
    assert post("/v1/group", group("Acme", email="linus@example.com", message_id="g-3", employees=3)).outcomes == [
        "delivered"
    ]
    drain()
    # Then Ada's retry only links her: Acme keeps the newest traits
    [company] = sandbox.state.snapshot()["companies"]
    assert company["Employees"] == 3
    assert person(sandbox)["companies"] == [company["Gsid"]]


def test_an_older_event_accepted_first_is_applied_first_even_if_parked_later(sandbox: Sandbox) -> None:
    # Given two of Ada's identifies parked in the order opposite to their acceptance
    import time

    from record import read, sequence
    from store import EventStore

    store: EventStore = ingest.container(settings()).store
    older = read(0, identify(message_id="older", firstName="Older"), sequence(1_000, "a", 0))
    newer = read(0, identify(message_id="newer", firstName="Newer"), sequence(2_000, "b", 0))
    assert store.park([(newer, "test", "test")], time.monotonic() + 5) == {}
    assert store.park([(older, "test", "test")], time.monotonic() + 5) == {}
    # When the drain runs
    drain()
    # Then the newer one's values win
    assert person(sandbox)["FirstName"] == "Newer"


def test_an_event_applied_before_one_that_parks_is_never_parked_behind_it_by_a_resend(
    sandbox: Sandbox, monkeypatch, fake_clock
) -> None:
    # Given Ada's older identify applied, then her group event parked (Acme cannot be written) with
    # her newer identify held behind it, and DynamoDB's BatchWriteItem failing throughout
    monkeypatch.setenv("DELIVERY_BUDGET_SECONDS", "3")
    monkeypatch.setenv("GAINSIGHT_MAX_RETRIES", "0")
    clear_caches()
    sandbox.fail(Fault(status=503, operation="company_query", times=10))
    AwsFaults(random.Random(1), only=frozenset({"BatchWriteItem"}), error_rate=1.0).install(handler_dynamodb())
    batch = [
        identify(message_id="i-old", firstName="Old"),
        group("Acme", message_id="g", employees=1) | {"userId": "u1"},
        identify(message_id="i-new", firstName="New"),
    ]
    assert post("/v1/batch", {"batch": batch}).outcomes == ["delivered", "deferred", "deferred"]
    # When the sender resends the batch (its answer was lost), and the drain runs
    assert post("/v1/batch", {"batch": batch}).outcomes == ["delivered", "deferred", "deferred"]
    sandbox.state.faults.scripted.clear()
    drain()
    # Then the older identify was not parked again behind the newer one: the newer one's values win
    assert person(sandbox)["FirstName"] == "New"
    assert stored() == []


def test_a_person_whose_older_event_cannot_be_stored_has_nothing_newer_stored(sandbox: Sandbox, monkeypatch) -> None:
    # Given one transaction per event, and DynamoDB failing the first one: Ada's older identify
    import time

    import store as store_module
    from record import read, sequence

    monkeypatch.setattr(store_module, "MAX_TRANSACTION_ACTIONS", 4)
    FailFirst("TransactWriteItems").install(handler_dynamodb())
    table = store_module.EventStore(ingest.container(settings()).store.table, handler_dynamodb())
    ada_old = read(0, identify(message_id="ada-old", firstName="Old"), sequence(1_000, "a", 0))
    grace = read(1, identify(email="grace@example.com", message_id="grace") | {"userId": "u2"}, sequence(1_000, "a", 1))
    ada_new = read(2, identify(message_id="ada-new", firstName="New"), sequence(1_000, "a", 2))
    lanes = {"ada-old": "ada", "grace": "grace", "ada-new": "ada"}
    # When the three are parked in one go
    failed = table.park([(r, "test", "test") for r in (ada_old, grace, ada_new)], time.monotonic() + 5, lanes=lanes)
    # Then Ada's newer one is not stored either (a retry parks both in order); Grace's is
    assert set(failed) == {"ada-old", "ada-new"}
    assert [s.record.event_id for s in stored()] == ["grace"]


# -- crashes in the drain -------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["die_before_rate", "die_after_rate"])
def test_a_drain_killed_around_settling_delivers_the_oldest_again_first(sandbox: Sandbox, where) -> None:
    # Given two of Ada's identifies parked, and the drain dying at its settling transaction
    sandbox.fail(Fault(status=503, operation="person_upsert", times=4))
    post("/v1/identify", identify(message_id="a", firstName="First"))
    post("/v1/identify", identify(message_id="b", firstName="Second"))
    faults = AwsFaults(random.Random(1), only=frozenset({"TransactWriteItems"}), **{where: 1.0})
    faults.install(handler_dynamodb())
    with pytest.raises(FunctionDied):
        drain()
    clear_caches()  # the next run is a new container
    # When the drain runs again
    drain()
    # Then what the dead run left parked is applied again, in order, and nothing stays parked
    assert person(sandbox)["FirstName"] == "Second"
    assert stored() == []


def die_at_first(operation: str, after: Callable[[], bool], dead: DeadThreads) -> list[str]:
    """The function dies just before its first DynamoDB `operation` once `after()` holds, and its
    threads make no further call: the deaths, for the test to see."""
    deaths: list[str] = []

    def before_call(**_: Any) -> None:
        if deaths:
            raise FunctionDied("already dead")
        if after():
            deaths.append(f"died before {operation}")
            dead.kill(ingest.container(settings()).executor)
            raise FunctionDied(deaths[0])

    handler_dynamodb().meta.events.register(f"before-call.dynamodb.{operation}", before_call)
    return deaths


def republished(sandbox: Sandbox) -> int:
    """Publishes beyond the first of each track event (by its marker)."""
    markers = Counter(e["body"]["marker"] for e in sandbox.state.snapshot()["events"])
    return sum(count - 1 for count in markers.values())


def test_a_drain_that_dies_mid_page_publishes_again_at_most_the_calls_in_flight(sandbox: Sandbox, monkeypatch) -> None:
    # Given 60 track events of 60 people parked (Gainsight refused each publish once)
    monkeypatch.setenv("GAINSIGHT_MAX_RETRIES", "0")
    clear_caches()
    sandbox.fail(Fault(status=503, operation="event_publish", times=60))
    batch = [track(message_id=f"t{n}", marker=n) | {"userId": f"u{n}"} for n in range(60)]
    assert set(post("/v1/batch", {"batch": batch}).outcomes) == {"deferred"}
    # When the drain dies at its first settling write after it has published 20 of them
    dead = DeadThreads()
    dead.install(monkeypatch)
    deaths = die_at_first("TransactWriteItems", lambda: sandbox.state.count("event_publish") >= 60 + 20, dead)
    with pytest.raises(FunctionDied):
        drain()
    dead.bury(ingest.container(settings()).executor)
    clear_caches()  # the next run is a new container
    drain()
    # Then every event is delivered, and the death published again at most what was in flight
    assert deaths and stored() == []
    published = {e["body"]["marker"] for e in sandbox.state.snapshot()["events"]}
    assert published == set(range(60))
    assert 0 < republished(sandbox) <= settings().concurrency


def test_a_request_that_dies_publishes_again_at_most_the_calls_in_flight(sandbox: Sandbox, monkeypatch) -> None:
    # Given a batch of 40 track events of 40 people, and the function dying at its first write of
    # done records after 20 of them are published
    batch = [track(message_id=f"t{n}", marker=n) | {"userId": f"u{n}"} for n in range(40)]
    dead = DeadThreads()
    dead.install(monkeypatch)
    deaths = die_at_first("BatchWriteItem", lambda: sandbox.state.count("event_publish") >= 20, dead)
    with pytest.raises(FunctionDied):
        post("/v1/batch", {"batch": batch})
    dead.bury(ingest.container(settings()).executor)
    clear_caches()
    # When the sender, which got no answer, sends the batch again
    reply = post("/v1/batch", {"batch": batch})
    # Then every event is delivered, and the death published again at most what was in flight
    assert deaths and reply.outcomes == ["delivered"] * 40
    assert {e["body"]["marker"] for e in sandbox.state.snapshot()["events"]} == set(range(40))
    assert 0 < republished(sandbox) <= settings().concurrency


# -- rejected events are kept and replayed ------------------------------------------------------


def test_events_rejected_for_the_configuration_are_kept_and_replayed_by_reason(sandbox: Sandbox, capsys) -> None:
    from devtools.local import EVENT_TABLE, demo_config, seed_parameters

    # Given a track with no event name mapping, and one refused by Gainsight
    sandbox.fail(Fault(status=400, operation="person_upsert"))
    reply = post("/v1/batch", {"batch": [track("Signed Up", message_id="s1", plan="pro"), identify(message_id="i")]})
    assert reply.outcomes == ["rejected", "rejected"]
    assert {s.code for s in stored("rejected")} == {"no_event_name_mapping", "GU_1101"}
    # When the mapping is added and the events rejected for it are replayed
    config = demo_config(sandbox.url)
    config["eventNameMap"].append({"from": "Signed Up", "to": "signed_up"})
    config["eventVersionMap"].append({"from": "Signed Up", "to": "1"})
    seed_parameters(sandbox.url, config=config)
    clear_caches()
    capsys.readouterr()
    replay_command(["--table", EVENT_TABLE, "--code", "no_event_name_mapping", "--dry-run"])
    assert (
        capsys.readouterr().out
        == "1 rejected events would be replayed (no_event_name_mapping (track): 1); nothing changed\n"
    )
    replay_command(["--table", EVENT_TABLE, "--code", "no_event_name_mapping"])
    assert capsys.readouterr().out.startswith("replayed 1 of 1 events")
    drain()
    # Then it is delivered; the one Gainsight refused is still kept
    assert [(e["eventName"], e["body"]) for e in sandbox.state.snapshot()["events"]] == [("signed_up", {"plan": "pro"})]
    assert [s.code for s in stored("rejected")] == ["GU_1101"]


def test_a_replay_that_dies_after_its_first_write_and_is_run_again_keeps_every_persons_order(
    sandbox: Sandbox, capsys
) -> None:
    import boto3

    from devtools.local import EVENT_TABLE
    from devtools.replay import rejected
    from record import read, sequence
    from store import EventStore

    # Given 120 of Ada's identifies rejected in turn: each sets her first name, all but the last 7
    # her plan, the newest of those (the 113th) to "newest"
    plans = {n: "newest" if n == 112 else f"old-{n}" for n in range(113)}
    events = [identify(message_id=f"i{n}", firstName=str(n), **({"plan": plans[n]} if n in plans else {}))
              for n in range(120)]  # fmt: skip
    records = [read(n, event, sequence(1_000_000_000 + n, "t", n)) for n, event in enumerate(events)]
    store = EventStore(EVENT_TABLE, boto3.client("dynamodb"))
    assert store.keep_rejected([(r, "refused", "GU_1101") for r in records], time.monotonic() + 30) == {}
    # When a replay dies just after its first DynamoDB write
    dying = boto3.client("dynamodb")

    def die(**_: Any) -> None:
        raise FunctionDied("after the first write")

    dying.meta.events.register("after-call.dynamodb.TransactWriteItems", die)
    with pytest.raises(FunctionDied):
        replay(EventStore(EVENT_TABLE, dying), list(rejected(store, 0, time.time() + 1, [])))
    # And is run again, as it was, then again
    capsys.readouterr()
    assert replay_command(["--table", EVENT_TABLE]) == 0
    first = capsys.readouterr().out
    assert replay_command(["--table", EVENT_TABLE]) == 0
    second = capsys.readouterr().out
    drain()
    # Then every event was applied once, in the order it was accepted: Ada holds the newest values
    assert stored() == [] and stored("rejected") == []
    assert (person(sandbox)["FirstName"], person(sandbox)["Plan__gc"]) == ("119", "newest")
    assert first.startswith("replayed ") and second.startswith("replayed 0 of 0 events")


def test_a_replay_applies_only_what_later_delivered_events_did_not_write_and_runs_twice_harmlessly(
    sandbox: Sandbox, capsys
) -> None:
    from devtools.local import EVENT_TABLE

    # Given Ada's identify (first name, plan) and her group event for Acme (size, industry) refused
    # by Gainsight, then a newer identify of Ada's (first name) and a newer group event for Acme
    # (Bob's: size) delivered; and Grace's identify refused, then overwritten whole by a newer one
    sandbox.fail(
        Fault(status=400, operation="person_upsert", times=2), Fault(status=400, operation="company_insert", times=2)
    )
    old = [
        identify(message_id="old", firstName="Old", plan="pro"),
        group("Acme", message_id="g-old", employees=10, industry="Retail"),
    ]
    assert post("/v1/batch", {"batch": old}).outcomes == ["rejected", "rejected"]
    grace = identify(email="grace@example.com", message_id="grace-old", firstName="Old") | {"userId": "g"}
    assert post("/v1/identify", grace).outcomes == ["rejected"]
    newer = [
        identify(message_id="new", firstName="New"),
        group("Acme", email="bob@example.com", message_id="g-new", employees=20),
        identify(email="grace@example.com", message_id="grace-new", firstName="New") | {"userId": "g"},
    ]
    assert post("/v1/batch", {"batch": newer}).outcomes == ["delivered"] * 3
    # When the rejected events are replayed, and the replay is run once more
    capsys.readouterr()
    assert replay_command(["--table", EVENT_TABLE]) == 0
    first = capsys.readouterr().out
    drain()
    assert replay_command(["--table", EVENT_TABLE]) == 0
    second = capsys.readouterr().out.splitlines()[-1]  # after the drain's metrics
    # Then Gainsight holds what applying every event once, in arrival order, gives: Ada's newer
    # name and her older plan, Acme's newer size and its older industry, Ada linked to Acme; Grace's
    # older identify is left as superseded; and the second run replays nothing
    assert first.startswith("replayed 2 of 3 events") and "2 of them without" in first
    assert "1 left as superseded" in first and second.startswith("replayed 0 of 0 events")
    assert (person(sandbox)["FirstName"], person(sandbox)["Plan__gc"]) == ("New", "pro")
    assert person(sandbox, "grace@example.com")["FirstName"] == "New"
    acme = sandbox.state.company_by(Name="Acme")
    assert acme is not None and (acme["Employees"], acme.get("Industry")) == (20, "Retail")
    assert acme["Gsid"] in person(sandbox)["companies"]
    [kept] = stored("rejected")
    assert (kept.record.event_id, kept.code) == ("grace-old", "superseded") and "was: " in (kept.reason or "")


def test_a_replay_sees_a_company_written_while_its_persons_link_still_waits(sandbox: Sandbox, capsys) -> None:
    from devtools.local import EVENT_TABLE

    # Given Ada's group event for Acme refused, then Bob's newer one, whose company write went
    # through while his person's link could not (so it waits, parked, for the link only)
    sandbox.fail(Fault(status=400, operation="company_insert", times=2))
    assert post("/v1/group", group("Acme", message_id="g-old", employees=10)).outcomes == ["rejected"]
    sandbox.fail(Fault(status=503, operation="person_upsert", times=4))
    bob = group("Acme", email="bob@example.com", message_id="g-new", employees=20) | {"userId": "bob"}
    assert post("/v1/group", bob).outcomes == ["deferred"]
    # When the rejected event is replayed and the drain runs
    assert replay_command(["--table", EVENT_TABLE]) == 0
    drain()
    # Then Acme keeps the newer size, and both people are linked to it
    acme = sandbox.state.company_by(Name="Acme")
    assert acme is not None and acme["Employees"] == 20
    assert (
        acme["Gsid"] in person(sandbox)["companies"] and acme["Gsid"] in person(sandbox, "bob@example.com")["companies"]
    )


def test_an_event_that_keeps_failing_gives_up_and_frees_its_person(sandbox: Sandbox, monkeypatch) -> None:
    # Given a drain that gives up after 2 failed attempts, and Gainsight refusing Ada's identify
    monkeypatch.setenv("MAX_ATTEMPTS", "2")
    clear_caches()
    sandbox.fail(Fault(status=503, operation="person_upsert", times=1000))
    post("/v1/identify", identify(message_id="stuck", firstName="Stuck"))
    post("/v1/track", track(message_id="behind") | {"context": {"traits": {"email": "ada@example.com"}}})
    # When the drain has tried twice
    drain(runs=2)
    # Then the identify is kept as rejected (replayable), and the next run delivers the track behind it
    [gave_up] = stored("rejected")
    assert (gave_up.code, gave_up.record.event_id) == ("gave_up", "stuck")
    assert gave_up.reason.startswith("gave up after 2 attempts: Gainsight GU_1101")
    assert sandbox.state.count("event_publish") == 0
    drain()
    assert stored() == []
    assert sandbox.state.count("event_publish") == 1


# -- bounded work -----------------------------------------------------------------------------------


def test_a_batch_over_the_event_limit_is_413_naming_the_limit(sandbox: Sandbox) -> None:
    reply = post("/v1/batch", {"batch": [track(message_id=str(n)) for n in range(2501)]})
    assert (reply.status, reply.body["code"]) == (413, "too_many_events")
    assert "2501 events; at most 2500" in reply.body["message"]
    assert sandbox.state.count() == 0


def test_store_loops_back_off_and_stop_at_the_deadline(sandbox: Sandbox) -> None:
    # Given a table that never processes a BatchGetItem (throttled), a clock that only moves when we sleep
    from store import EventStore, StoreError

    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    client = handler_dynamodb()
    calls = Counter[str]()

    def nothing_processed(parsed: dict[str, Any], model: Any, params: Any = None, **_: Any) -> None:
        calls[model.name] += 1
        if model.name == "BatchGetItem":
            parsed["UnprocessedKeys"] = {
                "gainsight-destination-events": {"Keys": [{"pk": {"S": "x"}, "sk": {"S": "head"}}]}
            }

    client.meta.events.register("after-call.dynamodb.BatchGetItem", nothing_processed)
    store = EventStore("gainsight-destination-events", client, clock=Clock(monotonic=lambda: now[0], sleep=sleep))
    # When a lookup has 5 seconds
    with pytest.raises(StoreError, match="could not be read before the deadline"):
        store.lookup(["email:ada@example.com"], (), deadline=5.0)
    # Then it backed off (doubling from 50 ms, capped at 1 s, with jitter) and gave up in time
    for attempt, seconds in enumerate(slept):
        assert min(1.0, 0.05 * 2**attempt) / 2 <= seconds <= min(1.0, 0.05 * 2**attempt)
    assert 4.0 <= sum(slept) <= 5.0
    assert calls["BatchGetItem"] < 15


# -- the fault run ---------------------------------------------------------------------------------


ROLLED = "Page Viewed"
ROLLUP = {"eventName": ROLLED, "window": "1h", "to": {"eventName": "page_views_hourly", "eventVersion": "1.0"}}


def _workload(rng: random.Random, start: int, size: int) -> list[dict[str, Any]]:
    """Events of 30 people (each with a userId, an anonymousId and an email) and 6 companies; every
    track carries a unique marker, every identify a unique timezone, every group a unique size."""
    events: list[dict[str, Any]] = []
    for n in range(start, start + size):
        who = rng.randrange(30)
        email, ids = f"person{who}@example.com", {"userId": f"u{who}", "anonymousId": f"a{who}"}
        kind = rng.choices(["track", "identify", "group", "invalid", "rollup"], weights=[40, 30, 20, 10, 15])[0]
        if kind == "rollup":  # counted into the person's hourly rollup (ROLLUP), not published alone
            event = track(ROLLED, message_id=f"r{n}", marker=n) | ids
        elif kind == "track":
            # Some carry only the userId: they must stay in order with the person's identifies too.
            event = track(rng.choice(["Ticket Closed", "Feature Used"]), message_id=f"t{n}", marker=n) | ids
            if rng.random() < 0.5:
                event["context"] = {"traits": {"email": email}}
        elif kind == "identify":
            event = identify(email=email, message_id=f"i{n}", timezone=f"tz{n}") | ids
        elif kind == "group":
            event = group(f"Company {rng.randrange(6)}", email=email, message_id=f"g{n}", employees=n) | ids
        else:
            event = rng.choice([identify(email=None, message_id=f"x{n}"), {"type": "page", "messageId": f"x{n}"}])
        events.append(event)
    return events


def _send(
    batch: list[dict[str, Any]],
    rng: random.Random,
    died: list[str],
    aws: AwsFaults,
    buried: Callable[[], None],
    *,
    resends: Counter[str],
    refuse: Sandbox,
) -> Reply:
    """A sender as the SDKs are: resend on 503 or a lost answer until answered 200; sometimes the
    200 is lost on the way and the batch is sent once more. `resends` counts why it sent again.
    Gainsight (`refuse`) refuses one person write, company insert and publish outright at each
    sending: those events are kept as rejected, and replayed at the end."""
    for _ in range(40):
        refuse.fail(*(Fault(status=400, operation=o) for o in ("person_upsert", "company_insert", "event_publish")))
        try:
            reply = post("/v1/batch", {"batch": batch})
        except FunctionDied as death:
            resends["after no answer (the function died)"] += 1
            died.append(str(death))
            buried()
            clear_caches()  # the next request lands on a new container
            aws.revive()
            aws.install(handler_dynamodb())
            continue
        if reply.status == 200:
            if rng.random() < 0.1:
                resends["after a lost 200"] += 1  # our answer was lost on the way back: the sender resends it
                continue
            return reply
        # A 503 with some events delivered: the resend must not apply those again
        resends["after a 503 with events delivered" if "delivered" in reply.outcomes else "after a 503"] += 1
    raise AssertionError("the sender never got its batch accepted")


def _judge(
    sandbox: Sandbox, valid: list[dict[str, Any]], unanswered: set[int]
) -> tuple[list[str], Counter[int], list[str]]:
    """Lost tracks; how many times each track was published again without a lost answer to explain
    it (dropped by the sandbox, or never received): a death's doing, each death at most the calls
    it had in flight; and people or companies whose state differs from applying every valid event
    once, in the order sent."""
    state = sandbox.state.snapshot()
    published = Counter(e["body"]["marker"] for e in state["events"] if "marker" in e["body"])
    lost_bodies = [c.body for c in sandbox.state.lost_answers if c.operation == "event_publish" and c.body]
    excused = {body["marker"] for body in lost_bodies if "marker" in body} | unanswered
    tracks = [e for e in valid if e["type"] == "track" and e["event"] != ROLLED]
    lost = [e["messageId"] for e in tracks if published[e["properties"]["marker"]] == 0]
    duplicated = Counter({m: count - 1 for m, count in published.items() if count > 1 and m not in excused})
    # Rollups: each window (and late rollup of it) published once but for a death's doing, and every
    # counted event in exactly one of them: per person, the counts add up to their events.
    rollups = Counter(e["body"]["rollupId"] for e in state["events"] if "rollupId" in e["body"])
    dropped_rollups = {body["rollupId"] for body in lost_bodies if "rollupId" in body}
    duplicated |= Counter({r: n - 1 for r, n in rollups.items() if n > 1 and r not in dropped_rollups})
    counted = Counter()
    for body in {e["body"]["rollupId"]: e["body"] for e in state["events"] if "rollupId" in e["body"]}.values():
        counted[body["userId"]] += body["count"]
    sent = Counter(e["userId"] for e in valid if e["type"] == "track" and e["event"] == ROLLED)
    lost += [
        f"{user}: {sent[user] - counted[user]} rollup counts" for user in sent | counted if sent[user] != counted[user]
    ]
    people = {p["Email"]: p for p in state["people"]}
    companies = {c["Name"]: c for c in state["companies"]}
    stale: list[str] = []
    for email in {e["traits"]["email"] for e in valid if e["type"] == "identify"}:
        last = [e for e in valid if e["type"] == "identify" and e["traits"]["email"] == email][-1]
        if people.get(email, {}).get("Timezone") != last["traits"]["timezone"]:
            stale.append(email)
            if os.environ.get("FAULT_DEBUG"):
                order = [
                    (e["messageId"], e["traits"]["timezone"])
                    for e in valid
                    if e.get("traits", {}).get("email") == email and e["type"] == "identify"
                ]
                print("\nSTALE", email, "expected order", order)
                for c in sandbox.state.calls:
                    if (
                        c.operation == "person_upsert"
                        and c.body
                        and c.body.get("Email") == email
                        and "Timezone" in c.body
                    ):
                        print("  put", c.status, c.body.get("Timezone"), round(c.at, 3))
    for name in {e["traits"]["name"] for e in valid if e["type"] == "group"}:
        groups = [e for e in valid if e["type"] == "group" and e["traits"]["name"] == name]
        if companies.get(name, {}).get("Employees") != groups[-1]["traits"]["employees"]:
            stale.append(name)
            if os.environ.get("FAULT_DEBUG"):
                print("\nSTALE", name, "expected order", [(e["messageId"], e["traits"]["employees"]) for e in groups])
                for e in groups:
                    print("  stored", e["messageId"], find(ingest.container(settings()).store, e["messageId"]))
                for c in sandbox.state.calls:
                    if c.operation in ("company_insert", "company_update") and c.body:
                        for rec in c.body.get("records", []):
                            if rec.get("Name") == name:
                                print("  write", c.status, rec.get("Employees"), round(c.at, 3))
        for e in groups:
            linked = people.get(e["context"]["traits"]["email"], {}).get("companies", [])
            if companies.get(name, {}).get("Gsid") not in linked:
                stale.append(f"{name} link of {e['context']['traits']['email']}")
    return lost, duplicated, stale


def _drain_until_nothing_is_parked() -> None:
    """Drain until nothing is parked and every closed rollup window is published."""
    store = ingest.container(settings()).store
    for _ in range(10):
        drain()
        if not stored() and not store.rollup_windows(1):
            return


def _settle_and_replay() -> tuple[list[Stored], Replayed]:
    """Drain until nothing is parked, replay what was kept as rejected (as an operator would once
    the cause is fixed), drain again."""
    _drain_until_nothing_is_parked()
    store = ingest.container(settings()).store
    kept = list(rejected_events(store, 0, time.time() + 1, []))
    replayed = replay(store, kept)
    _drain_until_nothing_is_parked()
    return kept, replayed


# More seeds for a soak: FAULT_SEEDS="1 2 3 4 5" .venv/bin/pytest -s tests/test_durability.py -k fault_run
# (FAULT_DEBUG=1 also prints, for a stale person or company, the order expected and the writes made,
# and for a company each of its group events as the event store holds it).
# Seed 37 found the last ordering defect (an applied event recorded apart from the parked ones of
# its person: a sender's retry parked it behind them); it failed one run in three before the fix.
SEEDS = [int(seed) for seed in os.environ.get("FAULT_SEEDS", "11 23 37 41").split()]


@pytest.mark.parametrize("seed", SEEDS)
def test_fault_run_loses_duplicates_and_reorders_nothing(sandbox: Sandbox, monkeypatch, seed: int) -> None:
    # Given Gainsight answering a quarter of all calls with 5xx, 429s, timeouts or dropped
    # connections, and 2 % with a lost answer after doing the work; DynamoDB failing, throttling,
    # half-processing batches, and the function dying before or after its calls
    # (events that give up after MAX_ATTEMPTS are kept as rejected, and replayed at the end too)
    for name, value in {
        "DELIVERY_BUDGET_SECONDS": "3",
        "GAINSIGHT_READ_TIMEOUT": "0.6",
        "GAINSIGHT_MAX_RETRIES": "2",
        "MAX_ATTEMPTS": "2",
    }.items():
        monkeypatch.setenv(name, value)
    configure(sandbox, rollupMap=[ROLLUP])  # (clears the caches)
    faults = sandbox.state.faults
    faults.random_rate, faults.random_timeout, faults.rng = 0.25, 0.8, random.Random(seed)
    faults.lost_answer_rate = 0.02
    # and refusing a few writes outright: those events are kept as rejected, and replayed at the end
    sandbox.fail(
        *(Fault(status=400, operation=o, times=4) for o in ("person_upsert", "company_insert", "event_publish"))
    )
    rng = random.Random(seed)
    died: list[str] = []
    unanswered = unanswered_publishes(monkeypatch)  # and, below, what a dead function published
    dead = DeadThreads()
    dead.install(monkeypatch)

    def kill_workers(_: str) -> None:
        dead.kill(ingest.container(settings()).executor)

    def buried() -> None:
        # Once what the dead function had in flight has landed.
        dead.bury(ingest.container(settings()).executor)

    aws = AwsFaults(
        random.Random(seed),
        error_rate=0.1,
        partial_rate=0.3,
        die_before_rate=0.03,
        die_after_rate=0.03,
        on_death=kill_workers,
    )
    batches = [_workload(rng, start, 40) for start in range(0, 240, 40)]
    # When the batches go in through the API, the drain running between them
    outcomes: Counter[str] = Counter()
    resends: Counter[str] = Counter()
    rejected: dict[str, str] = {}
    for batch in batches:
        aws.install(handler_dynamodb())
        reply = _send(batch, rng, died, aws, buried, resends=resends, refuse=sandbox)
        outcomes.update(reply.outcomes)
        rejected |= {r["messageId"]: r["error"] for r in reply.body["results"] if r["outcome"] == "rejected"}
        try:
            aws.install(handler_dynamodb())
            drain()
        except FunctionDied as death:
            died.append(str(death))
            buried()
            clear_caches()
            aws.revive()
    # and, with Gainsight and AWS healthy again, the drain runs until nothing is parked, the events
    # that gave up meanwhile are replayed (as an operator would), and the drain runs again
    faults.random_rate = faults.lost_answer_rate = 0.0
    with sandbox.state.lock:  # (refusals queued for company inserts that never came are healthy no more)
        faults.scripted.clear()
    aws.error_rate = aws.partial_rate = aws.die_before_rate = aws.die_after_rate = 0.0
    kept, replayed = _settle_and_replay()

    # Then every valid event is in Gainsight, each track once (besides lost answers), and every
    # person and company is as if every accepted event had been applied once, in order
    events = [e for batch in batches for e in batch]
    lost, duplicated, stale = _judge(sandbox, [e for e in events if not e["messageId"].startswith("x")], unanswered)
    state = sandbox.state.snapshot()
    lost_answers = len(sandbox.state.lost_answers)
    bound = len(died) * settings().concurrency  # a death publishes again at most the calls in flight
    print(
        f"\nfault run (seed {seed}): {len(events)} events, last answers {dict(outcomes)}; function died "
        f"{len(died)} times; AWS faults {len(aws.log)}; lost answers from Gainsight {lost_answers}; "
        f"sender resends {dict(resends)}; kept as rejected {len(kept)}, replayed {replayed.replayed}, "
        f"superseded {replayed.superseded}; "
        f"lost {len(lost)}, published again after deaths {duplicated.total()} (bound {bound}; "
        f"most of one track {max(duplicated.values(), default=0)}), stale {len(stale)} {stale[:3]}, "
        f"parked {len(stored())}; Gainsight calls {state['calls']['total']}"
        + (f"\nAWS faults struck: {aws.log}" if os.environ.get("FAULT_DEBUG") else "")
    )
    assert (lost, stale, stored()) == ([], [], [])
    assert duplicated.total() <= bound
    # the invalid events were rejected, and every other rejection was kept (and replayed above)
    invalid = {e["messageId"] for e in events if e["messageId"].startswith("x")}
    assert invalid <= set(rejected) and set(rejected) - invalid <= {s.record.event_id for s in kept}
    assert all(rejected.values())
    assert outcomes["deferred"] > 0 and died and aws.log  # the faults really did strike
    assert kept and replayed.replayed + replayed.superseded == len(kept) and resends  # people's doings too


def test_a_batch_of_many_people_still_sees_the_one_who_waits(sandbox: Sandbox) -> None:
    # Given Ada's identify parked (the store's parked-events counters are no longer 0)
    sandbox.fail(Fault(status=503, operation="person_upsert", times=4))
    assert post("/v1/identify", identify(message_id="old", firstName="Old")).outcomes == ["deferred"]
    # When a batch names more people than there are counters (so the counters are read, not each head)
    others = [identify(email=f"p{n}@example.com", message_id=f"p{n}") | {"userId": f"p{n}"} for n in range(12)]
    reply = post("/v1/batch", {"batch": [*others, identify(message_id="new", firstName="New")]})
    # Then Ada's newer identify still waits behind the old one, and everyone else is delivered
    assert reply.outcomes == ["delivered"] * 12 + ["deferred"]
    drain()
    assert person(sandbox)["FirstName"] == "New"
    # and once nothing is parked, the counters are back to 0
    import boto3

    from devtools.local import EVENT_TABLE

    items = boto3.client("dynamodb").scan(TableName=EVENT_TABLE)["Items"]
    assert sum(int(i["parked"]["N"]) for i in items if i["sk"]["S"] == "count") == 0


def test_a_request_reads_what_it_must_know_in_one_round_trip_while_events_wait(sandbox: Sandbox) -> None:
    # Given the handler's DynamoDB requests, counted per request
    requests = dynamodb_requests(handler_dynamodb())

    def batch(tag: str) -> list[str]:
        """12 new people, then Ada."""
        people = [identify(email=f"{tag}{n}@example.com", message_id=f"{tag}{n}") | {"userId": f"{tag}{n}"}
                  for n in range(12)]  # fmt: skip
        requests.clear()
        return post("/v1/batch", {"batch": [*people, identify(message_id=f"{tag}-ada")]}).outcomes

    # When nothing is parked, a batch of 13 people is looked up, and the shared budget read, in one
    # read; its first reservation writes without reading the budget again
    assert batch("a") == ["delivered"] * 13
    assert requests.count("BatchGetItem") == 1
    assert "GetItem" not in requests
    # And once Ada's identify is parked, the next batch finds out in its first read and reads
    # each person's head in a second one
    sandbox.fail(Fault(status=503, operation="person_upsert", times=4))
    assert post("/v1/identify", identify(message_id="old", firstName="Old")).outcomes == ["deferred"]
    assert batch("b") == ["delivered"] * 12 + ["deferred"]
    assert requests.count("BatchGetItem") == 2
    # Then while she waits, every later batch reads everything in one round trip, and is told the same
    assert batch("c") == ["delivered"] * 12 + ["deferred"]
    assert requests.count("BatchGetItem") == 1
    # and once the drain delivered her events, a batch still reads in one round trip
    drain()
    assert stored() == []
    assert batch("d") == ["delivered"] * 13
    assert requests.count("BatchGetItem") == 1
    assert batch("e") == ["delivered"] * 13
    assert requests.count("BatchGetItem") == 1


def test_the_fault_harness_never_changes_what_the_caller_sends_again(sandbox: Sandbox) -> None:
    # A batch call cut short and then failing must leave the caller's request whole, as the SDK
    # does: our retry of it must ask for every key again.
    import boto3
    from botocore.exceptions import ClientError

    from devtools.local import EVENT_TABLE

    client = boto3.client("dynamodb")
    AwsFaults(random.Random(1), partial_rate=1.0, error_rate=1.0).install(client)
    request = {EVENT_TABLE: {"Keys": [{"pk": {"S": f"k{n}"}, "sk": {"S": "event"}} for n in range(5)]}}
    with pytest.raises(ClientError):
        client.batch_get_item(RequestItems=request)
    assert len(request[EVENT_TABLE]["Keys"]) == 5


class FailFirst:
    """The handler's first `operation` call after installing fails (throttled after the SDK's retries)."""

    def __init__(self, operation: str) -> None:
        self.operation, self.failed = operation, False

    def install(self, client: Any) -> None:
        client.meta.events.register(f"before-call.dynamodb.{self.operation}", self._before)

    def _before(self, **_: Any) -> None:
        if not self.failed:
            self.failed = True
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "ValidationException", "Message": "injected"}}, self.operation)


def test_a_resent_batch_writes_a_companys_traits_again_in_order(sandbox: Sandbox, monkeypatch) -> None:
    # Given Ada's and Grace's group events for Acme in one batch: the company is written (merged),
    # Ada's People PUT fails, and parking her (now link-only) event fails too
    monkeypatch.setenv("GAINSIGHT_MAX_RETRIES", "0")
    monkeypatch.setenv("GAINSIGHT_CONCURRENCY", "1")
    clear_caches()
    sandbox.fail(Fault(status=503, operation="person_upsert"))
    FailFirst("TransactWriteItems").install(handler_dynamodb())
    batch = [
        group("Acme", email="ada@example.com", message_id="g-ada", employees=1),
        group("Acme", email="grace@example.com", message_id="g-grace", employees=2),
    ]
    assert post("/v1/batch", {"batch": batch}).status == 503
    # When the sender resends the batch
    assert post("/v1/batch", {"batch": batch}).outcomes == ["delivered", "delivered"]
    # Then Acme ends with the newer traits: Grace's event was applied again after Ada's
    [company] = sandbox.state.snapshot()["companies"]
    assert company["Employees"] == 2


def test_the_drain_keeps_newer_group_events_parked_when_an_older_one_cannot_be_narrowed(
    sandbox: Sandbox, monkeypatch
) -> None:
    # Given Ada's and Grace's group events for Acme both parked (Acme could not be looked up), and
    # one Gainsight call at a time without retries (so that Ada's People PUT is the one that fails)
    monkeypatch.setenv("GAINSIGHT_MAX_RETRIES", "0")
    monkeypatch.setenv("GAINSIGHT_CONCURRENCY", "1")
    clear_caches()
    sandbox.fail(Fault(status=503, operation="company_query", times=8))
    post("/v1/group", group("Acme", email="ada@example.com", message_id="g-ada", employees=1))
    post("/v1/group", group("Acme", email="grace@example.com", message_id="g-grace", employees=2))
    assert len(stored()) == 2
    # When the drain writes Acme, Ada's link fails, and narrowing her event to its link fails too
    sandbox.state.faults.scripted.clear()
    sandbox.fail(Fault(status=503, operation="person_upsert"))
    FailFirst("TransactWriteItems").install(handler_dynamodb())
    drain()
    # Then Grace's event stays parked with Ada's, and the next run writes them again, in order
    assert len(stored()) == 2
    drain()
    assert stored() == []
    [company] = sandbox.state.snapshot()["companies"]
    assert company["Employees"] == 2
