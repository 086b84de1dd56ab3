"""One budget of Gainsight calls per tenant, shared by every instance of both functions.

Gainsight counts calls per fixed minute (and per day) in windows we cannot see, so the budget is a
sliding window: the start times of the last calls, kept in one DynamoDB item, never more than the
current rate within any `window_seconds`. That bounds every Gainsight window too, however it is
aligned. A caller reserves what its plan still needs of each kind of call in one write (a drain run,
which may wait for room as long as it lasts, CHUNK at a time), just before it makes them; when it is
done it gives back what it did not use and moves the stamps of calls made more than
RESERVATION_SKEW_SECONDS after their reservation to when they were made, in one more write. So the
window holds each call at its own start time, for two writes a request. A 429 pauses everyone until
its Retry-After and cuts the rate by 30 %, once per window however many calls it answered; every
window without one raises it by 10 %, never above the configured budget (rudder-server's adaptive
throttler); Gainsight's x-ratelimit-* answers lower it further (`calibrate`). The same item counts
the day's calls against the daily budget, of which a reserve (`Budget.state_reserve`) is kept for
people and companies: telemetry calls (Events Framework publishes, Timeline inserts) take no share
of it. The reserve shrinks evenly to 0 by midnight UTC: what people and companies did not need by
then is spent on telemetry.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clock import REAL_CLOCK, Clock

from observability import logger

KEY = {"pk": {"S": "quota"}, "sk": {"S": "calls"}}
# A 429 without Retry-After says the quota is spent, not for how long: pause briefly and let the
# lower rate and the sliding window do the rest.
DEFAULT_PAUSE_SECONDS = 2.0
DAY_SECONDS = 86400
MIN_RATE_SHARE = 0.1  # the rate never adapts below a tenth of the budget
CHUNK = 10  # calls a drain run reserves per write: about what its threads start at once
RESERVATION_SKEW_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class Budget:
    per_window: int  # calls per window (Gainsight: about 100 a minute)
    per_day: int
    window_seconds: float = 60.0
    state_reserve: float = 0.0  # share of per_day kept for state calls at the start of a UTC day

    def day_limit(self, now: float, *, telemetry: bool) -> int:
        """How many of the day's calls may be spent by `now` on this kind of call: all of them for
        state, all but what is left of the reserve for telemetry."""
        if not telemetry:
            return self.per_day
        left_of_day = (DAY_SECONDS - now % DAY_SECONDS) / DAY_SECONDS
        return self.per_day - math.ceil(self.per_day * self.state_reserve * left_of_day)

    @property
    def span(self) -> float:
        """How long a reserved call holds its place: the window, plus the time its call may start
        after the reservation's stamp (a DynamoDB round trip), so no Gainsight window sees more."""
        return self.window_seconds + RESERVATION_SKEW_SECONDS


@dataclass
class Usage:
    """What the budget looked like after the last reservation, for the metrics."""

    day_used: int = 0
    rate: float = 0.0
    recent: int = 0  # calls started within the last window, by every instance


@dataclass(frozen=True, slots=True)
class Forecast:
    """When the day's budget runs out at the current rate."""

    hours: float  # until it is spent (FORECAST_HORIZON_HOURS when nothing is being spent)
    short: float  # hours of the UTC day left after it is spent (0: it lasts until midnight)


FORECAST_HORIZON_HOURS = 48.0


def forecast(budget: Budget, usage: Usage, now: float) -> Forecast:
    """From the day's spend so far and the last window's: the higher of the day's average rate and
    the last window's, so a busy spell is seen at once and a quiet minute does not hide a busy day."""
    into_day = now % DAY_SECONDS
    per_hour = max(
        usage.day_used * 3600 / max(into_day, budget.window_seconds),
        usage.recent * 3600 / budget.window_seconds,
    )
    left = max(0, budget.per_day - usage.day_used)
    hours = min(FORECAST_HORIZON_HOURS, left / per_hour) if per_hour else FORECAST_HORIZON_HOURS
    return Forecast(round(hours, 2), round(max(0.0, (DAY_SECONDS - into_day) / 3600 - hours), 2))


