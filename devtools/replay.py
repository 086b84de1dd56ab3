"""Replay rejected events once their cause is fixed (a missing event name mapping, a refused field,
events that gave up retrying): they are parked again at their own place in the arrival order, and
the drain delivers them in order, each before any later event of its person or company. A run that
dies can be run again as it was: what it parked is not parked twice, and what is left keeps its order.
What later delivered events of the same email or company wrote is left out of a replayed identify
or group event: an identify with nothing left is kept as `superseded`, a group event gives only the
person's link.

    make replay ENV=dev DRY_RUN=1                                  # count them, by reason
    make replay ENV=dev CODE=no_event_name_mapping
    make replay ENV=dev SINCE=2026-11-30T08:00:00Z UNTIL=2026-11-30T12:00:00Z
    python -m devtools.replay --table <event table> [--local]      # the same, by table

Rejected events are kept for `RejectedRetentionDays` (14 by default).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from devtools import stack
from devtools.deploy import stack_outputs
from devtools.local import use_handler_path

use_handler_path()

from record import seq_before  # noqa: E402
from store import SUPERSEDED, EventStore, Stored, without_traits  # noqa: E402


def rejected(store: EventStore, since: float, until: float, codes: Sequence[str]) -> Iterator[Stored]:
    """Rejected events accepted in [since, until), oldest first, with one of `codes` (any but
    `superseded` if none: those are left unless asked for by name)."""
    start = None
    while True:
        page, start = store.rejected_page(seq_before(since), seq_before(until), start)
        yield from (s for s in page if s.code in codes or (not codes and s.code != SUPERSEDED))
        if start is None:
            return


@dataclass(frozen=True)
class Replayed:
    replayed: int  # parked again, at their place in the arrival order
    partly: int  # of those, with only what later delivered events of their person or company did not write
    superseded: int  # identify events later delivered ones overwrote entirely: left, kept as superseded
    left: int  # could not be parked now: still rejected, behind the first of their person that failed


def replay(store: EventStore, events: Sequence[Stored]) -> Replayed:
    """Park the events (oldest first) again, in their original order, each with only what later
    delivered events of its email or company did not write since: applying it then leaves what
    applying every event once, in arrival order, would. An identify with nothing left is left (kept
    as `superseded`); a group event with nothing left gives only the person's link."""
    deadline = time.monotonic() + 60
    newer = store.superseded(events, deadline)
    narrowed = {
        s.record.event_id: without_traits(s.record, newer[s.record.event_id])
        for s in events
        if s.record.event_id in newer
    }
    skipped = [
        s
        for s in events
        if s.record.event_id in narrowed and narrowed[s.record.event_id] is None and s.record.kind == "identify"
    ]
    store.supersede(skipped)
    going = [s for s in events if s not in skipped]
    link_only = {i for i, event in narrowed.items() if event is None}
    partly = {i: event for i, event in narrowed.items() if event is not None}
    failed = store.replay(going, deadline, link_only=link_only, events=partly)
    return Replayed(len(going) - len(failed), len(set(partly) - set(failed)), len(skipped), len(failed))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    stack.add_arguments(parser)  # --env (the stack samconfig.toml names) or --local
    parser.add_argument("--stack", help="read the table name from this stack's outputs (instead of --env)")
    parser.add_argument("--table", help="the event store table (instead of --env)")
    parser.add_argument("--code", action="append", default=[], help="only events rejected with this code")
    parser.add_argument("--since", type=stack.iso_time, default=0.0, help="accepted at or after (ISO 8601)")
    parser.add_argument("--until", type=stack.iso_time, default=None, help="accepted before (ISO 8601)")
    parser.add_argument("--dry-run", action="store_true", help="only count what would be replayed")
    args = parser.parse_args(argv)
    local = stack.local_of(args)
    try:
        with stack.aws_for(local):
            return _run(args, local)
    except stack.OperatorError as error:
        print(f"replay: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # a missing region or credentials, an AWS refusal: one sentence
        print(f"replay: {stack.aws_sentence(error, 'replaying rejected events', local=local)}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, local: stack.LocalStack | None) -> int:
    if args.table:
        table = args.table
    elif args.stack:
        table = stack_outputs(stack.client("cloudformation"), args.stack)["EventTableName"]
    else:
        table = stack.deployed(args.env, local).event_table
    store = EventStore(table, stack.client("dynamodb"))
    events = list(rejected(store, args.since, args.until or time.time() + 1, args.code))
    counts = Counter(f"{s.code or 'gainsight'} ({s.record.kind})" for s in events)
    detail = ", ".join(f"{key}: {n}" for key, n in sorted(counts.items())) or "nothing"
    if args.dry_run:
        print(f"{len(events)} rejected events would be replayed ({detail}); nothing changed")
        return 0
    done = replay(store, events)
    superseded = (f"; {done.partly} of them without what later delivered events wrote" if done.partly else "") + (
        f"; {done.superseded} left as {SUPERSEDED} (later events wrote all of it)" if done.superseded else ""
    )
    if done.left:
        print(
            f"replayed {done.replayed} of {len(events)} events ({detail}){superseded}; "
            f"{done.left} left rejected: run the same command again"
        )
        return 1
    print(f"replayed {done.replayed} of {len(events)} events ({detail}){superseded}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
