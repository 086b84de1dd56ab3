"""What people do to a running destination: a typo in its configuration, an expired access key, a
shared secret never stored. Events wait for the fix however long it takes (a weekend), never count
those failures toward MaxAttempts, and go out in order once it is fixed; only the events that need
what is missing wait."""

from __future__ import annotations

import boto3
import pytest

from devtools.gainsight_sandbox import Fault, Sandbox
from devtools.local import PARAMS, drain
from tests.conftest import clear_caches
from tests.helpers import configure, group, identify, post, stored, track


@pytest.fixture
def two_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_ATTEMPTS", "2")
    clear_caches()


def test_a_configuration_typo_left_over_a_weekend_loses_nothing(sandbox: Sandbox, two_attempts: None) -> None:
    # Given a destination config with a typo, and Ada's identify and track sent meanwhile
    configure(sandbox, tennantId="acme")
    ada_track = track(message_id="t1") | {"userId": "u1"}
    first = post("/v1/batch", {"batch": [identify(message_id="i1", firstName="Ada"), ada_track]})
    assert first.outcomes == ["deferred", "deferred"]
    # When the drain runs more often than MaxAttempts against it
    report = drain(runs=4)
    # Then nothing was given up: both still wait, as configuration errors, not attempts
    assert report["gave_up"] == 0 and stored("rejected") == []
    waiting = {(s.record.event_id, s.code, s.attempts) for s in stored()}
    assert waiting == {("i1", "configuration", 0), ("t1", "configuration", 0)}
    # And once the config is fixed, the next run delivers them, in order
    configure(sandbox)
    drain()
    assert stored() == []
    assert [c.operation for c in sandbox.state.calls][-2:] == ["person_upsert", "event_publish"]


def test_an_expired_access_key_makes_events_wait_not_give_up(sandbox: Sandbox, two_attempts: None) -> None:
    # Given Gainsight refusing the access key (401) for a long while
    sandbox.fail(Fault(status=401, operation="person_upsert", times=1000))
    assert post("/v1/identify", identify(message_id="i1", firstName="Ada")).outcomes == ["deferred"]
    # When the drain runs more often than MaxAttempts
    report = drain(runs=4)
    # Then the event still waits (the failures are the key's, not the event's)
    assert report["gave_up"] == 0 and stored("rejected") == []
    [waiting] = stored()
    assert (waiting.attempts, waiting.waits) == (0, 4)
    # And once the key works again, it is delivered
    with sandbox.state.lock:
        sandbox.state.faults.scripted.clear()
    drain()
    assert stored() == []
    assert [p["FirstName"] for p in sandbox.state.snapshot()["people"]] == ["Ada"]


def test_a_missing_shared_secret_holds_back_only_track_events(sandbox: Sandbox) -> None:
    # Given no SecureString at SHARED_SECRET_PARAM (a user who skipped that step)
    boto3.client("ssm").delete_parameter(Name=PARAMS["SHARED_SECRET_PARAM"])
    clear_caches()
    # When an identify, a group and a track come
    reply = post("/v1/batch", {"batch": [identify(message_id="i1"), group(message_id="g1"), track(message_id="t1")]})
    # Then the identify and the group are delivered; the track waits, its error naming the parameter
    assert reply.outcomes == ["delivered", "delivered", "deferred"]
    assert PARAMS["SHARED_SECRET_PARAM"] in reply.body["results"][2]["error"]
    assert "track events wait" in reply.body["results"][2]["error"]
    # And once the secret is stored, the drain publishes it
    boto3.client("ssm").put_parameter(
        Name=PARAMS["SHARED_SECRET_PARAM"], Type="SecureString", Value="sandbox-shared-secret", Overwrite=True
    )
    clear_caches()
    drain()
    assert stored() == [] and sandbox.state.count("event_publish") == 1


def test_without_a_shared_secret_by_choice_track_events_are_rejected_with_the_reason(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a stack deployed with SharedSecretParamName none (no Events Framework)
    monkeypatch.delenv("SHARED_SECRET_PARAM")
    clear_caches()
    # When an identify and a track come
    reply = post("/v1/batch", {"batch": [identify(message_id="i1"), track(message_id="t1")]})
    # Then the identify is delivered; the track is rejected, saying why, and kept for a replay
    assert reply.outcomes == ["delivered", "rejected"]
    assert "SharedSecretParamName is none" in reply.body["results"][1]["error"]
    assert [s.code for s in stored("rejected")] == ["no_shared_secret"]
