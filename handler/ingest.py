"""The shared delivery core, for both entry points: a sender's request (API Gateway) and the drain
of parked events (a schedule). Every event is read once into a Record; the store is the single
source of truth for what is parked, rejected or done. Errors become responses and outcomes here
and nowhere else."""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from clock import REAL_CLOCK, Clock

import intake
import mapping
import parameters_store
import record
import rollup
from config import Destination
from delivery import ROLLED_UP, CompanyCache, Delivery, Ledger, Outcome, outcome_of
from errors import ConfigurationError, DestinationError, RequestRejected
from gainsight import CallLog, Gainsight, pool
from observability import logger, metrics
from quota import CHUNK, Budget, SharedQuota, Usage, forecast
from quota import KEY as QUOTA_KEY
from record import Record
from settings import Settings, settings
from store import DONE, REJECTED, ROLLED, STATE_WATCH, EventStore, Seen, Settled, StoreError

KNOWN_TYPES = frozenset({"identify", "group", "track", "page", "screen", "alias"})
SAFETY_MARGIN_SECONDS = 1.0  # of the Lambda's remaining time, left to answer
PARKING_RESERVE_SECONDS = 1.5  # of a request's budget, kept for recording what is still undelivered
# A request waits this long at most for room in the tenant's budget, then parks the rest: its sender
# gets an answer fast, and calls that fit a moment later are still made now rather than a drain later.
INTAKE_QUOTA_WAIT_SECONDS = 0.5
WAITING = "an earlier event of this person or company is waiting"
# Rejections worth keeping for a replay: the configuration may be fixed, Gainsight's refusal understood.
KEPT_REJECTIONS = frozenset({"no_event_name_mapping", "no_event_version_mapping"})


def new_message_id() -> str:
    """The id of an event sent without one: fresh each time, returned in its result."""
    return str(uuid.uuid4())


# What budgets, backoffs, arrival times and the company cache run on. Time is a parameter: tests
# swap in a fake clock before the container is created.
clock: Clock = REAL_CLOCK


@dataclass(frozen=True, slots=True)
class Request:
    body: str | None
    is_base64: bool
    headers: Mapping[str, str]
    path_type: str | None  # "identify" for /v1/identify; None for /v1/batch
    remaining_seconds: float
    lambda_context: Any = None


@dataclass(frozen=True, slots=True)
class Answer:
    status_code: int
    body: dict[str, Any]


class Container:
    """What a warm Lambda container keeps between invocations, created on first use."""

    def __init__(self, config: Settings) -> None:
        import boto3
        from botocore.config import Config

        # Short timeouts, few SDK retries: the store's own loops retry under the request's deadline.
        aws = Config(
            connect_timeout=1,
            read_timeout=config.aws_read_timeout,
            retries={"mode": "standard", "max_attempts": 3},
            max_pool_connections=config.concurrency + 2,
        )
        dynamodb = boto3.session.Session().client("dynamodb", config=aws)
        self.executor = ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="delivery")
        self.cache = CompanyCache(ttl_seconds=config.company_cache_seconds, clock=clock)
        # Delivered or rejected by the drain, but not yet recorded as such: never delivered again.
        self.unsettled: dict[str, Settled] = {}
        self.store = EventStore(
            config.event_table,
            dynamodb,
            self.executor,
            done_ttl_seconds=config.dedup_window_seconds,
            rejected_ttl_seconds=config.rejected_retention_days * 86400,
            clock=clock,
        )


_container: Container | None = None


def container(config: Settings) -> Container:
    global _container
    if _container is None:
        _container = Container(config)
    return _container


# -- a sender's request ----------------------------------------------------------------------


