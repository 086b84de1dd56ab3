"""Track events are published at most once per event id (Powertools Idempotency on DynamoDB):
a sender's retry of a delivered event is answered `delivered` without publishing it again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
)

from errors import GainsightError

KEY_PREFIX = "gainsight-destination.track-publish"


class OncePublisher:
    """Runs a publish call unless the same event id was already published."""

    def __init__(self, table: str, expiry_seconds: int, dynamodb: Any) -> None:
        self.config = IdempotencyConfig(
            event_key_jmespath="id", expires_after_seconds=expiry_seconds, raise_on_no_idempotency_key=True
        )
        persistence = DynamoDBPersistenceLayer(table_name=table, boto3_client=dynamodb)

        # The key prefix is fixed: by default Powertools prefixes the Lambda function's name, and the
        # API and retry functions must see each other's records.
        @idempotent_function(
            data_keyword_argument="event", config=self.config, persistence_store=persistence, key_prefix=KEY_PREFIX
        )
        def publish(event: dict[str, str], send: Callable[[], None]) -> dict[str, bool]:
            send()
            return {"published": True}

        self._publish = publish

    def register(self, lambda_context: Any) -> None:
        """In-progress records expire with the invocation, so a crash cannot block an event for good."""
        self.config.register_lambda_context(lambda_context)

    def publish(self, event_id: str, send: Callable[[], None]) -> None:
        """Call `send` once per event id.

        Raises:
            GainsightError: from `send` (the record is dropped, so a retry can publish), or retryable
                when another request is publishing the same event right now or the store is down.
        """
        try:
            self._publish(event={"id": event_id}, send=send)
        except IdempotencyAlreadyInProgressError:
            raise GainsightError(
                "the same event is being published by another request",
                status_code=409,
                retryable=True,
                code="in_progress",
            ) from None
        except IdempotencyPersistenceLayerError as error:
            raise GainsightError(
                "the deduplication table is unavailable", status_code=503, retryable=True, code="dedup_unavailable"
            ) from error
