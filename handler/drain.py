"""The drain of parked events, run by a schedule: delivers what is due, oldest first, each entity's
events in order, with the same core as a sender's request (ingest.deliver), and decides what a
failed attempt means for an event: tried again later, or given up."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from clock import Clock

import ingest
import record
import rollup
from config import Destination
from delivery import Outcome
from errors import ConfigurationError, EventRejected
from gainsight import MIN_ATTEMPT_SECONDS, CallLog
from ingest import (
    PARKING_RESERVE_SECONDS,
    SAFETY_MARGIN_SECONDS,
    Container,
    container,
    deliver,
    note_for_replays,
    observe,
)
from mapping import Operation
from observability import logger, metrics
from record import Record
from settings import Settings, settings
from store import DONE, DRAIN_PAGE, REJECTED, QueueState, Settled, Stored, StoreError


@dataclass
class DrainReport:
    parked: int = 0  # parked events the run looked at (all of them, when it got to the end)
    delivered: int = 0
    rejected: int = 0
    retried: int = 0
    waiting: int = 0
    gave_up: int = 0
    expired: int = 0  # telemetry parked longer than TelemetryMaxAgeHours, kept as rejected
    rollups: int = 0  # rollup windows published
    waiting_for_operator: int = 0  # failed for the configuration or a credential: never an attempt
    pages: int = 0
    idle: bool = False  # nothing changed since the last complete pass and nothing was due: not read
    next_due: float | None = None  # wall-clock time the first event this run saw waiting is due

    def due_at(self, when: float) -> None:
        self.next_due = when if self.next_due is None else min(self.next_due, when)


def drain(remaining_seconds: float, clock: Clock | None = None) -> DrainReport:
    """Deliver parked events oldest first, each entity's in order, merging each person's and each
    company's events across the requests that parked them; until none is due or time is up."""
    clock = clock or ingest.clock
    started = clock.monotonic()
    report = DrainReport()
    try:
        config = settings()
        parts = container(config)
    except ConfigurationError as error:
        logger.error("service misconfigured", extra={"reason": error.message})
        metrics.add_metric(name="ConfigurationErrors", unit=MetricUnit.Count, value=1)
        return report
    deadline = started + max(0.0, min(config.drain_budget_seconds, remaining_seconds - SAFETY_MARGIN_SECONDS))
    try:
        queue = parts.store.queue_state(deadline)
    except StoreError as error:
        logger.error("event store unavailable", extra={"reason": error.message})
        return report
    if not parts.unsettled and queue.nothing_due(clock.wall()):
        return _idle(queue, clock, report)
    if parts.unsettled:
        left = parts.store.settle(list(parts.unsettled.values()), deadline)
        parts.unsettled = {event_id: item for event_id, item in parts.unsettled.items() if event_id in left}
        if parts.unsettled:  # nothing is published while published events cannot be recorded
            logger.error("parked events could not be settled", extra={"events": len(parts.unsettled)})
            return report
    run = _Run(config, parts, deadline, clock, report, watching=parts.store.watching(queue.watch))
    seen, outcomes, oldest, complete = _pass(run)
    if complete and not parts.unsettled:
        try:
            parts.store.note_pass(queue, math.inf if report.next_due is None else report.next_due, oldest)
        except StoreError as error:  # the next run reads the queue again
            logger.warning("drain pass could not be noted", extra={"reason": error.message})
    _queue_metrics(report)
    if seen or run.calls.calls:
        observe(
            "drain processed",
            seen,
            outcomes,
            run.calls,
            clock.monotonic() - started,
            **dataclasses.asdict(report),
        )
    return report


@dataclass
class _Run:
    """What one drain run's pages share."""

    config: Settings
    parts: Container
    deadline: float
    clock: Clock
    report: DrainReport
    # Identify or group events are kept as rejected: delivered ones leave watermarks for replays.
    watching: bool
    calls: CallLog = dataclasses.field(default_factory=CallLog)
    blocked: set[str] = dataclasses.field(default_factory=set)  # entities held by an earlier event
    blocked_state: set[str] = dataclasses.field(default_factory=set)  # ... by an identify or group event

    def hold(self, waiting: Record) -> None:
        """A waiting event holds its entities' later events: all of them if it is an identify or
        group event, telemetry only if it is telemetry (state is never held behind telemetry)."""
        self.blocked.update(waiting.entities)
        if waiting.state:
            self.blocked_state.update(waiting.entities)