def handle(request: Request) -> Answer:
    """Answer one sender request; never raises for anything the sender, Gainsight or AWS does."""
    started = clock.monotonic()
    arrival_ns = int(clock.wall() * 1e9)
    try:
        config = settings()
        header_key = intake.write_key_from_header(intake.header(request.headers, "Authorization"))
        if header_key is not None and not intake.authorized(header_key, parameters_store.write_keys(config)):
            raise RequestRejected("write key is missing or not valid", 401, code="unauthorized")
        data = intake.body_bytes(request.body, request.is_base64, intake.header(request.headers, "Content-Encoding"))
        payload = intake.parse_json(data)
        if header_key is None and not intake.authorized(
            intake.write_key_from_body(payload), parameters_store.write_keys(config)
        ):
            raise RequestRejected("write key is missing or not valid", 401, code="unauthorized")
        events = intake.with_message_ids(intake.events_of(payload, request.path_type), new_message_id)
        parts = container(config)
    except RequestRejected as error:
        logger.info("request rejected", extra={"status": error.status_code, "reason": error.code})
        # {"code", "message"} is the error shape Segment's SDK reads.
        return Answer(error.status_code, {"code": error.code, "message": error.message})
    except ConfigurationError as error:
        # Without settings or write keys we cannot even authenticate: tell senders to retry later.
        logger.error("service misconfigured", extra={"reason": error.message})
        metrics.add_metric(name="ConfigurationErrors", unit=MetricUnit.Count, value=1)
        return Answer(503, {"code": "misconfigured", "message": "service is misconfigured; try again later"})

    budget = min(config.delivery_budget_seconds, request.remaining_seconds - SAFETY_MARGIN_SECONDS)
    answer_by = started + max(0.0, budget)
    tag = uuid.uuid4().hex
    destination = _destination_if_known(config)
    records = [
        record.read(n, event, record.sequence(arrival_ns, tag, n), destination) for n, event in enumerate(events)
    ]
    calls = CallLog()
    outcomes = accept(records, config, parts, answer_by, calls, body_size=len(data))
    status = 503 if any(o.outcome == "failed" for o in outcomes.values()) else 200
    results = [_result(r, outcomes[r.index]) for r in records]
    observe("request processed", records, outcomes, calls, clock.monotonic() - started, status=status)
    return Answer(status, {"results": results})


def _destination_if_known(config: Settings) -> Destination | None:
    """The destination, to read each event's company by its key; None while it cannot be read (the
    events are parked by _deliver, their companies read by name)."""
    try:
        return parameters_store.destination(config)
    except ConfigurationError:
        return None


def accept(
    records: Sequence[Record], config: Settings, parts: Container, answer_by: float, calls: CallLog, *, body_size: int
) -> dict[int, Outcome]:
    """An outcome for every record of a request: delivered now, rejected, or parked (`deferred`);
    `failed` only for an event that could not be stored, so the sender retries it."""
    outcomes = intake_rejections(records, body_size)
    candidates = [r for r in records if r.index not in outcomes]
    if not candidates:
        return outcomes
    # What the store knows: which entities wait behind parked events, which events it holds already.
    try:
        seen = _seen(candidates, parts.store, answer_by)
    except StoreError as error:
        logger.error("event store unavailable", extra={"reason": error.message})
        return outcomes | dict.fromkeys((r.index for r in candidates), outcome_of(error))
    fresh: list[Record] = []
    for r in candidates:
        stored = seen.states.get(r.event_id)
        if stored is not None and stored.state == DONE:
            outcomes[r.index] = Outcome("delivered", 200)  # a sender's retry: applied once already
        elif stored is not None and stored.state == ROLLED:
            outcomes[r.index] = ROLLED_UP  # a sender's retry: counted once already
        elif stored is not None and stored.state != REJECTED:
            outcomes[r.index] = Outcome("deferred", 202, f"queued for retry: {stored.reason or WAITING}", "deferred")
        else:
            fresh.append(r)
    counted = count_rollups(fresh, config, parts.store, answer_by)
    outcomes |= counted
    # Refused by their rollup: recorded below (kept for a replay) with the others, never delivered.
    to_deliver = [r for r in fresh if r.index not in counted]
    quota_item, watch = seen.also
    delivered_by = answer_by - PARKING_RESERVE_SECONDS
    # Written from a delivery thread: the store must not wait on the pool that thread belongs to.
    serial = parts.store.serial()
    done = deliver(
        to_deliver,
        config,
        parts,
        delivered_by,
        calls,
        blocked=seen.blocked,
        blocked_state=seen.blocked_state,
        quota_item=quota_item,
        on_published=lambda published: set(serial.mark_done(published, delivered_by)),
    )
    outcomes |= done.outcomes
    # Sent again after we had rejected them: once delivered, their rejected record must not be replayed.
    was_rejected = {r.index for r in fresh if r.event_id in seen.states}
    return outcomes | _record(
        [r for r in fresh if r.index not in counted or counted[r.index].outcome == "rejected"],
        outcomes,
        waiting=done.waiting,
        written=done.written,
        recorded=done.recorded,
        was_rejected=was_rejected,
        watching=parts.store.watching(watch),
        store=parts.store,
        deadline=answer_by,
    )


