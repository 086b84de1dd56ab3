"""One budget of Gainsight calls per tenant, shared by every instance of both functions.

Gainsight counts calls per fixed minute (and per day) in windows we cannot see, so the budget is a
sliding window: the start times of the last calls, kept in one DynamoDB item, never more than the
current rate within any `window_seconds`. That bounds every Gainsight window too, however it is
aligned. A caller reserves several calls per write (what its plan needs), uses them, and gives back
what it did not use. A 429 pauses everyone until its Retry-After and cuts the rate by 30 %; every
window without one raises it by 10 %, never above the configured budget (rudder-server's adaptive
throttler). The same item counts the day's calls against the daily budget.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

KEY = {"pk": {"S": "quota"}, "sk": {"S": "calls"}}
# A 429 without Retry-After says the quota is spent, not for how long: pause briefly and let the
# lower rate and the sliding window do the rest.
DEFAULT_PAUSE_SECONDS = 2.0
DAY_SECONDS = 86400
MIN_RATE_SHARE = 0.1  # the rate never adapts below a tenth of the budget


@dataclass(frozen=True, slots=True)
class Budget:
    per_window: int  # calls per window (Gainsight: about 100 a minute)
    per_day: int
    window_seconds: float = 60.0


@dataclass
class Usage:
    """What the budget looked like after the last reservation, for the metrics."""

    day_used: int = 0
    rate: float = 0.0


class SharedQuota:
    """The tenant's budget in the event table. Thread-safe: a request's calls share one instance.

    `wait`: whether `take` may wait for the budget (the drain) or answers at once (a request, which
    parks what it cannot send now instead of keeping its sender waiting).
    """

    def __init__(
        self,
        table: str,
        dynamodb: Any,
        budget: Budget,
        *,
        wait: bool,
        deadline: float,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.table = table
        self.dynamodb = dynamodb
        self.budget = budget
        self.wait = wait
        self.deadline = deadline
        self.clock = clock
        self.monotonic = monotonic
        self.sleep = sleep
        self.usage = Usage()
        self._lock = threading.Lock()
        self._held = 0  # reserved and not used yet
        self._stamps: list[float] = []  # the start times we reserved, to give back the unused ones

    def expect(self, calls: int) -> None:
        """Reserve what a plan needs in one write (as much of it as the budget has now)."""
        with self._lock:
            if calls > self._held:
                self._reserve(calls - self._held)

    def take(self) -> bool:
        """One call's share of the budget: False when there is none now (or, waiting, before the deadline)."""
        with self._lock:
            while self._held == 0:
                if self._reserve(5) == 0 and not self._wait_for_room():
                    return False
            self._held -= 1
            return True

    def throttled(self, retry_after: float | None) -> None:
        """Gainsight answered 429: everyone pauses, and the rate comes down by 30 %."""
        pause = retry_after if retry_after is not None else min(DEFAULT_PAUSE_SECONDS, self.budget.window_seconds)

        def change(item: dict[str, Any], now: float) -> dict[str, Any]:
            rate = max(self.budget.per_window * MIN_RATE_SHARE, float(item.get("rate", self.budget.per_window)) * 0.7)
            return item | {"rate": rate, "pausedUntil": max(float(item.get("pausedUntil", 0)), now + pause),
                           "throttledAt": now}  # fmt: skip

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

        def change(item: dict[str, Any], now: float) -> dict[str, Any]:
            nonlocal granted
            window, budget = self.budget.window_seconds, self.budget
            times = [t for t in item.get("times", []) if t > now - window]
            rate = float(item.get("rate", budget.per_window))
            # A window without a 429 raises the rate by 10 %, up to the budget.
            clean = now - float(item.get("throttledAt", 0)) > window and now - float(item.get("raisedAt", 0)) > window
            if rate < budget.per_window and clean:
                rate = min(float(budget.per_window), rate * 1.1)
                item = item | {"raisedAt": now}
            day = int(now // DAY_SECONDS)
            day_used = int(item.get("dayUsed", 0)) if int(item.get("day", day)) == day else 0
            room = 0 if float(item.get("pausedUntil", 0)) > now else int(rate) - len(times)
            granted = max(0, min(wanted, room, budget.per_day - day_used))
            return item | {"times": times + [now] * granted, "rate": rate, "day": day, "dayUsed": day_used + granted}

        item = self._update(change)
        if granted and item is not None:
            self._held += granted
            self._stamps += [item["times"][-1]] * granted
            self.usage = Usage(day_used=int(item["dayUsed"]), rate=float(item["rate"]))
        return granted if item is not None else 0

    def _wait_for_room(self) -> bool:
        """Sleep until the oldest call leaves the window, if waiting is allowed and time is left."""
        if not self.wait:
            return False
        item = self._read()
        now = self.clock()
        if int(item.get("day", -1)) == int(now // DAY_SECONDS) and int(item.get("dayUsed", 0)) >= self.budget.per_day:
            return False  # the day's budget is spent: nothing frees up before midnight UTC
        times = [t for t in item.get("times", []) if t > now - self.budget.window_seconds]
        free_at = max(float(item.get("pausedUntil", 0)), (min(times) + self.budget.window_seconds) if times else now)
        delay = max(0.05, free_at - now)
        if self.monotonic() + delay >= self.deadline:
            return False
        self.sleep(delay)
        return True

    def _update(self, change: Callable[[dict[str, Any], float], dict[str, Any]]) -> dict[str, Any] | None:
        """Read, change and write the item, conditional on nobody having written it meanwhile."""
        for attempt in range(8):
            item = self._read()
            version = int(item.get("version", 0))
            new = change(dict(item), self.clock()) | {"version": version + 1}
            try:
                self.dynamodb.put_item(
                    TableName=self.table,
                    Item=KEY | _encode(new),
                    ConditionExpression="attribute_not_exists(version) OR version = :v",
                    ExpressionAttributeValues={":v": {"N": str(version)}},
                )
                return new
            except Exception as error:  # a conflict, throttling: try again; anything else: no budget now
                if _code(error) not in ("ConditionalCheckFailedException", "ProvisionedThroughputExceededException",
                                        "ThrottlingException", "InternalServerError"):  # fmt: skip
                    return None
                self.sleep(min(0.2, 0.01 * 2**attempt) * random.random())
        return None

    def _read(self) -> dict[str, Any]:
        try:
            reply = self.dynamodb.get_item(TableName=self.table, Key=KEY, ConsistentRead=True)
        except Exception:  # no answer is no budget: the caller parks or waits
            return {"pausedUntil": self.clock() + 1.0, "version": -1}
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
