"""The delivery core: turn a batch of mapped events into a plan of Gainsight calls, run it, and
derive every event's outcome from the calls it needed."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any

from errors import DestinationError, GainsightError
from gainsight import MAX_ACTIVITY_RECORDS, MAX_WRITE_RECORDS, REAL_CLOCK, Clock, Gainsight
from mapping import ActivityInsert, CompanyUpsert, EventPublish, Operation, PersonUpsert, activity_lookups, email_key

QUERY_CHUNK = 100  # key values per IN query: keeps the request body small and the answer under 5,000 rows


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one event."""

    outcome: str  # "delivered", "rejected" or "failed"
    status_code: int
    error: str | None = None
    code: str | None = None
    operator: bool = False  # failed for a cause an operator must fix (errors.DestinationError.operator)


DELIVERED = Outcome("delivered", 200)
# Counted into its rollup (rollupMap): in Gainsight once its window is published.
ROLLED_UP = Outcome("rolled_up", 202)


def outcome_of(error: DestinationError) -> Outcome:
    """The outcome an error gives the events that needed the failed call."""
    return Outcome(
        "failed" if error.retryable else "rejected", error.status_code, error.message, error.code, error.operator
    )


# -- the plan (pure) ---------------------------------------------------------


@dataclass
class CompanyWrite:
    """Every group event's traits for one company (by its key value), merged in event order (later values win)."""

    key: str
    fields: dict[str, Any] = field(default_factory=dict)
    parts: list[tuple[int, Mapping[str, Any]]] = field(default_factory=list)  # each event's own traits

    @property
    def events(self) -> list[int]:
        return [index for index, _ in self.parts]


@dataclass
class PersonWrite:
    """Every identify and group event of one person: one People PUT."""

    email: str
    parts: list[tuple[int, PersonUpsert | CompanyUpsert]] = field(default_factory=list)

    @property
    def links(self) -> bool:
        return any(isinstance(op, CompanyUpsert) for _, op in self.parts)


@dataclass
class Plan:
    companies: dict[str, CompanyWrite] = field(default_factory=dict)
    links: dict[str, list[int]] = field(default_factory=dict)  # company key -> link-only group events
    # chain key -> email key -> that person's write, in first-seen order
    people: dict[str, dict[str, PersonWrite]] = field(default_factory=dict)
    events: dict[str, list[tuple[int, EventPublish]]] = field(default_factory=dict)  # tracks by chain key
    activities: dict[str, list[tuple[int, ActivityInsert]]] = field(default_factory=dict)  # by chain key


def plan(operations: Iterable[tuple[int, Operation]], chains: Mapping[int, str] | None = None) -> Plan:
    """Group a batch's operations (given in event order) by company key and by chain: events
    linked through a person identifier share a chain key (see record.components); within a chain,
    one write per email."""
    result = Plan()
    for index, op in operations:
        key = chains.get(index, f"event:{index}") if chains is not None else f"event:{index}"
        if isinstance(op, EventPublish):
            result.events.setdefault(key, []).append((index, op))
            continue
        if isinstance(op, ActivityInsert):
            result.activities.setdefault(key, []).append((index, op))
            continue
        if isinstance(op, CompanyUpsert):
            if op.link_only:
                result.links.setdefault(op.key, []).append(index)
            else:
                company = result.companies.setdefault(op.key, CompanyWrite(op.key))
                company.fields.update(op.fields)
                company.parts.append((index, op.fields))
        people = result.people.setdefault(key, {})
        person = people.setdefault(email_key(op.email), PersonWrite(op.email))
        person.email = op.email  # the latest spelling
        person.parts.append((index, op))
    return result


def person_body(
    email: str, parts: Iterable[tuple[int, PersonUpsert | CompanyUpsert]], gsids: Mapping[str, str]
) -> dict:
    """One People PUT for `parts`: identify fields merged in order, company links united, each
    link's person attributes (companyPersonMap) merged in order."""
    body: dict[str, Any] = {"Email": email}
    links: dict[str, dict[str, Any]] = {}
    for _, op in parts:
        if isinstance(op, PersonUpsert):
            body.update(op.fields)
        else:
            links.setdefault(gsids[op.key], {}).update(op.link)
    body["Email"] = email
    if links:
        body["companies"] = [{**attributes, "Company_ID": gsid} for gsid, attributes in links.items()]
    return body


