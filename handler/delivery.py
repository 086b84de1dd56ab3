"""The delivery core: turn a batch of mapped events into a plan of Gainsight calls, run it, and
derive every event's outcome from the calls it needed."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from errors import DestinationError, GainsightError
from gainsight import MAX_WRITE_RECORDS, Gainsight
from mapping import CompanyUpsert, EventPublish, Operation, PersonUpsert

if TYPE_CHECKING:
    from exactly_once import OncePublisher

QUERY_CHUNK = 100  # names per IN query: keeps the request body small and the answer under 5,000 rows


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one event."""

    outcome: str  # "delivered", "rejected" or "failed"
    status_code: int
    error: str | None = None
    code: str | None = None


DELIVERED = Outcome("delivered", 200)


def outcome_of(error: DestinationError) -> Outcome:
    """The outcome an error gives the events that needed the failed call."""
    return Outcome("failed" if error.retryable else "rejected", error.status_code, error.message, error.code)


# -- the plan (pure) ---------------------------------------------------------


@dataclass
class CompanyWrite:
    """Every group event's traits for one company, merged in event order (later values win)."""

    name: str
    fields: dict[str, Any] = field(default_factory=dict)
    events: list[int] = field(default_factory=list)


@dataclass
class PersonWrite:
    """Every identify and group event of one email: one People PUT."""

    email: str
    parts: list[tuple[int, PersonUpsert | CompanyUpsert]] = field(default_factory=list)

    @property
    def links(self) -> bool:
        return any(isinstance(op, CompanyUpsert) for _, op in self.parts)


@dataclass
class Plan:
    companies: dict[str, CompanyWrite] = field(default_factory=dict)
    people: dict[str, PersonWrite] = field(default_factory=dict)
    events: list[tuple[int, EventPublish]] = field(default_factory=list)


def plan(operations: Iterable[tuple[int, Operation]]) -> Plan:
    """Group a batch's operations (given in event order) by company name and person email."""
    result = Plan()
    for index, op in operations:
        if isinstance(op, EventPublish):
            result.events.append((index, op))
            continue
        if isinstance(op, CompanyUpsert):
            company = result.companies.setdefault(op.name, CompanyWrite(op.name))
            company.fields.update(op.fields)
            company.events.append(index)
        result.people.setdefault(op.email, PersonWrite(op.email)).parts.append((index, op))
    return result


def person_body(
    email: str, parts: Iterable[tuple[int, PersonUpsert | CompanyUpsert]], gsids: Mapping[str, str]
) -> dict:
    """One People PUT for `parts`: identify fields merged in order, company links united."""
    body: dict[str, Any] = {"Email": email}
    companies: list[str] = []
    for _, op in parts:
        if isinstance(op, PersonUpsert):
            body.update(op.fields)
        elif gsids[op.name] not in companies:
            companies.append(gsids[op.name])
    if companies:
        body["companies"] = [{"Company_ID": gsid} for gsid in companies]
    return body


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


# -- the warm container's Name -> Gsid cache -----------------------------------


class CompanyCache:
    """A bounded, short-lived Name -> Gsid map so repeated companies skip the lookup."""

    def __init__(self, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, scope: str, name: str) -> str | None:
        with self._lock:
            entry = self._entries.get((scope, name))
            if entry is None or entry[1] < time.monotonic():
                return None
            self._entries.move_to_end((scope, name))
            return entry[0]

    def put(self, scope: str, name: str, gsid: str) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            self._entries[(scope, name)] = (gsid, time.monotonic() + self.ttl)
            self._entries.move_to_end((scope, name))
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def evict(self, scope: str, name: str) -> None:
        with self._lock:
            self._entries.pop((scope, name), None)


# -- execution -----------------------------------------------------------------


