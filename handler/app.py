"""API Gateway entry point: routes RudderStack/Segment HTTP API calls to the delivery core."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.router import Router
from aws_lambda_powertools.utilities.typing import LambdaContext

import ingest
from observability import logger, metrics

SINGLE_EVENT_PATHS = frozenset({"identify", "track", "group", "page", "screen", "alias"})
# Each path and its one method, to tell "no such endpoint" (404) from "wrong method" (405).
ROUTES = {"/health": "GET", "/v1/batch": "POST", **{f"/v1/{name}": "POST" for name in SINGLE_EVENT_PATHS}}
NOT_API_GATEWAY = (
    "expected an API Gateway proxy event (REST API payload 1.0 with httpMethod and path, or HTTP API"
    " payload 2.0 with requestContext.http); this function answers RudderStack and Segment HTTP calls"
)

router = Router()


def _json(status_code: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status_code, content_type="application/json", body=json.dumps(body), headers=headers)


def _error(status_code: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    # {"code", "message"} is the error shape Segment's SDK reads: every non-2xx answer has it.
    return _json(status_code, {"code": code, "message": message}, headers)


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
    body = answer.body
    if answer.status_code >= 300 and "code" not in body:
        # Events that could not even be parked: the sender must retry the batch.
        failed = sum(1 for result in body.get("results", ()) if result.get("outcome") == "failed")
        body = {"code": "retry", "message": f"{failed} event(s) could not be accepted; retry the request"} | body
    return _json(answer.status_code, body)


@router.exception_handler(NotFoundError)
def no_such_route(_: NotFoundError) -> Response:
    """Replaces Powertools' own 404 body ({"statusCode", "message"}), and tells a wrong method apart."""
    event = router.current_event
    method, path = event.http_method.upper(), event.path
    shown = path if len(path) <= 100 else path[:97] + "..."
    if (allowed := ROUTES.get(path)) is not None:
        return _error(
            405, "method_not_allowed", f"{method} is not allowed on {shown}; use {allowed}", headers={"Allow": allowed}
        )
    return _error(404, "not_found", f"no such endpoint: {method} {shown}")


@router.get("/health")
def health() -> Response:
    return _json(200, {"status": "ok"})


@router.post("/v1/batch")
def batch() -> Response:
    return _ingest(None)


@router.post("/v1/<event_type>")
def single(event_type: str) -> Response:
    if event_type not in SINGLE_EVENT_PATHS:
        raise NotFoundError()
    return _ingest(event_type)


rest_api = APIGatewayRestResolver()
rest_api.include_router(router)
http_api = APIGatewayHttpResolver()
http_api.include_router(router)


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Accept REST API (payload 1.0) and HTTP API (payload 2.0) proxy events."""
    if not _is_api_gateway_event(event):
        # The console's test event ({}) or a wrong trigger: say what is expected, not a traceback.
        logger.warning("not an API Gateway proxy event", extra={"event_type": type(event).__name__})
        return _proxy_answer(400, {"code": "not_api_gateway_event", "message": NOT_API_GATEWAY})
    request_context = event.get("requestContext") if isinstance(event, dict) else None
    if isinstance(request_context, dict):
        logger.set_correlation_id(request_context.get("requestId"))
    resolver = http_api if isinstance(event, dict) and event.get("version") == "2.0" else rest_api
    try:
        return resolver.resolve(event, context)
    except Exception:
        # A bug of ours must not lose the batch: 503 makes every sender retry it.
        logger.exception("unhandled error")
        return _proxy_answer(503, {"code": "internal_error", "message": "internal error; retry later"})


def _is_api_gateway_event(event: Any) -> bool:
    if not isinstance(event, dict):
        return False
    if event.get("version") == "2.0":
        context = event.get("requestContext")
        http = context.get("http") if isinstance(context, dict) else None
        return isinstance(http, dict) and isinstance(http.get("method"), str) and isinstance(event.get("rawPath"), str)
    return isinstance(event.get("httpMethod"), str) and isinstance(event.get("path"), str)


def _proxy_answer(status_code: int, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "statusCode": status_code,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }
