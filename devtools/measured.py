"""Measured figures go into docs/ by the tool that measures them, between markers, with the date
and the machine: `make bench` into docs/benchmark.md, `make loadtest` into docs/loadtest.md."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from devtools.local import ROOT

DOCS = ROOT / "docs"


def markers(tool: str) -> tuple[str, str]:
    """The lines that enclose `make <tool>`'s section of its docs file."""
    return (
        f"<!-- make {tool}: begin (written by make {tool} with its last run; not edited by hand) -->",
        f"<!-- make {tool}: end -->",
    )


def machine() -> str:
    """What the figures were measured on, in a few words."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    system = f"{platform.system()} {platform.machine()}"
    return f"{system}, {os.cpu_count()} cores ({model}), Python {platform.python_version()}"


def stamp(today: date, host: str) -> str:
    return f"Measured {today.isoformat()} on {host}."


def markdown_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    """A Markdown table; a `|` inside a cell is escaped."""

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(header), "|" + "|".join("---" for _ in header) + "|", *(line(row) for row in rows)])


def write_section(path: Path, tool: str, body: str) -> None:
    """Replace what lies between `tool`'s markers in `path` by `body`; the rest is left as it is.

    Raises:
        ValueError: when `path` has not exactly one pair of the markers, in order.
    """
    begin, end = markers(tool)
    text = path.read_text()
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise ValueError(f"{path} needs one {begin} line and, after it, one {end} line where the figures go")
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    path.write_text(f"{head}{begin}\n{body.strip()}\n{end}{tail}")
