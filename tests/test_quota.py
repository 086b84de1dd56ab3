"""The tenant's shared Gainsight budget (handler/quota.py) against moto DynamoDB, on a fake clock."""

from __future__ import annotations

import math
from typing import Any

import boto3
import pytest
from clock import Clock as ClockObject

from devtools.gainsight_sandbox import Fault, Sandbox
from devtools.local import EVENT_TABLE
from quota import KEY, Budget, SharedQuota
from tests.helpers import dynamodb_requests, identify, post, stored, track


class Clock:
    """Wall and monotonic time that move only when told to (or when the code sleeps)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(sandbox: Sandbox) -> Clock:  # sandbox: an empty event table
    return Clock()


def quota(
    clock: Clock, *, per_window: int = 10, per_day: int = 1000, wait: float = 0.0, known: dict[str, Any] | None = None
) -> SharedQuota:
    return SharedQuota(
        EVENT_TABLE,
        boto3.client("dynamodb"),
        Budget(per_window, per_day, window_seconds=60),
        max_wait=wait,
        deadline=clock.now + 300,
        clock=ClockObject(monotonic=clock.time, sleep=clock.sleep, wall=clock.time),
        known=known,
    )


def takes(q: SharedQuota, n: int) -> int:
    return sum(q.take() for _ in range(n))


def test_instances_share_one_window_and_unused_shares_come_back(clock: Clock) -> None:
    # Given two instances (two Lambdas) sharing a budget of 10 calls a minute
    first, second = quota(clock), quota(clock)
    # When the first, planning 7 calls, makes 3 (its first reserves all 7 in one write)
    first.expect(7)
    assert takes(first, 3) == 3
    # Then the second, wanting 6, gets only what is left, and once denied asks no more
    assert takes(second, 6) == 3
    assert second.take() is False
    # and once the first gives back the 2 it did not use, the next instance may have them
    assert takes(first, 2) == 2
    first.release()
    assert takes(quota(clock), 3) == 2
    # And a minute later the window is free again
    clock.now += 61
    assert takes(quota(clock), 10) == 10


def test_an_instance_that_saw_the_budget_earlier_never_takes_more_than_is_left(clock: Clock) -> None:
    # Given two instances of a budget of 10 calls a minute, counting their DynamoDB requests
    first, second = quota(clock), quota(clock)
    requests = dynamodb_requests(first.dynamodb, second.dynamodb)
    first.expect(4)
    assert takes(first, 4) == 4
    # When the second takes 5 meanwhile, and the first, still knowing the budget as it left it,
    # wants 5 more
    assert takes(second, 5) == 5
    requests.clear()
    first.expect(5)
    # Then it gets the one share left, not five
    assert takes(first, 5) == 1
    # and its stale write was answered with the current item, not read first; only the "no room
    # left" for the rest is read afresh before being believed
    assert requests == ["PutItem", "PutItem", "GetItem"]
    assert takes(quota(clock), 1) == 0


def test_the_budget_read_with_a_requests_lookup_spares_a_read_and_is_never_trusted_past_its_write(
    clock: Clock,
) -> None:
    # Given the budget of 10 calls a minute as a request's lookup read it (it had 1 call in it)
    assert takes(quota(clock), 1) == 1
    read = boto3.client("dynamodb").get_item(TableName=EVENT_TABLE, Key=KEY, ConsistentRead=True)["Item"]
    q = quota(clock, known=read)
    requests = dynamodb_requests(q.dynamodb)
    # When the request wants 3 calls, its reservation is written straight away, without a read
    q.expect(3)
    assert takes(q, 1) == 1
    assert requests == ["PutItem"]
    # And once other instances have filled the window, an instance handed the same (now stale)
    # item gets nothing: its write is refused and answered with the budget as it is, which it
    # believes without reading it again
    assert takes(quota(clock), 6) == 6
    stale = quota(clock, known=read)
    requests = dynamodb_requests(stale.dynamodb)
    stale.expect(5)
    assert takes(stale, 5) == 0
    assert requests == ["PutItem"]
    assert takes(quota(clock), 1) == 0


def test_a_429_pauses_everyone_and_lowers_the_rate_which_recovers_after_clean_windows(clock: Clock) -> None:
    q = quota(clock, per_window=100)
    assert q.take()
    # When Gainsight answers 429 with Retry-After: 30, to two calls of the same overrun
    q.throttled(30)
    q.throttled(30)
    q.release()
    # Then nobody gets a share until it has passed
    assert quota(clock).take() is False
    clock.now += 31
    # and then at most 70 % of the budget per window: cut once, not once per 429 answered
    assert takes(quota(clock, per_window=100), 100) == 69  # 70, less the call made before the 429
    # rising by 10 % a window while no 429 comes, never above the budget
    rates = []
    for _ in range(6):
        clock.now += 61
        probe = quota(clock, per_window=100)
        assert probe.take()
        rates.append(round(probe.usage.rate))
        probe.release()
    assert rates == [77, 85, 93, 100, 100, 100]


def test_a_lowered_budget_applies_at_once(clock: Clock) -> None:
    # Given a budget of 100 calls a minute in use
    assert takes(quota(clock, per_window=100), 5) == 5
    # When the stack is updated to 10 a minute, a minute later
    clock.now += 61
    # Then no instance gets more than 10 in a minute
    assert takes(quota(clock, per_window=10), 20) == 10


def test_the_daily_budget_is_counted_and_enforced(clock: Clock) -> None:
    q = quota(clock, per_window=100, per_day=150)
    assert takes(q, 100) == 100
    clock.now += 61
    q2 = quota(clock, per_window=100, per_day=150)
    assert takes(q2, 100) == 50
    assert q2.usage.day_used == 150
    clock.now += 86400  # the next day
    assert takes(quota(clock, per_window=100, per_day=150), 10) == 10


def test_the_drain_does_not_wait_for_a_day_whose_budget_is_spent(clock: Clock) -> None:
    # Given the day's budget spent
    assert takes(quota(clock, per_window=100, per_day=20), 20) == 20
    # When the drain (which may wait) wants another call
    drain = quota(clock, per_window=100, per_day=20, wait=math.inf)
    # Then it is told at once that there is none, instead of polling until its run ends
    assert drain.take() is False
    assert clock.slept == []


def test_the_drain_waits_for_room_instead_of_failing(clock: Clock) -> None:
    # Given a window spent by someone else
    assert takes(quota(clock), 10) == 10
    # When the drain (which may wait) wants another call
    drain = quota(clock, wait=math.inf)
    # Then it sleeps until the oldest call leaves the window, and gets it
    assert drain.take() is True
    assert 59 <= sum(clock.slept) <= 61


def test_a_request_waits_for_room_only_briefly(clock: Clock) -> None:
    # Given a window spent by someone else 59.9 s ago
    assert takes(quota(clock), 10) == 10
    clock.now += 59.9
    # When a request (which may wait a second) wants a call
    # Then it waits until the oldest call has left the window (and its half second of skew), and gets it
    assert quota(clock, wait=1.0).take() is True
    assert clock.slept == [pytest.approx(0.6)]
    # But when the window frees only in a minute, it is told at once, without waiting
    assert takes(quota(clock), 9) == 9
    assert quota(clock, wait=1.0).take() is False
    assert clock.slept == [pytest.approx(0.6)]


def test_a_request_waits_for_room_once_in_all_not_once_per_call(clock: Clock) -> None:
    # Given a window of 3 calls spent by others 0.4 s apart, the first of them just leaving it
    for _ in range(3):
        assert takes(quota(clock, per_window=3), 1) == 1
        clock.now += 0.4
    clock.now += 60.5 - 1.2 + 0.01
    # When a request that may wait half a second wants 3 calls, freed one at a time
    request = quota(clock, per_window=3, wait=0.5)
    # Then it gets the calls that free up within half a second of its first wait, and no more:
    # waiting 0.39 s for the second does not start another half second for the third
    assert takes(request, 3) == 2
    assert sum(clock.slept) <= 0.5


def test_a_request_parks_what_the_budget_cannot_cover(sandbox: Sandbox, monkeypatch) -> None:
    # Given a tenant budget of 2 calls a minute
    monkeypatch.setenv("QUOTA_PER_MINUTE", "2")
    from tests.conftest import clear_caches

    clear_caches()
    # When a request needs 3
    reply = post("/v1/batch", {"batch": [track(message_id=str(n), n=n) for n in range(3)]})
    # Then Gainsight sees 2 and never a 429; the third is parked at once, not failed, and waits for quota
    assert sorted(reply.outcomes) == ["deferred", "delivered", "delivered"]
    assert sandbox.state.count() == 2
    [parked] = stored()
    assert parked.code == "quota"


def test_a_gainsight_429_pauses_the_next_request_too(sandbox: Sandbox) -> None:
    # Given Gainsight answering 429 with Retry-After: 60 once (the tenant's quota is spent)
    sandbox.fail(Fault(status=429, retry_after="60", operation="person_upsert"))
    assert post("/v1/identify", identify(message_id="a")).outcomes == ["deferred"]
    # When the next request comes (on any instance)
    calls = sandbox.state.count()
    reply = post("/v1/identify", identify(email="grace@example.com", message_id="b"))
    # Then it does not spend a call into the pause: its event is parked at once
    assert reply.outcomes == ["deferred"]
    assert sandbox.state.count() == calls


# -- the day's reserve for people and companies, Gainsight's own headers, the forecast -------------


def reserved_quota(clock: Clock, *, per_day: int = 100) -> SharedQuota:
    return SharedQuota(
        EVENT_TABLE,
        boto3.client("dynamodb"),
        Budget(1000, per_day, window_seconds=60, state_reserve=0.2),
        max_wait=0.0,
        deadline=clock.now + 300,
        clock=ClockObject(monotonic=clock.time, sleep=clock.sleep, wall=clock.time),
    )


def test_telemetry_takes_no_share_of_the_state_reserve_which_shrinks_by_midnight(clock: Clock) -> None:
    # Given a day of 100 calls with 20 % kept for state, at midnight UTC
    clock.now = 1_800_000_000.0 // 86400 * 86400 + 86400
    q = reserved_quota(clock)
    # Then telemetry may spend 80 and no more, and state calls the remaining 20
    assert sum(q.take(telemetry=True) for _ in range(100)) == 80 and q.reserve_reached
    assert takes(q, 100) == 20
    # And at 18:00, a quarter of the day left, a new day's telemetry may spend all but 5
    clock.now += 86400 + 18 * 3600
    later = reserved_quota(clock)
    assert sum(later.take(telemetry=True) for _ in range(100)) == 95


def test_gainsights_own_lower_limit_caps_every_instance_for_the_day(clock: Clock) -> None:
    # Given a budget of 10 calls a minute, when an answer says Gainsight's limit is 4
    first = quota(clock)
    assert first.take()
    first.calibrate(4, 3, None)
    first.release()
    # Then no instance plans more than 4 in the window, the call already made included
    assert takes(quota(clock), 10) == 3
    # And a limit above the configured budget changes nothing (the configuration stays the ceiling)
    clock.now += 61
    other = quota(clock)
    other.calibrate(200, 199, None)
    assert takes(other, 10) == 4


def test_gainsight_saying_nothing_is_left_pauses_everyone_until_its_reset(clock: Clock) -> None:
    first = quota(clock)
    assert first.take()
    # When an answer says no call is left in Gainsight's window, resetting in 20 s
    first.calibrate(10, 0, 20.0)
    # Then another instance finds no room now, and room again after 20 s
    assert takes(quota(clock), 5) == 0
    clock.now += 21
    assert takes(quota(clock), 5) == 5


def test_answers_that_change_nothing_write_nothing(clock: Clock) -> None:
    q = quota(clock)
    assert q.take()
    requests = dynamodb_requests(q.dynamodb)
    for remaining in range(9, 0, -1):
        q.calibrate(10, remaining, None)
    assert requests == []


@pytest.mark.parametrize(
    ("hour", "used", "recent", "hours", "short"),
    [
        (6, 30_000, 100, 3.33, 14.67),  # 6,000 an hour in the last minute, 5,000 over the day: 3.3 h left
        (12, 20_000, 0, 18.0, 0.0),  # a quiet minute: at the day's average (1,667 an hour) it lasts past midnight
        (0, 0, 0, 48.0, 0.0),  # nothing spent: nothing to forecast
        (23, 50_000, 0, 0.0, 1.0),  # spent, an hour before midnight
    ],
)
def test_the_forecast_says_when_the_days_budget_runs_out(hour, used, recent, hours, short) -> None:
    from quota import Usage, forecast

    midnight = 1_800_000_000.0 // 86400 * 86400
    ahead = forecast(Budget(100, 50_000), Usage(day_used=used, recent=recent), midnight + hour * 3600)
    assert (ahead.hours, ahead.short) == (hours, short)


def test_answers_carrying_rate_limit_headers_keep_a_request_under_gainsights_limit(
    sandbox: Sandbox, fake_clock: Any
) -> None:
    # Given a tenant whose limit is 20 calls a minute, as its answers say, and a budget of 100
    with sandbox.state.lock:
        sandbox.state.faults.quota_per_minute = 20
        sandbox.state.faults.rate_limit_headers = True
    # When a request brings 60 track events
    reply = post("/v1/batch", {"batch": [track(message_id=f"t{n}") | {"userId": f"u{n}"} for n in range(60)]})
    # Then Gainsight never answers 429: what its limit leaves no room for waits, parked
    statuses = [call.status for call in sandbox.state.calls]
    assert 429 not in statuses
    assert reply.outcomes.count("delivered") == len(sandbox.state.snapshot()["events"]) <= 20
    assert {s.code for s in stored()} == {"quota"}


def test_a_request_reserves_its_plan_in_one_write_and_leaves_each_call_at_its_start(clock: Clock) -> None:
    # Given a request planning 6 calls (a request reserves its whole plan at once)
    q = quota(clock)
    q.chunk = None
    q.expect(6)
    writes = dynamodb_requests(q.dynamodb)
    assert q.take()
    start = clock.now
    # When it makes 4 more calls 3 s later (Gainsight was slow), and one is never made
    clock.now += 3
    assert takes(q, 4) == 4
    q.release()
    # Then one write reserved them all and one more gave back the unused share and moved the late
    # calls' stamps to when they were made: the window holds every call at its own start time
    assert writes.count("PutItem") == 2
    item = boto3.client("dynamodb").get_item(TableName=EVENT_TABLE, Key=KEY)["Item"]
    assert sorted(float(t["N"]) for t in item["times"]["L"]) == [start] + [start + 3] * 4
    assert int(item["dayUsed"]["N"]) == 5
