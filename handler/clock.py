"""Time as a parameter: the one object that deadlines, backoffs, expiries and budgets run on."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Clock:
    """Monotonic seconds, a way to wait, and the wall clock (seconds since the epoch: arrival
    order, due times, the day's budget). Tests hand in a fake one, so time passes in microseconds."""

    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    wall: Callable[[], float] = time.time


REAL_CLOCK = Clock()
