"""Hostile input through lambda_handler: whatever the body, headers, encoding or event shape, the
answer is a well-formed response with a clear error, never an unhandled exception or a 500."""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.gainsight_sandbox import Sandbox
from devtools.local import DEMO_WRITE_KEY, api_event, invoke

OUTCOMES = {"delivered", "deferred", "rejected", "failed"}
SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
trait_names = st.sampled_from(
    [
        "email",
        "name",
        "firstName",
        "last_name",
        "employees",
        "location",
        "masterAvatarTypeCode",
        "plan",
        "region",
        "users",
    ]
)
traits = st.dictionaries(trait_names, json_values | st.sampled_from(["ada@example.com", "Acme"]), max_size=6)
events = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["identify", "group", "track", "page", "Track", "", "alias"]) | json_values,
        "messageId": st.text(max_size=12) | json_values,
        "event": st.sampled_from(["Ticket Closed", "Feature Used", "Unknown"]) | json_values,
        "traits": traits | json_values,
        "context": st.fixed_dictionaries(
            {}, optional={"traits": traits | json_values, "externalId": st.lists(json_values, max_size=3) | json_values}
        )
        | json_values,
        "properties": st.dictionaries(st.text(max_size=8), json_values, max_size=4) | json_values,
        "userId": json_values,
        "anonymousId": json_values,
    },
)
bodies = st.fixed_dictionaries(
    {"batch": st.lists(events | json_values, max_size=6) | json_values},
    optional={"writeKey": st.text(max_size=10) | json_values, "sentAt": json_values},
)


def _assert_well_formed(response: dict[str, Any]) -> dict[str, Any]:
    assert response["statusCode"] in {200, 400, 401, 404, 413, 415, 503}
    body = json.loads(response["body"])
    assert body.get("code") != "internal_error", body  # our catch-all must never be what answered
    if response["statusCode"] == 200:
        assert all(result["outcome"] in OUTCOMES for result in body["results"])
    else:
        assert body["message"]
    return body


@SETTINGS
@given(body=bodies)
def test_any_event_shape_gets_an_outcome_per_event(sandbox: Sandbox, body: dict[str, Any]) -> None:
    response = invoke(api_event("/v1/batch", json.dumps(body).encode()))
    answer = _assert_well_formed(response)
    if response["statusCode"] == 200:
        assert [r["index"] for r in answer["results"]] == list(range(len(body["batch"])))
        assert all(r["outcome"] != "failed" for r in answer["results"])  # parking never failed here
        assert all(r.get("error") for r in answer["results"] if r["outcome"] == "rejected")


@SETTINGS
@given(event=events, path=st.sampled_from(["identify", "track", "group", "page", "screen", "alias"]))
def test_any_single_event_gets_an_outcome(sandbox: Sandbox, event: dict[str, Any], path: str) -> None:
    _assert_well_formed(invoke(api_event(f"/v1/{path}", json.dumps(event).encode())))


@SETTINGS
@given(
    body=st.binary(max_size=300),
    as_base64=st.booleans(),
    encoding=st.sampled_from([None, "gzip", "GZIP", "identity", "deflate", ""]),
    authorization=st.sampled_from(
        [None, "Basic", "Basic !!!", "Bearer x", "basic " + base64.b64encode(b"demo-write-key:").decode()]
    )
    | st.text(max_size=30),
    http_api=st.booleans(),
)
def test_any_bytes_and_headers_get_a_clear_answer(
    sandbox: Sandbox, *, body: bytes, as_base64: bool, encoding: str | None, authorization: str | None, http_api: bool
) -> None:
    headers = {"Content-Encoding": encoding} if encoding is not None else {}
    event = api_event("/v1/batch", body, write_key=None, headers=headers, base64_body=as_base64, http_api=http_api)
    if authorization is not None:
        event["headers"]["authorization" if http_api else "Authorization"] = authorization
    _assert_well_formed(invoke(event))


def _deep(depth: int) -> bytes:
    return b'{"batch": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        (_deep(100_000), {}, 400, "request body is not valid JSON: nested too deeply"),
        (b'{"batch": [' + b"1" * 5000 + b"]}", {}, 400, "request body is not valid JSON"),
        (b'{"batch": "' + b"x" * 5_000_000 + b'"}', {}, 413, "request body is larger than"),
        (b'{"batch": [{"type": "identify", "traits": {"email": "\xc3\x28"}}]}', {}, 400, "not valid UTF-8"),
        (b'{"batch": [], "batch": {"type": "identify"}}', {}, 400, "request body must have a batch array"),
        (b'{"batch": {"type": "identify"}}', {}, 400, "request body must have a batch array"),
        (b"null", {}, 400, "request body must be a JSON object"),
        (b'{"batch": [Infinity]}', {}, 400, "request body is not valid JSON: Infinity"),
        (gzip.compress(b"{" * 5_000_000), {"Content-Encoding": "gzip"}, 413, "once decompressed"),
        (gzip.compress(b'{"batch": [1]}')[:-4], {"Content-Encoding": "gzip"}, 400, "request body is not valid gzip"),
    ],
    ids=[
        "deep",
        "huge-int",
        "huge-string",
        "bad-utf8",
        "duplicate-keys",
        "wrong-type",
        "null",
        "infinity",
        "bomb",
        "cut",
    ],
)
def test_hostile_bodies(sandbox: Sandbox, body: bytes, headers: dict[str, str], status: int, message: str) -> None:
    response = invoke(api_event("/v1/batch", body, headers=headers))
    answer = _assert_well_formed(response)
    assert response["statusCode"] == status
    assert message in answer["message"]
    assert sandbox.state.count() == 0


def test_lone_surrogates_and_odd_values_are_delivered_or_rejected(sandbox: Sandbox) -> None:
    batch = (
        '[{"type": "identify", "messageId": "s1", "traits": {"email": "ada@example.com", "name": "\\ud800"}},'
        ' {"type": "track", "messageId": "s2", "event": "Ticket Closed",'
        '  "properties": {"note": "\\udfff", "n": 1e308}},'
        ' {"type": "group", "messageId": "s3", "traits": {"name": 12345, "employees": "12"},'
        '  "context": {"traits": {"email": "ada@example.com"}}},'
        ' {"type": "identify", "messageId": "s4", "traits": {"email": ["ada@example.com"]}}]'
    )
    response = invoke(api_event("/v1/batch", ('{"batch": ' + batch + "}").encode()))
    answer = _assert_well_formed(response)
    assert [r["outcome"] for r in answer["results"]] == ["delivered", "delivered", "delivered", "rejected"]
    assert answer["results"][3]["error"] == "email must be a string"


def test_a_valid_key_in_the_wrong_place_is_still_refused(sandbox: Sandbox) -> None:
    body = json.dumps({"batch": [{"type": "identify", "traits": {"email": "a@x.io"}}], "writeKey": 12}).encode()
    response = invoke(api_event("/v1/batch", body, write_key=None, headers={"X-Write-Key": DEMO_WRITE_KEY}))
    assert response["statusCode"] == 401
