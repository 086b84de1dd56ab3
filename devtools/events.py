"""`make events`: what happened to one event, or which events are parked or rejected.

    make events ENV=dev ID=<messageId> [SHOW=1]
    make events ENV=dev STATE=parked|rejected [CODE=no_event_name_mapping] [SINCE=2026-11-30T08:00:00Z] [LIMIT=20]
    make events LOCAL=1 ...             # the local stack (make local-stack) instead of AWS

One event: its state (parked: waiting for the drain; rejected: kept for a replay; delivered: while
its record lives), type, arrival (from its sequence), attempts, next try, last reason and code. A
list: newest first, LIMIT a page (20 by default); the last line gives the command for the next page
(BEFORE=<seq>). SHOW=1 adds each event's stored payload: it may hold personal data (emails, names,
traits), so only when asked.

What the store keeps (handler/store.py): a parked event until it is delivered or rejected; a
rejected one for RejectedRetentionDays (14 days by default); a delivered one only where a sender's
retry must not apply it twice (track events, and events delivered in order behind parked ones), for
DedupWindowSeconds (a day by default). The table is the stack's EventTableName output; the items are
read and decoded with the handler's own EventStore.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from devtools.local import use_handler_path
from devtools.stack import OperatorError, add_arguments, aws_for, aws_sentence, client, deployed, iso_time, local_of

use_handler_path()

import record  # noqa: E402
from record import seq_before  # noqa: E402
from store import DONE, PARKED, REJECTED, EventStore, Stored, StoreError  # noqa: E402

STATES = {
    PARKED: "parked: waiting to be delivered; the drain tries it again when due",
    REJECTED: "rejected: will not be delivered as it is; kept for a replay once the cause is fixed",
    DONE: "delivered: Gainsight has it (this record stays for the dedup window, then is forgotten)",
}
DEFAULT_LIMIT = 20


@dataclass(frozen=True, slots=True)
class Listing:
    state: str
    code: str | None = None
    since: float | None = None  # wall-clock seconds: accepted at or after
    before: str | None = None  # a sequence: accepted before (the next page)
    limit: int = DEFAULT_LIMIT


def describe(event_id: str, stored: Stored | None, *, show: bool, now: float, table: str) -> list[str]:
    """The lines `make events ID=...` prints for one event."""
    if stored is None:
        return [
            f"No record of {event_id!r} in {table}: it was never accepted here; or it was delivered at once and "
            "needed no record (identify and group events, applied again harmlessly), or delivered longer ago than "
            "DedupWindowSeconds; or it was refused at intake as invalid (answered, not kept)."
        ]
    record = stored.record
    lines = [f"{event_id}: {STATES.get(stored.state, stored.state)}"]
    lines.append(f"  type: {record.kind or 'not kept once delivered'}")
    lines.append(f"  arrived: {arrival(record.seq)}")
    if stored.state != DONE:
        lines.append(f"  attempts: {stored.attempts}")
    if stored.state == PARKED:
        lines.append(f"  next try: {next_try(stored.due, now)}")
    if stored.state != DONE:
        lines.append(f"  last reason: {stored.reason or '-'}")
        lines.append(f"  code: {stored.code or '-'}")
    if show:
        lines += payload_lines(stored)
    return lines


def payload_lines(stored: Stored) -> list[str]:
    if stored.record.event is None:
        return ["  payload: not kept once delivered"]
    text = json.dumps(stored.record.event, indent=2, ensure_ascii=False)
    return ["  payload:", *(f"    {line}" for line in text.splitlines())]


def arrival(seq: str) -> str:
    """When the event was first accepted, from its sequence (nanoseconds since the epoch first)."""
    try:
        seconds = record.arrival(seq)
    except ValueError:
        return "unknown"
    return _iso(seconds)


def next_try(due: float, now: float) -> str:
    if due <= now:
        return "due now (the drain runs every minute)"
    wait = due - now
    left = f"{wait:.0f} s" if wait < 120 else f"{wait / 60:.0f} min"
    return f"{_iso(due)} (in {left})"


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def find(store: EventStore, event_id: str) -> Stored | None:
    """The event's record (a consistent read), or None."""
    return store.lookup((), [event_id], time.monotonic() + 10).states.get(event_id)


def newest(store: EventStore, listing: Listing) -> tuple[list[Stored], str | None]:
    """Up to `listing.limit` events of its state (and code, and since), newest first, and the
    sequence to continue before when there are more."""
    page = store.newest_page(
        listing.state,
        since_seq=seq_before(listing.since) if listing.since is not None else "0",
        until_seq=listing.before or "~",
        code=listing.code,
        limit=listing.limit + 2,  # the bound itself (the last one shown) and one to tell there are more
    )
    found = [stored for stored in page if stored.record.seq != listing.before]
    more = found[listing.limit - 1].record.seq if len(found) > listing.limit else None
    return found[: listing.limit], more


def list_lines(found: Sequence[Stored], *, show: bool) -> list[str]:
    lines = []
    for stored in found:
        record = stored.record
        reason = f"{stored.code or '-'}: {stored.reason or '-'}"
        lines.append(
            f"{arrival(record.seq)}  {record.kind or '?':8}  {record.event_id}  attempts {stored.attempts}  {reason}"
        )
        if show:
            lines += payload_lines(stored)
    return lines


def run(args: argparse.Namespace, out: Callable[[str], None] = print, *, now: Callable[[], float] = time.time) -> int:
    local = local_of(args)
    target = "LOCAL=1" if local else f"ENV={args.env}"
    with aws_for(local):
        try:
            stack = deployed(args.env, local)
            store = EventStore(stack.event_table, client("dynamodb"))
            if args.id is not None:
                stored = find(store, args.id)
                for line in describe(args.id, stored, show=args.show, now=now(), table=stack.event_table):
                    out(line)
                return 0 if stored is not None else 1
            listing = Listing(args.state, args.code, args.since, args.before, args.limit)
            found, more = newest(store, listing)
        except OperatorError as error:
            out(f"✗ {error}")
            return 1
        except StoreError as error:
            out(f"✗ the event table {stack.event_table} could not be read: {error.message}")
            return 1
        except Exception as error:
            out(f"✗ {aws_sentence(error, f'reading the event table of {stack.name}', local=local)}")
            return 1
    filters = "".join(
        [f", code {args.code}" if args.code else "", f", since {_iso(args.since)}" if args.since is not None else ""]
    )
    out(f"{len(found)} {args.state} event{'s' if len(found) != 1 else ''}, newest first{filters}:")
    for line in list_lines(found, show=args.show):
        out(line)
    if more:
        again = f"make events {target} STATE={args.state}{f' CODE={args.code}' if args.code else ''}"
        out(f"More: {again} BEFORE={more}")
    return 0


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devtools.events", description=__doc__.splitlines()[0])
    add_arguments(parser)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", help="one event's messageId (ID=)")
    which.add_argument("--state", choices=(PARKED, REJECTED), help="list these, newest first (STATE=)")
    parser.add_argument("--code", help="only events with this code (CODE=)")
    parser.add_argument("--since", type=iso_time, help="accepted at or after, ISO 8601 (SINCE=)")
    parser.add_argument("--before", help="accepted before this sequence: the next page (BEFORE=)")
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="events per page (LIMIT=)")
    parser.add_argument("--show", action="store_true", help="add each stored payload: personal data (SHOW=1)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(argv), lambda line: print(line, flush=True))


if __name__ == "__main__":
    sys.exit(main())
