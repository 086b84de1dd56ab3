"""The README's commands work as written: every make target it shows exists and accepts the
variables it shows, and its `sam local invoke` lines are the ones tests/test_local_invoke.py proves."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from devtools.local_stack import invoke_lines

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_every_make_command_in_the_readme_is_a_target() -> None:
    shown = set(re.findall(r"\bmake ([a-z][a-z-]*)", README))
    assert {"deploy", "delete", "logs", "local-stack", "run", "serve", "test", "build"} <= shown
    # make -n: each one parses (with the README's variables) without running anything
    for target in sorted(shown):
        result = subprocess.run(
            ["make", "-n", target, "ENV=prod", "TAIL=1", "DRY_RUN=1", "ALLOWED_HOSTS=cs.acme.example"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
            env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable},
        )
        assert result.returncode == 0, (target, result.stderr)


def test_the_readmes_invoke_lines_are_the_proven_ones() -> None:
    for line in invoke_lines():
        assert f".venv/bin/{line}" in README


def test_the_readme_never_points_outside_the_repository() -> None:
    assert "../" not in README