def count_rollups(fresh: Sequence[Record], config: Settings, store: EventStore, deadline: float) -> dict[int, Outcome]:
    """Track events whose name is rolled up (rollupMap) are counted into their window, each once,
    instead of being delivered: `rolled_up` once counted durably, `failed` (the sender retries) when
    they could not be, `rejected` when the rollup cannot name their user or company. Returns their
    outcomes (the other records have none)."""
    destination = _destination_if_known(config)
    if destination is None or not destination.rollups:
        return {}  # (unreadable: delivered as usual, they wait for the configuration with the rest)
    counts: list[tuple[Record, rollup.Count]] = []
    outcomes: dict[int, Outcome] = {}
    for r in fresh:
        rolled = rollup.rollup_of(r.event, destination)
        if rolled is None or destination.filters_out(str(r.event.get("event", ""))):
            continue
        try:
            counts.append((r, rollup.count_of(r.event, rolled, record.arrival(r.seq))))
        except DestinationError as error:
            outcomes[r.index] = outcome_of(error)
    failed = store.count_rollups(counts, deadline) if counts else {}
    if failed:
        logger.error("events could not be counted into their rollups", extra={"events": len(failed)})
    for r, _ in counts:
        outcomes[r.index] = outcome_of(failed[r.event_id]) if r.event_id in failed else ROLLED_UP
    return outcomes


def intake_rejections(records: Sequence[Record], body_size: int) -> dict[int, Outcome]:
    """Events that are unusable whatever the configuration: not an object, too large, too deep."""
    refused = intake.refused_events([r.event for r in records], body_size)
    outcomes: dict[int, Outcome] = {}
    for r in records:
        if not isinstance(r.event, dict):
            outcomes[r.index] = Outcome("rejected", 400, "event must be a JSON object", "invalid_event")
        elif r.index in refused:
            outcomes[r.index] = outcome_of(refused[r.index])
    return outcomes


def _seen(candidates: Sequence[Record], store: EventStore, deadline: float) -> Seen:
    """Heads of every entity and the record of every event, in one pass of consistent reads: a
    sender's retry of an event applied or parked already must not be applied or parked again. The
    shared budget is read with them: its first reservation then needs no read of its own."""
    entities = {e for r in candidates for e in r.entities}
    return store.lookup(entities, [r.event_id for r in candidates], deadline, also=[QUOTA_KEY, STATE_WATCH])