def _pass(run: _Run) -> tuple[list[Record], dict[int, Outcome], str | None, bool]:
    """One pass over the queue, oldest first, page by page: identify and group events first (people
    and companies stay current when the budget is short), then telemetry, which waits behind the
    state events of its entities that wait. Returns every record delivered (renumbered in the order
    seen) with its outcome, the oldest parked event's sequence, and whether the pass got to the end
    of the queue."""
    seen: list[Record] = []
    outcomes: dict[int, Outcome] = {}
    oldest: dict[bool, str] = {}  # each queue's first parked event
    store, report = run.parts.store, run.report
    for state in (True, False):
        if not state:  # a rollup's call carries many events: before track events one by one
            _publish_rollups(run)
        start: Mapping[str, Any] | None = None
        while True:
            # Another page only while a call could still start: reading one after that is reads for nothing.
            if run.clock.monotonic() >= run.deadline - PARKING_RESERVE_SECONDS - MIN_ATTEMPT_SECONDS:
                return seen, outcomes, _oldest(oldest, run), False
            try:
                page, start = store.parked_page(start, DRAIN_PAGE, state=state)
                current = store.still_parked(page, run.deadline) if page else []
            except StoreError as error:
                logger.error("event store unavailable", extra={"reason": error.message})
                return seen, outcomes, _oldest(oldest, run), False
            report.pages += 1 if page else 0
            report.parked += len(current)
            if current and state not in oldest:
                oldest[state] = current[0].record.seq
            ready = _ready(_expire(current, run), run.clock.wall(), run)
            if ready:
                page_outcomes = _drain_page(ready, run)
                offset = len(seen)
                seen += [dataclasses.replace(s.record, index=offset + n) for n, s in enumerate(ready)]
                outcomes |= {offset + n: page_outcomes[n] for n in range(len(ready))}
                if _spent(page_outcomes.values()) or run.parts.unsettled:
                    # The rest of the queue is not read for nothing; nor is anything more published
                    # while published events cannot be recorded.
                    return seen, outcomes, _oldest(oldest, run), False
            if start is None:
                break
    return seen, outcomes, _oldest(oldest, run), True


def _publish_rollups(run: _Run) -> None:
    """Publish the rollup windows that have closed, oldest first, each once: closed first (what
    arrives later goes into a late rollup of the window), then published through the shared core,
    and recorded as published as they go (delivery.Ledger). One that fails waits for the next run."""
    store, clock = run.parts.store, run.clock
    try:
        listed = store.rollup_windows(ROLLUP_PAGE)
        now = clock.wall()
        windows = [store.close_window(pk, run.deadline) for pk, closes in listed if closes <= now]
    except StoreError as error:
        logger.error("rollup windows could not be read", extra={"reason": error.message})
        return
    upcoming = [closes for _, closes in listed if closes > now]
    if upcoming:
        run.report.due_at(min(upcoming))
    if len(listed) == ROLLUP_PAGE:  # more than one run lists: the next one goes on at once
        run.report.due_at(now)
    if not windows:
        return
    records = [
        Record(n, window, window["pk"], record.seq_before(window["windowEnd"]), "track", (window["entity"],))
        for n, window in enumerate(windows)
    ]
    delivered_by = run.deadline - PARKING_RESERVE_SECONDS
    serial = store.serial()
    done = deliver(
        records,
        run.config,
        run.parts,
        delivered_by,
        run.calls,
        wait_for_quota=True,
        on_published=lambda published: serial.windows_published([r.event_id for r in published], delivered_by),
        prepared=_window_publish,
    )
    published = [r for r in records if done.outcomes[r.index].outcome == "delivered"]
    unrecorded = store.windows_published([r.event_id for r in published if r.index not in done.recorded], run.deadline)
    if unrecorded:  # (published again by the next run: what a death between the two would do too)
        logger.error("published rollups could not be recorded", extra={"rollups": len(unrecorded)})
    run.report.rollups += len(published)
    refused = [r for r in records if done.outcomes[r.index].outcome == "rejected"]
    if refused:  # never publishable as they are (the contract refuses them, the rollup is gone): set aside
        reason = done.outcomes[refused[0].index]
        logger.error("rollups refused", extra={"rollups": len(refused), "reason": reason.code})
        store.set_aside_windows({r.event_id: done.outcomes[r.index].error or "" for r in refused}, run.deadline)
        run.report.rejected += len(refused)
    waiting = [done.outcomes[r.index] for r in records if done.outcomes[r.index].outcome == "failed"]
    if waiting:
        run.report.due_at(clock.wall())
        logger.warning("rollups not published", extra={"rollups": len(waiting), "reason": waiting[0].code})


