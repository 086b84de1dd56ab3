"""The HTTP API as senders see it: lambda_handler with moto SSM and the Gainsight sandbox over real HTTP."""

from __future__ import annotations

import base64
import gzip
import json

import pytest

from devtools.gainsight_sandbox import Fault, Sandbox
from devtools.local import LocalAws, api_event, demo_config, drain, invoke, seed_parameters
from tests.helpers import FakeClock, group, identify, post, stored, track


def test_identify_upserts_the_person_keyed_on_email(sandbox: Sandbox) -> None:
    # When
    reply = post("/v1/identify", identify(firstName="Ada", lastName="Lovelace", plan="pro", shoeSize=42))
    # Then
    assert reply.status == 200
    assert reply.body["results"] == [
        {"index": 0, "messageId": "m-identify", "type": "identify", "outcome": "delivered", "statusCode": 200}
    ]
    [person] = sandbox.state.snapshot()["people"]
    assert person["Email"] == "ada@example.com"
    assert person["Name"] == "Ada Lovelace"
    assert person["Plan__gc"] == "pro"  # mapped by personMap
    assert "shoeSize" not in person  # unmapped custom traits are dropped


def test_group_upserts_the_company_and_links_the_person(sandbox: Sandbox) -> None:
    reply = post("/v1/group", group("Acme", employees="1200", region="EMEA", billingAddress={"city": "Paris"}))
    assert reply.outcomes == ["delivered"]
    [company] = sandbox.state.snapshot()["companies"]
    assert company["Name"] == "Acme"
    assert company["Employees"] == 1200
    assert company["Region__gc"] == "EMEA"
    assert company["BillingAddress"] == '{"city":"Paris"}'
    [person] = sandbox.state.snapshot()["people"]
    assert person["Email"] == "ada@example.com"
    assert person["companies"] == [company["Gsid"]]


def test_group_updates_an_existing_company_instead_of_creating_another(sandbox: Sandbox) -> None:
    post("/v1/group", group("Acme", stage="Onboarding"))
    reply = post("/v1/group", group("Acme", stage="Adoption", email="grace@example.com"))
    assert reply.outcomes == ["delivered"]
    companies = sandbox.state.snapshot()["companies"]
    assert [(c["Name"], c["Stage"]) for c in companies] == [("Acme", "Adoption")]
    assert {p["Email"] for p in sandbox.state.snapshot()["people"]} == {"ada@example.com", "grace@example.com"}


def test_track_publishes_an_events_framework_event(sandbox: Sandbox) -> None:
    event = track("Ticket Closed", ticketId="T-1", priority=None)
    event["context"] = {"externalId": [{"type": "gainsightEventContractId", "id": "contract-9"}]}
    reply = post("/v1/track", event)
    assert reply.outcomes == ["delivered"]
    assert sandbox.state.snapshot()["events"] == [
        {
            "topicName": "product_usage",
            "eventName": "ticket_closed",
            "eventVersion": "1.0",
            "contractId": "contract-9",
            "body": {"ticketId": "T-1"},
        }
    ]


def test_track_falls_back_to_the_configured_contract_id(sandbox: Sandbox) -> None:
    post("/v1/track", track("feature used", feature="export"))  # event names match case-insensitively
    [event] = sandbox.state.snapshot()["events"]
    assert (event["eventName"], event["eventVersion"], event["contractId"]) == (
        "feature_used",
        "2.1",
        "default-contract",
    )


def test_single_event_paths_take_the_type_from_the_path(sandbox: Sandbox) -> None:
    event = identify()
    del event["type"]
    assert post("/v1/identify", event).outcomes == ["delivered"]