def _record(
    fresh: Sequence[Record],
    outcomes: Mapping[int, Outcome],
    *,
    waiting: set[int],
    written: set[int],
    recorded: frozenset[int],
    was_rejected: set[int],
    watching: bool,
    store: EventStore,
    deadline: float,
) -> dict[int, Outcome]:
    """Store what must survive the request: parked events (before the sender is told `deferred`),
    rejections worth replaying, and the events applied now that a retry must not apply again."""
    changed: dict[int, Outcome] = {}
    to_park: list[tuple[Record, str | None, str | None]] = []
    for r in fresh:  # in order
        outcome = outcomes.get(r.index)
        if r.index in waiting or outcome is None:
            to_park.append((r, WAITING, "waiting"))
        elif outcome.outcome == "failed":
            # A group event whose company was written waits only for the person's link.
            parked = dataclasses.replace(r, link_only=True, entities=r.person) if r.index in written else r
            to_park.append((parked, outcome.error, outcome.code))
    # Applied events are remembered, so a sender's retry does not apply them again: track events
    # always (exactly once), whatever becomes of their person's parking (those published to the
    # Events Framework are `recorded` already, as they were published), and so is an event that
    # had been rejected (a replay must not apply it again); the others of a person or company that
    # parks something, written with the parked ones in request order: were an older one neither
    # parked nor remembered, a retry would park it behind a newer one.
    keys = record.lane_keys(fresh)
    parking = {keys[r.event_id] for r, _, _ in to_park}
    delivered = [r for r in fresh if r.index in outcomes and outcomes[r.index].outcome == "delivered"]
    on_their_own = {r.index for r in delivered if r.kind == "track" or r.index in was_rejected}
    alone = [r for r in delivered if r.index in on_their_own and r.index not in recorded]
    in_order = [r for r in delivered if keys[r.event_id] in parking and r.index not in on_their_own]
    kept = [
        (r, outcomes[r.index].error, outcomes[r.index].code)
        for r in fresh
        if r.index in outcomes and outcomes[r.index].outcome == "rejected" and _worth_keeping(outcomes[r.index])
    ]
    # Before any of them is recorded as done: a function that dies in between leaves them
    # unrecorded, and the sender's resend applies and notes them.
    if watching or any(r.state for r, _, _ in kept):
        waiting_links = [r for r in fresh if r.index in written and outcomes[r.index].outcome != "delivered"]
        # Delivered all the same if they cannot be noted (logged); a replay of an older rejected
        # event of theirs may then apply it again over them.
        note_for_replays(store, delivered, waiting_links, deadline)
    failures = store.park(to_park, deadline, done=in_order, lanes=keys) if to_park else {}
    unrecorded = {r.event_id: failures[r.event_id].message for r in in_order if r.event_id in failures}
    if alone:
        unrecorded |= store.mark_done(alone, deadline)
    if unrecorded:
        # Delivered all the same: the event is not parked or published again by us; only a sender's
        # retry of this batch could apply it twice.
        logger.error(
            "delivered events could not be recorded",
            extra={"events": len(unrecorded), "reason": next(iter(unrecorded.values()))},
        )
    for r, reason, code in to_park:
        error = failures.get(r.event_id)
        if error is not None:
            logger.error("event could not be parked", extra={"reason": error.message})
            changed[r.index] = outcome_of(error)
        else:
            changed[r.index] = Outcome("deferred", 202, f"queued for retry: {reason}", code or "deferred")
    if kept and (lost := store.keep_rejected(kept, deadline)):
        logger.error(
            "rejected events could not be kept for replay",
            extra={"events": len(lost), "reason": next(iter(lost.values()))},
        )
    return changed


def note_for_replays(
    store: EventStore, delivered: Sequence[Record], written: Sequence[Record], deadline: float
) -> dict[str, str]:
    """While identify or group events are kept as rejected, the delivered ones (and the group
    events whose company was written while the person's link waits) leave watermarks, so a replay
    can tell what they superseded. Returns those that could not be noted (logged), with why."""
    state = [r for r in delivered if r.state] + list(written)
    unnoted = store.note_state(state, deadline) if state else {}
    if unnoted:
        logger.error(
            "delivered events could not be noted for replays",
            extra={"events": len(unnoted), "reason": next(iter(unnoted.values()))},
        )
    return unnoted


def _worth_keeping(outcome: Outcome) -> bool:
    # Gainsight's own refusals carry its error codes (or an HTTP status); ours are the mapping codes.
    return outcome.code in KEPT_REJECTIONS or outcome.code not in mapping.INTAKE_REJECTION_CODES


# -- shared -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivered:
    outcomes: dict[int, Outcome]  # every record but those waiting
    written: set[int]  # group events whose company was written, whatever became of their link
    waiting: set[int]  # records held behind a parked event of one of their entities
    recorded: frozenset[int] = frozenset()  # published events whose done record `on_published` wrote


