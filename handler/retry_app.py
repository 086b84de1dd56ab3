"""SQS entry point: the retry queue's consumer, on the same delivery core as the HTTP API."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

import ingest
from observability import logger, metrics

# A failed message holds back the later messages of its group (its person) in the same batch.
processor = SqsFifoPartialProcessor(skip_group_on_error=True)
# Report an all-failed batch as batchItemFailures too, not as a Lambda error (its __init__ has no such option).
processor.raise_on_entire_batch_failure = False


class RetryLater(Exception):
    """The event is still undeliverable: SQS makes it visible again, then dead-letters it."""


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Deliver parked events; report the ones to retry as batchItemFailures."""
    outcomes = ingest.redeliver(event.get("Records") or [], context.get_remaining_time_in_millis() / 1000, context)

    def check(record: SQSRecord) -> None:
        outcome = outcomes[record.message_id]
        if outcome.outcome == "failed":
            raise RetryLater(outcome.code or "failed")

    return dict(process_partial_response(event=event, record_handler=check, processor=processor, context=context))