def test_mixed_batch_reports_every_event_in_input_order(sandbox: Sandbox) -> None:
    batch = [
        identify(message_id="a"),
        {"type": "page", "messageId": "b", "name": "Home"},
        group(message_id="c"),
        identify(email=None, message_id="d", name="No Email"),
        track(message_id="e"),
        track("Unmapped Event", message_id="f"),
        "not an event",
        {"messageId": "h"},
        {"type": "Identify", "messageId": "i", "traits": {"email": "grace@example.com"}},
    ]
    reply = post("/v1/batch", {"batch": batch, "sentAt": "2026-11-30T00:00:00Z", "writeKey": "ignored"})
    assert reply.status == 200
    results = reply.body["results"]
    assert [r["index"] for r in results] == list(range(9))
    assert [r["messageId"] for r in results] == ["a", "b", "c", "d", "e", "f", None, "h", "i"]
    assert [r["outcome"] for r in results] == [
        "delivered", "rejected", "delivered", "rejected", "delivered", "rejected", "rejected", "rejected", "delivered",
    ]  # fmt: skip
    errors = {r["index"]: r.get("error") for r in results}
    assert errors[1] == "message type page not supported"
    assert errors[3] == "email is required for identify"
    assert errors[5] == "Event name mapping not provided for Unmapped Event"
    assert errors[6] == "event must be a JSON object"
    assert errors[7] == "message type (missing) not supported"
    assert {r["statusCode"] for r in results if r["outcome"] == "rejected"} == {400}


def test_http_api_payload_v2_is_accepted(sandbox: Sandbox) -> None:
    response = invoke(api_event("/v1/batch", {"batch": [identify()]}, http_api=True))
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["results"][0]["outcome"] == "delivered"


def test_gzip_and_base64_bodies_are_decoded(sandbox: Sandbox) -> None:
    assert post("/v1/batch", {"batch": [identify()]}, gzip_body=True).outcomes == ["delivered"]
    assert post("/v1/batch", {"batch": [track()]}, base64_body=True).outcomes == ["delivered"]
    assert sandbox.state.count() == 2


def test_health_needs_no_auth(sandbox: Sandbox) -> None:
    response = invoke(api_event("/health", None, method="GET", write_key=None))
    assert (response["statusCode"], json.loads(response["body"])) == (200, {"status": "ok"})


@pytest.mark.parametrize(
    ("write_key", "body_key"),
    [(None, None), ("wrong-key", None), (None, "wrong-key"), ("", None)],
    ids=["missing", "wrong-header", "wrong-body-key", "empty"],
)
def test_missing_or_wrong_write_key_is_401_and_nothing_is_sent(sandbox: Sandbox, write_key, body_key) -> None:
    body = {"batch": [identify()]} | ({"writeKey": body_key} if body_key else {})
    reply = post("/v1/batch", body, write_key=write_key)
    assert reply.status == 401
    assert reply.body == {"code": "unauthorized", "message": "write key is missing or not valid"}
    assert sandbox.state.count() == 0


def test_write_key_in_the_body_and_rotated_keys_are_accepted(sandbox: Sandbox) -> None:
    seed_parameters(sandbox.url, write_keys="old-key, new-key")
    assert post("/v1/batch", {"batch": [identify()], "writeKey": "new-key"}, write_key=None).status == 200
    assert post("/v1/batch", {"batch": [identify()]}, write_key="old-key").status == 200


@pytest.mark.parametrize(
    ("body", "extra", "status", "message"),
    [
        (b"{not json", {}, 400, "request body is not valid JSON: Expecting property name enclosed in double quotes"),
        (b"[1, 2]", {}, 400, "request body must be a JSON object"),
        (b'{"events": []}', {}, 400, "request body must have a batch array"),
        (b'{"batch": []}', {}, 400, "batch is empty"),
        (b"", {}, 400, "request body is empty"),
        (b'{"batch": [NaN]}', {}, 400, "request body is not valid JSON: NaN is not valid JSON"),
        (b"\xff\xfe{}", {}, 400, "request body is not valid UTF-8"),
        (b"not gzip at all", {"headers": {"Content-Encoding": "gzip"}}, 400, "request body is not valid gzip"),
        (b"{}", {"headers": {"Content-Encoding": "br"}}, 415, "Content-Encoding br is not supported"),
    ],
    ids=["malformed", "array", "no-batch", "empty-batch", "empty-body", "nan", "bad-utf8", "bad-gzip", "brotli"],
)
def test_unusable_bodies_are_400_naming_the_problem(sandbox: Sandbox, body, extra, status, message) -> None:
    reply = post("/v1/batch", body, **extra)
    assert reply.status == status
    assert reply.body["message"].startswith(message)
    assert sandbox.state.count() == 0