def expected_calls(work: Plan, lookups: Sequence[str]) -> tuple[int, int]:
    """The Gainsight calls a plan needs when nothing fails, and how many of them are telemetry:
    lookups, company writes (inserts and updates may both be needed), one People PUT per person;
    one publish per track event, one Timeline insert per MAX_ACTIVITY_RECORDS activities."""
    company_writes = -(-len(work.companies) // MAX_WRITE_RECORDS) + (1 if work.companies else 0)
    people = sum(len(p) for p in work.people.values())
    tracks = sum(len(t) for t in work.events.values())
    activities = -(-sum(len(a) for a in work.activities.values()) // MAX_ACTIVITY_RECORDS)
    state = -(-len(lookups) // QUERY_CHUNK) + company_writes + people
    return state + tracks + activities, tracks + activities


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


# -- the warm container's company key -> Gsid cache -------------------------------


class CompanyCache:
    """A bounded, short-lived company key -> Gsid map so repeated companies skip the lookup."""

    def __init__(self, ttl_seconds: float, max_entries: int = 10_000, clock: Clock = REAL_CLOCK) -> None:
        self.ttl = ttl_seconds
        self.clock = clock
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, scope: str, name: str) -> str | None:
        with self._lock:
            entry = self._entries.get((scope, name))
            if entry is None or entry[1] < self.clock.monotonic():
                return None
            self._entries.move_to_end((scope, name))
            return entry[0]

    def put(self, scope: str, name: str, gsid: str) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            self._entries[(scope, name)] = (gsid, self.clock.monotonic() + self.ttl)
            self._entries.move_to_end((scope, name))
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def evict(self, scope: str, name: str) -> None:
        with self._lock:
            self._entries.pop((scope, name), None)


# -- the record of what was published ----------------------------------------------


class Ledger:
    """Events Framework publishes (which Gainsight does not deduplicate) that succeeded but whose
    done record is not written yet: at most `size` of them at any time, counting those in flight.

    A publish takes a slot before its call and keeps it until its done record is written. When
    every slot is held by a published event, the thread that filled the last one records them all
    in one write; `close` records the rest. A function that dies anywhere therefore publishes again
    (on its sender's resend, or the drain's next run) at most `size` events: the calls in flight.
    Once a record cannot be written, no further publish starts: those events wait, unpublished.
    """

    def __init__(self, size: int, record: Callable[[list[int]], set[int]]) -> None:
        self.size = size
        self._record = record  # indexes -> those that could not be recorded; never raises
        self._changed = threading.Condition()
        self._held = 0
        self._pending: list[int] = []
        self.recorded: set[int] = set()
        self.failed = False

    def start(self) -> bool:
        """Wait for a slot; False when publishing must stop (a record could not be written)."""
        with self._changed:
            while self._held >= self.size and not self.failed:
                self._changed.wait()
            if self.failed:
                return False
            self._held += 1
            return True

    def finish(self, index: int | None) -> None:
        """The call holding a slot ended: `index` published, or None (it failed: nothing to record)."""
        with self._changed:
            if index is None:
                self._held -= 1
                self._changed.notify()
                return
            self._pending.append(index)
            if len(self._pending) < self.size:
                return
            batch, self._pending = self._pending, []
        self._flush(batch)

    def close(self) -> None:
        """Record what is published and not recorded yet (once every publish has ended)."""
        with self._changed:
            batch, self._pending = self._pending, []
        if batch:
            self._flush(batch)

    def _flush(self, batch: list[int]) -> None:
        failed: set[int] = set(batch)  # should the write raise: nothing more is published
        try:
            failed = self._record(batch)  # outside the lock; the batch's slots stay held until it is written
        finally:
            with self._changed:
                self._held -= len(batch)
                self.recorded.update(index for index in batch if index not in failed)
                self.failed = self.failed or bool(failed)
                self._changed.notify_all()


UNRECORDED = Outcome(
    "failed",
    503,
    "not published: the event store could not record the events published before it",
    "store_unavailable",
)


# -- execution -----------------------------------------------------------------

Chain = tuple[dict[int, Outcome], list[Future[dict[int, Outcome]]]]
Lookups = list[tuple[Sequence[str], Future[dict[str, str]]]]
HELD = Outcome("failed", 409, "held behind an earlier event of this person that could not be delivered", "held")


class Delivery:
    """Runs one batch's plan against Gainsight on a bounded pool of threads.

    Each person's work is a chain: their merged People PUT, then their track events, which start
    in event order and run concurrently. A transient failure holds what of that person has not
    started yet, so it is parked behind the failed event instead of overtaking it. Chains of
    different people run concurrently. Timeline activities go last, batched across chains, once
    every company of the batch is written.
    """

    def __init__(
        self, gainsight: Gainsight, executor: Executor, cache: CompanyCache, ledger: Ledger | None = None
    ) -> None:
        self.gainsight = gainsight
        self.executor = executor
        self.cache = cache
        self.ledger = ledger  # records each publish as it succeeds; None: the caller records them all
        self.key_field = gainsight.destination.company_key.field
        # Values of another key field are other companies' keys: cached apart.
        self.scope = f"{gainsight.destination.base_url}|{self.key_field}"
        self.companies_written: set[int] = set()

    def run(
        self, operations: Sequence[tuple[int, Operation]], chains: Mapping[int, str] | None = None
    ) -> dict[int, Outcome]:
        """Deliver the operations; every index given gets an outcome. Afterwards `companies_written`
        holds the group events whose company write succeeded (whatever became of their link)."""
        work = plan(operations, chains)
        companies = list(work.companies.values())
        keys = [c.key for c in companies] + [key for key in work.links if key not in work.companies]
        # Company lookups go first: person links wait on them, the rest of the batch does not.
        cached = {key: gsid for key in keys if (gsid := self.cache.get(self.scope, key)) is not None}
        if self.gainsight.quota is not None:
            # One reservation of the tenant's budget for the whole plan, before its first call.
            self.gainsight.quota.expect(*expected_calls(work, [key for key in keys if key not in cached]))
        lookups = self._start_lookup([key for key in keys if key not in cached])
        linked = [key for key, people in work.people.items() if any(p.links for p in people.values())]
        futures: list[Future[Chain]] = [
            self.executor.submit(self._chain, list(work.people.get(key, {}).values()), {}, work.events.get(key, []))
            for key in dict.fromkeys([*work.people, *work.events])
            if key not in linked
        ]
        gsids, company_failures = self._companies(companies, cached, lookups, work.links)
        self.companies_written = {i for c in companies for i in c.events if i not in company_failures}
        outcomes = {index: outcome_of(error) for index, error in company_failures.items()}
        for key in linked:
            people = work.people[key].values()
            # Nothing of this chain after a group event whose company will be retried goes out now.
            cut = min(
                (i for p in people for i, _ in p.parts if i in company_failures and company_failures[i].retryable),
                default=None,
            )
            writes = []
            for person in people:
                parts = [(i, op) for i, op in person.parts if i not in company_failures and (cut is None or i < cut)]
                held = [i for i, _ in person.parts if i not in company_failures and cut is not None and i > cut]
                outcomes |= dict.fromkeys(held, HELD)
                if parts:
                    writes.append(PersonWrite(person.email, parts))
            futures.append(self.executor.submit(self._chain, writes, gsids, work.events.get(key, []), cut is not None))
        published: list[Future[dict[int, Outcome]]] = []
        for future in futures:
            chain_outcomes, started = future.result()
            outcomes |= chain_outcomes
            published += started
        for track in published:
            outcomes |= track.result()
        if work.activities:
            outcomes |= self._activities(work.activities, outcomes, chains, companies, company_failures)
        if self.ledger is not None:
            self.ledger.close()
        return outcomes

    def _activities(
        self,
        activities: Mapping[str, list[tuple[int, ActivityInsert]]],
        outcomes: Mapping[int, Outcome],
        chains: Mapping[int, str] | None,
        companies: Sequence[CompanyWrite],
        company_failures: Mapping[int, GainsightError],
    ) -> dict[int, Outcome]:
        """Timeline activities go last, once this batch's companies exist. Those of a chain with an
        event that could not be delivered, or of a company whose write will be retried, are held:
        they wait behind it. The rest are inserted MAX_ACTIVITY_RECORDS a call, concurrently; then
        those also going to the Events Framework are published."""
        chain_of = chains or {}
        stalled = {chain_of.get(i, f"event:{i}") for i, outcome in outcomes.items() if outcome.outcome == "failed"}
        retried = {
            c.key for c in companies for i in c.events if i in company_failures and company_failures[i].retryable
        }
        held = {
            index: HELD
            for key, items in activities.items()
            for index, op in items
            if key in stalled or op.company in retried
        }
        going = [(index, op) for items in activities.values() for index, op in items if index not in held]
        going.sort(key=lambda item: item[0])  # event order across chains
        lookups = activity_lookups(self.gainsight.destination.company_key)
        inserts = [
            self.executor.submit(self._insert_activities, chunk, lookups)
            for chunk in chunks(going, MAX_ACTIVITY_RECORDS)
        ]
        inserted: dict[int, Outcome] = {}
        for future in inserts:
            inserted |= future.result()
        # Published only once the activity is in: a failed activity parks the event unpublished,
        # and its retry (the activity then a duplicate, so delivered) publishes it once.
        publishes = {
            # (each on its own: an activity publish holds back no other)
            index: self.executor.submit(self._publish, index, op.publish, threading.Event())
            for index, op in going
            if op.publish is not None and inserted[index].outcome == "delivered"
        }
        return held | inserted | {index: future.result() for index, future in publishes.items()}

    def _insert_activities(
        self, items: Sequence[tuple[int, ActivityInsert]], lookups: Mapping[str, Any]
    ) -> dict[int, Outcome]:
        try:
            errors = self.gainsight.insert_activities([op.record for _, op in items], lookups)
        except GainsightError as error:
            if error.retryable or len(items) == 1:
                return dict.fromkeys((index for index, _ in items), outcome_of(error))
            # Refused as a whole: split the call to isolate the records it refuses.
            middle = len(items) // 2
            return self._insert_activities(items[:middle], lookups) | self._insert_activities(items[middle:], lookups)
        return {
            index: DELIVERED if error is None else outcome_of(error)
            for (index, _), error in zip(items, errors, strict=True)
        }

    def _chain(
        self,
        people: Sequence[PersonWrite],
        gsids: Mapping[str, str],
        tracks: Sequence[tuple[int, EventPublish]],
        blocked: bool = False,
    ) -> Chain:
        """A chain's person writes in turn, then its track events, which start in event order; once
        one of them fails, those not yet started are held."""
        outcomes: dict[int, Outcome] = {}
        for position, person in enumerate(people):
            outcomes |= self._person(person, gsids)
            if any(outcome.outcome == "failed" for outcome in outcomes.values()):
                rest = [i for later in people[position + 1 :] for i, _ in later.parts] + [i for i, _ in tracks]
                return outcomes | dict.fromkeys(rest, HELD), []
        if blocked:
            return outcomes | dict.fromkeys((index for index, _ in tracks), HELD), []
        stop = threading.Event()
        # Submitted, not awaited, from this worker: the pool runs them in order, concurrently.
        return outcomes, [self.executor.submit(self._track, index, op, stop) for index, op in tracks]

    def _track(self, index: int, op: EventPublish, stop: threading.Event) -> dict[int, Outcome]:
        return {index: self._publish(index, op, stop)}

    def _publish(self, index: int, op: EventPublish, stop: threading.Event) -> Outcome:
        """One publish, in the ledger: its done record is written before its slot is given back.
        `stop`: its person's publishes, set once one fails; none of them starts after that."""
        if stop.is_set():
            return HELD
        if self.ledger is not None and not self.ledger.start():
            stop.set()
            return UNRECORDED
        published = False
        try:
            if stop.is_set():  # failed while this one waited for its slot
                return HELD
            self.gainsight.publish_event(op.headers, op.body)
            published = True
        except GainsightError as error:
            stop.set()  # before the slot is given back: no later publish of this person starts
            return outcome_of(error)
        finally:
            if self.ledger is not None:
                self.ledger.finish(index if published else None)
        return DELIVERED

    def _person(self, person: PersonWrite, gsids: Mapping[str, str]) -> dict[int, Outcome]:
        indexes = [index for index, _ in person.parts]
        try:
            self.gainsight.upsert_person(person_body(person.email, person.parts, gsids))
        except GainsightError as error:
            if error.retryable or len(person.parts) == 1:
                return dict.fromkeys(indexes, outcome_of(error))
            # Refused as merged: send each event's part alone, in order, so only the bad ones are
            # rejected; a transient failure holds the parts after it.
            outcomes: dict[int, Outcome] = {}
            for position, part in enumerate(person.parts):
                outcomes |= self._person(PersonWrite(person.email, [part]), gsids)
                if outcomes[part[0]].outcome == "failed":
                    return outcomes | dict.fromkeys((i for i, _ in person.parts[position + 1 :]), HELD)
            return outcomes
        return dict.fromkeys(indexes, DELIVERED)

    def _companies(
        self,
        companies: list[CompanyWrite],
        cached: Mapping[str, str],
        lookups: Lookups,
        links: Mapping[str, list[int]],
    ) -> tuple[dict[str, str], dict[int, GainsightError]]:
        """Write every company once: key -> Gsid for those written (or only linked to), event index
        -> error for the group events whose company could not be written or found."""
        failed: dict[int, GainsightError] = {}
        if not companies and not links:
            return {}, failed
        found, lookup_errors = self._finish_lookup(lookups)
        # A company we could not look up is not written: inserting it blind could duplicate it.
        writable = [c for c in companies if c.key not in lookup_errors]
        gsids, refused = self._write(writable, {**found, **cached})
        # A refusal can come from what we believed: a cached company deleted since, or one another
        # request created after our lookup. Look those up afresh and write them again, each event's
        # traits on their own when several events named the company, so only bad ones are rejected.
        again = [c for c in writable if c.key in refused and not refused[c.key].retryable]
        for company in again:
            self.cache.evict(self.scope, company.key)
        refound, relookup_errors = self._finish_lookup(self._start_lookup([c.key for c in again]))
        for company in again:
            if company.key in relookup_errors:
                refused[company.key] = relookup_errors[company.key]
                continue
            del refused[company.key]
            gsid, errors = self._write_parts(company, refound.get(company.key))
            failed.update(errors)
            if gsid is not None:
                gsids[company.key] = gsid
        for company in companies:
            error = lookup_errors.get(company.key) or refused.get(company.key)
            if error is not None:
                failed.update(dict.fromkeys(company.events, error))
        for key, indexes in links.items():
            if key in gsids:
                continue
            if (gsid := found.get(key) or cached.get(key)) is not None:
                gsids[key] = gsid
                continue
            gone = GainsightError(
                f"company {key} ({self.key_field}) no longer exists in Gainsight",
                status_code=404,
                retryable=False,
                code="no_company",
            )
            failed.update(dict.fromkeys(indexes, lookup_errors.get(key) or refused.get(key) or gone))
        for key, gsid in gsids.items():
            self.cache.put(self.scope, key, gsid)
        return gsids, failed

    def _start_lookup(self, keys: list[str]) -> Lookups:
        return [
            (chunk, self.executor.submit(self.gainsight.query_companies, chunk, self.key_field))
            for chunk in chunks(keys, QUERY_CHUNK)
        ]

    def _finish_lookup(self, lookups: Lookups) -> tuple[dict[str, str], dict[str, GainsightError]]:
        found: dict[str, str] = {}
        errors: dict[str, GainsightError] = {}
        for chunk, future in lookups:
            try:
                found.update(future.result())
            except GainsightError as error:
                errors.update(dict.fromkeys(chunk, error))
        return found, errors

    def _write(
        self, companies: list[CompanyWrite], existing: Mapping[str, str]
    ) -> tuple[dict[str, str], dict[str, GainsightError]]:
        inserts = [c for c in companies if c.key not in existing]
        updates = [c for c in companies if c.key in existing]
        futures = [
            self.executor.submit(self._write_chunk, list(chunk), insert)
            for batch, insert in ((inserts, True), (updates, False))
            for chunk in chunks(batch, MAX_WRITE_RECORDS)
        ]
        gsids: dict[str, str] = {}
        errors: dict[str, GainsightError] = {}
        for future in futures:
            for key, result in future.result().items():
                if isinstance(result, GainsightError):
                    errors[key] = result
                else:
                    gsids[key] = result
        return gsids, errors

    def _write_chunk(self, companies: list[CompanyWrite], insert: bool) -> dict[str, str | GainsightError]:
        try:
            gsids = self.gainsight.write_companies([c.fields for c in companies], insert=insert, key=self.key_field)
        except GainsightError as error:
            if error.retryable or len(companies) == 1:
                return dict.fromkeys((c.key for c in companies), error)
            # Company writes are all-or-nothing: split the refused batch to isolate the bad records.
            middle = len(companies) // 2
            return self._write_chunk(companies[:middle], insert) | self._write_chunk(companies[middle:], insert)
        return dict(zip((c.key for c in companies), gsids, strict=True))

    def _write_parts(self, company: CompanyWrite, gsid: str | None) -> tuple[str | None, dict[int, GainsightError]]:
        """Write a company once more (merged when one event named it, else each event's traits in
        order); its Gsid if any write succeeded, and the events whose write failed."""
        parts = company.parts if len(company.parts) > 1 else [(company.events[0], company.fields)]
        written: str | None = None
        errors: dict[int, GainsightError] = {}
        for position, (index, fields) in enumerate(parts):
            try:
                [written] = self.gainsight.write_companies(
                    [{**fields, self.key_field: company.key}], insert=gsid is None, key=self.key_field
                )
            except GainsightError as error:
                errors[index] = error
                if error.retryable:  # its outcome is unknown: writing the later parts could duplicate it
                    errors |= dict.fromkeys((i for i, _ in parts[position + 1 :]), error)
                    break
            else:
                gsid = written
        return written, errors
