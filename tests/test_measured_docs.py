"""Measured figures in docs/ are written by the tool that measures them: `make bench` and `make
loadtest` rewrite their section of docs/benchmark.md and docs/loadtest.md, with the date and the
machine, and leave the rest of the page alone. Tried on small synthetic results (the real runs
take minutes)."""

from __future__ import annotations

import re
import shutil
from datetime import date
from pathlib import Path

import pytest

from devtools.bench import bench_section
from devtools.loadtest import LevelReport, loadtest_section
from devtools.measured import DOCS, markers, write_section

ROOT = Path(__file__).resolve().parent.parent
DAY = date(2031, 2, 3)
HOST = "Linux x86_64, 2 cores (Test CPU), Python 3.13.0"


def _report(level: float, **figures: float) -> LevelReport:
    return LevelReport(level=level, offered=10, delivered=10, calls=9, goodput=1.0, **figures)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    for name in ("benchmark.md", "loadtest.md"):
        shutil.copy(DOCS / name, tmp_path / name)
    return tmp_path


def _outside(text: str, tool: str) -> str:
    begin, end = markers(tool)
    return text[: text.index(begin)] + text[text.index(end) :]


@pytest.mark.parametrize(("page", "tool"), [("benchmark.md", "bench"), ("loadtest.md", "loadtest")])
def test_each_docs_page_has_one_section_for_its_tool(page: str, tool: str) -> None:
    text = (DOCS / page).read_text()
    begin, end = markers(tool)
    assert text.count(begin) == text.count(end) == 1 and text.index(begin) < text.index(end)


def test_make_bench_writes_its_table_with_date_and_machine_and_nothing_else(docs: Path) -> None:
    # Given the page as committed, and a bench run's rows
    page = docs / "benchmark.md"
    before = page.read_text()
    rows = [("AWS calls per event (happy path)", "0.111", "target <= 0.1"), ("weird | cell", "1", "")]
    # When bench writes them, twice (a second run replaces the first)
    write_section(page, "bench", bench_section([("old", "0", "")], today=date(2030, 1, 1), host="old"))
    write_section(page, "bench", bench_section(rows, today=DAY, host=HOST))
    after = page.read_text()
    # Then its section holds this run's table, dated and placed, once
    assert f"Measured 2031-02-03 on {HOST}." in after and "2030-01-01" not in after
    assert "| AWS calls per event (happy path) | 0.111 | target <= 0.1 |" in after
    assert "| weird \\| cell | 1 |  |" in after  # a | in a cell does not split it
    assert after.count("| measure | value | context |") == 1
    # and the prose around it is as it was
    assert _outside(after, "bench") == _outside(before, "bench")


def test_make_loadtest_writes_its_table_targets_and_duration(docs: Path) -> None:
    page = docs / "loadtest.md"
    before = page.read_text()
    reports = [_report(1.0), _report(5.0, lost=1, api_p99=2.0)]
    section = loadtest_section(1.25, reports, 100, 509.6, today=DAY, host=HOST)
    write_section(page, "loadtest", section)
    after = page.read_text()
    assert f"Measured 2031-02-03 on {HOST}. The run took 510 s." in after
    assert "1x = 80 events per window" in after
    assert "| level" in after and "| 1x | 5x |" in after
    # a target this run missed says so
    assert "- **not met**: 0 lost, 0 duplicated, 0 dead-lettered at every level" in after
    assert "- **not met**: API p99 < 1.5 s at 5x" in after
    assert _outside(after, "loadtest") == _outside(before, "loadtest")


def test_a_page_without_its_markers_is_refused_not_overwritten(tmp_path: Path) -> None:
    page = tmp_path / "benchmark.md"
    page.write_text("# Benchmark\n\nprose a reader wrote\n")
    with pytest.raises(ValueError, match="make bench: begin"):
        write_section(page, "bench", "table")
    assert page.read_text() == "# Benchmark\n\nprose a reader wrote\n"


def test_the_readmes_loadtest_duration_is_the_recorded_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    recorded = re.search(r"The run took (\d+) s\.", (DOCS / "loadtest.md").read_text())
    stated = re.search(r"`make loadtest`\s+\(about ([\d.]+) minutes", readme)
    assert recorded and stated
    assert abs(float(stated[1]) - int(recorded[1]) / 60) <= 0.5
