"""One error shape for every non-2xx answer, {"code", "message"}: unknown routes, wrong methods,
events that are not API Gateway requests at all, and batches that must be retried."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devtools.gainsight_sandbox import Sandbox
from devtools.local import LambdaContext, api_event, invoke
from tests.helpers import identify, post, track


def _answer(response: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return response["statusCode"], json.loads(response["body"])


@pytest.mark.parametrize("http_api", [False, True], ids=["rest", "http"])
@pytest.mark.parametrize(
    ("method", "path", "status", "body"),
    [
        ("POST", "/v1/unknown", 404, {"code": "not_found", "message": "no such endpoint: POST /v1/unknown"}),
        ("GET", "/nowhere", 404, {"code": "not_found", "message": "no such endpoint: GET /nowhere"}),
        ("DELETE", "/v1/batch/x", 404, {"code": "not_found", "message": "no such endpoint: DELETE /v1/batch/x"}),
        (
            "GET",
            "/v1/batch",
            405,
            {"code": "method_not_allowed", "message": "GET is not allowed on /v1/batch; use POST"},
        ),
        (
            "PUT",
            "/v1/identify",
            405,
            {"code": "method_not_allowed", "message": "PUT is not allowed on /v1/identify; use POST"},
        ),
        ("POST", "/health", 405, {"code": "method_not_allowed", "message": "POST is not allowed on /health; use GET"}),
    ],
)
def test_unknown_routes_and_methods_answer_code_and_message(sandbox: Sandbox, *, http_api, method, path, status, body):
    # Given a request to a path or with a method this API does not serve
    event = api_event(path, {"batch": [identify()]}, method=method, http_api=http_api)
    # When it arrives
    response = invoke(event)
    # Then the answer has the one error shape (not Powertools' {"statusCode", "message"})
    assert _answer(response) == (status, body)
    if status == 405:
        allowed = body["message"].rsplit(" ", 1)[-1]
        # REST API answers carry headers as multiValueHeaders, HTTP API ones as headers
        headers = response.get("headers") or {k: v[0] for k, v in response["multiValueHeaders"].items()}
        assert headers["Allow"] == allowed
    assert sandbox.state.count() == 0


@pytest.mark.parametrize(
    "event",
    [
        {},
        [],
        None,
        "hello",
        {"Records": [{"eventSource": "aws:sqs", "body": "{}"}]},
        {"version": "2.0", "requestContext": {}},
        {"httpMethod": "POST"},
    ],
    ids=["console-test-event", "list", "null", "string", "sqs", "v2-without-http", "v1-without-path"],
)
def test_an_event_that_is_not_an_api_gateway_request_is_400_saying_what_is_expected(sandbox: Sandbox, event):
    # When the function is invoked with something that is not an API Gateway proxy event
    status, body = _answer(invoke(event, LambdaContext()))
    # Then it is told what is expected, not answered 503 with a traceback
    assert status == 400
    assert body["code"] == "not_api_gateway_event"
    assert body["message"].startswith("expected an API Gateway proxy event (REST API payload 1.0")
    assert sandbox.state.count() == 0


def test_a_batch_that_could_not_be_kept_answers_503_with_code_and_message(sandbox: Sandbox, monkeypatch) -> None:
    # Given the event store unreachable
    monkeypatch.setenv("EVENT_TABLE", "missing-table")
    # When a batch arrives
    reply = post("/v1/batch", {"batch": [track(message_id="t"), identify(message_id="i")]})
    # Then the sender is told to retry in the one error shape, with the per-event results too
    assert reply.status == 503
    assert reply.body["code"] == "retry"
    assert reply.body["message"] == "2 event(s) could not be accepted; retry the request"
    assert reply.outcomes == ["failed", "failed"]