def test_bad_base64_is_400(sandbox: Sandbox) -> None:
    event = api_event("/v1/batch", {"batch": [identify()]})
    event["body"], event["isBase64Encoded"] = "@@not base64@@", True
    response = invoke(event)
    assert response["statusCode"] == 400
    assert json.loads(response["body"])["message"] == "request body is not valid base64"


def test_body_over_4_mb_is_413_and_gzip_bombs_are_stopped(sandbox: Sandbox) -> None:
    big = {"batch": [identify(blob="x" * 30_000, message_id=str(i)) for i in range(150)]}
    assert post("/v1/batch", big).status == 413
    bomb = gzip.compress(b'{"batch": [' + b" " * 200_000_000 + b"]}")
    assert len(bomb) < 300_000
    reply = post("/v1/batch", bomb, headers={"Content-Encoding": "gzip"})
    assert reply.status == 413
    assert "once decompressed" in reply.body["message"]


def test_an_event_over_32_kb_is_rejected_alone(sandbox: Sandbox) -> None:
    reply = post("/v1/batch", {"batch": [identify(comments="x" * 40_000, message_id="big"), identify(message_id="ok")]})
    assert reply.status == 200
    assert reply.outcomes == ["rejected", "delivered"]
    assert reply.body["results"][0]["statusCode"] == 413
    assert reply.body["results"][0]["error"] == "event is larger than 32768 bytes"


def test_unknown_path_is_404(sandbox: Sandbox) -> None:
    assert post("/v1/unknown", identify()).status == 404


# -- Gainsight misbehaving ---------------------------------------------------------


def test_429_with_retry_after_is_retried_then_delivered(sandbox: Sandbox) -> None:
    sandbox.fail(Fault(status=429, retry_after="1"))
    reply = post("/v1/identify", identify())
    assert reply.outcomes == ["delivered"]
    assert sandbox.state.count("person_upsert") == 2


def test_5xx_is_retried_then_delivered(sandbox: Sandbox) -> None:
    sandbox.fail(Fault(status=503, times=2))
    assert post("/v1/track", track()).outcomes == ["delivered"]
    assert sandbox.state.count("event_publish") == 3
    assert len(sandbox.state.snapshot()["events"]) == 1


def test_persistent_5xx_parks_the_event_and_answers_200(sandbox: Sandbox, aws: LocalAws, monkeypatch) -> None:
    # Given Gainsight failing every call
    monkeypatch.setenv("GAINSIGHT_MAX_RETRIES", "2")
    sandbox.fail(Fault(status=500, times=3))
    # When a batch arrives
    reply = post("/v1/batch", {"batch": [track(message_id="t"), identify(email=None, message_id="bad")]})
    # Then the deliverable event is kept for retry, the bad one rejected, and the sender is done
    assert reply.status == 200
    assert reply.outcomes == ["deferred", "rejected"]
    assert reply.body["results"][0]["statusCode"] == 202
    assert reply.body["results"][0]["error"] == "queued for retry: Gainsight GU_1101: Oops, something went wrong."
    assert sandbox.state.count("event_publish") == 3
    assert len(stored()) == 1
    # And once Gainsight recovers, the drain delivers it
    drain()
    assert [e["body"] for e in sandbox.state.snapshot()["events"]] == [{}]
    assert len(stored()) == 0