class SharedQuota:
    """The tenant's budget in the event table. Thread-safe: a request's calls share one instance.

    `max_wait`: the seconds all `take`s together may wait for room, from the first that found none,
    before the deadline: a request waits briefly at most, and parks what it cannot send then
    instead of keeping its sender waiting; the drain waits as long as its run lasts (math.inf).
    `known`: the item as the caller read it moments ago (a request reads it with everything else it
    looks up; {} when there is none yet): the first reservation then writes without a read of its own.
    """

    def __init__(
        self,
        table: str,
        dynamodb: Any,
        budget: Budget,
        *,
        max_wait: float,
        deadline: float,
        clock: Clock = REAL_CLOCK,
        known: dict[str, Any] | None = None,
        chunk: int | None = None,
    ) -> None:
        self.table = table
        self.chunk = chunk  # calls reserved per write at most; None: what the plan still needs
        self.dynamodb = dynamodb
        self.budget = budget
        self.max_wait = max_wait
        self.deadline = deadline
        self.clock = clock
        self.usage = Usage()
        self._lock = threading.Lock()
        self._held = {False: 0, True: 0}  # reserved and not used yet, for state and for telemetry calls
        self._stamps: list[float] = []  # the start times we reserved, in the order they are taken
        self._made: list[float] = []  # when each share taken was taken (its call's start)
        self._expected = {False: 0, True: 0}  # calls of each kind the plan still expects, reserved or not
        self._denied = {False: False, True: False}  # a take found no room in time: later ones answer at once
        self.reserve_reached = False  # a telemetry take found only the state reserve left
        self._wait_until: float | None = None  # set when a take first finds no room: max_wait from then
        self._known = _decode(known) if known is not None else None  # the item as last read or written
        self._fresh = known is not None  # _known was just read: "no room" may be believed without a read

    def expect(self, calls: int, telemetry: int = 0) -> None:
        """The calls a plan expects to make, `telemetry` of them telemetry: what reservations are sized by."""
        with self._lock:
            self._expected = {False: max(0, calls - telemetry), True: telemetry}

    def take(self, *, telemetry: bool = False) -> bool:
        """One call's share of the budget: False when there is none now (or, waiting, before the
        deadline), or, for a `telemetry` call, when only the state reserve is left (`reserve_reached`)."""
        with self._lock:
            while self._held[telemetry] == 0:
                if self._denied[telemetry] or self.clock.monotonic() >= self.deadline:
                    return False
                wanted = max(1, self._expected[telemetry])
                if self._reserve(min(wanted, self.chunk or wanted), telemetry=telemetry) == 0:
                    if self.reserve_reached and telemetry:
                        self._denied[True] = True  # nothing frees up for telemetry by waiting
                        return False
                    if self._wait_until is None:  # one limit for every take of the caller, not one each
                        self._wait_until = min(self.deadline, self.clock.monotonic() + self.max_wait)
                    if not self._wait_for_room(self._wait_until):
                        # The rest of the plan is parked at once, not asked for again.
                        self._denied[telemetry] = self._denied[True] = True
                        return False
            self._held[telemetry] -= 1
            self._expected[telemetry] = max(0, self._expected[telemetry] - 1)
            self._made.append(self.clock.wall())
            return True

    def give_back(self, *, telemetry: bool = False) -> None:
        """A share taken and not used after all (no time was left to make the call): kept for the
        next call, or given back by `release`."""
        with self._lock:
            self._held[telemetry] += 1
            self._made.pop()

    def throttled(self, retry_after: float | None) -> None:
        """Gainsight answered 429: everyone pauses, and the rate comes down by 30 %."""
        pause = retry_after if retry_after is not None else min(DEFAULT_PAUSE_SECONDS, self.budget.window_seconds)

        def change(item: dict[str, Any], now: float) -> dict[str, Any]:
            paused = item | {"pausedUntil": max(float(item.get("pausedUntil", 0)), now + pause)}
            if now - float(item.get("throttledAt", 0)) <= self.budget.window_seconds:
                return paused  # the same overrun, answered to several calls: the rate comes down once
            rate = max(self.budget.per_window * MIN_RATE_SHARE, self._rate(item) * 0.7)
            return paused | {"rate": rate, "throttledAt": now}

        self._update(change)

    def calibrate(self, limit: int | None, remaining: int | None, reset_seconds: float | None) -> None:
        """What Gainsight's answer said of its own limit (x-ratelimit-* headers): the budget never
        plans above it. A `limit` lower than the configured budget caps everyone's rate for the rest
        of the UTC day; `remaining` 0 pauses everyone until `reset_seconds` (or briefly). The item
        is written only when this changes what may be planned: not once per answer."""
        now = self.clock.wall()
        known = self._known or {}
        lower = limit is not None and limit < min(self.budget.per_window, self._ceiling(known, now))
        spent = remaining is not None and remaining <= 0
        if not (lower or spent):
            return
        if reset_seconds is not None and reset_seconds > DAY_SECONDS:  # a time, not seconds from now
            reset_seconds = reset_seconds - now
        pause = DEFAULT_PAUSE_SECONDS if reset_seconds is None else reset_seconds
        pause = min(max(pause, 0.0), self.budget.window_seconds)  # never longer than the window

        dropped: list[float] = []

        def change(item: dict[str, Any], now: float) -> dict[str, Any] | None:
            nonlocal dropped
            changed = dict(item)
            if lower and limit is not None and limit < self._ceiling(item, now):
                changed |= {"ceiling": float(limit), "ceilingDay": int(now // DAY_SECONDS)}
            if spent and float(item.get("pausedUntil", 0)) < now + pause - 0.5:
                changed["pausedUntil"] = now + pause
            # Shares this instance holds and has not used: those the new limit has no room for (all
            # of them while Gainsight says none is left) are given back, not spent into a 429.
            times = [t for t in item.get("times", []) if t > now - self.budget.span]
            over = len(times) - int(min(self.budget.per_window, self._ceiling(changed, now)))
            drop = len(unused) if spent else max(0, min(len(unused), over))
            dropped = unused[len(unused) - drop :]
            if dropped:
                left = list(item.get("times", []))
                for stamp in dropped:
                    if stamp in left:
                        left.remove(stamp)
                changed |= {"times": left, "dayUsed": max(0, int(item.get("dayUsed", 0)) - len(dropped))}
            return changed if changed != item else None

        with self._lock:  # no share is taken meanwhile
            unused = self._stamps[len(self._made) :]
            self._update(change)
            for stamp in dropped:
                self._stamps.remove(stamp)
            for kind in (True, False):  # telemetry's first
                taken = min(self._held[kind], len(dropped))
                self._held[kind] -= taken
                dropped = dropped[taken:]

    def _ceiling(self, item: dict[str, Any], now: float) -> float:
        """What Gainsight's headers said its limit per window is, today (inf: nothing said)."""
        if int(item.get("ceilingDay", -1)) != int(now // DAY_SECONDS):
            return math.inf
        return float(item.get("ceiling", math.inf))

    def release(self) -> None:
        """Give back what was reserved and not used, and move the stamps of calls made well after
        their reservation to when they were made (one write; none when there is neither)."""
        with self._lock:
            self._held = {False: 0, True: 0}
            stamps, self._stamps = sorted(self._stamps), []
            made, self._made = sorted(self._made), []
        # Shares are taken in the order they were reserved: the n-th call made used the n-th stamp.
        moved = [(stamp, at) for stamp, at in zip(stamps, made, strict=False) if at - stamp > RESERVATION_SKEW_SECONDS]
        giving = stamps[len(made) :]
        if not giving and not moved:
            return

        def change(item: dict[str, Any], _: float) -> dict[str, Any]:
            times = list(item.get("times", []))
            for stamp in giving + [stamp for stamp, _ in moved]:
                if stamp in times:
                    times.remove(stamp)
            times += [at for _, at in moved]
            return item | {"times": times, "dayUsed": max(0, int(item.get("dayUsed", 0)) - len(giving))}

        self._update(change)

    # -- the item ----------------------------------------------------------------------------

    def _reserve(self, wanted: int, *, telemetry: bool = False) -> int:
        granted = 0

        def change(item: dict[str, Any], now: float) -> dict[str, Any] | None:
            nonlocal granted
            window, budget = self.budget.window_seconds, self.budget
            times = [t for t in item.get("times", []) if t > now - budget.span]
            rate = float(item.get("rate", budget.per_window))
            # A window without a 429 raises the rate by 10 %, up to the budget.
            clean = now - float(item.get("throttledAt", 0)) > window and now - float(item.get("raisedAt", 0)) > window
            if rate < budget.per_window and clean:
                rate = min(float(budget.per_window), rate * 1.1)
                item = item | {"raisedAt": now}
            day = int(now // DAY_SECONDS)
            day_used = int(item.get("dayUsed", 0)) if int(item.get("day", day)) == day else 0
            ceiling = min(float(budget.per_window), self._ceiling(item, now))
            room = 0 if float(item.get("pausedUntil", 0)) > now else int(min(rate, ceiling)) - len(times)
            day_left = budget.day_limit(now, telemetry=telemetry) - day_used
            self.reserve_reached = self.reserve_reached or (telemetry and day_left <= 0 < budget.per_day - day_used)
            granted = max(0, min(wanted, room, day_left))
            self.usage = Usage(day_used=day_used + granted, rate=rate, recent=len(times) + granted)
            if not granted and rate == float(item.get("rate", -1)):
                return None  # nothing to write
            return item | {"times": times + [now] * granted, "rate": rate, "day": day, "dayUsed": day_used + granted}

        item = self._update(change)
        if granted and item is not None:
            self._held[telemetry] += granted
            self._stamps += [item["times"][-1]] * granted
        return granted if item is not None else 0

    def _rate(self, item: dict[str, Any]) -> float:
        """The current rate, never above the configured budget (which may have been lowered since)
        nor above what Gainsight's headers said today."""
        ceiling = self._ceiling(item, self.clock.wall())
        return min(float(item.get("rate", self.budget.per_window)), float(self.budget.per_window), ceiling)

    def _wait_for_room(self, until: float) -> bool:
        """Sleep until the oldest call leaves the window, if that is before `until`."""
        item = self._known if self._known is not None else self._read()  # as the failed reservation just saw it
        now = self.clock.wall()
        if int(item.get("day", -1)) == int(now // DAY_SECONDS) and int(item.get("dayUsed", 0)) >= self.budget.per_day:
            return False  # the day's budget is spent: nothing frees up before midnight UTC
        times = sorted(t for t in item.get("times", []) if t > now - self.budget.span)
        over = len(times) - int(self._rate(item))  # calls to leave before one fits
        free_at = max(float(item.get("pausedUntil", 0)), times[over] + self.budget.span if over >= 0 else now)
        delay = max(0.05, free_at - now)
        if self.clock.monotonic() + delay > until:
            return False
        self.clock.sleep(delay)
        return True

    def _update(self, change: Callable[[dict[str, Any], float], dict[str, Any] | None]) -> dict[str, Any] | None:
        """Change the item and write it, conditional on nobody having written it meanwhile. The
        change starts from the item as this instance last saw it, and a write that finds it changed
        answers with the current one: a write needs no read before it. Deciding to write nothing
        (`change` returns None) takes a fresh read."""
        item, fresh = self._known, self._fresh
        self._fresh = False
        for attempt in range(8):
            if item is None:
                item, fresh = self._read(), True
            version = int(item.get("version", 0))
            changed = change(dict(item), self.clock.wall())
            if changed is None:
                if not fresh:
                    item = None  # what this instance saw may be stale: read it before deciding
                    continue
                self._known = item
                return item
            new = changed | {"version": version + 1}
            try:
                self.dynamodb.put_item(
                    TableName=self.table,
                    Item=KEY | _encode(new),
                    ConditionExpression="attribute_not_exists(version) OR version = :v",
                    ExpressionAttributeValues={":v": {"N": str(version)}},
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                self._known = new
                return new
            except Exception as error:  # a conflict, throttling: try again; anything else: no budget now
                if _code(error) not in ("ConditionalCheckFailedException", "ProvisionedThroughputExceededException",
                                        "ThrottlingException", "InternalServerError"):  # fmt: skip
                    # Events wait as `quota` while this lasts: say why (AccessDenied, a missing table).
                    logger.error("Gainsight budget could not be written", extra={"reason": _code(error)})
                    break
                current = getattr(error, "response", {}).get("Item")
                item, fresh = (_decode(current), True) if current else (None, False)
                self.clock.sleep(min(0.2, 0.01 * 2**attempt) * random.random())
        self._known = None
        return None

    def _read(self) -> dict[str, Any]:
        try:
            reply = self.dynamodb.get_item(TableName=self.table, Key=KEY, ConsistentRead=True)
        except Exception as error:  # no answer is no budget: the caller parks or waits
            logger.error("Gainsight budget could not be read", extra={"reason": _code(error)})
            return {"pausedUntil": self.clock.wall() + 1.0, "version": -1}
        return _decode(reply.get("Item", {}))


def _encode(item: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in item.items():
        if key in ("pk", "sk"):
            continue
        if isinstance(value, list):
            out[key] = {"L": [{"N": repr(float(v))} for v in value]}
        else:
            out[key] = {"N": repr(float(value)) if isinstance(value, float) else str(value)}
    return out


def _decode(item: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in item.items():
        if "L" in value:
            out[key] = [float(v["N"]) for v in value["L"]]
        elif "N" in value:
            number = float(value["N"])
            out[key] = int(number) if key in ("version", "day", "dayUsed", "ceilingDay") else number
    return out


def _code(error: Exception) -> str:
    response = getattr(error, "response", None)
    return str(response.get("Error", {}).get("Code")) if isinstance(response, dict) else type(error).__name__
