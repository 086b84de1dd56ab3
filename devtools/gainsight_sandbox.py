"""A local Gainsight CS sandbox: a real HTTP server on 127.0.0.1 that follows
../shared/docs/gainsight-api.md, holds people, companies and events in memory, counts every
call, and can be told to misbehave (latency, 429, 5xx, timeouts, dropped connections, quota).

Timeline activities (`POST /v1/ant/es/activity`): at most MAX_ACTIVITY_RECORDS records a call,
each answered on its own (`data.records[i].success`); an ExternalId already stored is refused
for that record (GSTL_1009, or `Faults.duplicate_activity_code`) and never creates a second
activity; `PUT ...?identifier=externalid` updates activities by ExternalId. The real single-insert limit of
~200 calls per minute is not modelled apart from the shared quota.

A development tool: it is never deployed. Run it alone with `python -m devtools.gainsight_sandbox`.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

PERSON_FIELDS = {
    "Email", "Name", "FirstName", "LastName", "MiddleName", "LinkedinUrl", "Location", "ExternalRecordID__gc",
    "EmailOptOut", "DynamicResolutionKey", "Timezone", "Comments", "MasterRecordID", "MasterAvatarTypeCode",
}  # fmt: skip
COMPANY_FIELDS = {
    "Name", "Employees", "Arr", "BillingAddress", "Summary", "CompanyType", "Csm", "CustomerlifetimeInMonths",
    "Industry", "LifecycleInWeeks", "ManagedAs", "Mrr", "OriginalContractDate", "ParentCompany", "RenewalDate",
    "Stage", "Status", "Tags", "TickerSymbol", "Users", "SfdcAccountId", "IndustryNew",
}  # fmt: skip
COMPANY_NUMBERS = {"Employees", "CustomerlifetimeInMonths", "LifecycleInWeeks", "Users"}
COMPANY_DATES = {"OriginalContractDate", "RenewalDate"}
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?$")
MAX_RECORDS = 50
# A person's fields on a company (the People PUT's company link), besides custom __gc ones.
COMPANY_PERSON_FIELDS = {"Title", "Role", "IsPrimaryCompany", "Active", "Manager"}
MAX_ACTIVITY_RECORDS = 25
ACTIVITY_TYPES = {"Update", "Call", "Meeting", "Email", "Milestone"}
ACTIVITY_REQUIRED = ("ContextName", "TypeName", "ExternalId", "Subject", "ActivityDate", "Author")
USERS = ("csm@example.com", "success-team@example.com")  # the tenant's Gainsight users (activity authors)

OPERATIONS = {
    ("PUT", "/v1.0/api/people"): "person_upsert",
    ("PUT", "/v1/peoplemgmt/v1.0/people"): "person_upsert",
    ("POST", "/v1/data/objects/Company"): "company_insert",
    ("PUT", "/v1/data/objects/Company"): "company_update",
    ("POST", "/v1/data/objects/query/Company"): "company_query",
    ("POST", "/v1.0/api/eventManager/event"): "event_publish",
    ("POST", "/v1/ant/es/activity"): "activity_insert",
    ("PUT", "/v1/ant/es/activity"): "activity_update",
}


@dataclass
class Fault:
    """One scripted misbehaviour, applied to the next matching call(s)."""

    status: int | None = None  # answer with this HTTP status (429, 500, 503...)
    retry_after: str | None = None  # Retry-After header value, with a 429/503
    delay: float = 0.0  # seconds to wait before answering (longer than the client's timeout = a timeout)
    drop: bool = False  # close the connection without an answer
    lost_answer: bool = False  # do the work, then close the connection without an answer
    reply: dict[str, Any] | None = None  # answer 200 with this `data`, without touching the store
    operation: str | None = None  # only calls of this operation; None = any
    times: int = 1


@dataclass
class Faults:
    latency: float = 0.0  # seconds added to every call
    scripted: list[Fault] = field(default_factory=list)
    quota_per_minute: int | None = None  # Gainsight's fixed-window limit (calls per window); None = unlimited
    quota_window: float = 60.0  # the window's seconds: a time-compressed load test shortens it
    quota_retry_after: bool = True
    # Answers carry x-ratelimit-limit and x-ratelimit-remaining of the quota window (as Gainsight's
    # Timeline API documents); off unless a test or run asks for them.
    rate_limit_headers: bool = False
    # The per-record code refusing an insert whose ExternalId exists: Gainsight does not document
    # it, so a test can make the "tenant" answer another one.
    duplicate_activity_code: str = "GSTL_1009"
    random_rate: float = 0.0  # share of calls that misbehave at random (5xx, 429, timeout, drop)
    lost_answer_rate: float = 0.0  # share of calls that are carried out and then answered with a dropped connection
    random_timeout: float = 3.0
    rng: random.Random = field(default_factory=lambda: random.Random(7))


@dataclass
class Call:
    operation: str
    method: str
    path: str
    status: int
    body: Any
    at: float  # time.monotonic() when the call arrived
    answered: float  # time.monotonic() when it was answered


class SandboxState:
    """Everything the sandbox holds; every access goes through its lock."""

    def __init__(self, access_key: str, shared_secret: str, tenant_id: str) -> None:
        self.lock = threading.RLock()
        self.access_key = access_key
        self.shared_secret = shared_secret
        self.tenant_id = tenant_id
        self.people: dict[str, dict[str, Any]] = {}
        self.companies: dict[str, dict[str, Any]] = {}  # Gsid -> record
        self.events: list[dict[str, Any]] = []
        self.activities: dict[str, dict[str, Any]] = {}  # ExternalId -> activity
        self.users = {email: gsid() for email in USERS}
        self.calls: list[Call] = []
        self.lost_answers: list[Call] = []  # calls carried out whose answer was dropped
        self.faults = Faults()
        self._window = (0.0, 0)
        self.generation = 0  # bumped by reset: a call that arrived before a reset changes nothing after it

    def reset(self) -> None:
        with self.lock:
            self.generation += 1
            self.people.clear()
            self.companies.clear()
            self.events.clear()
            self.activities.clear()
            self.calls.clear()
            self.lost_answers.clear()
            self.faults = Faults()
            self._window = (0.0, 0)

    def company_by(self, **values: Any) -> dict[str, Any] | None:
        """The first company whose fields have these values."""
        return next((c for c in self.companies.values() if all(c.get(k) == v for k, v in values.items())), None)

    def count(self, operation: str | None = None) -> int:
        with self.lock:
            return sum(1 for c in self.calls if operation in (None, c.operation))

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "people": list(self.people.values()),
                "companies": list(self.companies.values()),
                "events": list(self.events),
                "activities": list(self.activities.values()),
                "calls": {op: self.count(op) for op in sorted(set(OPERATIONS.values()))} | {"total": self.count()},
            }

    def quota_exceeded(self) -> bool:
        with self.lock:
            limit = self.faults.quota_per_minute
            if limit is None:
                return False
            start, used = self._window
            now = time.monotonic()
            if now - start >= self.faults.quota_window:
                start, used = now, 0
            used += 1
            self._window = (start, used)
            return used > limit

    def rate_headers(self) -> dict[str, str]:
        """x-ratelimit-* headers of the quota window, when answers carry them."""
        with self.lock:
            limit = self.faults.quota_per_minute
            if limit is None or not self.faults.rate_limit_headers:
                return {}
            return {"x-ratelimit-limit": str(limit), "x-ratelimit-remaining": str(max(0, limit - self._window[1]))}

    def next_fault(self, operation: str) -> Fault | None:
        with self.lock:
            for fault in self.faults.scripted:
                if fault.operation in (None, operation):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.scripted.remove(fault)
                    return fault
            faults = self.faults
            if faults.lost_answer_rate and faults.rng.random() < faults.lost_answer_rate:
                return Fault(lost_answer=True)
            if faults.random_rate and faults.rng.random() < faults.random_rate:
                return faults.rng.choice(
                    [
                        Fault(status=503),
                        Fault(status=500),
                        Fault(status=429, retry_after="1"),
                        Fault(status=429),
                        # A call that hangs past the client's timeout and never reaches Gainsight's store
                        Fault(delay=faults.random_timeout, drop=True),
                        Fault(drop=True),
                    ]
                )
            return None


def envelope(data: Any = None, *, ok: bool = True, code: str | None = None, desc: str | None = None) -> dict[str, Any]:
    return {
        "result": ok,
        "errorCode": code,
        "errorDesc": desc,
        "requestId": str(uuid.uuid4()),
        "data": data,
        "message": None,
    }


def gsid() -> str:
    return "1P" + uuid.uuid4().hex[:20].upper()


class Refused(Exception):
    def __init__(self, status: int, code: str, desc: str, data: Any = None) -> None:
        super().__init__(desc)
        self.status, self.code, self.desc, self.data = status, code, desc, data


def _company_errors(record: Any, state: SandboxState, keys: list[str]) -> list[dict[str, Any]]:
    """Why a company record cannot be written: inserted when `keys` is empty, else updated by them."""
    if not isinstance(record, dict):
        return [{"errorCode": "GSOBJ_1007", "fieldName": None, "invalidValue": record}]
    errors = []
    name = record.get("Name")
    missing = [key for key in keys if record.get(key) in (None, "")]
    match = state.company_by(**{key: record[key] for key in keys}) if keys and not missing else None
    if (not keys or "Name" in record) and (not isinstance(name, str) or not name):
        errors.append({"errorCode": "GSOBJ_1005", "fieldName": "Name", "invalidValue": name})
    elif missing:
        errors.append({"errorCode": "GSOBJ_1005", "fieldName": missing[0], "invalidValue": None})
    elif keys and match is None:
        errors.append({"errorCode": "GSOBJ_1011", "fieldName": keys[0], "invalidValue": record[keys[0]]})
    elif name is not None and state.company_by(Name=name) not in (None, match):
        # Names are unique in this tenant: an insert, or a rename, onto another company's name
        errors.append({"errorCode": "GSOBJ_1009", "fieldName": "Name", "invalidValue": name})
    for key, value in record.items():
        if key not in COMPANY_FIELDS and not key.endswith("__gc"):
            errors.append({"errorCode": "GSOBJ_1002", "fieldName": key, "invalidValue": value})
        elif key in COMPANY_NUMBERS and not (isinstance(value, int | float) and not isinstance(value, bool)):
            errors.append({"errorCode": "GSOBJ_1007", "fieldName": key, "invalidValue": value})
        elif key in COMPANY_DATES and not (isinstance(value, str) and DATE.match(value)):
            errors.append({"errorCode": "GSOBJ_1006", "fieldName": key, "invalidValue": value})
    return errors


def write_companies(state: SandboxState, body: Any, *, insert: bool, keys: str | None) -> dict[str, Any]:
    records = body.get("records") if isinstance(body, dict) else None
    if not isinstance(records, list) or not records:
        raise Refused(400, "GSOBJ_1001", "records are required")
    if len(records) > MAX_RECORDS:
        raise Refused(400, "GSOBJ_1010", f"at most {MAX_RECORDS} records per call")
    key_fields = [] if insert else [key for key in (keys or "").split(",") if key]
    if not insert and not 1 <= len(key_fields) <= 3:
        raise Refused(400, "GSOBJ_1008", "keys (one to three fields, e.g. keys=Name) are required for an update")
    identities = [
        json.dumps([r.get(key) for key in key_fields or ["Name"]], default=str) for r in records if isinstance(r, dict)
    ]
    per_record = [_company_errors(r, state, key_fields) for r in records]
    if len(set(identities)) != len(identities):
        per_record = [errs or [{"errorCode": "GSOBJ_1009", "fieldName": "Name"}] for errs in per_record]
    if any(per_record):
        first = next(e for errs in per_record for e in errs)
        desc = f"Invalid value ({first['fieldName']} = {first.get('invalidValue')})."
        errors = [[{"success": not errs, "errors": errs}] for errs in per_record]
        raise Refused(400, first["errorCode"], desc, {"count": 0, "records": None, "errors": errors})
    written = []
    for record in records:
        existing = state.company_by(**{key: record[key] for key in key_fields}) if key_fields else None
        if existing is None:
            existing = {"Gsid": gsid()}
            state.companies[existing["Gsid"]] = existing
        existing.update(record)
        written.append({"Gsid": existing["Gsid"]})
    return {"count": len(written), "errors": None, "records": written}


def query_companies(state: SandboxState, body: Any) -> dict[str, Any]:
    try:
        conditions = body["where"]["conditions"]
        select = body.get("select") or ["Gsid", "Name"]
        limit = int(body.get("limit", 5000))
    except (KeyError, TypeError, ValueError):
        raise Refused(400, "GSOBJ_1001", "invalid query") from None
    if limit > 5000:
        raise Refused(400, "GSOBJ_1001", "limit is at most 5000")
    rows = list(state.companies.values())
    for condition in conditions:
        values = condition.get("value")
        values = values if isinstance(values, list) else [values]
        operator = condition.get("operator")
        if operator not in ("EQ", "IN"):
            raise Refused(400, "GSOBJ_1001", f"operator {operator} is not supported by the sandbox")
        rows = [row for row in rows if row.get(condition.get("name")) in values]
    records = [{key: row.get(key) for key in select} for row in rows[:limit]]
    return {"count": len(records), "records": records}


def upsert_person(state: SandboxState, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise Refused(400, "GSOBJ_PEOPLE1002", "a person object is required")
    email = body.get("Email")
    if not isinstance(email, str) or "@" not in email:
        raise Refused(400, "GSOBJ_VDT1001", f"Invalid Email ({email})")
    for key, value in body.items():
        if key == "companies":
            if not isinstance(value, list) or not all(isinstance(c, dict) and c.get("Company_ID") for c in value):
                raise Refused(400, "GSOBJ_1001", "companies must be a list of {Company_ID}")
            missing = [c["Company_ID"] for c in value if c["Company_ID"] not in state.companies]
            if missing:
                raise Refused(400, "GSOBJ_1003", f"Invalid GSID ({missing[0]})")
            unknown = [
                k
                for c in value
                for k in c
                if k != "Company_ID" and k not in COMPANY_PERSON_FIELDS and not k.endswith("__gc")
            ]
            if unknown:
                raise Refused(400, "GSOBJ_1002", f"Invalid field (companies.{unknown[0]})")
        elif key not in PERSON_FIELDS and not key.endswith("__gc"):
            raise Refused(400, "GSOBJ_1002", f"Invalid field ({key})")
    person = state.people.setdefault(email, {"Gsid": gsid(), "companies": []})
    for key, value in body.items():
        if key == "companies":
            for link in value:
                if link["Company_ID"] not in person["companies"]:
                    person["companies"].append(link["Company_ID"])
                attributes = {k: v for k, v in link.items() if k != "Company_ID"}
                if attributes:  # the person's fields on that company
                    person.setdefault("companyPerson", {}).setdefault(link["Company_ID"], {}).update(attributes)
        else:
            person[key] = value
    return {"count": 1, "errors": None, "records": [{"Gsid": person["Gsid"]}]}


def publish_event(state: SandboxState, headers: dict[str, str], body: Any) -> dict[str, Any]:
    if headers.get("sharedsecret") != state.shared_secret or headers.get("tenantid") != state.tenant_id:
        raise Refused(401, "GS_APIG_2401", "Invalid sharedSecret or tenantId")
    for name in ("topicname", "eventname", "eventversion"):
        if not headers.get(name):
            raise Refused(400, "GS_EVENT_1001", f"header {name} is required")
    if not isinstance(body, dict):
        raise Refused(400, "GS_EVENT_1002", "event body must be a JSON object")
    state.events.append(
        {
            "topicName": headers["topicname"],
            "eventName": headers["eventname"],
            "eventVersion": headers["eventversion"],
            "contractId": headers.get("contractid"),
            "body": body,
        }
    )
    return {"count": 1, "errors": None, "records": [{"eventId": str(uuid.uuid4())}]}


def _lookup(lookups: Any, name: str, object_name: str) -> tuple[str, str]:
    """A lookup's record field and the field of `object_name` it matches."""
    spec = lookups.get(name) if isinstance(lookups, dict) else None
    fields = spec.get("fields") if isinstance(spec, dict) else None
    if not isinstance(spec, dict) or not isinstance(fields, dict) or len(fields) != 1:
        raise Refused(400, "GSTL_1006", f"lookups.{name} must match one field of {object_name}")
    if spec.get("objectName") != object_name:
        raise Refused(400, "GSTL_1006", f"lookups.{name} must match one field of {object_name}")
    [(record_field, object_field)] = fields.items()
    return str(record_field), str(object_field)