def test_persistent_429_parks_the_event(sandbox: Sandbox, aws: LocalAws, monkeypatch) -> None:
    monkeypatch.setenv("GAINSIGHT_MAX_RETRIES", "1")
    sandbox.fail(Fault(status=429, times=2))
    reply = post("/v1/track", track())
    assert reply.status == 200
    # The 429 pauses the tenant's budget for longer than a request waits: the retry is not sent into it
    assert reply.body["results"][0] == {
        "index": 0, "messageId": "m-track", "type": "track", "outcome": "deferred", "statusCode": 202,
        "error": "queued for retry: the tenant's Gainsight budget has no room for this call now",
    }  # fmt: skip
    assert sandbox.state.count() == 1


def test_timeouts_are_retried_then_parked(sandbox: Sandbox, monkeypatch) -> None:
    monkeypatch.setenv("GAINSIGHT_READ_TIMEOUT", "0.3")
    monkeypatch.setenv("GAINSIGHT_MAX_RETRIES", "1")
    sandbox.fail(Fault(delay=1.0, times=2))
    reply = post("/v1/identify", identify())
    assert (reply.status, reply.outcomes) == (200, ["deferred"])
    assert reply.body["results"][0]["error"].startswith("queued for retry: Gainsight timed out")


def test_without_the_event_store_nothing_is_sent_and_the_sender_retries(sandbox: Sandbox, monkeypatch) -> None:
    monkeypatch.setenv("EVENT_TABLE", "missing-table")
    reply = post("/v1/batch", {"batch": [track(message_id="t"), identify(message_id="i")]})
    assert reply.status == 503
    assert reply.outcomes == ["failed", "failed"]
    assert reply.body["results"][0]["error"] == "event store unavailable (ResourceNotFoundException)"
    assert sandbox.state.count() == 0


def test_the_tenant_quota_parks_what_it_cannot_take(sandbox: Sandbox, aws: LocalAws) -> None:
    # Given a tenant with 2 calls left this minute (Gainsight answers Retry-After: 60 past it)
    sandbox.state.faults.quota_per_minute = 2
    # When a batch needs three calls
    reply = post("/v1/batch", {"batch": [track(message_id=str(n)) for n in range(3)]})
    # Then two are delivered and the third is parked
    assert sorted(reply.outcomes) == ["deferred", "delivered", "delivered"]
    assert reply.status == 200
    assert sandbox.state.count() == 3
    assert len(stored()) == 1


def test_a_request_without_headers_is_401_not_an_error(sandbox: Sandbox) -> None:
    event = api_event("/v1/batch", {"batch": [identify()]}, write_key=None)
    event["headers"] = event["multiValueHeaders"] = None
    response = invoke(event)
    assert response["statusCode"] == 401


def test_a_dropped_connection_is_retried(sandbox: Sandbox) -> None:
    sandbox.fail(Fault(drop=True))
    assert post("/v1/identify", identify()).outcomes == ["delivered"]


def test_retry_after_past_the_budget_is_not_waited_for(sandbox: Sandbox, fake_clock: FakeClock, monkeypatch) -> None:
    monkeypatch.setenv("DELIVERY_BUDGET_SECONDS", "4")
    sandbox.fail(Fault(status=429, retry_after="120"))
    started = fake_clock.monotonic()
    reply = post("/v1/track", track())
    assert reply.outcomes == ["deferred"]
    assert fake_clock.slept == []  # the 120 s were not waited for, nor any part of them
    assert fake_clock.monotonic() - started < 1.0
    assert sandbox.state.count() == 1  # no retry: it could only have landed after the budget


def test_gainsight_4xx_rejects_the_event_with_gainsights_error(sandbox: Sandbox) -> None:
    reply = post("/v1/identify", identify(email="not-an-email"))
    assert reply.status == 200
    assert reply.body["results"][0]["outcome"] == "rejected"
    assert reply.body["results"][0]["statusCode"] == 400
    assert reply.body["results"][0]["error"] == "Gainsight GSOBJ_VDT1001: Invalid Email (not-an-email)"


