"""What `make run` and `make serve` print: results, not the handler's CloudWatch output, and a ready
line only once the local API answers."""

from __future__ import annotations

import base64
import json
import os
import shlex
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _clean_env() -> dict[str, str]:
    # As make runs them: none of the tests' AWS or Powertools settings, no VERBOSE.
    return {
        k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_", "ALLOW_")) and k != "VERBOSE"
    }


def test_make_run_prints_results_without_emf_lines_or_warnings() -> None:
    # When make run runs without VERBOSE
    result = subprocess.run(
        [sys.executable, "-m", "devtools.run"],
        check=False,
        cwd=ROOT,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Then it prints each response and no EMF metric line (the cold start's included) and no warning
    assert result.returncode == 0, result.stderr
    assert "=== batch.json: HTTP 200" in result.stdout
    assert '"_aws"' not in result.stdout
    assert result.stderr == ""


def test_make_serve_says_ready_once_the_api_answers_and_its_curl_works() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.serve", "--port", "0"],
        cwd=ROOT,
        env=_clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Ctrl-C to stop."):
                break
        output = "".join(lines)
        assert "Ready. Try:" in output, output
        assert '"_aws"' not in output
        # The curl it prints, done with urllib: curl -s -u KEY: URL -H HEADER -d BODY
        [curl] = [line.strip() for line in lines if line.strip().startswith("curl ")]
        argv = shlex.split(curl)
        key, url, body = argv[argv.index("-u") + 1], argv[argv.index("-H") - 1], argv[argv.index("-d") + 1]
        request = urllib.request.Request(
            url,
            data=body.encode(),
            headers={
                "Content-Type": "application/json",
                "Authorization": "Basic " + base64.b64encode(key.encode()).decode(),
            },
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
            [result] = json.loads(answer.read())["results"]
        assert result["type"] == "track"
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
