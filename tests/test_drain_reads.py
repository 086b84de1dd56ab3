"""The drain's reads follow the work that is due, not the backlog: a run with nothing changed and
nothing due reads the parked counters and the last pass's summary, however many events wait; a
run whose calls are spent stops reading the queue."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import drain as drain_module
import pytest

import ingest
from devtools.gainsight_sandbox import Fault, Sandbox
from settings import settings
from tests.conftest import clear_caches
from tests.helpers import post, stored, track


def run_drain_at(wall: float) -> drain_module.DrainReport:
    """One drain run as the schedule makes it, at wall-clock time `wall`."""
    return drain_module.drain(60.0, clock=dataclasses.replace(ingest.clock, wall=lambda: wall))


def reads() -> list[tuple[str, int]]:
    """The handler's DynamoDB reads from now on: (operation, items asked for or returned)."""
    seen: list[tuple[str, int]] = []
    client = ingest.container(settings()).store.dynamodb

    def before(model: Any, params: dict[str, Any], **_: Any) -> None:
        if model.name == "BatchGetItem":
            seen.append((model.name, sum(len(r["Keys"]) for r in params["RequestItems"].values())))

    def after(model: Any, parsed: dict[str, Any], **_: Any) -> None:
        if model.name == "Query":
            seen.append((model.name, len(parsed.get("Items", []))))

    client.meta.events.register("before-parameter-build.dynamodb.*", before)
    client.meta.events.register("after-call.dynamodb.*", after)
    return seen


def backlog(sandbox: Sandbox, people: int, per_person: int) -> None:
    """Track events of `people` people parked: Gainsight refused every publish."""
    sandbox.fail(Fault(status=503, operation="event_publish", times=people * per_person))
    batch = [
        track(message_id=f"t{p}-{n}", marker=p * 1000 + n) | {"userId": f"u{p}"}
        for n in range(per_person)
        for p in range(people)
    ]
    assert set(post("/v1/batch", {"batch": batch}).outcomes) == {"deferred"}
    with sandbox.state.lock:
        sandbox.state.faults.scripted.clear()


@pytest.fixture
def no_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAINSIGHT_MAX_RETRIES", "0")
    monkeypatch.setenv("QUOTA_PER_MINUTE", "100000")  # the tenant's budget is not what is tested here
    clear_caches()


def test_a_run_with_nothing_due_reads_a_few_items_whatever_the_backlog(sandbox: Sandbox, no_retries: None) -> None:
    # Given 625 events of 25 people parked, and a run that found Gainsight refusing them all: it
    # stopped after its first page (the rest would have fared no better)
    backlog(sandbox, people=25, per_person=25)
    sandbox.fail(Fault(status=503, operation="event_publish", times=625))
    start = time.time() + 3600
    first = run_drain_at(start)
    assert (first.pages, first.delivered) == (1, 0)
    with sandbox.state.lock:
        sandbox.state.faults.scripted.clear()
    # and two runs that read the whole queue and found each person's first event waiting for its
    # retry (one is not enough: the queue index may lag behind a change the counters show)
    assert run_drain_at(start + 1).parked == 625
    assert not run_drain_at(start + 2).idle
    backoff = settings().retry_base_seconds
    # When the drain runs again before their retry is due
    seen = reads()
    again = run_drain_at(start + backoff / 2)
    # Then it reads one batch of at most ~100 items, and no page of the queue
    assert again.idle and again.parked == 625
    assert [name for name, _ in seen] == ["BatchGetItem"] and seen[0][1] <= 100
    # And once their retry is due, the next run tries them again (and this time delivers everything)
    seen.clear()
    due = run_drain_at(start + backoff + 1)
    assert not due.idle and due.delivered == 625 and stored() == []
    assert any(name == "Query" for name, _ in seen)


def test_an_event_parked_since_the_last_pass_is_not_skipped(sandbox: Sandbox, no_retries: None) -> None:
    # Given a backlog with nothing due, as the last pass found it
    backlog(sandbox, people=3, per_person=3)
    sandbox.fail(Fault(status=503, operation="event_publish", times=3))
    start = time.time() + 3600
    run_drain_at(start)  # some delivered: the queue changed, so the next two runs read it again
    run_drain_at(start + 1)
    run_drain_at(start + 2)
    assert run_drain_at(start + 2.5).idle
    # When another person's event is parked meanwhile (Gainsight refused it at once)
    sandbox.fail(Fault(status=503, operation="event_publish", times=1))
    assert post("/v1/track", track(message_id="new", marker=99) | {"userId": "new"}).outcomes == ["deferred"]
    # Then the next run reads the queue and delivers it, though the others are not due
    report = run_drain_at(start + 3)
    assert not report.idle and report.delivered == 1
    assert "new" not in [s.record.event_id for s in stored()]
    # And once two runs have found nothing changed, the next is idle again
    run_drain_at(start + 4)
    run_drain_at(start + 5)
    assert run_drain_at(start + 6).idle


def test_a_young_event_is_not_forgotten_by_a_pass_that_left_it_alone(sandbox: Sandbox, no_retries: None) -> None:
    # Given an event parked just now (younger than the drain's settle time), and a run that leaves it
    sandbox.fail(Fault(status=503, operation="event_publish", times=1))
    assert post("/v1/track", track(message_id="young", marker=1) | {"userId": "u1"}).outcomes == ["deferred"]
    now = time.time()
    assert run_drain_at(now).waiting == 1
    # When the drain runs once it is old enough, nothing else having changed
    report = run_drain_at(now + settings().drain_settle_seconds + 1)
    # Then it is delivered
    assert not report.idle and report.delivered == 1 and stored() == []


def test_a_run_whose_budget_is_spent_stops_reading_the_queue(
    sandbox: Sandbox, no_retries: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 900 events of 900 people parked, and a tenant budget of 10 calls a minute
    backlog(sandbox, people=900, per_person=1)
    monkeypatch.setenv("QUOTA_PER_MINUTE", "10")
    monkeypatch.setenv("DRAIN_BUDGET_SECONDS", "5")
    clear_caches()
    seen = reads()
    # When the drain runs
    report = run_drain_at(time.time() + 3600)
    # Then it delivers what the budget allows (the request spent this minute's) and reads no page
    # after the one that spent it
    assert report.delivered <= 10 and report.retried > 0
    assert report.pages == 1 and sum(n for name, n in seen if name == "Query") <= 400
