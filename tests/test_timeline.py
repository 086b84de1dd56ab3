"""Timeline activities (timelineMap): track events become activities on their company, created
exactly once (ExternalId), through the same plan, outcomes, parking and replay as every event."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from config import CompanyKey, Destination, TimelineActivity, parse_destination
from devtools.gainsight_sandbox import MAX_ACTIVITY_RECORDS, Fault, Sandbox
from devtools.local import DEMO_EVENT_NAMES, DEMO_EVENT_VERSIONS, drain
from errors import ConfigurationError, EventRejected
from gainsight import MAX_ACTIVITY_RECORDS as CLIENT_MAX_ACTIVITY_RECORDS
from mapping import ActivityInsert, EventPublish, activity_date, external_id, operation, render
from tests.helpers import FakeClock, configure, group, post, stored, track

SEATS = {
    "eventName": "Seats Added",
    "activityType": "Update",
    "subject": "{{seats}} seats added",
    "notes": "{{seats}} seats added by {{email}}",
    "author": "csm@example.com",
}


def seats(
    message_id: str = "s1", company: str | None = "Acme", count: Any = 5, user: str = "u1", **extra: Any
) -> dict[str, Any]:
    """A Seats Added track event of a user of `company` (its context.groupId)."""
    context: dict[str, Any] = {"traits": {"email": f"{user}@example.com"}}
    if company is not None:
        context["groupId"] = company
    return {
        "type": "track",
        "messageId": message_id,
        "event": "Seats Added",
        "userId": user,
        "timestamp": "2026-11-30T09:00:00.000Z",
        "properties": {"seats": count} | extra,
        "context": context,
    }


def activities(sandbox: Sandbox) -> list[dict[str, Any]]:
    return sandbox.state.snapshot()["activities"]


def with_timeline(sandbox: Sandbox, *mappings: dict[str, Any], **keys: Any) -> None:
    configure(sandbox, timelineMap=list(mappings or [SEATS]), **keys)


# -- through lambda_handler against the sandbox -----------------------------------------


def test_a_track_event_becomes_one_activity_on_its_company(sandbox: Sandbox) -> None:
    # Given Seats Added mapped to an Update activity
    with_timeline(sandbox)
    # When the company's group event and the track event arrive together
    reply = post("/v1/batch", {"batch": [group("Acme"), seats()]})
    # Then the activity is on that company, its templates filled, dated by the event, keyed by its messageId
    assert reply.outcomes == ["delivered", "delivered"]
    [company] = sandbox.state.snapshot()["companies"]
    [activity] = activities(sandbox)
    assert activity["GsCompanyId"] == company["Gsid"]
    assert activity["AuthorId"] == sandbox.state.users["csm@example.com"]
    assert (activity["TypeName"], activity["Subject"], activity["Notes"]) == (
        "Update",
        "5 seats added",
        "5 seats added by u1@example.com",
    )
    assert (activity["ActivityDate"], activity["ExternalId"]) == ("2026-11-30T09:00:00.000+00:00", "s1")
    # and it went only to the Timeline, not to the Events Framework
    assert sandbox.state.snapshot()["events"] == []


def test_activities_share_calls_up_to_the_per_call_limit(sandbox: Sandbox) -> None:
    # Given 60 activities of one company
    with_timeline(sandbox)
    post("/v1/group", group("Acme"))
    batch = [seats(f"s{n}", user=f"u{n}", count=n) for n in range(60)]
    # When they arrive in one batch
    reply = post("/v1/batch", {"batch": batch})
    # Then they take three calls, not 60
    assert set(reply.outcomes) == {"delivered"}
    sizes = sorted(len(c.body["records"]) for c in sandbox.state.calls if c.operation == "activity_insert")
    assert sizes == [10, 25, 25]
    assert len(activities(sandbox)) == 60
    assert CLIENT_MAX_ACTIVITY_RECORDS == MAX_ACTIVITY_RECORDS == 25


def test_a_parked_activity_whose_first_insert_was_stored_is_never_created_twice(
    sandbox: Sandbox, fake_clock: FakeClock
) -> None:
    # Given Gainsight stores the activity but the answer is lost, then answers 503 to every retry
    with_timeline(sandbox)
    post("/v1/group", group("Acme"))
    sandbox.fail(
        Fault(lost_answer=True, operation="activity_insert"), Fault(status=503, operation="activity_insert", times=3)
    )
    reply = post("/v1/track", seats())
    # Then the event is parked, though the activity is in Gainsight
    assert reply.outcomes == ["deferred"]
    assert len(activities(sandbox)) == 1
    # When the drain replays it, and the sender resends it
    assert drain()["delivered"] == 1
    assert post("/v1/track", seats()).outcomes == ["delivered"]
    # Then there is still one activity, and nothing is left parked
    assert len(activities(sandbox)) == 1
    assert stored() == []


@pytest.mark.parametrize("code", ["GSTL_1009", "GSTL_7001"])
def test_an_activity_already_there_is_delivered_whatever_code_refuses_its_external_id(
    sandbox: Sandbox, fake_clock: FakeClock, code: str
) -> None:
    # Given a tenant that refuses an ExternalId it has with some code (none is documented), and an
    # activity stored by an insert whose answer was lost
    with sandbox.state.lock:
        sandbox.state.faults.duplicate_activity_code = code
    with_timeline(sandbox)
    post("/v1/group", group("Acme"))
    sandbox.fail(
        Fault(lost_answer=True, operation="activity_insert"), Fault(status=503, operation="activity_insert", times=3)
    )
    assert post("/v1/track", seats()).outcomes == ["deferred"]
    # When the drain tries it again: the insert is refused, and confirmed by an update by ExternalId
    assert drain()["delivered"] == 1
    # Then it is delivered, once, and nothing is kept as rejected
    assert len(activities(sandbox)) == 1 and stored() == [] and stored("rejected") == []
    assert sandbox.state.count("activity_update") == 1


def test_a_refused_activity_rejects_only_its_event(sandbox: Sandbox) -> None:
    # Given a batch with an activity for a company Gainsight does not have
    with_timeline(sandbox)
    batch = [
        group("Acme"),
        seats("s1"),
        seats("s2", company="Nowhere Ltd", user="u2"),
        seats("s3", user="u3"),
        track("Ticket Closed", message_id="t1"),
    ]
    # When it is posted
    reply = post("/v1/batch", {"batch": batch})
    # Then only that event is rejected, with Gainsight's reason, and kept for a replay
    assert reply.outcomes == ["delivered", "delivered", "rejected", "delivered", "delivered"]
    assert "GSTL_1003" in reply.body["results"][2]["error"]
    assert "Nowhere Ltd" in reply.body["results"][2]["error"]
    assert sorted(a["ExternalId"] for a in activities(sandbox)) == ["s1", "s3"]
    assert [s.code for s in stored("rejected")] == ["GSTL_1003"]
    # (after an update by its ExternalId found no such activity: it was not a duplicate)
    assert sandbox.state.count("activity_update") == 1


@pytest.mark.parametrize(
    ("mapping", "code"),
    [
        ({"author": "someone@elsewhere.io"}, "GSTL_1004"),
        ({"activityType": "Coffee Chat"}, "GSTL_1002"),
    ],
)
def test_an_activity_gainsight_refuses_for_the_configuration_is_rejected(sandbox: Sandbox, mapping, code) -> None:
    with_timeline(sandbox, SEATS | mapping)
    post("/v1/group", group("Acme"))
    reply = post("/v1/track", seats())
    assert reply.outcomes == ["rejected"]
    assert code in reply.body["results"][0]["error"]
    assert activities(sandbox) == []


def test_an_activity_without_its_company_is_rejected_saying_where_it_is_read(sandbox: Sandbox) -> None:
    with_timeline(sandbox)
    reply = post("/v1/track", seats(company=None))
    assert reply.outcomes == ["rejected"]
    assert reply.body["results"][0]["error"] == (
        "a Timeline activity needs its company: context.groupId is missing (matched by Name)"
    )
    assert sandbox.state.count() == 0


def test_an_event_routed_to_both_is_an_activity_and_an_event_published_once(
    sandbox: Sandbox, fake_clock: FakeClock
) -> None:
    # Given Seats Added mapped to the Timeline and, too, to the Events Framework
    names = [*DEMO_EVENT_NAMES, {"from": "Seats Added", "to": "seats_added"}]
    versions = [*DEMO_EVENT_VERSIONS, {"from": "Seats Added", "to": "1.0"}]
    with_timeline(sandbox, SEATS | {"eventsFramework": True}, eventNameMap=names, eventVersionMap=versions)
    post("/v1/group", group("Acme"))
    # When the Events Framework is down at first
    sandbox.fail(Fault(status=503, operation="event_publish", times=4))
    assert post("/v1/track", seats()).outcomes == ["deferred"]
    assert len(activities(sandbox)) == 1
    # and the drain delivers it
    assert drain()["delivered"] == 1
    # Then there is one activity and one published event
    assert len(activities(sandbox)) == 1
    assert [(e["eventName"], e["body"]) for e in sandbox.state.snapshot()["events"]] == [("seats_added", {"seats": 5})]


def test_an_activity_waits_behind_its_companys_parked_group_event(sandbox: Sandbox, fake_clock: FakeClock) -> None:
    # Given Acme's group event parked (its lookup failed)
    with_timeline(sandbox)
    sandbox.fail(Fault(status=503, operation="company_query", times=4))
    assert post("/v1/group", group("Acme", email="admin@example.com")).outcomes == ["deferred"]
    # When another user's activity on Acme arrives
    reply = post("/v1/track", seats(user="u2"))
    # Then it waits behind the group event instead of being refused for a company not yet written
    assert reply.outcomes == ["deferred"]
    assert activities(sandbox) == []
    # and the drain writes the company, then the activity
    assert drain()["delivered"] == 2
    [company] = sandbox.state.snapshot()["companies"]
    assert [a["GsCompanyId"] for a in activities(sandbox)] == [company["Gsid"]]


def test_an_activity_in_the_batch_of_its_companys_failed_write_waits_for_it(
    sandbox: Sandbox, fake_clock: FakeClock
) -> None:
    # Given Acme's lookup failing, and another user's activity on Acme in the same batch
    with_timeline(sandbox)
    sandbox.fail(Fault(status=503, operation="company_query", times=4))
    reply = post("/v1/batch", {"batch": [group("Acme", email="admin@example.com"), seats(user="u2")]})
    # Then both are parked, the activity not sent to a company that is not written yet
    assert reply.outcomes == ["deferred", "deferred"]
    assert sandbox.state.count("activity_insert") == 0
    # and the drain delivers both, in order
    assert drain()["delivered"] == 2
    assert len(activities(sandbox)) == 1


def test_an_activity_finds_its_company_by_the_company_key(sandbox: Sandbox) -> None:
    # Given companies matched by an external id, and the activity's company in a property
    with_timeline(
        sandbox,
        SEATS | {"companyProperty": "accountId"},
        companyKey={"field": "ExternalId__gc", "from": "groupId"},
    )
    post("/v1/group", group("Acme") | {"groupId": "acct-1"})
    # When a track event names the account
    reply = post("/v1/track", seats(company=None, accountId="acct-1"))
    # Then the activity is on it
    assert reply.outcomes == ["delivered"]
    [company] = sandbox.state.snapshot()["companies"]
    assert [a["GsCompanyId"] for a in activities(sandbox)] == [company["Gsid"]]
    [call] = [c for c in sandbox.state.calls if c.operation == "activity_insert"]
    assert call.body["lookups"]["GsCompanyId"]["fields"] == {"Company": "ExternalId__gc"}


# -- mapping (pure) --------------------------------------------------------------------------

DESTINATION = Destination(
    base_url="https://acme.gainsightcloud.com",
    access_key="key",
    shared_secret="secret",
    tenant_id="tenant",
    topic_name="topic",
    event_names={"seats added": "seats_added"},
    event_versions={"seats added": "1.0"},
    timeline={"seats added": TimelineActivity("Update", "{{seats}} seats", "", "csm@example.com")},
)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{seats}} seats added by {{email}}", "5 seats added by u1@example.com"),
        ("{{ seats }}/{{missing}}/{{nothing}}", "5//"),
        ("{{trial}} {{plan}}", 'false {"tier":"pro"}'),
        ("{{seats} {seats}} {{}}", "{{seats} {seats}} {{}}"),
    ],
)
def test_templates_fill_properties_then_context_traits(template, expected) -> None:
    event = seats(trial=False, plan={"tier": "pro"}, nothing=None)
    assert render(template, event) == expected


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2026-11-30T09:00:00.000Z", "2026-11-30T09:00:00.000+00:00"),
        ("2026-11-30T10:00:00+01:00", "2026-11-30T10:00:00.000+01:00"),
        ("2026-11-30T09:00:00", "2026-11-30T09:00:00.000+00:00"),
    ],
)
def test_the_activity_date_is_the_events_timestamp_with_an_offset(timestamp, expected) -> None:
    assert activity_date({"timestamp": timestamp}) == expected


@pytest.mark.parametrize("event", [{}, {"timestamp": "yesterday"}, {"timestamp": 1764493200}])
def test_an_activity_without_a_usable_timestamp_is_rejected(event) -> None:
    with pytest.raises(EventRejected) as raised:
        activity_date(event)
    assert raised.value.code == "no_timestamp"


def test_the_external_id_is_the_message_id_or_its_hash_when_long() -> None:
    assert external_id({"messageId": "m-1"}) == "m-1"
    long_id = external_id({"messageId": "m" * 300})
    assert long_id.startswith("sha256:") and len(long_id) == 71
    assert long_id == external_id({"messageId": "m" * 300})


def test_a_mapped_track_event_is_an_activity_another_is_an_event() -> None:
    op = operation(seats(), DESTINATION)
    assert isinstance(op, ActivityInsert) and op.publish is None and op.company == "Acme"
    assert op.record["Subject"] == "5 seats"
    both = replace(
        DESTINATION, timeline={"seats added": replace(DESTINATION.timeline["seats added"], events_framework=True)}
    )
    assert isinstance(operation(seats(), both).publish, EventPublish)
    other = replace(DESTINATION, timeline={})
    assert isinstance(operation(seats(), other), EventPublish)


def test_an_activity_matched_by_a_key_reads_its_configured_property() -> None:
    keyed = replace(
        DESTINATION,
        company_key=CompanyKey("ExternalId__gc", None),
        timeline={"seats added": TimelineActivity("Update", "s", "", "csm@example.com", company_property="account")},
    )
    op = operation(seats(account="acct-9"), keyed)
    assert isinstance(op, ActivityInsert) and op.record["Company"] == "acct-9"
    with pytest.raises(EventRejected) as raised:
        operation(seats(), keyed)
    assert raised.value.message == (
        "a Timeline activity needs its company: properties.account is missing (matched by ExternalId__gc)"
    )


# -- configuration ---------------------------------------------------------------------------


def test_the_timeline_setting() -> None:
    config = {"domain": "acme.gainsightcloud.com", "timelineMap": [SEATS | {"eventName": " seats ADDED "}, {}]}
    parsed = parse_destination(json.dumps(config), "key", None).timeline
    assert parsed == {"seats added": TimelineActivity("Update", SEATS["subject"], SEATS["notes"], "csm@example.com")}


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"eventName": "Seats Added"}, "timelineMap must be a list"),
        ([SEATS | {"author": ""}], "timelineMap[0].author must be a non-empty string"),
        ([SEATS | {"author": "csm"}], "timelineMap[0].author must be a Gainsight user's email"),
        ([SEATS | {"activityType": 3}], "timelineMap[0].activityType must be a non-empty string"),
        ([SEATS | {"eventsFramework": "yes"}], "timelineMap[0].eventsFramework must be true or false"),
        ([SEATS | {"eventsFramework": True}], "timelineMap[0].eventsFramework is true, but eventNameMap"),
        ([SEATS | {"subjet": "x"}], "timelineMap[0].subjet is not known"),
        ([SEATS, SEATS | {"eventName": "seats added"}], "timelineMap[1].eventName seats added is mapped twice"),
    ],
)
def test_a_bad_timeline_setting_is_refused_naming_it(entries, message) -> None:
    config = json.dumps({"domain": "acme.gainsightcloud.com", "timelineMap": entries})
    with pytest.raises(ConfigurationError) as raised:
        parse_destination(config, "key", None)
    assert message in raised.value.message
