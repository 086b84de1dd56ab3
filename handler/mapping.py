"""Pure mapping of RudderStack/Segment events to Gainsight operations. No I/O here."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from config import Destination
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
    """group: a Company upsert keyed on Name, then the person's link to it."""

    name: str
    fields: Mapping[str, Any]
    email: str
    link_only: bool = False  # the company was written already (an earlier attempt): only link the person


@dataclass(frozen=True, slots=True)
class EventPublish:
    """track: one Events Framework event, published at most once per `event_id`."""

    headers: Mapping[str, str] = field(repr=False)  # carries sharedSecret and Accesskey
    body: Mapping[str, Any] = field(repr=False)
    event_id: str = ""


Operation = PersonUpsert | CompanyUpsert | EventPublish


def event_type(event: Mapping[str, Any]) -> str:
    """The event's type, lower-cased; '' when missing or not a string."""
    value = event.get("type")
    return value.strip().lower() if isinstance(value, str) else ""


def _object(value: Any) -> Mapping[str, Any]:
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
    context = _object(event.get("context"))
    sources = (_object(event.get("traits")), _object(context.get("traits")))
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


def company_upsert(event: Mapping[str, Any], destination: Destination) -> CompanyUpsert:
    """Map a group event.

    Raises:
        EventRejected: without a company name or user email, or with a field of the wrong type.
    """
    traits = _object(event.get("traits"))
    name = traits.get("name")
    if name is None or (isinstance(name, str) and not name.strip()):
        raise EventRejected("company name is required for group")
    if not isinstance(name, str | int | float) or isinstance(name, bool):
        raise EventRejected("company name must be a string")
    email = _email(
        _object(_object(event.get("context")).get("traits")).get("email"), "user email is required for group"
    )
    fields: dict[str, Any] = {}
    for field_name, trait in COMPANY_FIELDS:
        value = traits.get(trait)
        if value is not None:
            fields[field_name] = _convert(field_name, value, COMPANY_JSON_FIELDS, COMPANY_NUMBER_FIELDS)
    for trait, target in destination.company_map:
        value = traits.get(trait)
        if value is not None:
            fields[target] = value
    company_name = str(name).strip()
    fields["Name"] = company_name
    return CompanyUpsert(name=company_name, fields=fields, email=email)


def _contract_id(event: Mapping[str, Any], destination: Destination) -> str | None:
    external_ids = _object(event.get("context")).get("externalId")
    if isinstance(external_ids, list):
        for entry in external_ids:
            if isinstance(entry, dict) and entry.get("type") == CONTRACT_ID_TYPE and entry.get("id") not in (None, ""):
                return str(entry["id"])
    return destination.contract_id


def event_publish(event: Mapping[str, Any], destination: Destination) -> EventPublish:
    """Map a track event.

    Raises:
        EventRejected: without an event name or a name/version mapping.
        ConfigurationError: without a configured publisher (shared secret, tenant, topic).
    """
    name = event.get("event")
    if not isinstance(name, str) or not name.strip():
        raise EventRejected("event name is required for track")
    for key, value in (
        ("sharedSecret", destination.shared_secret),
        ("tenantId", destination.tenant_id),
        ("topicName", destination.topic_name),
    ):
        if not value:
            # The destination is incomplete, not the event: it waits until the configuration is fixed.
            raise ConfigurationError(f"{key} is not configured: track events cannot be sent until it is")
    key = name.strip().casefold()
    if key not in destination.event_names:
        raise EventRejected(f"Event name mapping not provided for {name}", code="no_event_name_mapping")
    if key not in destination.event_versions:
        raise EventRejected(f"event version mapping not provided for {name}", code="no_event_version_mapping")
    headers = {
        "sharedSecret": destination.shared_secret or "",
        "tenantId": destination.tenant_id or "",
        "topicName": destination.topic_name or "",
        "eventName": destination.event_names[key],
        "eventVersion": destination.event_versions[key],
        "Content-Type": "application/json",
    }
    if destination.access_key:
        headers["Accesskey"] = destination.access_key
    contract_id = _contract_id(event, destination)
    if contract_id:
        headers["contractId"] = contract_id
    body = {key: value for key, value in _object(event.get("properties")).items() if value is not None}
    return EventPublish(headers=headers, body=body, event_id=event_id(event))


def email_key(email: str) -> str:
    """Emails that differ only in case or surrounding spaces are one person."""
    return email.strip().casefold()


def event_id(event: Mapping[str, Any]) -> str:
    """A stable identity for deduplication: the messageId, else a hash of the event's content."""
    message_id = event.get("messageId")
    if isinstance(message_id, str) and message_id.strip():
        return message_id.strip()
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
        return CompanyUpsert(upsert.name, upsert.fields, upsert.email, link_only=True) if link_only else upsert
    if kind == "track":
        return event_publish(event, destination)
    shown = event.get("type") if isinstance(event.get("type"), str) and event.get("type") else "(missing)"
    raise EventRejected(f"message type {shown} not supported", code="unsupported_type")