def test_rejected_access_key_parks_events_with_a_clear_message(sandbox: Sandbox, aws: LocalAws) -> None:
    seed_parameters(sandbox.url, access_key="revoked-key")
    reply = post("/v1/identify", identify())
    assert (reply.status, reply.outcomes) == (200, ["deferred"])
    assert reply.body["results"][0]["error"].startswith("queued for retry: Gainsight rejected the access key")
    assert sandbox.state.count() == 1  # a bad key is not retried at once: it waits for the operator
    assert len(stored()) == 1


# -- configuration ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"tenantId": "t"}, "destination config key domain is required"),
        ({"domain": "http://acme.gainsightcloud.com"}, "must use https"),
        ({"domain": "not a host"}, "is not a host name or an https:// URL"),
        ({"domain": "acme.gainsightcloud.com", "eventNameMap": [{"from": "a"}]}, "eventNameMap[0].to"),
        ({"domain": "acme.gainsightcloud.com", "accessKey": "oops"}, "accessKey must not hold a secret"),
    ],
)
def test_bad_configuration_fails_every_event_naming_the_key(sandbox: Sandbox, config, message, log_output) -> None:
    seed_parameters(sandbox.url, config=config)
    reply = post("/v1/batch", {"batch": [identify(), track()]})
    assert reply.status == 200
    assert reply.outcomes == ["deferred", "deferred"]  # kept until the configuration is fixed
    assert all(message in r["error"] for r in reply.body["results"])
    errors = [line for line in map(json.loads, log_output.getvalue().splitlines()) if line["level"] == "ERROR"]
    assert len(errors) == 1
    assert message in errors[0]["reason"]


def test_missing_ssm_parameter_parks_events_naming_it(sandbox: Sandbox, monkeypatch) -> None:
    monkeypatch.setenv("DESTINATION_CONFIG_PARAM", "/does/not/exist")
    reply = post("/v1/identify", identify())
    assert reply.outcomes == ["deferred"]
    assert "SSM parameter /does/not/exist could not be read" in reply.body["results"][0]["error"]


def test_missing_settings_answer_503_without_details(sandbox: Sandbox, monkeypatch) -> None:
    monkeypatch.delenv("WRITE_KEYS_PARAM")
    reply = post("/v1/identify", identify())
    assert reply.status == 503
    assert reply.body["message"] == "service is misconfigured; try again later"


def test_an_unexpected_error_is_a_503_without_a_stack_trace(sandbox: Sandbox, monkeypatch) -> None:
    import ingest

    def broken(*args, **kwargs):
        raise RuntimeError("boom at line 42")

    monkeypatch.setattr(ingest, "accept", broken)
    reply = post("/v1/identify", identify())
    assert (reply.status, reply.body) == (503, {"code": "internal_error", "message": "internal error; retry later"})


# -- secrets --------------------------------------------------------------------------


def test_secrets_never_appear_in_logs_or_responses(sandbox: Sandbox, log_output, capsys) -> None:
    secrets = ["sandbox-access-key", "sandbox-shared-secret", "demo-write-key"]
    encoded = [base64.b64encode(f"{s}:".encode()).decode() for s in secrets]
    replies = [
        post("/v1/batch", {"batch": [identify(), group(), track(), identify(email="bad")]}),
        post("/v1/batch", {"batch": [identify()]}, write_key="wrong"),
    ]
    seed_parameters(sandbox.url, access_key="revoked-key", shared_secret="revoked-secret")
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()
    replies.append(post("/v1/batch", {"batch": [identify(), track()]}))
    seed_parameters(sandbox.url, config=demo_config(sandbox.url) | {"sharedSecret": "plain-secret"})
    parameters.clear_caches()
    replies.append(post("/v1/batch", {"batch": [track()]}))
    output = log_output.getvalue() + capsys.readouterr().out + json.dumps([r.body for r in replies])
    for secret in [*secrets, *encoded, "revoked-key", "revoked-secret", "plain-secret"]:
        assert secret not in output
    assert '"message":"request processed"' in output  # the logs were captured at all
    assert '"EventsReceived"' in output  # and so were the metrics