def deliver(
    records: Sequence[Record],
    config: Settings,
    parts: Container,
    deadline: float,
    calls: CallLog,
    *,
    blocked: Iterable[str] = (),
    blocked_state: Iterable[str] = (),
    wait_for_quota: bool = False,
    quota_item: dict[str, Any] | None = None,
    on_published: Callable[[list[Record]], set[str]] | None = None,
    prepared: Callable[[Record, Destination], mapping.Operation] | None = None,
) -> Delivered:
    """Map the records (rejections are final), hold those behind `blocked` entities (identify and
    group events only behind `blocked_state` ones), deliver the rest.
    `on_published` writes the done records of published events (returning the event ids it could not),
    as they are published: at most `concurrency` are published and unrecorded at any time.
    `prepared`: how to map the records, when they are not events (a closed rollup window)."""
    if not records:
        return Delivered({}, set(), set())
    try:
        destination = parameters_store.destination(config)
    except ConfigurationError as error:
        logger.error("destination misconfigured", extra={"reason": error.message})
        return Delivered(dict.fromkeys((r.index for r in records), outcome_of(error)), set(), set())
    operations, outcomes = _operations(records, destination, prepared)
    mapped = [r for r in records if r.index not in outcomes]
    waiting = record.held_behind(mapped, set(blocked), set(blocked_state))
    operations = [(index, op) for index, op in operations if index not in waiting]
    if not operations:
        return Delivered(outcomes, set(), waiting)
    quota = SharedQuota(
        config.event_table,
        parts.store.dynamodb,
        _budget(config),
        max_wait=math.inf if wait_for_quota else INTAKE_QUOTA_WAIT_SECONDS,
        deadline=deadline,
        clock=clock,
        known=quota_item,
        # A request reserves its plan in one write; the drain, which may wait as long as it runs, a
        # few calls at a time (its calls may start long after a large reservation).
        chunk=CHUNK if wait_for_quota else None,
    )
    gainsight = Gainsight(
        destination,
        quota=quota,
        deadline=deadline,
        http=pool(config.concurrency),
        max_retries=config.max_retries,
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        log=calls,
        clock=clock,
    )
    ledger = None
    if on_published is not None:
        by_index = {r.index: r for r in records}

        def write(indexes: list[int]) -> set[int]:
            failed = on_published([by_index[i] for i in indexes])
            return {i for i in indexes if by_index[i].event_id in failed}

        ledger = Ledger(config.concurrency, write)
    delivery = Delivery(gainsight, parts.executor, parts.cache, ledger)
    going = {index for index, _ in operations}
    try:
        outcomes |= delivery.run(operations, record.components([r for r in records if r.index in going]))
    finally:
        quota.release()
    calls.usage = quota.usage if quota.usage.day_used else calls.usage
    recorded = frozenset(ledger.recorded) if ledger is not None else frozenset()
    return Delivered(outcomes, delivery.companies_written, waiting, recorded)


def _operations(
    records: Iterable[Record],
    destination: Destination,
    prepared: Callable[[Record, Destination], mapping.Operation] | None = None,
) -> tuple[list[tuple[int, mapping.Operation]], dict[int, Outcome]]:
    operations: list[tuple[int, mapping.Operation]] = []
    rejected: dict[int, Outcome] = {}
    for r in records:
        if prepared is not None:
            try:
                operations.append((r.index, prepared(r, destination)))
            except DestinationError as error:
                rejected[r.index] = outcome_of(error)
            continue
        name = r.event.get("event") if r.kind == "track" else None
        if isinstance(name, str) and destination.filters_out(name):
            reason = f"event {name} is filtered out by eventFilteringOption"
            rejected[r.index] = Outcome("filtered", 200, reason, "filtered")
            continue
        try:
            operations.append((r.index, mapping.operation(r.event, destination, link_only=r.link_only)))
        except DestinationError as error:
            rejected[r.index] = outcome_of(error)
    return operations, rejected


def _result(r: Record, outcome: Outcome) -> dict[str, Any]:
    result = {
        "index": r.index,
        "messageId": r.message_id,
        "type": r.kind or None,
        "outcome": outcome.outcome,
        "statusCode": outcome.status_code,
    }
    if outcome.error:
        result["error"] = outcome.error
    return result


