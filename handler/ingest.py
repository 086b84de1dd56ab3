"""The shared delivery core, for both entry points: a sender's request (API Gateway) and events
coming back from the retry queue (SQS). Errors become responses and outcomes here and nowhere else."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

import intake
import mapping
import parameters_store
from delivery import CompanyCache, Delivery, Outcome, outcome_of
from errors import ConfigurationError, EventRejected, RequestRejected
from gainsight import CallLog, Gainsight, pool
from observability import logger, metrics
from parking import Parcel, ParkingError, RetryStore, parking_id, sequence
from settings import Settings, settings

HELD_IN_QUEUE = Outcome("failed", 409, "comes back after an earlier event of this person that failed", "held")
KNOWN_TYPES = frozenset({"identify", "group", "track", "page", "screen", "alias"})
SAFETY_MARGIN_SECONDS = 1.0  # left to answer after the last Gainsight call and parking
PARKING_RESERVE_SECONDS = 1.0  # of a request's budget, kept for parking what is still undelivered


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


@dataclass(frozen=True, slots=True)
class Returned:
    """An event back from the retry queue, with its place in its person's order."""

    event: Any
    person: str
    event_id: str
    sequence: str


class Container:
    """What a warm Lambda container keeps between invocations, created on first use."""

    def __init__(self, config: Settings) -> None:
        import boto3
        from botocore.config import Config

        from exactly_once import OncePublisher

        # Short timeouts and few retries: parking and deduplication must fit in the request's budget.
        aws = Config(
            connect_timeout=1,
            read_timeout=2,
            retries={"mode": "standard", "max_attempts": 2},
            max_pool_connections=config.concurrency + 2,
        )
        session = boto3.session.Session()
        dynamodb = session.client("dynamodb", config=aws)
        self.executor = ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="gainsight")
        self.cache = CompanyCache(ttl_seconds=config.company_cache_seconds)
        self.store = RetryStore(
            config.retry_queue_url, config.barrier_table, session.client("sqs", config=aws), dynamodb
        )
        self.once = OncePublisher(config.idempotency_table, config.idempotency_expiry_seconds, dynamodb)


_container: Container | None = None


def container(config: Settings) -> Container:
    global _container
    if _container is None:
        _container = Container(config)
    return _container


def handle(request: Request) -> Answer:
    """Answer one sender request; never raises for anything the sender or Gainsight does."""
    started = time.monotonic()
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
        events = intake.events_of(payload, request.path_type)
        parts = container(config)
    except RequestRejected as error:
        logger.info("request rejected", extra={"status": error.status_code, "reason": error.code})
        # {"code", "message"} is the error shape Segment's SDK reads.
        return Answer(error.status_code, {"code": error.code, "message": error.message})
    except ConfigurationError as error:
        # Without settings or write keys we cannot even authenticate: tell senders to retry later.
        logger.error("service misconfigured", extra={"reason": error.message})
        return Answer(503, {"code": "misconfigured", "message": "service is misconfigured; try again later"})

    budget = min(config.delivery_budget_seconds, request.remaining_seconds - SAFETY_MARGIN_SECONDS)
    deadline = started + max(0.0, budget - PARKING_RESERVE_SECONDS)
    if request.lambda_context is not None:
        parts.once.register(request.lambda_context)
    calls = CallLog()
    outcomes = process(events, config, parts, deadline, calls, body_size=len(data))
    results = [_result(index, event, outcomes[index]) for index, event in enumerate(events)]
    status = _status(outcomes.values())
    _observe("request processed", results, outcomes, calls, time.monotonic() - started, status=status)
    return Answer(status, {"results": results})


def redeliver(
    records: list[dict[str, Any]], remaining_seconds: float, lambda_context: Any = None
) -> dict[str, Outcome]:
    """Deliver events from the retry queue; an outcome per SQS message id."""
    started = time.monotonic()
    outcomes: dict[str, Outcome] = {}
    returned: list[Returned] = []
    message_ids: list[str] = []
    for record in records:
        try:
            body = json.loads(record["body"])
            returned.append(Returned(body["event"], body["person"], body["eventId"], body["sequence"]))
            message_ids.append(record["messageId"])
        except (KeyError, TypeError, ValueError):
            # Not a message we wrote: leave it to the dead-letter queue for a human to look at.
            logger.error("unreadable retry message", extra={"sqs_message_id": record.get("messageId")})
            outcomes[record.get("messageId", "")] = Outcome("failed", 400, "unreadable retry message", "unreadable")
    # Barrier order, not arrival order: two requests may have queued one person's events out of turn.
    order = sorted(range(len(returned)), key=lambda n: returned[n].sequence)
    returned, message_ids = [returned[n] for n in order], [message_ids[n] for n in order]
    try:
        config = settings()
        parts = container(config)
    except ConfigurationError as error:
        logger.error("service misconfigured", extra={"reason": error.message})
        return outcomes | dict.fromkeys(message_ids, outcome_of(error))
    if lambda_context is not None:
        parts.once.register(lambda_context)
    deadline = started + max(0.0, remaining_seconds - SAFETY_MARGIN_SECONDS)
    calls = CallLog()
    events = [item.event for item in returned]
    by_index = process(events, config, parts, deadline, calls, returned=returned)
    for index, outcome in by_index.items():
        if outcome.outcome == "rejected":
            # The sender was told "deferred": this log line and the metrics are where the reason goes.
            logger.warning(
                "parked event rejected", extra={"message_id": _message_id(events[index]), "reason": outcome.code}
            )
    results = [_result(index, event, by_index[index]) for index, event in enumerate(events)]
    _observe("retry batch processed", results, by_index, calls, time.monotonic() - started)
    return outcomes | {message_ids[index]: outcome for index, outcome in by_index.items()}


