"""Rollups (rollupMap): many track events of one name, one Events Framework call per user and
window; each event counted once (a resend is not counted again), each window published once, and
events arriving after their window was published go into a late rollup of it."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from config import parse_destination
from devtools.gainsight_sandbox import Sandbox
from errors import ConfigurationError
from tests.helpers import FakeClock, configure, drain_on, post, stored, track

HOUR = 3600.0
START = 1_796_691_600.0  # 2026-12-08T01:00:00Z: the start of an hourly window
ROLLUP = {
    "eventName": "Feature Used",
    "window": "1h",
    "by": "user",
    "to": {"eventName": "feature_usage_hourly", "eventVersion": "1.0"},
    "sum": ["duration"],
    "distinct": ["feature"],
}


def used(n: int, user: str, at: float, **properties: Any) -> dict[str, Any]:
    from datetime import UTC, datetime

    stamp = datetime.fromtimestamp(at, UTC).isoformat()
    event = track("Feature Used", message_id=f"f-{user}-{n}", duration=n, feature=f"f{n % 3}", **properties)
    return event | {"userId": user, "timestamp": stamp}


@pytest.fixture
def rolled(sandbox: Sandbox, fake_clock: FakeClock) -> FakeClock:
    configure(sandbox, rollupMap=[ROLLUP])
    fake_clock.start_wall_at(START + 1500)  # (the uses below happened before they arrived)
    return fake_clock


def published(sandbox: Sandbox) -> list[dict[str, Any]]:
    return [e for e in sandbox.state.snapshot()["events"] if e["eventName"] == "feature_usage_hourly"]


def test_many_events_of_a_user_are_one_call_per_window_each_counted_once(sandbox: Sandbox, rolled: FakeClock) -> None:
    # Given 20 uses by Ada and 10 by Grace within the hour
    batch = [used(n, "ada", START + 60 * n) for n in range(20)] + [used(n, "grace", START + 60 * n) for n in range(10)]
    # When they are sent, and the batch is sent again (a sender's retry after a lost answer)
    first = post("/v1/batch", {"batch": batch})
    again = post("/v1/batch", {"batch": batch})
    # Then each is answered rolled_up (202): counted, not yet in Gainsight; no Gainsight call yet
    assert first.outcomes == again.outcomes == ["rolled_up"] * 30
    assert {r["statusCode"] for r in first.body["results"]} == {202}
    assert sandbox.state.count() == 0 and stored() == []
    # When the drain runs after the window has closed (and its settle time passed)
    rolled.advance(HOUR + 300)
    report = drain_on(rolled)
    # Then one event per user carries the window's count, sums, distinct values and identity
    assert report.rollups == 2 and sandbox.state.count() == 2
    windows = {e["body"]["userId"]: e["body"] for e in published(sandbox)}
    ada = windows["ada"]
    assert (ada["count"], ada["sums"], ada["distinct"]) == (
        20,
        {"duration": sum(range(20))},
        {"feature": ["f0", "f1", "f2"]},
    )
    assert (ada["windowStart"], ada["windowEnd"], ada["late"]) == (
        "2026-12-08T01:00:00.000Z",
        "2026-12-08T02:00:00.000Z",
        False,
    )
    assert ada["firstTimestamp"] == "2026-12-08T01:00:00.000Z" and ada["lastTimestamp"] == "2026-12-08T01:19:00.000Z"
    assert windows["grace"]["count"] == 10
    # And the next runs publish nothing more: each window once
    rolled.advance(120)
    assert drain_on(rolled).rollups == 0 and len(published(sandbox)) == 2


def test_events_arriving_after_their_window_was_published_go_into_a_late_rollup(
    sandbox: Sandbox, rolled: FakeClock
) -> None:
    post("/v1/batch", {"batch": [used(n, "ada", START + n) for n in range(3)]})
    rolled.advance(HOUR + 300)
    assert drain_on(rolled).rollups == 1
    # When two more of that window arrive late (a mobile SDK back online), one of them twice
    late = [used(10, "ada", START + 30), used(11, "ada", START + 40)]
    assert post("/v1/batch", {"batch": late}).outcomes == ["rolled_up"] * 2
    assert post("/v1/batch", {"batch": late[:1]}).outcomes == ["rolled_up"]
    rolled.advance(HOUR + 300)
    drain_on(rolled)
    # Then they are published once more, as a late rollup of the window: nothing counted twice
    counts = sorted((e["body"]["late"], e["body"]["count"]) for e in published(sandbox))
    assert counts == [(False, 3), (True, 2)]


def test_an_event_a_rollup_cannot_name_a_user_for_is_rejected_and_kept(sandbox: Sandbox, rolled: FakeClock) -> None:
    event = track("Feature Used", message_id="f-nobody")
    reply = post("/v1/batch", {"batch": [event]})
    assert reply.outcomes == ["rejected"]
    assert "userId" in reply.body["results"][0]["error"]
    assert [s.code for s in stored("rejected")] == ["no_rollup_entity"]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (ROLLUP | {"window": "7m"}, "window must be minutes, hours or a day that divide a day evenly"),
        (ROLLUP | {"by": "session"}, "by must be user or company"),
        (ROLLUP | {"to": {"eventName": "x"}}, "to must be {'eventName', 'eventVersion'}"),
        (ROLLUP | {"sums": ["duration"]}, "rollupMap[0].sums is not known"),
        (ROLLUP | {"sum": "duration"}, "sum must be a list of property names"),
    ],
)
def test_a_bad_rollup_setting_is_refused_naming_it(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        parse_destination(json.dumps({"domain": "acme.gainsightcloud.com", "rollupMap": [entry]}), "key", None)


def test_an_event_is_rolled_up_or_an_activity_not_both() -> None:
    activity = {"eventName": "feature used", "activityType": "Update", "subject": "s", "author": "c@example.com"}
    config = {"domain": "acme.gainsightcloud.com", "timelineMap": [activity], "rollupMap": [ROLLUP]}
    with pytest.raises(ConfigurationError, match="Feature Used is in timelineMap too"):
        parse_destination(json.dumps(config), "key", None)


def test_an_event_sent_twice_in_one_batch_or_with_a_huge_number_is_counted_once(
    sandbox: Sandbox, rolled: FakeClock
) -> None:
    twice = used(1, "ada", START)
    huge = used(2, "ada", START) | {"properties": {"duration": 10**400, "feature": "f"}}
    reply = post("/v1/batch", {"batch": [twice, twice, huge]})
    assert reply.status == 200 and reply.outcomes == ["rolled_up"] * 3
    rolled.advance(HOUR + 300)
    drain_on(rolled)
    [window] = published(sandbox)
    # (a number DynamoDB cannot add is counted, not summed)
    assert (window["body"]["count"], window["body"]["sums"]) == (2, {"duration": 1})


def test_a_window_gainsight_refuses_is_set_aside_not_tried_for_ever(sandbox: Sandbox, rolled: FakeClock) -> None:
    from devtools.gainsight_sandbox import Fault

    post("/v1/batch", {"batch": [used(1, "ada", START)]})
    rolled.advance(HOUR + 300)
    # When Gainsight refuses the rollup's event (its contract does not accept the shape)
    sandbox.fail(Fault(status=400, operation="event_publish"))
    assert drain_on(rolled).rejected == 1
    # Then the window leaves the queue: the next runs do not call Gainsight for it again
    calls = sandbox.state.count()
    rolled.advance(120)
    drain_on(rolled)
    assert sandbox.state.count() == calls and published(sandbox) == []
