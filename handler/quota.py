"""One budget of Gainsight calls per tenant, shared by every instance of both functions.

Gainsight counts calls per fixed minute (and per day) in windows we cannot see, so the budget is a
sliding window: the start times of the last calls, kept in one DynamoDB item, never more than the
current rate within any `window_seconds`. That bounds every Gainsight window too, however it is
aligned. A caller reserves a few calls per write (CHUNK, or what its plan still needs), just before
it makes them, and gives back what it did not use: a reservation's start time is close to its calls'
own. A 429 pauses everyone until its Retry-After and cuts the rate by 30 %, once per window however
many calls it answered; every window without one raises it by 10 %, never above the configured
budget (rudder-server's adaptive throttler). The same item counts the day's calls against the daily
budget.
"""

from __future__ import annotations

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
CHUNK = 10  # calls reserved per write: about what a request's threads start at once
RESERVATION_SKEW_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class Budget:
    per_window: int  # calls per window (Gainsight: about 100 a minute)
    per_day: int
    window_seconds: float = 60.0

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
    ) -> None:
        self.table = table
        self.dynamodb = dynamodb
        self.budget = budget
        self.max_wait = max_wait
        self.deadline = deadline
        self.clock = clock
        self.usage = Usage()
        self._lock = threading.Lock()
        self._held = 0  # reserved and not used yet
        self._stamps: list[float] = []  # the start times we reserved, to give back the unused ones
        self._expected = 0  # calls the plan still expects to make, reserved or not
        self._denied = False  # a take found no room in time: later ones answer at once
        self._wait_until: float | None = None  # set when a take first finds no room: max_wait from then
        self._known = _decode(known) if known is not None else None  # the item as last read or written
        self._fresh = known is not None  # _known was just read: "no room" may be believed without a read

    def expect(self, calls: int) -> None:
        """The calls a plan expects to make: what later reservations are sized by."""
        with self._lock:
            self._expected = calls

    def take(self) -> bool:
        """One call's share of the budget: False when there is none now (or, waiting, before the deadline)."""
        with self._lock:
            while self._held == 0:
                if self._denied or self.clock.monotonic() >= self.deadline:
                    return False
                if self._reserve(min(CHUNK, max(1, self._expected))) == 0:
                    if self._wait_until is None:  # one limit for every take of the caller, not one each
                        self._wait_until = min(self.deadline, self.clock.monotonic() + self.max_wait)
                    if not self._wait_for_room(self._wait_until):
                        self._denied = True  # the rest of the plan is parked at once, not asked for again
                        return False
            self._held -= 1
            self._expected = max(0, self._expected - 1)
            return True

    def give_back(self) -> None:
        """A share taken and not used after all (no time was left to make the call): kept for the
        next call, or given back by `release`."""
        with self._lock:
            self._held += 1

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

    def release(self) -> None:
        """Give back what was reserved and not used."""
        with self._lock:
            unused, self._held = self._held, 0
            stamps, self._stamps = self._stamps, []
        if unused <= 0:
            return
        giving = sorted(stamps)[-unused:]

        def change(item: dict[str, Any], _: float) -> dict[str, Any]:
            times = list(item.get("times", []))
            for stamp in giving:
                if stamp in times:
                    times.remove(stamp)
            return item | {"times": times, "dayUsed": max(0, int(item.get("dayUsed", 0)) - unused)}

        self._update(change)

    # -- the item ----------------------------------------------------------------------------

    def _reserve(self, wanted: int) -> int:
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
            room = 0 if float(item.get("pausedUntil", 0)) > now else int(min(rate, budget.per_window)) - len(times)
            granted = max(0, min(wanted, room, budget.per_day - day_used))
            if not granted and rate == float(item.get("rate", -1)):
                return None  # nothing to write
            return item | {"times": times + [now] * granted, "rate": rate, "day": day, "dayUsed": day_used + granted}

        item = self._update(change)
        if granted and item is not None:
            self._held += granted
            self._stamps += [item["times"][-1]] * granted
            self.usage = Usage(day_used=int(item["dayUsed"]), rate=float(item["rate"]))
        return granted if item is not None else 0

    def _rate(self, item: dict[str, Any]) -> float:
        """The current rate, never above the configured budget (which may have been lowered since)."""
        return min(float(item.get("rate", self.budget.per_window)), float(self.budget.per_window))

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
            out[key] = int(number) if key in ("version", "day", "dayUsed") else number
    return out


def _code(error: Exception) -> str:
    response = getattr(error, "response", None)
    return str(response.get("Error", {}).get("Code")) if isinstance(response, dict) else type(error).__name__
