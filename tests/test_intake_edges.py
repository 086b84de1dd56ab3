"""Intake edge cases through lambda_handler: nesting too deep for one event or for the body,
non-finite numbers however spelt, and gzip bodies of several members or with junk after them."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest

from devtools.gainsight_sandbox import Sandbox
from tests.helpers import identify, post, track

GZIP = {"headers": {"Content-Encoding": "gzip"}}


def _nested(levels: int) -> Any:
    """A value that is `levels` arrays deep: _nested(1) == []."""
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


def _identify_deep(levels: int, message_id: str) -> dict[str, Any]:
    # The event is level 1 and traits level 2, so the array under it adds levels - 2.
    return identify(message_id=message_id, deep=_nested(levels - 2))


def test_an_event_nested_too_deep_is_rejected_alone(sandbox: Sandbox) -> None:
    # Given a batch where one event is 65 levels deep, one exactly 64, and one ordinary
    batch = [_identify_deep(65, "deep"), _identify_deep(64, "edge"), identify(message_id="ok", email="b@x.io")]
    # When it is posted
    reply = post("/v1/batch", {"batch": batch})
    # Then only the deep one is rejected, naming the problem, and the others are delivered
    assert reply.status == 200
    assert reply.outcomes == ["rejected", "delivered", "delivered"]
    assert reply.body["results"][0]["statusCode"] == 400
    assert reply.body["results"][0]["error"] == "event is nested deeper than 64 levels"


def test_an_event_nested_hundreds_deep_is_rejected_not_a_crash(sandbox: Sandbox) -> None:
    reply = post("/v1/batch", {"batch": [_identify_deep(500, "deep"), track()]})
    assert reply.status == 200
    assert reply.outcomes == ["rejected", "delivered"]
    assert sandbox.state.count() == 1


def test_a_single_event_path_rejects_a_deep_event_as_an_outcome(sandbox: Sandbox) -> None:
    reply = post("/v1/identify", _identify_deep(100, "deep"))
    assert (reply.status, reply.outcomes) == (200, ["rejected"])
    assert sandbox.state.count() == 0


def test_a_body_nested_too_deep_outside_its_batch_is_400(sandbox: Sandbox) -> None:
    # Given a batch body whose context (not an event) is 100 levels deep
    reply = post("/v1/batch", {"batch": [identify()], "context": _nested(100)})
    # Then the whole request is refused, and nothing is sent
    assert reply.status == 400
    assert reply.body == {
        "code": "too_deep",
        "message": "request body is nested deeper than 64 levels outside its batch",
    }
    assert sandbox.state.count() == 0


@pytest.mark.parametrize(
    ("number", "message"),
    [
        ("1e999", "request body is not valid JSON: number 1e999 is out of range"),
        ("-1e999", "request body is not valid JSON: number -1e999 is out of range"),
        ("1E+400", "request body is not valid JSON: number 1E+400 is out of range"),
        ("9" * 400 + ".5", "request body is not valid JSON: number " + "9" * 37 + "... is out of range"),
        ("Infinity", "request body is not valid JSON: Infinity is not valid JSON"),
        ("-Infinity", "request body is not valid JSON: -Infinity is not valid JSON"),
        ("NaN", "request body is not valid JSON: NaN is not valid JSON"),
    ],
)
def test_non_finite_numbers_are_refused_however_spelt(sandbox: Sandbox, number: str, message: str) -> None:
    # Given a track event whose property is a number no JSON consumer can carry
    body = '{"batch": [{"type": "track", "event": "Ticket Closed", "properties": {"n": ' + number + "}}]}"
    # When it is posted
    reply = post("/v1/batch", body.encode())
    # Then the body is refused naming the number, and nothing is sent
    assert reply.status == 400
    assert reply.body == {"code": "bad_json", "message": message}
    assert sandbox.state.count() == 0


def test_large_finite_numbers_still_pass(sandbox: Sandbox) -> None:
    body = b'{"batch": [{"type": "track", "event": "Ticket Closed", "properties": {"n": 1e308, "m": -1e-999}}]}'
    assert post("/v1/batch", body).outcomes == ["delivered"]


def _two_members(body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    half = len(data) // 2
    return gzip.compress(data[:half]) + gzip.compress(data[half:])  # what `cat a.gz b.gz` gives


def test_a_multi_member_gzip_body_is_read_in_full(sandbox: Sandbox) -> None:
    # Given a body compressed as two concatenated gzip members
    body = _two_members({"batch": [identify(message_id="a"), track(message_id="b")]})
    # When it is posted
    reply = post("/v1/batch", body, **GZIP)
    # Then both members are decompressed, and both events delivered
    assert (reply.status, reply.outcomes) == (200, ["delivered", "delivered"])


def test_zero_padding_after_gzip_is_ignored_as_gzip_does(sandbox: Sandbox) -> None:
    body = gzip.compress(json.dumps({"batch": [identify()]}).encode()) + b"\0" * 16
    assert post("/v1/batch", body, **GZIP).outcomes == ["delivered"]


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        (b"junk", "request body is not valid gzip (data after the end)"),
        (b"\0\0junk", "request body is not valid gzip (data after the end)"),
        (gzip.compress(b"more")[:-4], "request body is not valid gzip (truncated)"),
        (b"\x1f\x8b\x07" + b"\0" * 20, "request body is not valid gzip"),  # unknown compression method
    ],
    ids=["junk", "padding-then-junk", "truncated-second-member", "corrupt-second-member"],
)
def test_gzip_followed_by_anything_else_is_400(sandbox: Sandbox, tail: bytes, message: str) -> None:
    # Given a valid gzip body with something that is not a gzip member after it
    body = gzip.compress(json.dumps({"batch": [identify()]}).encode()) + tail
    # When it is posted
    reply = post("/v1/batch", body, **GZIP)
    # Then it is refused as bad gzip, and nothing is sent
    assert reply.status == 400
    assert reply.body == {"code": "bad_gzip", "message": message}
    assert sandbox.state.count() == 0


def test_the_4_mb_limit_spans_every_member(sandbox: Sandbox) -> None:
    # Given three members of 2 MB each: none is over the limit, together they are
    member = gzip.compress(b" " * 2_000_000)
    body = gzip.compress(b'{"batch": [') + member * 3 + gzip.compress(b"1]}")
    # When it is posted
    reply = post("/v1/batch", body, **GZIP)
    # Then it is refused as too large once decompressed
    assert reply.status == 413
    assert reply.body["message"] == "request body is larger than 4194304 bytes once decompressed"
