"""One request, start to finish: read and authenticate it, map its events, deliver them, and
answer with one result per event. Errors become responses here and nowhere else."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
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
from settings import Settings, settings

KNOWN_TYPES = frozenset({"identify", "group", "track", "page", "screen", "alias"})
SAFETY_MARGIN_SECONDS = 1.0  # left to answer the sender after the last Gainsight call

_executor: ThreadPoolExecutor | None = None
_cache: CompanyCache | None = None


@dataclass(frozen=True, slots=True)
class Request:
    body: str | None
    is_base64: bool
    headers: Mapping[str, str]
    path_type: str | None  # "identify" for /v1/identify; None for /v1/batch
    remaining_seconds: float


@dataclass(frozen=True, slots=True)
class Answer:
    status_code: int
    body: dict[str, Any]


def _container(config: Settings) -> tuple[ThreadPoolExecutor, CompanyCache]:
    global _executor, _cache
    if _executor is None or _cache is None:
        _executor = ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="gainsight")
        _cache = CompanyCache(ttl_seconds=config.company_cache_seconds)
    return _executor, _cache


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
    except RequestRejected as error:
        logger.info("request rejected", extra={"status": error.status_code, "reason": error.code})
        # {"code", "message"} is the error shape Segment's SDK reads.
        return Answer(error.status_code, {"code": error.code, "message": error.message})
    except ConfigurationError as error:
        # Without settings or write keys we cannot even authenticate: tell senders to retry later.
        logger.error("service misconfigured", extra={"reason": error.message})
        return Answer(503, {"code": "misconfigured", "message": "service is misconfigured; try again later"})

    deadline = started + max(
        0.0, min(config.delivery_budget_seconds, request.remaining_seconds - SAFETY_MARGIN_SECONDS)
    )
    calls = CallLog()
    outcomes = deliver(events, len(data), config, deadline, calls)
    results = [_result(index, event, outcomes[index]) for index, event in enumerate(events)]
    status = _status(outcomes.values())
    errors = Counter(o.code or "unknown" for o in outcomes.values() if o.outcome != "delivered")
    _observe(results, calls, status, errors, time.monotonic() - started)
    return Answer(status, {"results": results})


def deliver(events: list[Any], body_size: int, config: Settings, deadline: float, calls: CallLog) -> dict[int, Outcome]:
    """The shared delivery core: an outcome for every event index."""
    outcomes: dict[int, Outcome] = {}
    too_large = intake.oversized(events, body_size)
    candidates: list[tuple[int, Any]] = []
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            outcomes[index] = Outcome("rejected", 400, "event must be a JSON object", "invalid_event")
        elif index in too_large:
            outcomes[index] = Outcome(
                "rejected", 413, f"event is larger than {intake.MAX_EVENT_BYTES} bytes", "too_large"
            )
        else:
            candidates.append((index, event))
    if not candidates:
        return outcomes
    try:
        destination = parameters_store.destination(config)
    except ConfigurationError as error:
        logger.error("destination misconfigured", extra={"reason": error.message})
        return outcomes | dict.fromkeys((index for index, _ in candidates), outcome_of(error))
    operations: list[tuple[int, mapping.Operation]] = []
    for index, event in candidates:
        try:
            operations.append((index, mapping.operation(event, destination)))
        except EventRejected as error:
            outcomes[index] = outcome_of(error)
    if operations:
        executor, cache = _container(config)
        gainsight = Gainsight(
            destination,
            deadline=deadline,
            http=pool(config.concurrency),
            max_retries=config.max_retries,
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
            log=calls,
        )
        outcomes |= Delivery(gainsight, executor, cache).run(operations)
    return outcomes


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


def _status(outcomes: Any) -> int:
    """200 unless an event failed: then 429 when every failure was a 429, else 503, so senders retry."""
    failures = [o.status_code for o in outcomes if o.outcome == "failed"]
    if not failures:
        return 200
    return 429 if all(code == 429 for code in failures) else 503


def _observe(results: list[dict[str, Any]], calls: CallLog, status: int, errors: Counter[str], seconds: float) -> None:
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
    logger.info(
        "request processed",
        extra={
            "status": status,
            "events": len(results),
            "delivered": by_outcome["delivered"],
            "rejected": by_outcome["rejected"],
            "failed": by_outcome["failed"],
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
