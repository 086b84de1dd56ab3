"""`make run`: the main job on local defaults. Starts the Gainsight sandbox and moto (SSM seeded
with demo settings, companies matched by their groupId; the event store table), invokes the handler
with every events/*.json as `sam local invoke -e` would, runs the drain of parked events, prints
each response and what Gainsight received, then stops everything."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from devtools.gainsight_sandbox import Sandbox
from devtools.local import (
    DEMO_COMPANY_KEY,
    ROOT,
    demo_config,
    drain,
    invoke,
    moto_aws,
    quiet_powertools,
    seed_parameters,
)


def main(paths: list[str]) -> int:
    if not os.environ.get("VERBOSE"):
        quiet_powertools()
    files = [Path(p) for p in paths] or sorted((ROOT / "events").glob("*.json"))
    with Sandbox() as sandbox, moto_aws():
        seed_parameters(sandbox.url, config=demo_config(sandbox.url) | {"companyKey": DEMO_COMPANY_KEY})
        for path in files:
            response = invoke(json.loads(path.read_text()))
            print(f"\n=== {path.name}: HTTP {response['statusCode']}")
            print(json.dumps(json.loads(response["body"]), indent=2))
        print(f"\n=== Parked events drained (as the scheduled drain would): {drain()}")
        print("\n=== What the Gainsight sandbox holds")
        print(json.dumps(sandbox.state.snapshot(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
