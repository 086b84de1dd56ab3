"""Pure mapping: every field and rule of the seed document, and every error message. No I/O."""

from __future__ import annotations

from dataclasses import replace

import pytest

from config import Destination
from errors import ConfigurationError, EventRejected
from mapping import company_upsert, event_publish, operation, person_upsert

DESTINATION = Destination(
    base_url="https://acme.gainsightcloud.com",
    access_key="key",
    shared_secret="secret",
    tenant_id="tenant",
    topic_name="topic",
    contract_id="configured-contract",
    event_names={"ticket closed": "ticket_closed"},
    event_versions={"ticket closed": "1.0"},
    person_map=(("age", "age__gc"),),
    company_map=(("region", "Region__gc"),),
)


@pytest.mark.parametrize(
    ("trait", "value", "field", "expected"),
    [
        ("name", "Ada L", "Name", "Ada L"),
        ("firstName", "Ada", "FirstName", "Ada"),
        ("firstname", "Ada", "FirstName", "Ada"),
        ("first_name", "Ada", "FirstName", "Ada"),
        ("lastName", "L", "LastName", "L"),
        ("lastname", "L", "LastName", "L"),
        ("last_name", "L", "LastName", "L"),
        ("middleName", "B", "MiddleName", "B"),
        ("middlename", "B", "MiddleName", "B"),
        ("middle_name", "B", "MiddleName", "B"),
        ("linkedinUrl", "https://in/ada", "LinkedinUrl", "https://in/ada"),
        ("location", "London", "Location", "London"),
        ("location", {"city": "London", "geo": [51.5, -0.1]}, "Location", '{"city":"London","geo":[51.5,-0.1]}'),
        ("externalRecordId", "x1", "ExternalRecordID__gc", "x1"),
        ("externalRecordId", {"id": 1}, "ExternalRecordID__gc", '{"id":1}'),
        ("emailOptOut", True, "EmailOptOut", True),
        ("dynamicResolutionKey", {"k": "é"}, "DynamicResolutionKey", '{"k":"é"}'),
        ("timezone", "Europe/London", "Timezone", "Europe/London"),
        ("comments", "hello", "Comments", "hello"),
        ("comments", ["a", "b"], "Comments", '["a","b"]'),
        ("masterRecordID", "mr1", "MasterRecordID", "mr1"),
        ("masterRecordId", "mr2", "MasterRecordID", "mr2"),
        ("masterAvatarTypeCode", "3", "MasterAvatarTypeCode", 3),
        ("masterAvatarTypeCode", 2.5, "MasterAvatarTypeCode", 2.5),
        ("age", 37, "age__gc", 37),
    ],
)
def test_person_fields(trait, value, field, expected) -> None:
    # Given an identify event with one trait
    event = {"type": "identify", "traits": {"email": "a@x.io", trait: value}}
    # When it is mapped
    fields = person_upsert(event, DESTINATION).fields
    # Then the Gainsight field holds the converted value
    assert fields[field] == expected
    assert fields["Email"] == "a@x.io"


def test_person_traits_fall_back_to_context_traits() -> None:
    event = {
        "traits": {"firstName": "Top"},
        "context": {"traits": {"email": "c@x.io", "firstName": "Ctx", "lastName": "L"}},
    }
    fields = person_upsert(event, DESTINATION).fields
    assert fields == {"Email": "c@x.io", "FirstName": "Top", "LastName": "L", "Name": "Top L"}


@pytest.mark.parametrize(
    ("traits", "name"),
    [
        ({"firstName": "Ada", "middleName": "B", "lastName": "Lovelace"}, "Ada B Lovelace"),
        ({"firstName": "Ada", "lastName": "Lovelace"}, "Ada Lovelace"),
        ({"lastName": " Lovelace "}, "Lovelace"),
        ({"name": "Given", "firstName": "Ada"}, "Given"),
        ({}, None),
    ],
)
def test_person_name_is_built_from_its_parts_when_missing(traits, name) -> None:
    fields = person_upsert({"traits": {"email": "a@x.io", **traits}}, DESTINATION).fields
    assert fields.get("Name") == name


