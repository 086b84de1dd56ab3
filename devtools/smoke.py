"""`make smoke ENV=dev`: the deployed stack proves itself with one identify (and one track).

    make smoke ENV=dev [EMAIL=smoke-test@yourcompany.com]
    make smoke LOCAL=1                  # the local stack (make local-stack) and its API

Reads the stack's outputs (ApiUrl, EventTableName, DestinationConfigParameterName), takes the first
write key from the stack's write-keys SecureString (never printed), and POSTs one batch to
<ApiUrl>/v1/batch, as a sender would: an identify with a fresh messageId and, when the destination
config maps a track event (a name with an eventNameMap and an eventVersionMap entry, not filtered out,
not a Timeline activity), one track of that name. Each event's outcome is one line; a deferred event
is confirmed in the event table (`make events ID=<messageId>` follows it from there).

It writes to the tenant: the identify upserts one Person (EMAIL, by default
gainsight-destination-smoke@example.com, userId gainsight-destination-smoke), and the track publishes
one Events Framework event with the property smoke=true. That costs a few calls of the tenant's API
quota. The exit status is 1 when an event is neither delivered nor deferred, or the API cannot be
asked, with the reason.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from devtools.local import use_handler_path
from devtools.stack import Deployed, OperatorError, add_arguments, aws_for, aws_sentence, client, deployed, local_of

DEFAULT_EMAIL = "gainsight-destination-smoke@example.com"
SMOKE_USER = "gainsight-destination-smoke"


def mapped_track(raw_config: str) -> str | None:
    """A track event name the config delivers to the Events Framework, or None.

    Raises:
        OperatorError: the config does not parse.
    """
    use_handler_path()
    from config import parse_destination
    from errors import ConfigurationError

    try:
        config = json.loads(raw_config)
        # The domain plays no part in which events are mapped: any Gainsight host parses.
        placeholder = json.dumps(config | {"domain": "smoke.gainsightcloud.com"})
        destination = parse_destination(placeholder, "-", None)
    except (ValueError, TypeError, ConfigurationError) as error:
        raise OperatorError(f"the stack's destination config does not parse ({error}): run make doctor") from None
    for entry in config.get("eventNameMap") or []:
        name = entry.get("from") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name.strip():
            continue
        key = name.strip().casefold()
        if key in destination.event_versions and key not in destination.timeline and not destination.filters_out(name):
            return name.strip()
    return None


def smoke_events(email: str, track: str | None, *, new_id: Callable[[], str], now: float) -> list[dict[str, Any]]:
    """The batch: an identify, and a track when one is mapped, each with a fresh messageId."""
    sent_at = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    events: list[dict[str, Any]] = [
        {"type": "identify", "messageId": new_id(), "userId": SMOKE_USER, "traits": {"email": email}}
    ]
    if track is not None:
        events.append(
            {
                "type": "track",
                "messageId": new_id(),
                "userId": SMOKE_USER,
                "event": track,
                "properties": {"smoke": True},
                "context": {"traits": {"email": email}},
            }
        )
    return [event | {"timestamp": sent_at} for event in events]


def post_batch(api_url: str, write_key: str, events: Sequence[Mapping[str, Any]]) -> tuple[int, Any]:
    """POST the batch as a sender would; the HTTP status and the JSON answer (None when not JSON).

    Raises:
        OperatorError: no answer at all.
    """
    auth = base64.b64encode(f"{write_key}:".encode()).decode()
    request = urllib.request.Request(
        api_url.rstrip("/") + "/v1/batch",
        data=json.dumps({"batch": list(events)}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Basic {auth}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            status, body = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise OperatorError(f"the API at {api_url} could not be reached ({reason})") from None
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


def refusal(status: int, body: Any, stack: Deployed) -> str:
    """Why the API answered the whole batch with `status`, and what to do."""
    detail = body.get("message") or body.get("code") if isinstance(body, dict) else None
    shown = f": {detail}" if detail else ""
    if status == 401:
        return f"the API refused the write key from {stack.secure_strings['write_keys']} (401{shown})"
    if status == 403:
        return f"API Gateway refused the request (403{shown}): check the ApiUrl output, {stack.api_url}"
    if status == 503 and isinstance(body, dict) and body.get("code") == "misconfigured":
        return "the function cannot read its settings or SecureStrings (503 misconfigured): run make doctor"
    return f"the API answered HTTP {status}{shown}"


def run(
    args: argparse.Namespace,
    out: Callable[[str], None] = print,
    *,
    new_id: Callable[[], str] = lambda: f"smoke-{uuid.uuid4()}",
    clock: Callable[[], float] = time.time,
) -> int:
    local = local_of(args)
    target = "LOCAL=1" if local else f"ENV={args.env}"
    with aws_for(local):
        try:
            stack = deployed(args.env, local)
            write_key, raw_config = _read_parameters(stack, local)
            track = mapped_track(raw_config)
            events = smoke_events(args.email, track, new_id=new_id, now=clock())
            out(f"Sending {' and '.join(e['type'] for e in events)} to {stack.api_url}/v1/batch ({stack.name})")
            if track is None:
                out("· no track event: the config maps none (eventNameMap with an eventVersionMap entry)")
            status, answer = post_batch(stack.api_url, write_key, events)
            results = answer.get("results") if isinstance(answer, dict) else None
            if not isinstance(results, list) or (status >= 400 and status != 503):
                out(f"✗ {refusal(status, answer, stack)}")
                return 1
            failed = 0
            for event, result in zip(events, results, strict=False):
                line, ok = outcome_line(event, result, stack, target)
                out(line)
                failed += not ok
        except OperatorError as error:
            out(f"✗ {error}")
            return 1
    if failed:
        out(f"{failed} event{'s' if failed > 1 else ''} neither delivered nor deferred: see the reason above.")
        return 1
    out(f"The stack works: every event was delivered or deferred ({stack.name}).")
    return 0


def outcome_line(event: Mapping[str, Any], result: Mapping[str, Any], stack: Deployed, target: str) -> tuple[str, bool]:
    """One event's line, and whether it counts as working (delivered, or deferred and in the table)."""
    use_handler_path()
    from devtools.events import find
    from store import PARKED, EventStore

    name = f"{event['type']} {event['messageId']}"
    outcome = result.get("outcome")
    if outcome == "delivered":
        return f"✓ {name}: delivered", True
    if outcome != "deferred":
        return f"✗ {name}: {outcome}: {result.get('error') or 'no reason given'}", False
    try:
        stored = find(EventStore(stack.event_table, client("dynamodb")), event["messageId"])
    except Exception as error:
        return f"✗ {name}: deferred, but {aws_sentence(error, f'reading {stack.event_table}')}", False
    if stored is None or stored.state != PARKED:
        held = "no record of it" if stored is None else f"it as {stored.state}"
        return f"✗ {name}: deferred ({result.get('error')}), but {stack.event_table} holds {held}", False
    follow = f"make events {target} ID={event['messageId']}"
    return f"✓ {name}: deferred ({result.get('error')}); parked in {stack.event_table}: {follow}", True


def _read_parameters(stack: Deployed, local: Any) -> tuple[str, str]:
    """The first write key (kept in memory, never printed) and the destination config.

    Raises:
        OperatorError: either cannot be read.
    """
    use_handler_path()
    from parameters_store import read_failure

    ssm = client("ssm")
    values = []
    for name, secure in ((stack.secure_strings["write_keys"], True), (stack.destination_config_param, False)):
        try:
            values.append(str(ssm.get_parameter(Name=name, WithDecryption=secure)["Parameter"]["Value"]))
        except Exception as error:
            if getattr(error, "response", None) is None:
                raise OperatorError(aws_sentence(error, f"reading {name}", local=local)) from None
            raise OperatorError(f"{name} could not be read: {read_failure(error)}: run make doctor") from None
    keys = [key.strip() for key in values[0].split(",") if key.strip()]
    if not keys:
        raise OperatorError(f"{stack.secure_strings['write_keys']} holds no write key: run make doctor")
    return keys[0], values[1]


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devtools.smoke", description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--email", default=DEFAULT_EMAIL, help="the identify's email: the Person it upserts (EMAIL=)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(argv), lambda line: print(line, flush=True))


if __name__ == "__main__":
    sys.exit(main())
