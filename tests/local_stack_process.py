"""`make local-stack` as a child process on loopback and free ports, for the operator tools' tests
(make doctor, make smoke, make events with LOCAL=1): what they talk to is what a user starts."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools.local import DEMO_WRITE_KEY

ROOT = Path(__file__).resolve().parent.parent
FREE_PORTS = ("--moto-port", "0", "--sandbox-port", "0", "--api-port", "0")
# Where each server says it listens, in the order moto, sandbox, API.
LISTENING = (r"on 127\.0\.0\.1:(\d+): the demo", r"sandbox on 127\.0\.0\.1:(\d+)", r"API on http://127\.0\.0\.1:(\d+)")


@dataclass(frozen=True)
class RunningStack:
    moto_port: int
    sandbox_port: int
    api_port: int
    output: str = ""  # what it printed until it was ready

    @property
    def args(self) -> list[str]:
        """The tools' options for this stack: LOCAL=1 with its ports."""
        ports = ["--moto-port", str(self.moto_port), "--sandbox-port", str(self.sandbox_port)]
        return ["--local", *ports, "--api-port", str(self.api_port)]

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=f"http://127.0.0.1:{self.moto_port}",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def sandbox(self, path: str, body: dict[str, Any] | None = None) -> Any:
        """A call to the sandbox's admin or state endpoint (`/_sandbox/...`)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"http://127.0.0.1:{self.sandbox_port}{path}", data=data)
        with urllib.request.urlopen(request, timeout=5) as answer:
            return json.loads(answer.read())

    def post(self, path: str, body: Any, *, write_key: str = DEMO_WRITE_KEY) -> tuple[int, Any]:
        """A sender's POST to the local API: its status and JSON answer."""
        auth = base64.b64encode(f"{write_key}:".encode()).decode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Basic {auth}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    @contextmanager
    def parameters_restored(self) -> Iterator[None]:
        """SSM as it is now, put back afterwards (a test deletes or changes a parameter)."""
        ssm = self.client("ssm")
        kept = ssm.get_parameters_by_path(Path="/", Recursive=True, WithDecryption=True)["Parameters"]
        try:
            yield
        finally:
            for parameter in kept:
                ssm.put_parameter(
                    Name=parameter["Name"], Type=parameter["Type"], Value=parameter["Value"], Overwrite=True
                )

    def empty_event_table(self) -> None:
        from devtools.local import EVENT_TABLE

        dynamodb = self.client("dynamodb")
        for item in dynamodb.scan(TableName=EVENT_TABLE, ProjectionExpression="pk, sk")["Items"]:
            dynamodb.delete_item(TableName=EVENT_TABLE, Key=item)


def run_tool(tool: Any, *argv: str, **options: Any) -> tuple[int, list[str]]:
    """An operator tool (devtools.doctor, .smoke, .events) run with these options: its exit status
    and the lines it printed."""
    lines: list[str] = []
    return tool.run(tool.parse(list(argv)), lines.append, **options), lines


@contextmanager
def local_stack() -> Iterator[RunningStack]:
    """`python -m devtools.local_stack` on 127.0.0.1 and free ports, until the block ends."""
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.local_stack", "--host", "127.0.0.1", *FREE_PORTS],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))},
    )
    try:
        assert process.stdout is not None
        output = ""
        for line in process.stdout:
            output += line
            if line.startswith("Ctrl-C to stop."):
                break
        ports = [re.search(pattern, output) for pattern in LISTENING]
        assert all(ports), output
        moto, sandbox, api = (int(match.group(1)) for match in ports if match)
        yield RunningStack(moto, sandbox, api, output)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
