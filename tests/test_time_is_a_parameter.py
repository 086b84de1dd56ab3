"""House rule 13: tests of time run on a clock they are handed (tests.helpers.FakeClock), never on
the machine's, so they pass on a busy machine. Real timing belongs in the benchmark (`make bench`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

TESTS = sorted(path for path in Path(__file__).parent.glob("test_*.py") if path.name != Path(__file__).name)
# Measuring elapsed real time (`time.monotonic() - started`) or waiting for it to pass (`time.sleep`).
REAL_TIME = re.compile(
    r"\btime\.(?:monotonic|perf_counter|time)(?:_ns)?\(\)\s*-|-\s*time\.(?:monotonic|perf_counter|time)(?:_ns)?\(\)|\btime\.sleep\("
)


@pytest.mark.parametrize("path", TESTS, ids=lambda path: path.name)
def test_no_test_measures_or_waits_for_real_time(path: Path) -> None:
    offending = [
        f"{path.name}:{number}: {line.strip()}"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if REAL_TIME.search(line)
    ]
    assert offending == [], "use the fake_clock fixture or tests.helpers.FakeClock instead"


def test_the_check_catches_what_it_is_for() -> None:
    assert REAL_TIME.search("    assert time.monotonic() - started < 4.3")
    assert REAL_TIME.search("elapsed = -time.time() + t0")
    assert REAL_TIME.search("    time.sleep(0.06)")
    assert not REAL_TIME.search("deadline = time.monotonic() + 5")