def _activity_error(
    record: Any, state: SandboxState, company: tuple[str, str], author: tuple[str, str]
) -> tuple[dict[str, Any] | None, Mapping[str, Any]]:
    """Why an activity cannot be inserted (or None), and what its lookups resolved to."""
    if not isinstance(record, dict):
        return {"errorCode": "GSTL_1001", "errorDesc": "an activity must be an object"}, {}
    missing = [key for key in ACTIVITY_REQUIRED if record.get(key) in (None, "")]
    if missing:
        return {"errorCode": "GSTL_1001", "errorDesc": f"{missing[0]} is required"}, {}
    if str(record["ExternalId"]) in state.activities:
        code = state.faults.duplicate_activity_code
        return {"errorCode": code, "errorDesc": f"ExternalId {record['ExternalId']} exists already"}, {}
    if record["ContextName"] != "Company":
        return {"errorCode": "GSTL_1001", "errorDesc": f"ContextName {record['ContextName']} is not supported"}, {}
    if record["TypeName"] not in ACTIVITY_TYPES:
        return {"errorCode": "GSTL_1002", "errorDesc": f"Invalid activity type ({record['TypeName']})"}, {}
    try:
        dated = datetime.fromisoformat(str(record["ActivityDate"])).tzinfo is not None
    except ValueError:
        dated = False
    if not dated:
        return {"errorCode": "GSTL_1005", "errorDesc": f"Invalid ActivityDate ({record['ActivityDate']})"}, {}
    user = state.users.get(str(record.get(author[0]))) if author[1] == "Email" else None
    if user is None:
        return {"errorCode": "GSTL_1004", "errorDesc": f"No match for lookup AuthorId ({record.get(author[0])})"}, {}
    match = state.company_by(**{company[1]: record.get(company[0])})
    if match is None:
        desc = f"No match for lookup GsCompanyId ({company[1]} = {record.get(company[0])})"
        return {"errorCode": "GSTL_1003", "errorDesc": desc}, {}
    return None, {"GsCompanyId": match["Gsid"], "AuthorId": user}


