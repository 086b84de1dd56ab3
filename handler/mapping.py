"""Pure mapping of RudderStack/Segment events to Gainsight operations. No I/O here."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from config import CompanyKey, Destination, TimelineActivity
from errors import ConfigurationError, EventRejected

# Gainsight Person field -> trait names, in the order they are looked up.
PERSON_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Email", ("email",)),
    ("Name", ("name",)),
    ("FirstName", ("firstName", "firstname", "first_name")),
    ("LastName", ("lastName", "lastname", "last_name")),
    ("MiddleName", ("middleName", "middlename", "middle_name")),
    ("LinkedinUrl", ("linkedinUrl",)),
    ("Location", ("location",)),
    ("ExternalRecordID__gc", ("externalRecordId",)),
    ("EmailOptOut", ("emailOptOut",)),
    ("DynamicResolutionKey", ("dynamicResolutionKey",)),
    ("Timezone", ("timezone",)),
    ("Comments", ("comments",)),
    ("MasterRecordID", ("masterRecordID", "masterRecordId")),
    ("MasterAvatarTypeCode", ("masterAvatarTypeCode",)),
)
PERSON_JSON_FIELDS = frozenset({"Location", "ExternalRecordID__gc", "DynamicResolutionKey", "Comments"})
PERSON_NUMBER_FIELDS = frozenset({"MasterAvatarTypeCode"})

# Gainsight Company field -> trait name.
COMPANY_FIELDS: tuple[tuple[str, str], ...] = (
    ("Name", "name"),
    ("Employees", "employees"),
    ("Arr", "arr"),
    ("BillingAddress", "billingAddress"),
    ("Summary", "summary"),
    ("CompanyType", "companyType"),
    ("Csm", "csm"),
    ("CustomerlifetimeInMonths", "customerLifetimeInMonths"),
    ("Industry", "industry"),
    ("LifecycleInWeeks", "lifecycleInWeeks"),
    ("ManagedAs", "managedAs"),
    ("Mrr", "mrr"),
    ("OriginalContractDate", "originalContractDate"),
    ("ParentCompany", "parentCompany"),
    ("RenewalDate", "renewalDate"),
    ("Stage", "stage"),
    ("Status", "status"),
    ("Tags", "tags"),
    ("TickerSymbol", "tickerSymbol"),
    ("Users", "users"),
    ("SfdcAccountId", "sfdcAccountId"),
    ("IndustryNew", "industryNew"),
)
COMPANY_JSON_FIELDS = frozenset({"BillingAddress", "Summary", "Industry", "TickerSymbol"})
COMPANY_NUMBER_FIELDS = frozenset({"Employees", "CustomerlifetimeInMonths", "LifecycleInWeeks", "Users"})

# Rejections of the event itself, whatever the configuration: not worth keeping for a replay.
INTAKE_REJECTION_CODES = frozenset({"invalid_event", "unsupported_type", "too_large", "too_deep"})
CONTRACT_ID_TYPE = "gainsightEventContractId"
SUPPORTED_TYPES = ("identify", "group", "track")


@dataclass(frozen=True, slots=True)
class PersonUpsert:
    """identify: one Person upsert keyed on Email."""

    email: str
    fields: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class CompanyUpsert:
    """group: a Company upsert keyed on the company key (Name unless configured), then the person's link to it."""

    key: str  # the value of the company key field
    fields: Mapping[str, Any]
    email: str
    link_only: bool = False  # the company was written already (an earlier attempt): only link the person
    link: Mapping[str, Any] = field(default_factory=dict)  # the person's fields on this company (companyPersonMap)


@dataclass(frozen=True, slots=True)
class EventPublish:
    """track: one Events Framework event, published at most once per `event_id`."""

    headers: Mapping[str, str] = field(repr=False)  # carries sharedSecret and Accesskey
    body: Mapping[str, Any] = field(repr=False)
    event_id: str = ""


@dataclass(frozen=True, slots=True)
class ActivityInsert:
    """track named in timelineMap: one Timeline activity on its company, created at most once (its ExternalId)."""

    company: str  # the value of the company key field
    record: Mapping[str, Any]
    publish: EventPublish | None = None  # also to the Events Framework, once the activity is in


Operation = PersonUpsert | CompanyUpsert | EventPublish | ActivityInsert
# The activity record's field that the company lookup reads (see activity_lookups).
ACTIVITY_COMPANY_FIELD = "Company"
EXTERNAL_ID_LENGTH = 100
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}\s]+)\s*\}\}")