def test_nulls_and_unmapped_traits_are_never_sent() -> None:
    event = {"traits": {"email": "a@x.io", "name": None, "timezone": None, "favouriteColour": "blue", "age": None}}
    assert person_upsert(event, DESTINATION).fields == {"Email": "a@x.io"}


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"traits": {"name": "x"}}, "email is required for identify"),
        ({"traits": {"email": "  "}}, "email is required for identify"),
        ({"traits": {"email": 42}}, "email must be a string"),
        ({"traits": {"email": "a@x.io", "masterAvatarTypeCode": "three"}}, "MasterAvatarTypeCode must be a number"),
        ({"traits": {"email": "a@x.io", "masterAvatarTypeCode": True}}, "MasterAvatarTypeCode must be a number"),
        ({"traits": "not an object"}, "email is required for identify"),
    ],
)
def test_identify_errors(event, message) -> None:
    with pytest.raises(EventRejected) as raised:
        person_upsert(event, DESTINATION)
    assert raised.value.message == message


@pytest.mark.parametrize(
    ("trait", "value", "field", "expected"),
    [
        ("employees", "1200", "Employees", 1200),
        ("arr", 1000.5, "Arr", 1000.5),
        ("billingAddress", {"city": "Paris"}, "BillingAddress", '{"city":"Paris"}'),
        ("billingAddress", "1 Rue", "BillingAddress", "1 Rue"),
        ("summary", {"a": 1}, "Summary", '{"a":1}'),
        ("companyType", "Customer", "CompanyType", "Customer"),
        ("csm", "Grace", "Csm", "Grace"),
        ("customerLifetimeInMonths", "12", "CustomerlifetimeInMonths", 12),
        ("industry", {"primary": "Software"}, "Industry", '{"primary":"Software"}'),
        ("lifecycleInWeeks", 8, "LifecycleInWeeks", 8),
        ("managedAs", "Tech Touch", "ManagedAs", "Tech Touch"),
        ("mrr", 99, "Mrr", 99),
        ("originalContractDate", "2021-03-18", "OriginalContractDate", "2021-03-18"),
        ("parentCompany", "Acme Holdings", "ParentCompany", "Acme Holdings"),
        ("renewalDate", "2027-03-31", "RenewalDate", "2027-03-31"),
        ("stage", "Adoption", "Stage", "Adoption"),
        ("status", "Active", "Status", "Active"),
        ("tags", ["a", "b"], "Tags", ["a", "b"]),
        ("tickerSymbol", {"nyse": "ACME"}, "TickerSymbol", '{"nyse":"ACME"}'),
        ("users", "40", "Users", 40),
        ("sfdcAccountId", "001x", "SfdcAccountId", "001x"),
        ("industryNew", "SaaS", "IndustryNew", "SaaS"),
        ("region", "EMEA", "Region__gc", "EMEA"),
    ],
)
def test_company_fields(trait, value, field, expected) -> None:
    event = {"type": "group", "traits": {"name": "Acme", trait: value}, "context": {"traits": {"email": "a@x.io"}}}
    op = company_upsert(event, DESTINATION)
    assert op.fields[field] == expected
    assert (op.key, op.email, op.fields["Name"]) == ("Acme", "a@x.io", "Acme")


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"traits": {}, "context": {"traits": {"email": "a@x.io"}}}, "company name is required for group"),
        ({"traits": {"name": "Acme"}}, "user email is required for group"),
        ({"traits": {"name": "Acme", "email": "a@x.io"}}, "user email is required for group"),
        ({"traits": {"name": {"x": 1}}, "context": {"traits": {"email": "a@x.io"}}}, "company name must be a string"),
        (
            {"traits": {"name": "Acme", "employees": "many"}, "context": {"traits": {"email": "a@x.io"}}},
            "Employees must be a number",
        ),
    ],
)
def test_group_errors(event, message) -> None:
    with pytest.raises(EventRejected) as raised:
        company_upsert(event, DESTINATION)
    assert raised.value.message == message