def _message_id(event: Any) -> Any:
    return event.get("messageId") if isinstance(event, dict) else None


def process(
    events: list[Any],
    config: Settings,
    parts: Container,
    deadline: float,
    calls: CallLog,
    *,
    body_size: int = 0,
    returned: list[Returned] | None = None,
) -> dict[int, Outcome]:
    """An outcome for every event. From a sender (`returned` is None), events that cannot be
    delivered now are parked and `deferred`; from the retry queue they stay `failed`, so SQS
    brings them back."""
    outcomes: dict[int, Outcome] = {}
    refused = intake.refused_events(events, body_size)
    candidates: list[int] = []
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            outcomes[index] = Outcome("rejected", 400, "event must be a JSON object", "invalid_event")
        elif index in refused:
            outcomes[index] = outcome_of(refused[index])
        else:
            candidates.append(index)
    if not candidates:
        return outcomes
    if returned is None:
        persons = {index: mapping.person_key(events[index]) for index in candidates}
        event_ids = {index: parking_id(events[index]) for index in candidates}
    else:
        persons = {index: returned[index].person for index in candidates}
        event_ids = {index: returned[index].event_id for index in candidates}

    try:
        waiting = _waiting(candidates, persons, parts.store, returned)
    except ParkingError as error:
        return outcomes | dict.fromkeys(candidates, outcome_of(error))
    if returned is not None:
        outcomes |= dict.fromkeys(
            waiting, Outcome("failed", 409, "an older event of this person is waiting", "waiting")
        )
    deliverable = [(index, events[index]) for index in candidates]
    outcomes |= _deliver(
        deliverable, hold=waiting, persons=persons, config=config, parts=parts, deadline=deadline, calls=calls
    )

    if returned is None:
        unsent = [i for i in candidates if i not in outcomes or outcomes[i].outcome == "failed"]
        outcomes |= _park(
            unsent,
            events,
            persons=persons,
            event_ids=event_ids,
            outcomes=outcomes,
            store=parts.store,
            executor=parts.executor,
        )
    else:
        outcomes |= _release(candidates, outcomes, returned, parts.store)
    return outcomes


def _waiting(
    candidates: list[int], persons: Mapping[int, str], store: RetryStore, returned: list[Returned] | None
) -> set[int]:
    """Events that must not overtake an older parked event of the same person."""
    if returned is None:
        blocked = store.blocked(persons.values())
        return {index for index in candidates if persons[index] in blocked}
    waiting: set[int] = set()
    by_person: dict[str, list[int]] = {}
    for index in candidates:
        by_person.setdefault(persons[index], []).append(index)
    for person, own in by_person.items():
        ids = [returned[i].event_id for i in own]
        try:
            behind = store.waiting_before(person, ids, min(returned[i].sequence for i in own))
        except Exception as error:
            raise ParkingError(f"barrier table could not be read ({type(error).__name__})") from error
        if behind:
            waiting.update(own)
    return waiting


def _deliver(
    candidates: list[tuple[int, Any]],
    *,
    hold: set[int],
    persons: Mapping[int, str],
    config: Settings,
    parts: Container,
    deadline: float,
    calls: CallLog,
) -> dict[int, Outcome]:
    """Map every candidate (rejections are final) and deliver those not held behind a barrier."""
    if not candidates:
        return {}
    try:
        destination = parameters_store.destination(config)
    except ConfigurationError as error:
        logger.error("destination misconfigured", extra={"reason": error.message})
        return dict.fromkeys((index for index, _ in candidates if index not in hold), outcome_of(error))
    outcomes: dict[int, Outcome] = {}
    operations: list[tuple[int, mapping.Operation]] = []
    for index, event in candidates:
        try:
            op = mapping.operation(event, destination)
        except EventRejected as error:
            outcomes[index] = outcome_of(error)
        else:
            if index not in hold:
                operations.append((index, op))
    if operations:
        gainsight = Gainsight(
            destination,
            deadline=deadline,
            http=pool(config.concurrency),
            max_retries=config.max_retries,
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
            log=calls,
        )
        outcomes |= Delivery(gainsight, parts.executor, parts.cache, parts.once).run(operations, persons)
    return outcomes