def _window_publish(window: Record, destination: Destination) -> Operation:
    """The Events Framework event of a closed rollup window (Record.event: the window, decoded)."""
    rolled = destination.rollups.get(window.event["name"])
    if rolled is None:
        raise EventRejected(f"rollupMap no longer rolls up {window.event['name']}", code="no_rollup")
    return rollup.published(window.event, rolled, destination)


def _oldest(firsts: Mapping[bool, str], run: _Run) -> str | None:
    """The oldest of the first events of each queue (its age is a metric)."""
    if not firsts:
        return None
    _oldest_metric(min(firsts.values()), run.clock.wall())
    return min(firsts.values())


def _expire(current: list[Stored], run: _Run) -> list[Stored]:
    """Telemetry parked longer than TelemetryMaxAgeHours is kept as rejected (`expired`) instead of
    being sent late; people and company events never expire. The rest, in order."""
    max_age = run.config.telemetry_max_age_hours * 3600
    if not max_age:
        return current
    now = run.clock.wall()
    expired = [s for s in current if not s.record.state and now - record.arrival(s.record.seq) > max_age]
    for stored in current:
        if not stored.record.state:  # a pass that leaves it waiting comes back when it expires
            run.report.due_at(record.arrival(stored.record.seq) + max_age)
    if not expired:
        return current
    reason = f"expired: parked longer than TelemetryMaxAgeHours ({max_age / 3600:g} h) without being delivered"
    settled = [Settled(s, REJECTED, reason, "expired") for s in expired]
    _settle(settled, run.parts, run.deadline, record.lane_keys([s.record for s in expired]))
    run.report.expired += len(expired)
    gone = {s.record.event_id for s in expired}
    return [s for s in current if s.record.event_id not in gone]


def _spent(outcomes: Iterable[Outcome]) -> bool:
    """No call can be made this run (its time or the tenant's budget is spent), or every event tried
    on a page failed (Gainsight is down, or refuses our key): the next page would fare no better."""
    tried = [o for o in outcomes if o.code != "held"]
    failing = len(tried) >= SPENT_AFTER and all(o.outcome == "failed" for o in tried)
    return failing or any(o.code in OUT_OF_BUDGET for o in tried)


def _idle(queue: QueueState, clock: Clock, report: DrainReport) -> DrainReport:
    """The backlog is as the last complete pass left it, and none of it is due: it is not read."""
    report.idle, report.parked = True, queue.parked
    if queue.oldest_seq is not None and queue.parked:
        _oldest_metric(queue.oldest_seq, clock.wall())
    _queue_metrics(report)
    return report


def _oldest_metric(oldest_seq: str, now: float) -> None:
    age = round(now - record.arrival(oldest_seq), 1)
    metrics.add_metric(name="OldestParkedSeconds", unit=MetricUnit.Seconds, value=age)