class Delivery:
    """Runs one batch's plan against Gainsight on a bounded pool of threads."""

    def __init__(
        self, gainsight: Gainsight, executor: Executor, cache: CompanyCache, once: OncePublisher | None = None
    ) -> None:
        self.gainsight = gainsight
        self.executor = executor
        self.cache = cache
        self.once = once
        self.scope = gainsight.destination.base_url

    def run(self, operations: Sequence[tuple[int, Operation]]) -> dict[int, Outcome]:
        """Deliver the operations; every index given gets an outcome."""
        work = plan(operations)
        pending: list[Future[dict[int, Outcome]]] = []
        pending += [self.executor.submit(self._publish, index, op) for index, op in work.events]
        # People without company links depend on nothing: send them while companies are written.
        pending += [self.executor.submit(self._person, p, {}) for p in work.people.values() if not p.links]
        gsids, company_errors = self._companies(list(work.companies.values()))
        outcomes: dict[int, Outcome] = {}
        for company in work.companies.values():
            if company.name in company_errors:
                outcomes.update(dict.fromkeys(company.events, outcome_of(company_errors[company.name])))
        for person in work.people.values():
            if person.links:
                parts = [(i, op) for i, op in person.parts if not isinstance(op, CompanyUpsert) or op.name in gsids]
                if parts:
                    pending.append(self.executor.submit(self._person, PersonWrite(person.email, parts), gsids))
        for future in pending:
            outcomes.update(future.result())
        return outcomes

    def _publish(self, index: int, op: EventPublish) -> dict[int, Outcome]:
        def send() -> None:
            self.gainsight.publish_event(op.headers, op.body)

        try:
            if self.once is None:
                send()
            else:
                self.once.publish(op.event_id, send)
        except GainsightError as error:
            return {index: outcome_of(error)}
        return {index: DELIVERED}

    def _person(self, person: PersonWrite, gsids: Mapping[str, str]) -> dict[int, Outcome]:
        indexes = [index for index, _ in person.parts]
        try:
            self.gainsight.upsert_person(person_body(person.email, person.parts, gsids))
        except GainsightError as error:
            if error.retryable or len(person.parts) == 1:
                return dict.fromkeys(indexes, outcome_of(error))
            # Refused as merged: send each event's part alone so only the bad ones are rejected.
            outcomes: dict[int, Outcome] = {}
            for part in person.parts:
                outcomes.update(self._person(PersonWrite(person.email, [part]), gsids))
            return outcomes
        return dict.fromkeys(indexes, DELIVERED)

    def _companies(self, companies: list[CompanyWrite]) -> tuple[dict[str, str], dict[str, GainsightError]]:
        """Write every company once; Name -> Gsid for those written, Name -> error for the rest."""
        if not companies:
            return {}, {}
        cached = {c.name: gsid for c in companies if (gsid := self.cache.get(self.scope, c.name)) is not None}
        found, errors = self._lookup([c.name for c in companies if c.name not in cached])
        # A company we could not look up is not written: inserting it blind could duplicate it.
        gsids, write_errors = self._write([c for c in companies if c.name not in errors], {**found, **cached})
        # A cached company that vanished refuses its update: look it up afresh and write it again.
        stale = [
            c for c in companies if c.name in cached and c.name in write_errors and not write_errors[c.name].retryable
        ]
        if stale:
            for company in stale:
                self.cache.evict(self.scope, company.name)
                del write_errors[company.name]
            refound, lookup_errors = self._lookup([c.name for c in stale])
            errors.update(lookup_errors)
            retried, retry_errors = self._write([c for c in stale if c.name not in lookup_errors], refound)
            gsids.update(retried)
            write_errors.update(retry_errors)
        for name, gsid in gsids.items():
            self.cache.put(self.scope, name, gsid)
        return gsids, {**write_errors, **errors}

    def _lookup(self, names: list[str]) -> tuple[dict[str, str], dict[str, GainsightError]]:
        found: dict[str, str] = {}
        errors: dict[str, GainsightError] = {}
        futures = [
            (chunk, self.executor.submit(self.gainsight.query_companies, chunk)) for chunk in chunks(names, QUERY_CHUNK)
        ]
        for chunk, future in futures:
            try:
                found.update(future.result())
            except GainsightError as error:
                errors.update(dict.fromkeys(chunk, error))
        return found, errors

    def _write(
        self, companies: list[CompanyWrite], existing: Mapping[str, str]
    ) -> tuple[dict[str, str], dict[str, GainsightError]]:
        inserts = [c for c in companies if c.name not in existing]
        updates = [c for c in companies if c.name in existing]
        futures = [
            self.executor.submit(self._write_chunk, list(chunk), insert)
            for batch, insert in ((inserts, True), (updates, False))
            for chunk in chunks(batch, MAX_WRITE_RECORDS)
        ]
        gsids: dict[str, str] = {}
        errors: dict[str, GainsightError] = {}
        for future in futures:
            for name, result in future.result().items():
                if isinstance(result, GainsightError):
                    errors[name] = result
                else:
                    gsids[name] = result
        return gsids, errors

    def _write_chunk(self, companies: list[CompanyWrite], insert: bool) -> dict[str, str | GainsightError]:
        try:
            gsids = self.gainsight.write_companies([c.fields for c in companies], insert=insert)
        except GainsightError as error:
            if error.retryable or len(companies) == 1:
                return dict.fromkeys((c.name for c in companies), error)
            # Company writes are all-or-nothing: split the refused batch to isolate the bad records.
            middle = len(companies) // 2
            return self._write_chunk(companies[:middle], insert) | self._write_chunk(companies[middle:], insert)
        return dict(zip((c.name for c in companies), gsids, strict=True))
