"""What a user expects of a repository: a license, a changelog whose latest release is the version
the functions log when they start, and `make help` (the default target) listing every target."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from version import __version__

ROOT = Path(__file__).resolve().parent.parent


def _make(*args: str) -> str:
    result = subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable},
    )
    return result.stdout


def test_the_license_is_apache_2() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text  # the full text, not a pointer to it
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"] == "Apache-2.0"


def test_the_version_is_written_once_and_is_the_changelogs_latest_release() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    # pyproject reads it from handler/version.py (the Lambda bundle is handler/ only)
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "handler.version.__version__"}
    changelog = (ROOT / "CHANGELOG.md").read_text()
    releases = re.findall(r"^## \[([^\]]+)\]", changelog, flags=re.MULTILINE)
    assert releases[0] == "Unreleased"
    assert releases[1] == __version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)


def test_each_function_logs_its_version_once_when_a_container_starts() -> None:
    # Given a fresh interpreter, as Lambda starts a container with handler/ as its code
    program = "import app, drain_app"
    # When both entry points are imported (nothing else needed: no AWS, no network)
    result = subprocess.run(
        [sys.executable, "-c", program],
        cwd=ROOT / "handler",
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "POWERTOOLS_SERVICE_NAME": "gainsight-destination"},
    )
    # Then the cold start's log says which release runs, once
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    starts = [line for line in lines if line["message"] == "cold start"]
    assert [(s["level"], s["version"]) for s in starts] == [("INFO", __version__)]


def test_make_help_is_the_default_and_lists_every_target_with_one_line() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, flags=re.MULTILINE))
    phony = set(re.findall(r"^\.PHONY: (.*)$", makefile, flags=re.MULTILINE)[0].split())
    assert targets == phony, targets ^ phony
    # When `make` runs with no target
    listed = _make()
    # Then it is `make help`: one line per target, each saying what it does
    assert listed == _make("help")
    rows = dict(re.findall(r"^  make (\S+)\s+(\S.*)$", listed, flags=re.MULTILINE))
    assert set(rows) == targets, targets - set(rows)
    assert len(listed.splitlines()) == len(targets)