def test_track_headers_and_body() -> None:
    event = {
        "event": "Ticket Closed",
        "properties": {"id": "T-1", "note": None, "nested": {"a": None}},
        "context": {"externalId": [{"type": "other", "id": "x"}, {"type": "gainsightEventContractId", "id": "c-9"}]},
    }
    op = event_publish(event, DESTINATION)
    assert op.headers == {
        "sharedSecret": "secret",
        "tenantId": "tenant",
        "topicName": "topic",
        "eventName": "ticket_closed",
        "eventVersion": "1.0",
        "Content-Type": "application/json",
        "Accesskey": "key",
        "contractId": "c-9",
    }
    assert op.body == {"id": "T-1", "nested": {"a": None}}


def test_track_contract_id_falls_back_to_configured_then_omitted() -> None:
    assert event_publish({"event": "ticket closed"}, DESTINATION).headers["contractId"] == "configured-contract"
    assert "contractId" not in event_publish({"event": "Ticket Closed"}, replace(DESTINATION, contract_id=None)).headers


@pytest.mark.parametrize(
    ("event", "destination", "message"),
    [
        ({"properties": {}}, DESTINATION, "event name is required for track"),
        ({"event": "  "}, DESTINATION, "event name is required for track"),
        ({"event": "Signed Up"}, DESTINATION, "Event name mapping not provided for Signed Up"),
        (
            {"event": "Ticket Closed"},
            replace(DESTINATION, event_versions={}),
            "event version mapping not provided for Ticket Closed",
        ),
    ],
)
def test_track_errors(event, destination, message) -> None:
    with pytest.raises(EventRejected) as raised:
        event_publish(event, destination)
    assert raised.value.message.startswith(message)


@pytest.mark.parametrize("missing", ["tenant_id", "topic_name"])
def test_an_incomplete_publisher_is_a_configuration_problem_not_the_events(missing) -> None:
    # The event waits (retryable) until the destination is completed; it is not rejected for good.
    with pytest.raises(ConfigurationError) as raised:
        event_publish({"event": "Ticket Closed"}, replace(DESTINATION, **{missing: None}))
    assert raised.value.retryable and raised.value.operator
    key = {"tenant_id": "tenantId", "topic_name": "topicName"}[missing]
    assert raised.value.message.startswith(f"{key} is not configured")


def test_an_unreadable_shared_secret_waits_and_none_configured_rejects() -> None:
    # An unreadable SecureString waits for the operator; a stack without one rejects (kept for replay).
    unreadable = replace(DESTINATION, shared_secret=None, secret_problem="SSM parameter /s could not be read")
    with pytest.raises(ConfigurationError, match="SSM parameter /s could not be read: track events wait"):
        event_publish({"event": "Ticket Closed"}, unreadable)
    with pytest.raises(EventRejected) as raised:
        event_publish({"event": "Ticket Closed"}, replace(DESTINATION, shared_secret=None))
    assert raised.value.code == "no_shared_secret"


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        ({"type": "IDENTIFY", "traits": {"email": "a@x.io"}}, "PersonUpsert"),
        ({"type": " Group ", "traits": {"name": "A"}, "context": {"traits": {"email": "a@x.io"}}}, "CompanyUpsert"),
        ({"type": "Track", "event": "Ticket Closed"}, "EventPublish"),
    ],
)
def test_types_are_case_insensitive(event, kind) -> None:
    assert type(operation(event, DESTINATION)).__name__ == kind


@pytest.mark.parametrize(
    ("event_type", "message"),
    [
        ("page", "message type page not supported"),
        ("screen", "message type screen not supported"),
        ("alias", "message type alias not supported"),
        ("Unknown", "message type Unknown not supported"),
        (None, "message type (missing) not supported"),
        (7, "message type (missing) not supported"),
    ],
)
def test_other_types_are_rejected(event_type, message) -> None:
    with pytest.raises(EventRejected) as raised:
        operation({"type": event_type}, DESTINATION)
    assert (raised.value.message, raised.value.status_code) == (message, 400)