def _queue_metrics(report: DrainReport) -> None:
    metrics.add_metric(name="ParkedEvents", unit=MetricUnit.Count, value=report.parked)
    metrics.add_metric(name="EventsGaveUp", unit=MetricUnit.Count, value=report.gave_up)
    # (put only when there are some: an idle stack pays for no metric of them)
    if report.expired:
        metrics.add_metric(name="EventsExpired", unit=MetricUnit.Count, value=report.expired)
    if report.rollups:
        metrics.add_metric(name="RollupsPublished", unit=MetricUnit.Count, value=report.rollups)


def _ready(current: list[Stored], now: float, run: _Run) -> list[Stored]:
    """The page's events to try now: due, and first in line for each of their entities. The others
    wait, holding their entities; the run notes when the first of those in line is due."""
    settle_seconds = run.config.drain_settle_seconds
    # Events this young are left alone: their request may still be parking older ones.
    cutoff = record.seq_before(now - settle_seconds)
    ready: list[Stored] = []
    for stored in current:
        first_in_line = not (run.blocked_state if stored.record.state else run.blocked).intersection(
            stored.record.entities
        )
        young = stored.record.seq >= cutoff
        if first_in_line and young:
            run.report.due_at(record.arrival(stored.record.seq) + settle_seconds)
        elif first_in_line and stored.due > now:
            run.report.due_at(stored.due)
        if first_in_line and not young and stored.due <= now:
            ready.append(stored)
        else:
            run.hold(stored.record)
            run.report.waiting += 1
    return ready


def _drain_page(ready: list[Stored], run: _Run) -> dict[int, Outcome]:
    config, parts, report, clock = run.config, run.parts, run.report, run.clock
    records = [dataclasses.replace(s.record, index=n) for n, s in enumerate(ready)]
    keys = record.lane_keys(records)
    delivered_by = run.deadline - PARKING_RESERVE_SECONDS
    # The drain waits for the tenant's budget (no sender is waiting on it); a request never does.
    settle_published = _settler(ready, parts, delivered_by, keys)
    done = deliver(records, config, parts, delivered_by, run.calls, wait_for_quota=True, on_published=settle_published)
    outcomes, written = done.outcomes, done.written
    settled: list[Settled] = []
    rewrite: set[str] = set()  # companies whose older group event could not be narrowed to its link
    for n, stored in enumerate(ready):
        outcome = outcomes[n]
        if outcome.outcome == "delivered":
            if n not in done.recorded:
                settled.append(Settled(stored, DONE))
            report.delivered += 1
            continue
        if outcome.outcome in ("rejected", "filtered"):
            # The sender was told "deferred": this log line, the metrics and the kept record carry why.
            logger.warning(
                "parked event rejected", extra={"message_id": stored.record.message_id, "reason": outcome.code}
            )
            settled.append(Settled(stored, REJECTED, outcome.error, outcome.code))
            report.rejected += 1
            continue
        run.hold(stored.record)
        wrote_company = n in written and not stored.record.link_only  # its link waits
        own = not outcome.operator and outcome.code not in NOT_OWN_FAILURES and outcome.status_code != 429
        if own and stored.attempts + 1 >= config.max_attempts:
            reason = f"gave up after {stored.attempts + 1} attempts: {outcome.error}"
            settled.append(Settled(stored, REJECTED, reason, "gave_up"))
            report.gave_up += 1
            continue
        report.retried += 1
        if outcome.operator:
            report.waiting_for_operator += 1
        elif not own and not wrote_company:
            if outcome.code != "held":  # one held waits behind an older event, which says when it is due
                report.due_at(stored.due)
            continue  # it waited for the budget, for time or behind an older event: parked as it was, due now
        if wrote_company:
            report.due_at(clock.wall())  # its company's later events are first in line now
        # A cause an operator must fix is tried again at the same backoff, without counting an attempt.
        backoff = _backoff(stored.attempts + 1 if own else (stored.waits + 1 if outcome.operator else 0), config)
        due = clock.wall() + backoff
        try:
            parts.store.retry_later(
                stored,
                due=due,
                own_failure=own,
                operator=outcome.operator,
                link_only=n in written,
                reason=outcome.error,
                code=outcome.code,
            )
            report.due_at(due)
        except StoreError as error:  # it is tried again on the next pass, which is safe
            report.due_at(stored.due)
            logger.warning("retry could not be scheduled", extra={"reason": error.message})
            if wrote_company:
                # It will write its company's older traits again: the newer group events of that
                # company written with it stay parked, to be written after it once more.
                rewrite.update(e for e in stored.record.entities if e.startswith("company:"))
    settled = [
        item for item in settled if not (item.state == DONE and rewrite.intersection(item.stored.record.entities))
    ]
    # (a group event whose company was written leaves its watermark, though its person's link waits)
    settled = _watch_state(
        settled,
        run,
        keys,
        [s.record for n, s in enumerate(ready) if n in written and outcomes[n].outcome != "delivered"],
    )
    _settle(settled, parts, run.deadline, keys)
    return outcomes


