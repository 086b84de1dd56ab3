"""`make local-stack`: what `sam local invoke --env-vars local/env.json` talks to, where Docker exists,
and what `make doctor`, `make smoke` and `make events` talk to with LOCAL=1.

moto (SSM seeded with the demo config and secrets, the event table) on port 5005 and the Gainsight
sandbox on port 4010, both on 0.0.0.0 so that a Lambda container reaches them as
host.docker.internal — every interface of this machine, so only for this explicit target; everything
else listens on 127.0.0.1. The API (the handler served as API Gateway would, devtools/serve.py) on
127.0.0.1:3000, reading a copy of the config that names the sandbox as this machine reaches it
(HOST_CONFIG_PARAM); no drain runs (`sam local invoke DrainFunction` is one). Runs until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import threading
from contextlib import ExitStack
from pathlib import Path

from devtools.local import DEMO_WRITE_KEY, EVENT_TABLE, PARAMS, ROOT

MOTO_PORT = 5005
SANDBOX_PORT = 4010
API_PORT = 3000
# The destination config as this machine's API reaches the sandbox (127.0.0.1), beside the one a
# container reads (host.docker.internal).
HOST_CONFIG_PARAM = "/gainsight-destination/local/config-host"
CONTAINER_HOST = "host.docker.internal"  # the machine running Docker, as a container sees it
ENV_VARS_FILE = ROOT / "local" / "env.json"


def container_domain(port: int = SANDBOX_PORT) -> str:
    """The sandbox as a Lambda container reaches it: the destination config's domain."""
    return f"http://{CONTAINER_HOST}:{port}"


def container_env(function: str) -> dict[str, str]:
    """Every variable the template sets on `function`, for a container talking to the local stack
    (what local/env.json holds)."""
    common = {
        "POWERTOOLS_SERVICE_NAME": "gainsight-destination-local",
        "POWERTOOLS_METRICS_NAMESPACE": "GainsightDestination",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "POWERTOOLS_PARAMETERS_MAX_AGE": "300",
        **PARAMS,
        "GAINSIGHT_CONCURRENCY": "8",
        # The sandbox speaks plain http and is not loopback from inside the container: it must be
        # allow-listed with its port, and allowed as a local run (handler/config.py).
        "GAINSIGHT_ALLOWED_HOSTS": f"{CONTAINER_HOST}:{SANDBOX_PORT}",
        "ALLOW_LOOPBACK_GAINSIGHT": "true",
        "EVENT_TABLE": EVENT_TABLE,
        "QUOTA_PER_MINUTE": "100",
        "QUOTA_PER_DAY": "50000",
        "STATE_RESERVE_PERCENT": "20",
        "TELEMETRY_MAX_AGE_HOURS": "72",
        "DEDUP_WINDOW_SECONDS": "86400",
        "REJECTED_RETENTION_DAYS": "14",
        "AWS_ENDPOINT_URL": f"http://{CONTAINER_HOST}:{MOTO_PORT}",
    }
    own = {
        "DestinationFunction": {"DELIVERY_BUDGET_SECONDS": "8"},
        "DrainFunction": {"DRAIN_BUDGET_SECONDS": "50", "MAX_ATTEMPTS": "20"},
    }
    return common | own[function]


def env_vars_file() -> dict[str, dict[str, str]]:
    return {function: container_env(function) for function in ("DestinationFunction", "DrainFunction")}


def invoke_lines(env_file: Path = ENV_VARS_FILE) -> list[str]:
    """The documented invoke lines (docs/local.md), run from the repository's root with SAM's
    telemetry off, as the Makefile runs sam. host-gateway: Linux Docker does not resolve
    host.docker.internal by itself; Docker Desktop does, and accepts the mapping too."""
    common = f"--env-vars {env_file.relative_to(ROOT)} --add-host {CONTAINER_HOST}:host-gateway"
    sam = "SAM_CLI_TELEMETRY=0 .venv/bin/sam local invoke"
    return [
        f"{sam} DestinationFunction -e events/batch.json {common}",
        f"{sam} DrainFunction -e events/drain/schedule.json {common}",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0", help="interface to listen on (default: every one)")
    parser.add_argument("--moto-port", type=int, default=MOTO_PORT)
    parser.add_argument("--sandbox-port", type=int, default=SANDBOX_PORT)
    parser.add_argument("--api-port", type=int, default=API_PORT, help="the API, on 127.0.0.1")
    args = parser.parse_args(argv)

    import os

    from devtools.gainsight_sandbox import Sandbox
    from devtools.local import moto_aws, quiet_powertools, seed_parameters
    from devtools.serve import LocalApi

    if not os.environ.get("VERBOSE"):
        quiet_powertools()
    sandbox_server = Sandbox(host=args.host, port=args.sandbox_port)
    with sandbox_server as sandbox, moto_aws(host=args.host, port=args.moto_port) as aws, ExitStack() as stack:
        sandbox_port = sandbox.server.server_address[1]
        moto_port = int(aws.endpoint.rsplit(":", 1)[1])
        # The config the container reads names the sandbox as the container sees it.
        seed_parameters(container_domain(sandbox_port))
        seed_host_config(sandbox.url)
        os.environ["DESTINATION_CONFIG_PARAM"] = HOST_CONFIG_PARAM  # for this process's API
        stack.enter_context(api := LocalApi(args.api_port))
        print(f"moto (SSM, DynamoDB) on {args.host}:{moto_port}: the demo config, write key {DEMO_WRITE_KEY!r},")
        print(f"  the event table {EVENT_TABLE}")
        print(f"Gainsight sandbox on {args.host}:{sandbox_port}: what it received at {sandbox.url}/_sandbox/state")
        print(f"API on {api.url} (write key {DEMO_WRITE_KEY!r}): make smoke LOCAL=1, make events LOCAL=1")
        print("Ready. In another terminal, where Docker runs (docs/local.md, Local invoke with Docker):")
        for line in invoke_lines():
            print(f"  {line}")
        print("Ctrl-C to stop.", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print(json.dumps(sandbox.state.snapshot()["calls"]))


def seed_host_config(sandbox_url: str) -> None:
    """The demo config naming the sandbox at `sandbox_url`, in HOST_CONFIG_PARAM: what the local API reads."""
    import boto3

    from devtools.local import demo_config

    boto3.client("ssm").put_parameter(
        Name=HOST_CONFIG_PARAM, Type="String", Value=json.dumps(demo_config(sandbox_url)), Overwrite=True
    )


def write_env_vars_file(path: Path = ENV_VARS_FILE) -> None:
    """Write local/env.json (kept in the repository; a test checks it against the template)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(env_vars_file(), indent=2) + "\n")


if __name__ == "__main__":
    main()