def event_type(event: Mapping[str, Any]) -> str:
    """The event's type, lower-cased; '' when missing or not a string."""
    value = event.get("type")
    return value.strip().lower() if isinstance(value, str) else ""


def object_of(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _as_json(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return value


def _as_number(field_name: str, value: Any) -> int | float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                pass
            else:
                if math.isfinite(number):
                    return number
    raise EventRejected(f"{field_name} must be a number")


def _convert(field_name: str, value: Any, json_fields: frozenset[str], number_fields: frozenset[str]) -> Any:
    if field_name in number_fields:
        return _as_number(field_name, value)
    if field_name in json_fields:
        return _as_json(value)
    return value


def _first(sources: tuple[Mapping[str, Any], ...], names: tuple[str, ...]) -> Any:
    for source in sources:
        for name in names:
            value = source.get(name)
            if value is not None:
                return value
    return None


def _email(value: Any, message: str) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise EventRejected(message)
    if not isinstance(value, str):
        raise EventRejected("email must be a string")
    return value.strip()


def person_upsert(event: Mapping[str, Any], destination: Destination) -> PersonUpsert:
    """Map an identify event.

    Raises:
        EventRejected: without an email, or with a field of the wrong type.
    """
    context = object_of(event.get("context"))
    sources = (object_of(event.get("traits")), object_of(context.get("traits")))
    email = _email(_first(sources, ("email",)), "email is required for identify")
    fields: dict[str, Any] = {}
    for field_name, trait_names in PERSON_FIELDS:
        value = _first(sources, trait_names)
        if value is not None:
            fields[field_name] = _convert(field_name, value, PERSON_JSON_FIELDS, PERSON_NUMBER_FIELDS)
    fields["Email"] = email
    if "Name" not in fields:
        parts = (fields.get(key) for key in ("FirstName", "MiddleName", "LastName"))
        name = " ".join(str(part).strip() for part in parts if part is not None and str(part).strip())
        if name:
            fields["Name"] = name
    for trait, target in destination.person_map:
        value = _first(sources, (trait,))
        if value is not None:
            fields[target] = value
    return PersonUpsert(email=email, fields=fields)


def key_text(value: Any) -> str | None:
    """A key value as text; None when missing, empty or not a scalar."""
    if isinstance(value, str | int | float) and not isinstance(value, bool) and str(value).strip():
        return str(value).strip()
    return None


def company_key_value(event: Mapping[str, Any], key: CompanyKey) -> str | None:
    """The value of a group event's company key: its groupId or the configured trait (the name by default)."""
    if key.trait is None:
        return key_text(event.get("groupId"))
    return key_text(object_of(event.get("traits")).get(key.trait))


def company_of(event: Mapping[str, Any], destination: Destination | None = None) -> str | None:
    """The company an event writes to, by its key value: a group event's, or a track event's that
    becomes a Timeline activity. Without a destination, a group event's name."""
    kind = event_type(event)
    if kind == "group":
        return company_key_value(event, destination.company_key if destination else CompanyKey())
    name = event.get("event")
    if kind == "track" and destination is not None and isinstance(name, str):
        activity = destination.timeline.get(name.strip().casefold())
        if activity is not None:
            return activity_company(event, activity)
    return None


def company_upsert(event: Mapping[str, Any], destination: Destination) -> CompanyUpsert:
    """Map a group event.

    Raises:
        EventRejected: without a company name, company key value or user email, or with a field of
            the wrong type.
    """
    traits = object_of(event.get("traits"))
    name = traits.get("name")
    if name is None or (isinstance(name, str) and not name.strip()):
        raise EventRejected("company name is required for group")
    if not isinstance(name, str | int | float) or isinstance(name, bool):
        raise EventRejected("company name must be a string")
    company_key = destination.company_key
    key = company_key_value(event, company_key)
    if key is None:
        raise EventRejected(
            f"company key {company_key.field} is required for group (from {company_key.source})",
            code="no_company_key",
        )
    context_traits = object_of(object_of(event.get("context")).get("traits"))
    email = _email(context_traits.get("email"), "user email is required for group")
    fields: dict[str, Any] = {}
    for field_name, trait in COMPANY_FIELDS:
        value = traits.get(trait)
        if value is not None:
            fields[field_name] = _convert(field_name, value, COMPANY_JSON_FIELDS, COMPANY_NUMBER_FIELDS)
    for trait, target in destination.company_map:
        value = traits.get(trait)
        if value is not None:
            fields[target] = value
    fields["Name"] = str(name).strip()
    fields[company_key.field] = key
    link = {}
    for trait, target in destination.company_person_map:
        value = _first((traits, context_traits), (trait,))
        if value is not None:
            link[target] = value
    return CompanyUpsert(key=key, fields=fields, email=email, link=link)


def _contract_id(event: Mapping[str, Any], destination: Destination) -> str | None:
    external_ids = object_of(event.get("context")).get("externalId")
    if isinstance(external_ids, list):
        for entry in external_ids:
            if isinstance(entry, dict) and entry.get("type") == CONTRACT_ID_TYPE and entry.get("id") not in (None, ""):
                return str(entry["id"])
    return destination.contract_id


def events_framework_headers(
    destination: Destination, event_name: str, event_version: str, contract_id: str | None = None
) -> dict[str, str]:
    """The headers of one Events Framework publish.

    Raises:
        EventRejected: without a shared secret when none is configured (SharedSecretParamName none).
        ConfigurationError: its shared secret unreadable, or no tenant or topic configured.
    """
    _require_events_framework(destination)
    headers = {
        "sharedSecret": destination.shared_secret or "",
        "tenantId": destination.tenant_id or "",
        "topicName": destination.topic_name or "",
        "eventName": event_name,
        "eventVersion": event_version,
        "Content-Type": "application/json",
    }
    if destination.access_key:
        headers["Accesskey"] = destination.access_key
    contract_id = contract_id or destination.contract_id
    if contract_id:
        headers["contractId"] = contract_id
    return headers


def _require_events_framework(destination: Destination) -> None:
    if not destination.shared_secret:
        if destination.secret_problem is not None:
            # Configured but unreadable: the event waits until the parameter is fixed.
            raise ConfigurationError(f"{destination.secret_problem}: track events wait until it can be read")
        raise EventRejected(
            "no Events Framework shared secret is configured (SharedSecretParamName is none)", code="no_shared_secret"
        )
    for key, value in (
        ("tenantId", destination.tenant_id),
        ("topicName", destination.topic_name),
    ):
        if not value:
            # The destination is incomplete, not the event: it waits until the configuration is fixed.
            raise ConfigurationError(f"{key} is not configured: track events cannot be sent until it is")


def event_publish(event: Mapping[str, Any], destination: Destination) -> EventPublish:
    """Map a track event.

    Raises:
        EventRejected: without an event name or a name/version mapping.
        EventRejected: also without a shared secret when none is configured (SharedSecretParamName none).
        ConfigurationError: its shared secret unreadable, or no tenant or topic configured.
    """
    name = event.get("event")
    if not isinstance(name, str) or not name.strip():
        raise EventRejected("event name is required for track")
    _require_events_framework(destination)
    key = name.strip().casefold()
    if key not in destination.event_names:
        raise EventRejected(f"Event name mapping not provided for {name}", code="no_event_name_mapping")
    if key not in destination.event_versions:
        raise EventRejected(f"event version mapping not provided for {name}", code="no_event_version_mapping")
    headers = events_framework_headers(
        destination, destination.event_names[key], destination.event_versions[key], _contract_id(event, destination)
    )
    body = {key: value for key, value in object_of(event.get("properties")).items() if value is not None}
    return EventPublish(headers=headers, body=body, event_id=event_id(event))


def activity_company(event: Mapping[str, Any], activity: TimelineActivity) -> str | None:
    """The company key value of a track event that becomes an activity: the configured property,
    else `context.groupId`."""
    if activity.company_property is not None:
        return key_text(object_of(event.get("properties")).get(activity.company_property))
    return key_text(object_of(event.get("context")).get("groupId"))


def render(template: str, event: Mapping[str, Any]) -> str:
    """Replace each {{name}} with the event's property `name`, else its context.traits `name`;
    missing or null is empty, objects and lists are JSON, booleans true/false."""
    sources = (object_of(event.get("properties")), object_of(object_of(event.get("context")).get("traits")))

    def value(match: re.Match[str]) -> str:
        found = _first(sources, (match.group(1),))
        if found is None:
            return ""
        if isinstance(found, bool):
            return "true" if found else "false"
        if isinstance(found, dict | list):
            return json.dumps(found, separators=(",", ":"), ensure_ascii=False)
        return str(found)

    return _PLACEHOLDER.sub(value, template)


def event_moment(event: Mapping[str, Any]) -> datetime | None:
    """The event's timestamp, else originalTimestamp (UTC when it names no zone); None when it has
    neither or it is not an ISO 8601 date."""
    value = event.get("timestamp") or event.get("originalTimestamp")
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def activity_date(event: Mapping[str, Any]) -> str:
    """The event's timestamp (else originalTimestamp) as ISO 8601 with an offset (UTC when it has none).

    Raises:
        EventRejected: when it has neither, or it is not a date.
    """
    value = event.get("timestamp") or event.get("originalTimestamp")
    if not isinstance(value, str) or not value.strip():
        raise EventRejected("timestamp is required for a Timeline activity", code="no_timestamp")
    moment = event_moment(event)
    if moment is None:
        raise EventRejected(f"timestamp {value[:40]!r} is not an ISO 8601 date", code="no_timestamp")
    return moment.isoformat(timespec="milliseconds")


def external_id(event: Mapping[str, Any]) -> str:
    """The activity's idempotency key: the event's messageId (a hash of it when very long), so a
    retried or replayed event can never create a second activity."""
    value = event_id(event)
    if len(value) <= EXTERNAL_ID_LENGTH:
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def activity_insert(event: Mapping[str, Any], destination: Destination, activity: TimelineActivity) -> ActivityInsert:
    """Map a track event named in timelineMap.

    Raises:
        EventRejected: without its company or a valid timestamp (or, when it also goes to the
            Events Framework, as event_publish does).
        ConfigurationError: as event_publish, when it also goes to the Events Framework.
    """
    company = activity_company(event, activity)
    if company is None:
        source = f"properties.{activity.company_property}" if activity.company_property else "context.groupId"
        raise EventRejected(
            f"a Timeline activity needs its company: {source} is missing (matched by {destination.company_key.field})",
            code="no_company",
        )
    record = {
        "ContextName": "Company",
        "TypeName": activity.activity_type,
        "ExternalId": external_id(event),
        "Subject": render(activity.subject, event),
        "Notes": render(activity.notes, event),
        "ActivityDate": activity_date(event),
        "Author": activity.author,
        ACTIVITY_COMPANY_FIELD: company,
    }
    publish = event_publish(event, destination) if activity.events_framework else None
    return ActivityInsert(company=company, record=record, publish=publish)


def activity_lookups(key: CompanyKey) -> dict[str, Any]:
    """The Timeline API's lookups: the company by its key field, the author by email, each to a Gsid."""
    return {
        "GsCompanyId": {
            "fields": {ACTIVITY_COMPANY_FIELD: key.field},
            "lookupField": "Gsid",
            "objectName": "Company",
            "multiMatchOption": "FIRSTMATCH",
            "onNoMatch": "ERROR",
        },
        "AuthorId": {
            "fields": {"Author": "Email"},
            "lookupField": "Gsid",
            "objectName": "GsUser",
            "multiMatchOption": "FIRSTMATCH",
            "onNoMatch": "ERROR",
        },
    }


def email_key(email: str) -> str:
    """Emails that differ only in case or surrounding spaces are one person."""
    return email.strip().casefold()


def has_message_id(event: Mapping[str, Any]) -> bool:
    """The event names itself: a non-empty string or an integer messageId."""
    value = event.get("messageId")
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, str) and bool(value.strip()))


def event_id(event: Mapping[str, Any]) -> str:
    """The event's identity for deduplication: its messageId (intake gives every event one); a hash of
    the content only for an event stored without one by an earlier version."""
    if has_message_id(event):
        return str(event["messageId"]).strip()
    canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def operation(event: Mapping[str, Any], destination: Destination, *, link_only: bool = False) -> Operation:
    """Map one event to the Gainsight operation it asks for.

    Raises:
        EventRejected: when the event can never be delivered as sent.
    """
    kind = event_type(event)
    if kind == "identify":
        return person_upsert(event, destination)
    if kind == "group":
        upsert = company_upsert(event, destination)
        return replace(upsert, link_only=True) if link_only else upsert
    if kind == "track":
        name = event.get("event")
        activity = destination.timeline.get(name.strip().casefold()) if isinstance(name, str) else None
        return event_publish(event, destination) if activity is None else activity_insert(event, destination, activity)
    shown = event.get("type") if isinstance(event.get("type"), str) and event.get("type") else "(missing)"
    raise EventRejected(f"message type {shown} not supported", code="unsupported_type")