def _settler(
    ready: list[Stored], parts: Container, deadline: float, keys: Mapping[str, str]
) -> Callable[[list[Record]], set[str]]:
    """How published events are settled as they are published, a few at a time (see
    delivery.Ledger): from a delivery thread, with a store that does not wait on that thread's pool."""
    serial = parts.store.serial()

    def settle_published(published: list[Record]) -> set[str]:
        return serial.settle([Settled(ready[r.index], DONE) for r in published], deadline, keys)

    return settle_published


def _watch_state(
    settled: list[Settled], run: _Run, keys: Mapping[str, str], written: Sequence[Record]
) -> list[Settled]:
    """Before identify or group events are settled: those rejected turn the watch on, and while it
    is on those delivered leave watermarks, so that a replay can tell what a later delivered event
    superseded. What cannot be written keeps its whole lane (`keys`: event id -> lane) parked,
    due now: the next run applies it again, in order."""
    store = run.parts.store
    rejected = [s.stored.record for s in settled if s.state == REJECTED and s.stored.record.state]
    held: set[str] = set()
    try:
        store.watch_state(rejected, run.deadline)
        run.watching = run.watching or bool(rejected)
    except StoreError as error:
        logger.warning("rejected events left parked", extra={"reason": error.message})
        held = {r.event_id for r in rejected}
    if run.watching:
        delivered = [s.stored.record for s in settled if s.state == DONE]
        held |= set(note_for_replays(store, delivered, written, run.deadline))
    if held:
        run.report.due_at(run.clock.wall())
    lanes = {keys[event_id] for event_id in held}
    return [s for s in settled if keys[s.stored.record.event_id] not in lanes]


def _settle(settled: list[Settled], parts: Container, deadline: float, keys: Mapping[str, str]) -> None:
    unsettled = parts.store.settle(settled, deadline, keys) if settled else set()
    if unsettled:
        # Delivered or rejected, but not recorded: this container remembers them and records them
        # on its next run instead of delivering them again (they hold their entities until then).
        logger.error("parked events could not be settled", extra={"events": len(unsettled)})
        parts.unsettled |= {
            item.stored.record.event_id: item for item in settled if item.stored.record.event_id in unsettled
        }


# Waiting behind another event, for quota or time, or for the event store to record what went
# before it, is never the event's own failure.
NOT_OWN_FAILURES = frozenset({"held", "budget_exhausted", "quota", "budget_reserve", "GU_2400", "store_unavailable"})
ROLLUP_PAGE = 100  # rollup windows a run lists (and publishes, those closed) at most
# Tried events of a page that all failed: Gainsight is failing, the rest of the queue is not read.
SPENT_AFTER = 3
# The run's time or the tenant's budget is spent: no further call can be made this run.
# (Telemetry kept from the state reserve: it is tried once every due state event was, see _pass.)
OUT_OF_BUDGET = frozenset({"budget_exhausted", "quota", "budget_reserve"})


def _backoff(attempts: int, config: Settings) -> float:
    """Seconds before a parked event is tried again: doubling from one drain interval, capped."""
    if attempts <= 0:
        return 0.0
    return float(min(config.max_backoff_seconds, config.retry_base_seconds * 2 ** (attempts - 1)))
