"""API Gateway entry point: routes RudderStack/Segment HTTP API calls to the delivery core."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.router import Router
from aws_lambda_powertools.utilities.typing import LambdaContext

import ingest
from observability import logger, metrics

SINGLE_EVENT_PATHS = frozenset({"identify", "track", "group", "page", "screen", "alias"})

router = Router()


def _json(status_code: int, body: dict[str, Any]) -> Response:
    return Response(status_code=status_code, content_type="application/json", body=json.dumps(body))


def _ingest(path_type: str | None) -> Response:
    event = router.current_event
    answer = ingest.handle(
        ingest.Request(
            body=event.body,
            is_base64=bool(event.is_base64_encoded),
            headers=event.raw_event.get("headers") or {},  # API Gateway sends null when there are none
            path_type=path_type,
            remaining_seconds=router.lambda_context.get_remaining_time_in_millis() / 1000,
            lambda_context=router.lambda_context,
        )
    )
    return _json(answer.status_code, answer.body)


@router.get("/health")
def health() -> Response:
    return _json(200, {"status": "ok"})


@router.post("/v1/batch")
def batch() -> Response:
    return _ingest(None)


@router.post("/v1/<event_type>")
def single(event_type: str) -> Response:
    if event_type not in SINGLE_EVENT_PATHS:
        return _json(404, {"message": f"no such endpoint: /v1/{event_type}"})
    return _ingest(event_type)


rest_api = APIGatewayRestResolver()
rest_api.include_router(router)
http_api = APIGatewayHttpResolver()
http_api.include_router(router)


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Accept REST API (payload 1.0) and HTTP API (payload 2.0) proxy events."""
    request_context = event.get("requestContext") if isinstance(event, dict) else None
    if isinstance(request_context, dict):
        logger.set_correlation_id(request_context.get("requestId"))
    resolver = http_api if isinstance(event, dict) and event.get("version") == "2.0" else rest_api
    try:
        return resolver.resolve(event, context)
    except Exception:
        # A bug of ours must not lose the batch: 503 makes every sender retry it.
        logger.exception("unhandled error")
        return {
            "statusCode": 503,
            "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"code": "internal_error", "message": "internal error; retry later"}),
            "isBase64Encoded": False,
        }
