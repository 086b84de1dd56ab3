"""Scheduled entry point: delivers parked events with the same core as the HTTP API. The schedule
only wakes it; the event store says what is due, so a missed run delays events, never loses them."""

from __future__ import annotations

import dataclasses
from typing import Any

import drain
from aws_lambda_powertools.utilities.typing import LambdaContext

from observability import logger, metrics


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Drain what is due until nothing is or the run's budget is spent; a summary of what it did."""
    report = drain.drain(context.get_remaining_time_in_millis() / 1000)
    return dataclasses.asdict(report)
