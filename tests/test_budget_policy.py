"""Beyond the daily budget: people and companies stay current (state never waits behind telemetry,
and a reserve of the day's budget is kept for it), and telemetry parked too long expires, kept as
rejected. Time of day is on the injected clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from devtools.gainsight_sandbox import Fault, Sandbox
from observability import metrics
from tests.conftest import clear_caches
from tests.helpers import FakeClock, configure, drain_on, group, identify, post, stored, track

DAY = 86400.0
MIDNIGHT = 1_796_688_000.0  # 2026-12-08T00:00:00Z


def tracked(n: int, user: str = "u1") -> dict[str, Any]:
    return track(message_id=f"t-{user}-{n}", n=n) | {"userId": user}


@pytest.fixture
def day(fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """A small daily budget, on a wall clock that starts at midnight UTC."""
    monkeypatch.setenv("QUOTA_PER_DAY", "100")
    monkeypatch.setenv("DRAIN_SETTLE_SECONDS", "0")
    clear_caches()
    fake_clock.start_wall_at(MIDNIGHT)
    return fake_clock


@pytest.mark.usefixtures("fake_clock")  # (request budgets on the injected clock)
def test_an_identify_never_waits_behind_the_same_persons_parked_track(sandbox: Sandbox) -> None:
    # Given a track event of Ada's parked (Gainsight refused its publish)
    sandbox.fail(Fault(status=503, operation="event_publish", times=4))
    assert post("/v1/batch", {"batch": [tracked(1)]}).outcomes == ["deferred"]
    # When her identify arrives, with another track event after it
    reply = post("/v1/batch", {"batch": [identify(message_id="i1", plan="pro"), tracked(2)]})
    # Then the identify is delivered at once; the later track waits behind the parked one
    assert reply.outcomes == ["delivered", "deferred"]
    [ada] = sandbox.state.snapshot()["people"]
    assert ada["Plan__gc"] == "pro"
    assert [s.record.event_id for s in stored()] == ["t-u1-1", "t-u1-2"]


@pytest.mark.usefixtures("fake_clock")  # (request budgets on the injected clock)
def test_a_track_still_waits_behind_its_persons_parked_identify(sandbox: Sandbox) -> None:
    # Given Ada's identify parked (Gainsight failed the person write)
    sandbox.fail(Fault(status=503, operation="person_upsert", times=4))
    assert post("/v1/batch", {"batch": [identify(message_id="i1")]}).outcomes == ["deferred"]
    # When a track event of hers arrives, it waits behind it (it needs her person first)
    assert post("/v1/batch", {"batch": [tracked(1)]}).outcomes == ["deferred"]
    assert sandbox.state.snapshot()["events"] == []


def test_the_drain_delivers_state_before_older_telemetry(
    sandbox: Sandbox, day: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given Ada's track events parked, then her identify parked after them
    sandbox.fail(Fault(status=503, operation="event_publish", times=12))
    assert set(post("/v1/batch", {"batch": [tracked(n) for n in range(3)]}).outcomes) == {"deferred"}
    sandbox.fail(Fault(status=503, operation="person_upsert", times=4))
    assert post("/v1/batch", {"batch": [identify(message_id="i1", plan="pro")]}).outcomes == ["deferred"]
    with sandbox.state.lock:
        sandbox.state.faults.scripted.clear()
    # When a drain runs with room for a single Gainsight call this minute
    monkeypatch.setenv("QUOTA_PER_MINUTE", "1")
    monkeypatch.setenv("DRAIN_BUDGET_SECONDS", "5")
    clear_caches()
    day.advance(120)
    report = drain_on(day)
    # Then that call writes Ada's person; her older track events wait
    assert report.delivered == 1
    [ada] = sandbox.state.snapshot()["people"]
    assert ada["Plan__gc"] == "pro"
    assert [s.record.event_id for s in stored()] == ["t-u1-0", "t-u1-1", "t-u1-2"]


def test_telemetry_leaves_the_days_reserve_to_people_and_companies(sandbox: Sandbox, day: FakeClock) -> None:
    # Given a day of 100 calls of which 20 % are kept for state, at the start of the day
    # When 90 track events arrive
    reply = post("/v1/batch", {"batch": [tracked(n, f"u{n}") for n in range(90)]})
    # Then 80 are published and the other 10 wait for the reserve, without an attempt
    assert reply.outcomes.count("delivered") == 80
    assert len(sandbox.state.snapshot()["events"]) == 80
    waiting = stored()
    assert len(waiting) == 10 and {(s.code, s.attempts) for s in waiting} == {("budget_reserve", 0)}
    # And identify events still spend the reserve
    people = post("/v1/batch", {"batch": [identify(f"p{n}@example.com", message_id=f"i{n}") for n in range(15)]})
    assert people.outcomes == ["delivered"] * 15
    # And a drain run leaves the waiting telemetry parked, still without an attempt
    day.advance(120)
    report = drain_on(day)
    assert report.delivered == 0 and len(sandbox.state.snapshot()["events"]) == 80
    assert {(s.code, s.attempts) for s in stored()} == {("budget_reserve", 0)}


def test_the_reserve_shrinks_to_nothing_by_midnight(sandbox: Sandbox, day: FakeClock) -> None:
    # Given the waiting telemetry of a morning whose telemetry reached the reserve
    assert post("/v1/batch", {"batch": [tracked(n, f"u{n}") for n in range(90)]}).outcomes.count("delivered") == 80
    # When the drain runs at 18:00 UTC (a quarter of the day left: 5 of the 20 kept)
    day.advance(18 * 3600)
    report = drain_on(day)
    # Then 15 of the day's calls are free again for telemetry: the 10 waiting are published
    assert report.delivered == 10 and stored() == []


def test_parked_telemetry_expires_by_policy_and_state_never_does(
    sandbox: Sandbox, day: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TELEMETRY_MAX_AGE_HOURS", "1")
    monkeypatch.setenv("QUOTA_PER_DAY", "50000")
    clear_caches()
    # Given Ada's track events parked and her identify parked (Gainsight failing both)
    sandbox.fail(
        Fault(status=503, operation="event_publish", times=20), Fault(status=503, operation="person_upsert", times=20)
    )
    assert set(post("/v1/batch", {"batch": [tracked(1), tracked(2)]}).outcomes) == {"deferred"}
    assert post("/v1/batch", {"batch": [identify(message_id="i1")]}).outcomes == ["deferred"]
    # When the drain first runs after TelemetryMaxAgeHours, Gainsight still failing
    day.advance(3601)
    metrics.clear_metrics()
    drain_on(day)
    # Then the track events are kept as rejected, expired, and counted; the identify is still parked
    rejected = {s.record.event_id: s for s in stored("rejected")}
    assert set(rejected) == {"t-u1-1", "t-u1-2"}
    assert {s.code for s in rejected.values()} == {"expired"}
    assert "TelemetryMaxAgeHours" in (rejected["t-u1-1"].reason or "")
    assert [s.record.event_id for s in stored()] == ["i1"]
    assert metrics.metric_set["EventsExpired"]["Value"] == [2.0]
    assert sandbox.state.snapshot()["events"] == []


def offer_a_day(day: FakeClock, user: Callable[[int, int], str]) -> int:
    """A day of traffic, an hour a request and a drain run half an hour later: each hour a new
    person's identify, every sixth hour a group event, and 15 track events of `user(n, hour)`.
    Returns how many track events were sent."""
    tracks = 0
    for hour in range(24):
        batch = [identify(f"p{hour}@example.com", message_id=f"i{hour}") | {"userId": f"u{hour}"}]
        if hour % 6 == 0:
            batch.append(group(f"C{hour}", email=f"p{hour}@example.com", message_id=f"g{hour}"))
        for _ in range(15):
            batch.append(tracked(tracks, user(tracks, hour)))
            tracks += 1
        post("/v1/batch", {"batch": batch})
        day.advance(1800)
        drain_on(day)
        day.advance(1800)
    return tracks


def test_a_compressed_day_at_twice_the_daily_budget(
    sandbox: Sandbox, day: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A day of traffic worth about twice the day's 200 calls, an hour a request and a drain run:
    people and companies stay current all day; telemetry is delivered until only the reserve is
    left, then waits, and expires after TelemetryMaxAgeHours (12 h here); the budget is never
    overspent; every event ends delivered once, expired (kept), or still parked."""
    monkeypatch.setenv("QUOTA_PER_DAY", "200")
    monkeypatch.setenv("TELEMETRY_MAX_AGE_HOURS", "12")
    clear_caches()
    tracks = offer_a_day(day, lambda n, hour: f"u{(n * 7) % (hour + 1)}")
    # Then by midnight every person and company is in Gainsight, with every link
    snapshot = sandbox.state.snapshot()
    assert {p["Email"] for p in snapshot["people"]} == {f"p{h}@example.com" for h in range(24)}
    assert {c["Name"] for c in snapshot["companies"]} == {f"C{h}" for h in range(0, 24, 6)}
    assert sum(len(p.get("companies") or []) for p in snapshot["people"]) == 4
    assert not [s for s in stored() if s.record.state]
    # and the day's budget was never overspent
    assert sandbox.state.count() <= 200
    # and telemetry was delivered until the reserve, then waited for it, and the oldest expired
    published = _published(sandbox)
    waiting = stored()
    expired = [s for s in stored("rejected") if s.code == "expired"]
    assert 100 <= len(published) < tracks
    # (behind the budget, or behind an earlier event of the person that does: never an attempt)
    assert waiting and {s.code for s in waiting} <= {"budget_reserve", "quota", "waiting", "held"}
    assert {s.attempts for s in waiting} == {0}
    assert expired
    _every_track_once(sandbox, tracks)
    # When the next day comes, with no new traffic
    calls_before = sandbox.state.count()
    for _ in range(24):
        day.advance(3600)
        drain_on(day)
    # Then what had not expired is delivered within the new day's budget, or expires in turn
    assert stored() == [] and sandbox.state.count() - calls_before <= 200
    assert len(_published(sandbox)) > len(published)
    _every_track_once(sandbox, tracks)