def _activity_records(body: Any) -> list[Any]:
    """The records of a Timeline call, or why the call is refused as a whole."""
    records = body.get("records") if isinstance(body, dict) else None
    if not isinstance(records, list) or not records:
        raise Refused(400, "GSTL_1001", "records are required")
    if len(records) > MAX_ACTIVITY_RECORDS:
        raise Refused(400, "GSTL_1010", f"at most {MAX_ACTIVITY_RECORDS} records per call")
    return records


def insert_activities(state: SandboxState, body: Any) -> dict[str, Any]:
    records = _activity_records(body)
    company = _lookup(body.get("lookups"), "GsCompanyId", "Company")
    author = _lookup(body.get("lookups"), "AuthorId", "GsUser")
    ids = [str(r.get("ExternalId")) for r in records if isinstance(r, dict)]
    if len(set(ids)) != len(ids):
        raise Refused(400, "GSTL_1011", "ExternalId must be unique within a request")
    results = []
    for record in records:
        error, resolved = _activity_error(record, state, company, author)
        if error is not None:
            external = record.get("ExternalId") if isinstance(record, dict) else None
            results.append({"success": False, "ExternalId": external, "Gsid": None, "errors": [error]})
            continue
        activity = {**record, **resolved, "Gsid": gsid()}
        state.activities[str(record["ExternalId"])] = activity
        results.append({"success": True, "ExternalId": record["ExternalId"], "Gsid": activity["Gsid"], "errors": None})
    created = sum(1 for r in results if r["success"])
    return {"count": created, "errors": None, "records": results}