def _park(
    indexes: list[int],
    events: list[Any],
    *,
    persons: Mapping[int, str],
    event_ids: Mapping[int, str],
    outcomes: Mapping[int, Outcome],
    store: RetryStore,
    executor: Executor,
) -> dict[int, Outcome]:
    """Park undelivered events in order: `deferred`, or `failed` (503) when parking itself fails."""
    if not indexes:
        return {}
    reasons = {i: outcomes[i].error if i in outcomes else "an earlier event of this person is waiting" for i in indexes}
    parcels = [Parcel(i, persons[i], event_ids[i], sequence(i), events[i], reasons[i]) for i in indexes]
    failures = store.park(parcels, executor)
    parked: dict[int, Outcome] = {}
    for index in indexes:
        if index in failures:
            logger.error("event could not be parked", extra={"reason": failures[index].message})
            parked[index] = outcome_of(failures[index])
        else:
            parked[index] = Outcome("deferred", 202, f"queued for retry: {reasons[index]}", "deferred")
    return parked


def _release(
    indexes: list[int], outcomes: Mapping[int, Outcome], returned: list[Returned], store: RetryStore
) -> dict[int, Outcome]:
    """Lift returned events that were delivered or rejected from their person's barrier — but
    only up to each person's first failure: SQS brings the later ones back after it (Powertools'
    FIFO processor reports them failed too), so they stay parked and are applied again after it."""
    changed: dict[int, Outcome] = {}
    stopped: set[str] = set()
    for index in indexes:  # in barrier order
        item = returned[index]
        if item.person in stopped:
            changed[index] = HELD_IN_QUEUE
            continue
        if outcomes[index].outcome == "failed":
            stopped.add(item.person)
            continue
        try:
            store.release(item.person, item.event_id, item.sequence)
        except Exception as error:  # the event will come back and be released then
            stopped.add(item.person)
            changed[index] = Outcome(
                "failed", 503, f"barrier could not be released ({type(error).__name__})", "parking"
            )
    return changed


def _result(index: int, event: Any, outcome: Outcome) -> dict[str, Any]:
    message_id = event.get("messageId") if isinstance(event, dict) else None
    result = {
        "index": index,
        "messageId": message_id if isinstance(message_id, str | int) else None,
        "type": mapping.event_type(event) or None if isinstance(event, dict) else None,
        "outcome": outcome.outcome,
        "statusCode": outcome.status_code,
    }
    if outcome.error:
        result["error"] = outcome.error
    return result


def _status(outcomes: Iterable[Outcome]) -> int:
    """200 when every event is delivered, rejected or deferred; 503 when one could not even be
    parked, so the sender retries the batch."""
    return 503 if any(o.outcome == "failed" for o in outcomes) else 200


def _observe(
    message: str,
    results: list[dict[str, Any]],
    outcomes: Mapping[int, Outcome],
    calls: CallLog,
    seconds: float,
    **extra: Any,
) -> None:
    """One summary log line and the metrics of one request or one batch from the retry queue."""
    by_outcome = Counter(r["outcome"] for r in results)
    metrics.add_metric(name="EventsReceived", unit=MetricUnit.Count, value=len(results))
    # Known types only: a sender's free-text type must not mint new metric dimensions.
    types = Counter((r["type"] if r["type"] in KNOWN_TYPES else "other", r["outcome"]) for r in results)
    for (event_type, outcome), count in types.items():
        _dimensioned("Events", count, MetricUnit.Count, EventType=event_type, Outcome=outcome)
    for (operation, outcome), count in Counter((c.operation, c.outcome) for c in calls.calls).items():
        _dimensioned("GainsightRequests", count, MetricUnit.Count, Operation=operation, Outcome=outcome)
    for call in calls.calls:
        metrics.add_metric(name="GainsightLatency", unit=MetricUnit.Milliseconds, value=round(call.latency_ms, 1))
    metrics.add_metric(name="GainsightCalls", unit=MetricUnit.Count, value=len(calls.calls))
    metrics.add_metric(name="GainsightThrottled", unit=MetricUnit.Count, value=sum(c.throttled for c in calls.calls))
    rejected_key = sum(1 for c in calls.calls if c.auth_rejected)
    metrics.add_metric(name="GainsightAuthRejected", unit=MetricUnit.Count, value=rejected_key)
    errors = Counter(o.code or "unknown" for o in outcomes.values() if o.outcome != "delivered")
    logger.info(
        message,
        extra={
            **extra,
            "events": len(results),
            **{outcome: by_outcome[outcome] for outcome in ("delivered", "deferred", "rejected", "failed")},
            "gainsight_calls": len(calls.calls),
            "duration_ms": round(seconds * 1000, 1),
            "errors": dict(errors) if errors else None,
        },
    )


def _dimensioned(name: str, value: float, unit: MetricUnit, **dimensions: str) -> None:
    if is_metrics_disabled():  # single_metric, unlike Metrics, ignores POWERTOOLS_METRICS_DISABLED
        return
    with single_metric(name=name, unit=unit, value=value, default_dimensions=metrics.default_dimensions) as metric:
        for key, dim in dimensions.items():
            metric.add_dimension(name=key, value=dim)
