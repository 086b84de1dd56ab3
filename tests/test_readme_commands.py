"""The README's and docs' commands work as written: every make target they show exists and accepts
the variables they show, and the `sam local invoke` lines are the ones tests/test_local_invoke.py
proves."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from devtools.local_stack import invoke_lines

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DOCS = {path.name: path.read_text() for path in sorted((ROOT / "docs").glob("*.md"))}


def test_every_make_command_in_the_readme_and_docs_is_a_target() -> None:
    shown = set(re.findall(r"\bmake ([a-z][a-z-]*)", README + "".join(DOCS.values())))
    assert {"deploy", "delete", "logs", "local-stack", "run", "serve", "test", "build"} <= shown
    # each is a rule of the Makefile (not a file that happens to exist, such as events/)
    rules = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), flags=re.MULTILINE))
    assert not shown - rules, shown - rules
    # make -n: each one parses (with the variables shown) without running anything
    refused = {}
    for target in sorted(shown):
        result = subprocess.run(
            ["make", "-n", target, "ENV=prod", "TAIL=1", "DRY_RUN=1", "ALLOWED_HOSTS=cs.acme.example"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
            env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable},
        )
        if result.returncode != 0:
            refused[target] = result.stderr.strip()
    assert not refused


def test_the_readmes_first_two_commands_are_run_and_test() -> None:
    commands = re.findall(r"^make ([a-z][a-z-]*)", README, flags=re.MULTILINE)
    assert commands[:2] == ["run", "test"]


def test_the_documented_invoke_lines_are_the_proven_ones() -> None:
    for line in invoke_lines():
        assert line in DOCS["local.md"]


def test_make_serves_curl_example_says_to_wait_for_ready() -> None:
    # The curl only answers once make serve is up; the README says when that is.
    before_curl = README[: README.index("curl -s -u demo-write-key:")]
    assert "`Ready.`" in before_curl[before_curl.rindex("make serve") :]


def test_the_readme_and_docs_never_point_outside_the_repository() -> None:
    for name, text in {"README.md": README, **DOCS}.items():
        assert "../" not in text, name
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
            if "://" in target:
                continue
            base = ROOT if name == "README.md" else ROOT / "docs"
            assert (base / target).exists(), (name, target)