def update_activities(state: SandboxState, body: Any, query: str) -> dict[str, Any]:
    """Update activities matched by ExternalId (`identifier=externalid`): per record, success, or
    GSTL_1012 when there is none with that ExternalId."""
    if parse_qs(query).get("identifier") != ["externalid"]:
        raise Refused(400, "GSTL_1001", "identifier=externalid is required")
    records = _activity_records(body)
    results = []
    for record in records:
        external = str(record.get("ExternalId")) if isinstance(record, dict) else None
        existing = state.activities.get(external) if external is not None else None
        if existing is None:
            error = {"errorCode": "GSTL_1012", "errorDesc": f"No activity with ExternalId {external}"}
            results.append({"success": False, "ExternalId": external, "Gsid": None, "errors": [error]})
            continue
        existing.update({k: v for k, v in record.items() if k != "Gsid"})
        results.append({"success": True, "ExternalId": external, "Gsid": existing["Gsid"], "errors": None})
    return {"count": sum(1 for r in results if r["success"]), "errors": None, "records": results}


class SandboxHandler(BaseHTTPRequestHandler):
    server: SandboxServer
    protocol_version = "HTTP/1.1"
    _generation = 0
    _arrived = 0.0
    _last_call: Call | None = None
    # Without TCP_NODELAY every keep-alive call stalls ~40 ms on delayed ACKs.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/_sandbox/state":
            self._send(200, self.server.state.snapshot())
        else:
            self._send(404, envelope(ok=False, code="GS_404", desc="not found"))

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if url.path.startswith("/_sandbox/"):
            self._admin(url.path, raw)
            return
        state = self.server.state
        operation = OPERATIONS.get((method, url.path))
        if operation is None:
            self._send(404, envelope(ok=False, code="GS_404", desc=f"no such endpoint {method} {url.path}"))
            return
        generation = self._generation = state.generation
        self._arrived = time.monotonic()
        time.sleep(state.faults.latency)
        fault = state.next_fault(operation)
        if fault is not None and fault.lost_answer:
            self._last_call = None
            status, _ = self._operate(operation, url.query, raw)
            with state.lock:
                if status == 200 and self._last_call is not None and state.generation == generation:
                    state.lost_answers.append(self._last_call)
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if fault is not None:
            time.sleep(fault.delay)
            if fault.drop:
                self._record(operation, method, url.path, 0, None)
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if fault.reply is not None:
                self._record(operation, method, url.path, 200, None)
                self._send(200, envelope(fault.reply))
                return
            if fault.status is not None:
                self._record(operation, method, url.path, fault.status, None)
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                code = "GU_2400" if fault.status == 429 else "GU_1101"
                desc = "Too many request" if fault.status == 429 else "Oops, something went wrong."
                self._send(fault.status, envelope(ok=False, code=code, desc=desc), headers)
                return
        if state.generation != generation:
            self._send(503, envelope(ok=False, code="GU_1101", desc="the sandbox was reset during this call"))
            return
        if state.quota_exceeded():
            self._record(operation, method, url.path, 429, None)
            # The whole window, as Gainsight's fixed window says: 60 s unless the window is compressed.
            retry_after = str(max(1, math.ceil(state.faults.quota_window)))
            headers = {"Retry-After": retry_after} if state.faults.quota_retry_after else {}
            self._send(429, envelope(ok=False, code="GU_2400", desc="Too many request"), headers)
            return
        status, reply = self._operate(operation, url.query, raw)
        self._send(status, reply)

    def _operate(self, operation: str, query: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        state = self.server.state
        headers = {key.lower(): value for key, value in self.headers.items()}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with state.lock:
            if state.generation != self._generation:
                return 503, envelope(ok=False, code="GU_1101", desc="the sandbox was reset during this call")
            try:
                if operation != "event_publish" and headers.get("accesskey") != state.access_key:
                    raise Refused(401, "GS_APIG_2401", "Invalid authorization headers")
                if body is None:
                    raise Refused(400, "GSOBJ_1001", "request body must be JSON")
                handlers: dict[str, Callable[[], dict[str, Any]]] = {
                    "person_upsert": lambda: upsert_person(state, body),
                    "company_insert": lambda: write_companies(state, body, insert=True, keys=None),
                    "company_update": lambda: write_companies(
                        state, body, insert=False, keys=next(iter(parse_qs(query).get("keys", [])), None)
                    ),
                    "company_query": lambda: query_companies(state, body),
                    "event_publish": lambda: publish_event(state, headers, body),
                    "activity_insert": lambda: insert_activities(state, body),
                    "activity_update": lambda: update_activities(state, body, query),
                }
                data = handlers[operation]()
            except Refused as refused:
                self._record(operation, self.command, urlsplit(self.path).path, refused.status, body)
                return refused.status, envelope(refused.data, ok=False, code=refused.code, desc=refused.desc)
            self._record(operation, self.command, urlsplit(self.path).path, 200, body)
            return 200, envelope(data)

    def _admin(self, path: str, raw: bytes) -> None:
        state = self.server.state
        if path == "/_sandbox/reset":
            state.reset()
            self._send(200, {"reset": True})
        elif path == "/_sandbox/faults":
            spec = json.loads(raw or b"{}")
            with state.lock:
                state.faults.latency = float(spec.get("latency", state.faults.latency))
                state.faults.quota_per_minute = spec.get("quota_per_minute", state.faults.quota_per_minute)
                state.faults.quota_window = float(spec.get("quota_window", state.faults.quota_window))
                state.faults.random_rate = float(spec.get("random_rate", state.faults.random_rate))
                state.faults.rate_limit_headers = bool(spec.get("rate_limit_headers", state.faults.rate_limit_headers))
                state.faults.scripted += [Fault(**fault) for fault in spec.get("scripted", [])]
            self._send(200, {"faults": "set"})
        else:
            self._send(404, {"message": "no such admin endpoint"})

    def _record(self, operation: str, method: str, path: str, status: int, body: Any) -> None:
        with self.server.state.lock:
            if self.server.state.generation == self._generation:
                call = Call(operation, method, path, status, body, self._arrived, time.monotonic())
                self.server.state.calls.append(call)
                self._last_call = call

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (self.server.state.rate_headers() | (headers or {})).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, state: SandboxState, port: int = 0, host: str = "127.0.0.1") -> None:
        super().__init__((host, port), SandboxHandler)
        self.state = state


class Sandbox:
    """Starts the sandbox in a background thread: `with Sandbox() as sandbox: sandbox.url`."""

    def __init__(
        self, *, access_key: str = "sandbox-access-key", shared_secret: str = "sandbox-shared-secret",
        tenant_id: str = "sandbox-tenant", port: int = 0, host: str = "127.0.0.1",
    ) -> None:  # fmt: skip
        # host: where it listens; loopback unless a container must reach it (make local-stack).
        self.state = SandboxState(access_key, shared_secret, tenant_id)
        self.server = SandboxServer(self.state, port, host)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="gainsight-sandbox", daemon=True)

    def start(self) -> Sandbox:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail(self, *faults: Fault) -> None:
        with self.state.lock:
            self.state.faults.scripted.extend(faults)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8900)
    args = parser.parse_args()
    sandbox = Sandbox(port=args.port)
    print(f"Gainsight sandbox on {sandbox.url} (state: {sandbox.url}/_sandbox/state)")
    sandbox.server.serve_forever()


if __name__ == "__main__":
    main()