def observe(
    message: str,
    records: Sequence[Record],
    outcomes: Mapping[int, Outcome],
    calls: CallLog,
    seconds: float,
    **extra: Any,
) -> None:
    """One summary log line and the metrics of one request or one drain run."""
    by_outcome = Counter(o.outcome for o in outcomes.values())
    metrics.add_metric(name="EventsReceived", unit=MetricUnit.Count, value=len(records))
    # Known types only: a sender's free-text type must not mint new metric dimensions.
    types = Counter((r.kind if r.kind in KNOWN_TYPES else "other", outcomes[r.index].outcome) for r in records)
    for (event_type, outcome), count in types.items():
        _dimensioned("Events", count, MetricUnit.Count, EventType=event_type, Outcome=outcome)
    for (operation, outcome), count in Counter((c.operation, c.outcome) for c in calls.calls).items():
        _dimensioned("GainsightRequests", count, MetricUnit.Count, Operation=operation, Outcome=outcome)
    for call in calls.calls:
        metrics.add_metric(name="GainsightLatency", unit=MetricUnit.Milliseconds, value=round(call.latency_ms, 1))
    metrics.add_metric(name="GainsightCalls", unit=MetricUnit.Count, value=len(calls.calls))
    metrics.add_metric(name="GainsightThrottled", unit=MetricUnit.Count, value=sum(c.throttled for c in calls.calls))
    if calls.usage is not None:
        _budget_metrics(calls.usage)
    # Events that wait for a configuration fix (a bad key, an unreadable parameter): alarmed on.
    misconfigured = sum(1 for o in outcomes.values() if o.code == "configuration")
    metrics.add_metric(name="ConfigurationErrors", unit=MetricUnit.Count, value=misconfigured)
    rejected_key = sum(1 for c in calls.calls if c.auth_rejected)
    metrics.add_metric(name="GainsightAuthRejected", unit=MetricUnit.Count, value=rejected_key)
    errors = Counter(o.code or "unknown" for o in outcomes.values() if o.outcome not in ("delivered", "rolled_up"))
    logger.info(
        message,
        extra={
            **extra,
            "events": len(records),
            **{
                outcome: by_outcome[outcome]
                for outcome in ("delivered", "rolled_up", "deferred", "filtered", "rejected", "failed")
            },
            "gainsight_calls": len(calls.calls),
            "duration_ms": round(seconds * 1000, 1),
            "errors": dict(errors) if errors else None,
        },
    )


def _budget_metrics(usage: Usage) -> None:
    """The day's Gainsight budget: spent, left, and when it runs out at the current rate."""
    config = settings()
    budget = _budget(config)
    metrics.add_metric(name="QuotaUsedToday", unit=MetricUnit.Count, value=usage.day_used)
    metrics.add_metric(name="QuotaLeftToday", unit=MetricUnit.Count, value=max(0, budget.per_day - usage.day_used))
    share = 100.0 * usage.day_used / budget.per_day
    metrics.add_metric(name="QuotaUsedTodayPercent", unit=MetricUnit.Percent, value=round(share, 2))
    ahead = forecast(budget, usage, clock.wall())
    metrics.add_metric(name="QuotaForecastExhaustedHours", unit=MetricUnit.Count, value=ahead.hours)
    metrics.add_metric(name="QuotaForecastShortHours", unit=MetricUnit.Count, value=ahead.short)


def _budget(config: Settings) -> Budget:
    return Budget(
        config.quota_per_minute,
        config.quota_per_day,
        config.quota_window_seconds,
        state_reserve=config.state_reserve_percent / 100,
    )


def _dimensioned(name: str, value: float, unit: MetricUnit, **dimensions: str) -> None:
    if is_metrics_disabled():  # single_metric, unlike Metrics, ignores POWERTOOLS_METRICS_DISABLED
        return
    with single_metric(name=name, unit=unit, value=value, default_dimensions=metrics.default_dimensions) as metric:
        for key, dim in dimensions.items():
            metric.add_dimension(name=key, value=dim)