def _published(sandbox: Sandbox) -> list[int]:
    return [event["body"]["n"] for event in sandbox.state.snapshot()["events"]]


def _every_track_once(sandbox: Sandbox, tracks: int) -> None:
    """Every track event published at most once, and each either published, expired or parked."""
    published = _published(sandbox)
    assert len(published) == len(set(published))
    kept = {s.record.event["properties"]["n"] for s in stored() + stored("rejected")}
    assert kept.isdisjoint(published)
    assert kept | set(published) == set(range(tracks))


def test_a_compressed_day_at_twice_the_daily_budget_with_its_high_volume_event_rolled_up(
    sandbox: Sandbox, day: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A day like the one above, its track events rolled up hourly per user (rollupMap): everything
    is delivered inside the day's 200 calls, every track event counted once."""
    monkeypatch.setenv("QUOTA_PER_DAY", "200")
    rollup = {
        "eventName": "Ticket Closed",
        "window": "1h",
        "to": {"eventName": "tickets_closed_hourly", "eventVersion": "1.0"},
    }
    configure(sandbox, rollupMap=[rollup])
    tracks = offer_a_day(day, lambda n, hour: f"u{max(0, hour - n % 3)}")  # the hour's three most active users
    day.advance(600)  # the last hour's windows close
    drain_on(day)
    # Then every person, company and link is in Gainsight, nothing waits, nothing was refused
    snapshot = sandbox.state.snapshot()
    assert len(snapshot["people"]) == 24 and len(snapshot["companies"]) == 4
    assert stored() == [] and stored("rejected") == []
    # and every track event is counted once into the rollups published, inside the day's budget
    rollups = [e["body"] for e in snapshot["events"] if e["eventName"] == "tickets_closed_hourly"]
    assert sum(r["count"] for r in rollups) == tracks == 360
    assert sandbox.state.count() <= 200
