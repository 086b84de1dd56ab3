"""The event store: one DynamoDB table, the single source of truth for every event we did not
deliver at once (parked), could not deliver ever (rejected) or must not apply twice (done).

Items, all in one table (pk, sk):
- `event#<digest(event id)>` / `event`: one record per event: state parked | rejected | done, its
  arrival sequence, entities, the event itself (parked, rejected), attempts, next due time, reason.
  Parked and rejected records carry `queue` = state (PARKED_STATE for parked identify and group
  events), so the `queue` index lists them oldest first.
- `entity#<digest(entity)>` / `head`: how many parked events name this entity (`parked`), and how
  many of them are identify or group events (`state`). A request reads the heads of its events'
  entities (one BatchGetItem per 100) to know which must wait: a track behind any parked event, an
  identify or group event only behind parked identify or group events.
- `parked#<n>` / `count`: PARKED_SHARDS counters whose sum is the number of parked events; while
  it is 0 (the usual case) a request does not need the heads at all. Beside it, `changes`: how many
  transactions parked, settled or replayed events through this counter.
- `rejected` / `state`: set (until the rejected records' retention ends) once an identify or group
  event is kept as rejected. While it is, every delivered identify and group event leaves a
  watermark, `entity#<digest(email or company)>` / `state` with its arrival sequence, so a replay
  can tell a rejected event that a later delivered one has superseded.
- `drain` / `summary`: what the drain's last complete pass found (the changes it started from, when
  the next parked event is due): a run that finds nothing changed and nothing due reads only this
  and the counters, whatever the backlog.

A parked record and its entities' heads are written by one transaction, and removed (the record
turned into a `done` or `rejected` record) by one transaction: they cannot drift apart. Nothing else
holds state: the drain finds work by querying the index, so losing a trigger only delays it.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import random
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from clock import REAL_CLOCK, Clock

from errors import DestinationError
from mapping import email_key
from record import Record, arrival, digest, lane_keys, seq_before
from rollup import Count

PARKED, DONE, REJECTED = "parked", "done", "rejected"
ROLLED = "rolled"  # a track event counted into its rollup (rollupMap): in Gainsight once its window is
ROLLUP_QUEUE = "rollup"  # the queue index's partition of rollup windows not published yet, by close time
ROLLUP_REFUSED = "rollup-refused"  # ... of rollup windows Gainsight (or the configuration) refused
ROLLUP_EVENTS = 40  # events per counting transaction: their records and their windows fit in one
SUPERSEDED = "superseded"  # the code of a rejected event a replay leaves: a later one was delivered
SUPERSEDED_REASON = "a later event of the same person or company was delivered"
QUEUE_INDEX = "queue"
# The queue index's partition of parked identify and group events: the drain reads it before the
# other parked events (telemetry), so people and companies stay current when the budget is short.
PARKED_STATE = "parked-state"
MAX_TRANSACTION_ACTIONS = 100
BATCH_GET = 100
# Items per read of the queue index. DynamoDB answers at most 1 MB a read: a drain page is read in
# as many answers as it takes, so the drain merges across the whole page whatever the events' size.
QUERY_LIMIT = 100
DRAIN_PAGE = 400  # parked events the drain reads (and delivers, merged per person) at a time
BATCH_WRITE = 25
HEAD_TTL_SECONDS = 30 * 24 * 3600  # a head untouched this long has no parked event left in practice
# How many events are parked in all, as a few counters (a transaction picks one, so concurrent
# transactions rarely touch the same item). While it is 0, a request skips reading entity heads.
PARKED_SHARDS = 8
QUEUE_STATE_ITEMS = PARKED_SHARDS + 2  # what a drain run reads first: counters, summary, STATE_WATCH
SUMMARY = {"pk": {"S": "drain"}, "sk": {"S": "summary"}}  # the drain's last complete pass
STATE_WATCH = {"pk": {"S": "rejected"}, "sk": {"S": "state"}}  # identify or group events kept as rejected
TRAIT_PREFIX = "trait:"  # a watermark's attribute per trait: the newest arrival sequence that wrote it
WATERMARK_TRAITS = 50  # traits per watermark update (an update expression holds at most 4 KB)
LANES = 8  # transactions of one request or drain run in flight at once (each lane in order)
# Why DynamoDB cancels a transaction when trying it again may succeed.
CANCELLED_TRANSIENTLY = frozenset({"None", "TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"})
RETRYABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionInProgressException",
    }
)


@dataclass(frozen=True, slots=True)
class Change:
    """One record's part of a transaction: its own items, how each of its entities' parked count
    moves, and how it moves the number of parked events (+1 parked, -1 settled, 0 neither)."""

    record: Record
    actions: list[dict[str, Any]]
    heads: dict[str, int]
    parked: int
    state: bool = False  # its heads' count of parked identify and group events moves too


class StoreError(DestinationError):
    """The event store could not be read or written (after the SDK's retries and ours)."""

    status_code = 503
    retryable = True

    def __init__(self, message: str) -> None:
        super().__init__(message, code="store_unavailable")


@dataclass(frozen=True, slots=True)
class Stored:
    """A record read back from the store."""

    record: Record
    state: str
    attempts: int = 0  # failed attempts of its own (toward MaxAttempts)
    waits: int = 0  # failed tries for a cause an operator must fix: they set its backoff, never count
    due: float = 0.0  # wall-clock seconds before which a parked event is not tried again
    reason: str | None = None
    code: str | None = None
    queue: str = ""  # its partition of the queue index (parked and rejected records)

    @property
    def counted_as_state(self) -> bool:
        """Parked in the state partition, so counted in its entities' heads' `state` (an identify
        or group event parked by an older version is not)."""
        return self.queue == PARKED_STATE


@dataclass(frozen=True, slots=True)
class Seen:
    """What a request's lookup found."""

    blocked: frozenset[str]  # entities with parked events
    states: Mapping[str, Stored]  # event id -> its record, for the ids that have one
    also: tuple[dict[str, Any], ...] = ()  # the items of `also`, in its order ({} for one that does not exist)
    blocked_state: frozenset[str] = frozenset()  # entities with parked identify or group events


@dataclass(frozen=True, slots=True)
class QueueState:
    """The parked counters, and the drain's last complete pass over the queue."""

    parked: int  # events parked now
    changes: int  # transactions that parked, settled or replayed events, ever
    last_pass: Mapping[str, Any]  # the summary item ({} before the first pass)

    watch: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # the STATE_WATCH item

    @property
    def unchanged(self) -> bool:
        """Nothing changed since the last complete pass started."""
        return int(self.last_pass.get("changes", {}).get("N", "-1")) == self.changes

    def nothing_due(self, now: float) -> bool:
        """Nothing changed since the last complete pass, which was the second in a row to start
        from this state (the first may have read the counters before the queue index showed a
        change: the index lags the table), and no event it saw is due yet."""
        confirmed = self.last_pass.get("confirmed", {}).get("BOOL", False)
        due = float(self.last_pass.get("nextDue", {}).get("N", "0"))
        return self.unchanged and confirmed and now < due

    @property
    def oldest_seq(self) -> str | None:
        """The oldest parked event's arrival sequence, as the last pass found it."""
        return self.last_pass.get("oldest", {}).get("S") or None


@dataclass(frozen=True, slots=True)
class Settled:
    """How a parked event ended: `done`, or `rejected` with a reason."""

    stored: Stored
    state: str
    reason: str | None = None
    code: str | None = None


class EventStore:
    """The table, through one boto3 client created per container. Every loop here runs under the
    caller's deadline (monotonic seconds) with backoff, on the `clock` it is handed."""

    def __init__(
        self,
        table: str,
        dynamodb: Any,
        executor: Executor | None = None,
        *,
        done_ttl_seconds: int = 86400,
        rejected_ttl_seconds: int = 14 * 86400,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        self.table = table
        self.dynamodb = dynamodb
        self.executor = executor
        self.done_ttl = done_ttl_seconds
        self.rejected_ttl = rejected_ttl_seconds
        self.clock = clock
        self._parked_seen = False  # the last lookup found events parked

    def serial(self) -> EventStore:
        """This store without its executor, for a caller running on one of the executor's threads
        (waiting there on the same pool could wait forever)."""
        twin = copy.copy(self)
        twin.executor = None
        return twin

    # -- a request's view ----------------------------------------------------------------

    def lookup(
        self, entities: Iterable[str], event_ids: Iterable[str], deadline: float, *, also: Sequence[dict[str, Any]] = ()
    ) -> Seen:
        """Which entities have parked events, and the records of these event ids (consistent reads);
        `also`: the keys of other items to read in the same round trip.

        While nothing is parked (the usual case), the parked counters tell so without reading every
        entity's head. While events are parked, as the previous lookup found, the heads are read
        with the counters: one round trip, not two.

        Raises:
            StoreError: when the table cannot be read before the deadline.
        """
        heads = {_pk_entity(e): e for e in set(entities)}
        records = {_pk_event(i): i for i in set(event_ids)}
        head_keys = [_key(pk, "head") for pk in heads]
        gate = len(heads) > PARKED_SHARDS  # reading the counters costs less than reading the heads
        counters = [_key(f"parked#{n}", "count") for n in range(PARKED_SHARDS)] if gate else []
        heads_now = not gate or self._parked_seen
        keys = [_key(pk, "event") for pk in records] + list(also) + counters
        items = self._get(keys + (head_keys if heads_now else []), deadline)
        if gate:
            parked = sum(int(i.get("parked", {}).get("N", "0")) for i in items if i["sk"]["S"] == "count")
            self._parked_seen = parked > 0
            if self._parked_seen and not heads_now:
                items += self._get(head_keys, deadline)
        found = {(item["pk"]["S"], item["sk"]["S"]): item for item in items}
        blocked: set[str] = set()
        blocked_state: set[str] = set()
        states: dict[str, Stored] = {}
        for item in items:
            pk, sk = item["pk"]["S"], item["sk"]["S"]
            if sk == "head" and int(item.get("parked", {}).get("N", "0")) > 0:
                blocked.add(heads[pk])
                # (a head last written before state events were counted apart holds state events too)
                if int(item.get("state", {}).get("N", "1")) > 0:
                    blocked_state.add(heads[pk])
            elif sk == "event":
                states[records[pk]] = _stored(item, records[pk])
        also_items = tuple(found.get((k["pk"]["S"], k["sk"]["S"]), {}) for k in also)
        return Seen(frozenset(blocked), states, also_items, frozenset(blocked_state))

    def park(
        self,
        parked: Sequence[tuple[Record, str | None, str | None]],
        deadline: float,
        *,
        done: Sequence[Record] = (),
        lanes: Mapping[str, str] | None = None,
    ) -> dict[str, StoreError]:
        """Store each (record, reason, code) as parked with its entities' heads, and each `done`
        record as delivered, in the order of the request (`Record.index`). An event already stored
        (a sender's retry) is left as it is. Returns the event ids that could not be stored, with
        why; every other one is durably stored when this returns.

        Records with the same `lanes` key (event id -> key: those of one person or company) are
        written in order, one transaction after another, and none after one that failed: what is
        stored of them is always a prefix of the request. A sender's retry then never finds a newer
        event parked while an older one of it was neither parked nor recorded as delivered."""
        expires = int(self.clock.wall()) + self.done_ttl
        changes = [Change(r, [self._park_action(r, reason, code)], dict.fromkeys(r.entities, 1), +1, r.state)
                   for r, reason, code in parked]  # fmt: skip
        changes += [Change(r, [{"Put": {"TableName": self.table, "Item": _done_item(r, expires)}}], {}, 0)
                    for r in done]  # fmt: skip
        return self._commit_in_order(sorted(changes, key=lambda c: c.record.index), deadline, lanes)

    def mark_done(self, records: Sequence[Record], deadline: float) -> dict[str, str]:
        """Remember these events as delivered for `done_ttl_seconds`, so a sender's retry is not
        applied again. Returns the event ids that could not be recorded, with why."""
        expires = int(self.clock.wall()) + self.done_ttl
        return self._put_all({r.event_id: _done_item(r, expires) for r in records}, deadline)

    def keep_rejected(
        self, rejected: Sequence[tuple[Record, str | None, str | None]], deadline: float
    ) -> dict[str, str]:
        """Keep rejected events with their reason for `rejected_ttl_seconds`, replayable once the
        cause is fixed. Returns the event ids that could not be kept, with why."""
        expires = int(self.clock.wall()) + self.rejected_ttl
        items = {r.event_id: self._record_item(r, REJECTED, reason, code) | {"expiresAt": {"N": str(expires)}}
                 for r, reason, code in rejected}  # fmt: skip
        try:
            self.watch_state([r for r, _, _ in rejected], deadline)
        except StoreError as error:
            return dict.fromkeys(items, error.message)
        return self._put_all(items, deadline)

    def watch_state(self, rejected: Sequence[Record], deadline: float) -> None:
        """Before an identify or group event is kept as rejected: from now until its retention
        ends, delivered identify and group events leave watermarks (`note_state`).

        Raises:
            StoreError: when it cannot be written (the rejection must then not be kept).
        """
        if not any(r.state for r in rejected):
            return
        until = str(int(self.clock.wall()) + self.rejected_ttl)
        item = STATE_WATCH | {"until": {"N": until}, "expiresAt": {"N": until}}
        self._call("put_item", deadline=deadline, TableName=self.table, Item=item)

    def note_state(self, delivered: Sequence[Record], deadline: float) -> dict[str, str]:
        """Note, for each email and company these delivered identify and group events wrote, which
        traits the newest of them wrote, by arrival sequence (while `watching`: identify or group
        events are kept as rejected). Returns the event ids whose watermark could not be written,
        with why."""
        until = int(self.clock.wall()) + self.rejected_ttl
        traits: dict[str, dict[str, str]] = {}  # entity -> trait -> newest seq that wrote it
        events: dict[str, list[str]] = {}
        for r in delivered:
            for entity in _state_entities(r):
                events.setdefault(entity, []).append(r.event_id)
                for trait in _written_traits(r, entity):
                    traits.setdefault(entity, {})[trait] = max(r.seq, traits.get(entity, {}).get(trait, ""))

        def write(entity: str) -> dict[str, str]:
            written = sorted(traits.get(entity, {}).items())
            try:
                for start in range(0, max(1, len(written)), WATERMARK_TRAITS):
                    chunk = written[start : start + WATERMARK_TRAITS]
                    names = {f"#t{n}": TRAIT_PREFIX + trait for n, (trait, _) in enumerate(chunk)}
                    values = {f":t{n}": {"S": seq} for n, (_, seq) in enumerate(chunk)}
                    update = {
                        "TableName": self.table,
                        "Key": _key(_pk_entity(entity), "state"),
                        "UpdateExpression": "SET "
                        + ", ".join([*(f"{k} = :t{k[2:]}" for k in names), "expiresAt = :e"]),
                        "ExpressionAttributeValues": values | {":e": {"N": str(until)}},
                    }
                    if names:
                        update["ExpressionAttributeNames"] = names
                    self._call("update_item", deadline=deadline, **update)
            except StoreError as error:
                return dict.fromkeys(events[entity], error.message)
            return {}

        failed: dict[str, str] = {}
        for result in self._map(write, list(events)):
            failed |= result
        return failed

    def watching(self, watch: Mapping[str, Any]) -> bool:
        """Whether the STATE_WATCH item read says identify or group events are kept as rejected."""
        return int(watch.get("until", {}).get("N", "0")) > self.clock.wall()

    def superseded(self, rejected: Sequence[Stored], deadline: float) -> dict[str, set[str]]:
        """For each rejected identify and group event: the traits of it that later delivered events
        of the same email or company wrote (by the watermarks `note_state` left)."""
        wanted = {e for s in rejected for e in _state_entities(s.record)}
        items = self._get([_key(_pk_entity(e), "state") for e in sorted(wanted)], deadline)
        marks = {item["pk"]["S"]: item for item in items}
        found: dict[str, set[str]] = {}
        for stored in rejected:
            for entity in _state_entities(stored.record):
                item = marks.get(_pk_entity(entity), {})
                newer = {
                    name.removeprefix(TRAIT_PREFIX)
                    for name, value in item.items()
                    if name.startswith(TRAIT_PREFIX) and value.get("S", "") > stored.record.seq
                }
                if newer:
                    found.setdefault(stored.record.event_id, set()).update(newer)
        return found

    def supersede(self, rejected: Sequence[Stored]) -> None:
        """Keep these rejected events as `superseded`: a replay leaves them (a later event of the
        same person or company was delivered); their reason says what they were rejected for.

        Raises:
            StoreError: when one cannot be written.
        """
        for stored in rejected:
            self._call(
                "update_item",
                TableName=self.table,
                Key=_key(_pk_event(stored.record.event_id), "event"),
                UpdateExpression="SET code = :code, reason = :reason",
                ConditionExpression="#s = :rejected AND seq = :seq",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={
                    ":code": {"S": SUPERSEDED},
                    ":reason": {"S": f"{SUPERSEDED_REASON}; was: {stored.reason or stored.code or 'rejected'}"},
                    ":rejected": {"S": REJECTED},
                    ":seq": {"S": stored.record.seq},
                },
            )

    # -- rollups ---------------------------------------------------------------------------

    def count_rollups(self, counts: Sequence[tuple[Record, Count]], deadline: float) -> dict[str, StoreError]:
        """Count each event into its window, once: its own record (state `rolled`: a resend finds it
        and is not counted again) and its window's counters are written by one transaction. A window
        the drain has closed already is not counted into: the event goes into the window's next
        generation, a late rollup of it. Returns the event ids that could not be counted, with why;
        every other one is counted durably when this returns (an id sent twice is counted once)."""
        unique = list({record.event_id: (record, count) for record, count in reversed(counts)}.values())
        unique.sort(key=lambda item: item[1].key)  # a window's events in as few transactions as can be
        chunks = [unique[n : n + ROLLUP_EVENTS] for n in range(0, len(unique), ROLLUP_EVENTS)]
        failed: dict[str, StoreError] = {}
        for result in self._map(lambda chunk: self._count_chunk(chunk, deadline), chunks):
            failed |= result
        return failed

    def _count_chunk(self, chunk: Sequence[tuple[Record, Count]], deadline: float) -> dict[str, StoreError]:
        pending = list(chunk)
        generation: dict[str, int] = {}
        now = int(self.clock.wall())  # one time for every attempt: a retry sends the same items
        attempt, actions = 0, None
        while pending:
            windows: dict[str, list[Count]] = {}
            for _, count in pending:
                windows.setdefault(count.key, []).append(count)
            if actions is None:  # a new token for new items; the same ones for a retry of them
                token = str(uuid.uuid4())
                actions = [self._rolled_action(r, now) for r, _ in pending]
                actions += [self._window_action(c, generation.get(k, 0)) for k, c in windows.items()]
            try:
                self.dynamodb.transact_write_items(
                    TransactItems=actions + self._count_action(0), ClientRequestToken=token
                )
                return {}
            except Exception as error:
                code = _error_code(error)
                reasons = _cancellation_reasons(error)
                if code == "TransactionCanceledException" and "ConditionalCheckFailed" in reasons:
                    # Counted already (a resend): dropped. A closed window: its next generation.
                    counted = {
                        n for n, reason in enumerate(reasons[: len(pending)]) if reason == "ConditionalCheckFailed"
                    }
                    for key, reason in zip(windows, reasons[len(pending) :], strict=False):
                        if reason == "ConditionalCheckFailed":
                            generation[key] = generation.get(key, 0) + 1
                    pending = [item for n, item in enumerate(pending) if n not in counted]
                    actions = None
                    continue
                transient = code in RETRYABLE_CODES or code == "TransactionConflictException"
                if code == "TransactionCanceledException":  # only conflicts and throttling pass
                    transient = all(r in CANCELLED_TRANSIENTLY for r in reasons)
                if not transient:
                    return {r.event_id: StoreError(f"event store refused the write ({code})") for r, _ in pending}
                attempt += 1
                if not self._pause(attempt, deadline):
                    return {r.event_id: StoreError(f"event store unavailable ({code})") for r, _ in pending}
        return {}

    def _rolled_action(self, record: Record, now: int) -> dict[str, Any]:
        expires = now + self.done_ttl
        return {
            "Put": {
                "TableName": self.table,
                "Item": _key(_pk_event(record.event_id), "event")
                | {"state": {"S": ROLLED}, "seq": {"S": record.seq}, "expiresAt": {"N": str(expires)}},
                # A resend of a counted event is not counted again; a rejected one may be (the
                # cause may be fixed).
                "ConditionExpression": "attribute_not_exists(pk) OR #s = :rejected",
                "ExpressionAttributeNames": {"#s": "state"},
                "ExpressionAttributeValues": {":rejected": {"S": REJECTED}},
            }
        }

    def _window_action(self, counts: Sequence[Count], generation: int) -> dict[str, Any]:
        """Add these events (of one window) to its counters, unless the drain has closed it."""
        first = counts[0]
        names = {"#q": "queue", "#count": "count", "#name": "name", "#identity": "identity", "#entity": "entity"}
        values: dict[str, Any] = {
            ":n": {"N": str(len(counts))},
            ":queue": {"S": ROLLUP_QUEUE},
            ":seq": {"S": seq_before(first.closes_at)},
            ":name": {"S": first.name},
            ":key": {"S": first.key},
            ":generation": {"N": str(generation)},
            ":identity": {"S": json.dumps(dict(first.identity), separators=(",", ":"))},
            ":entity": {"S": first.entity},
            ":start": {"N": str(first.window_start)},
            ":end": {"N": str(first.window_end)},
            ":first": {"N": f"{min(c.at for c in counts):.3f}"},
            ":last": {"N": f"{max(c.at for c in counts):.3f}"},
        }
        adds = ["#count :n"]
        totals: dict[str, float] = {}
        seen: dict[str, set[str]] = {}
        for count in counts:
            for name, value in count.sums.items():
                totals[name] = totals.get(name, 0.0) + value
            for name, text in count.distinct.items():
                seen.setdefault(name, set()).add(text)
        for n, (name, total) in enumerate(sorted(totals.items())):
            names[f"#s{n}"], values[f":s{n}"] = SUM_PREFIX + name, {"N": repr(total)}
            adds.append(f"#s{n} :s{n}")
        for n, (name, texts) in enumerate(sorted(seen.items())):
            names[f"#d{n}"], values[f":d{n}"] = DISTINCT_PREFIX + name, {"SS": sorted(texts)}
            adds.append(f"#d{n} :d{n}")
        return {
            "Update": {
                "TableName": self.table,
                "Key": _key(f"rollup#{first.key}#{generation}", "window"),
                "UpdateExpression": "ADD "
                + ", ".join(adds)
                + " SET #q = :queue, seq = :seq, #name = :name, rollupKey = :key, generation = :generation,"
                " #identity = :identity, #entity = :entity, windowStart = :start, windowEnd = :end,"
                " firstAt = if_not_exists(firstAt, :first), lastAt = :last",
                "ConditionExpression": "attribute_not_exists(closedAt)",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        }

    def rollup_windows(self, limit: int) -> list[tuple[str, float]]:
        """The rollup windows not published yet, by when they close (wall-clock seconds), the
        first `limit` of them (index reads): their keys and close times."""
        reply = self._call(
            "query",
            TableName=self.table,
            IndexName=QUEUE_INDEX,
            KeyConditionExpression="#q = :q",
            ExpressionAttributeNames={"#q": "queue"},
            ExpressionAttributeValues={":q": {"S": ROLLUP_QUEUE}},
            ProjectionExpression="pk, seq",
            Limit=limit,
        )
        return [(item["pk"]["S"], arrival(item["seq"]["S"])) for item in reply.get("Items", [])]

    def close_window(self, pk: str, deadline: float) -> dict[str, Any]:
        """Close a rollup window (nothing more is counted into it: later events of it go to its next
        generation) and return it as it is now, decoded: its counts are final.

        Raises:
            StoreError: when it cannot be written.
        """
        reply = self._call(
            "update_item",
            deadline=deadline,
            TableName=self.table,
            Key=_key(pk, "window"),
            UpdateExpression="SET closedAt = if_not_exists(closedAt, :now)",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":now": {"N": f"{self.clock.wall():.3f}"}},
            ReturnValues="ALL_NEW",
        )
        return _window(reply["Attributes"])

    def windows_published(self, pks: Sequence[str], deadline: float) -> set[str]:
        """Record rollup windows as published: they leave the queue, kept a while so that a late
        event of one goes into a late rollup of it. Returns those that could not be recorded."""
        return self._leave_queue(dict.fromkeys(pks), deadline)

    def set_aside_windows(self, refused: Mapping[str, str], deadline: float) -> set[str]:
        """Rollup windows that can never be published as they are (pk -> why) leave the queue, kept
        under ROLLUP_REFUSED with why. Returns those that could not be (the next run tries again)."""
        return self._leave_queue(refused, deadline)

    def _leave_queue(self, windows: Mapping[str, str | None], deadline: float) -> set[str]:
        failed: set[str] = set()
        for pk, reason in windows.items():
            now = self.clock.wall()
            values: dict[str, Any] = {":expires": {"N": str(int(now) + self.rejected_ttl)}}
            if reason is None:
                update = "SET publishedAt = :now, expiresAt = :expires REMOVE #q"
                values[":now"] = {"N": f"{now:.3f}"}
            else:
                update = "SET #q = :refused, reason = :reason, expiresAt = :expires"
                values |= {":refused": {"S": ROLLUP_REFUSED}, ":reason": {"S": reason}}
            try:
                self._call(
                    "update_item",
                    deadline=deadline,
                    TableName=self.table,
                    Key=_key(pk, "window"),
                    UpdateExpression=update,
                    ExpressionAttributeNames={"#q": "queue"},
                    ExpressionAttributeValues=values,
                )
            except StoreError:
                failed.add(pk)
        return failed

    # -- the drain's view ------------------------------------------------------------------

    def parked_page(
        self, start: Mapping[str, Any] | None = None, limit: int = 100, *, state: bool = False
    ) -> tuple[list[Stored], Mapping[str, Any] | None]:
        """The oldest parked events (index reads): identify and group events with `state`, the
        others without; and where to go on."""
        return self._queue_page(PARKED_STATE if state else PARKED, {"hi": "~"}, start, limit)

    def rejected_page(
        self, since_seq: str, before_seq: str, start: Mapping[str, Any] | None = None, limit: int = 100
    ) -> tuple[list[Stored], Mapping[str, Any] | None]:
        """Rejected events accepted in [since_seq, before_seq), oldest first."""
        return self._queue_page(REJECTED, {"lo": since_seq, "hi": before_seq}, start, limit)

    def newest_page(
        self, state: str, *, since_seq: str = "0", until_seq: str = "~", code: str | None = None, limit: int = 20
    ) -> list[Stored]:
        """Up to `limit` events of `state` (parked or rejected), and of `code` if given, accepted in
        [since_seq, until_seq], newest first (index reads): what an operator looks at first."""
        bounds = {"lo": since_seq, "hi": until_seq}
        queues = [PARKED_STATE, PARKED] if state == PARKED else [state]
        found = [s for q in queues for s in self._queue_page(q, bounds, None, limit, newest_first=True, code=code)[0]]
        return sorted(found, key=lambda stored: stored.record.seq, reverse=True)[:limit]

    def queue_state(self, deadline: float) -> QueueState:
        """The parked counters, the last pass's summary and STATE_WATCH, in one consistent read of
        QUEUE_STATE_ITEMS items (a watch turned on by the last run must be seen by this one).

        Raises:
            StoreError: when the table cannot be read before the deadline.
        """
        counters = [_key(f"parked#{n}", "count") for n in range(PARKED_SHARDS)]
        items = self._get([*counters, SUMMARY, STATE_WATCH], deadline)
        summary = next((item for item in items if item["sk"]["S"] == "summary"), {})
        watch = next((item for item in items if item["sk"]["S"] == "state"), {})
        parked = sum(int(i.get("parked", {}).get("N", "0")) for i in items if i["sk"]["S"] == "count")
        changes = sum(int(i.get("changes", {}).get("N", "0")) for i in items if i["sk"]["S"] == "count")
        return QueueState(parked, changes, summary, watch)

    def note_pass(self, queue: QueueState, next_due: float, oldest_seq: str | None) -> None:
        """Remember a complete pass over the queue: the changes it started from (`queue`, as read at
        its start), whether the pass before started from them too, and when the first parked event
        it saw waiting on time is due (math.inf: none).

        Raises:
            StoreError: when it cannot be written (the next run then reads the queue again).
        """
        item = SUMMARY | {
            "changes": {"N": str(queue.changes)},
            "confirmed": {"BOOL": queue.unchanged},
            "nextDue": {"N": f"{min(next_due, 1e12):.3f}"},
        }
        if oldest_seq is not None:
            item["oldest"] = {"S": oldest_seq}
        self._call("put_item", TableName=self.table, Item=item)

    def still_parked(self, page: Sequence[Stored], deadline: float) -> list[Stored]:
        """The page's records as they are now (consistent reads): the index may lag behind a release."""
        items = self._get([{"pk": {"S": _pk_event(s.record.event_id)}, "sk": {"S": "event"}} for s in page], deadline)
        current = {item["pk"]["S"]: item for item in items}
        fresh = []
        for stored in page:
            item = current.get(_pk_event(stored.record.event_id))
            if item and item.get("state", {}).get("S") == PARKED and item.get("seq", {}).get("S") == stored.record.seq:
                fresh.append(_stored(item, stored.record.event_id))
        return fresh

    def settle(self, settled: Sequence[Settled], deadline: float, lanes: Mapping[str, str] | None = None) -> set[str]:
        """Turn parked records (given oldest first) into done or rejected ones and lower their
        entities' heads; those with the same `lanes` key in order, as `park` does, so an older
        event is never left parked behind a newer one settled. Returns the event ids whose
        settling could not be recorded."""
        now = int(self.clock.wall())
        changes = [
            Change(
                s.stored.record,
                [self._settle_action(s, now)],
                dict.fromkeys(s.stored.record.entities, -1),
                -1,
                s.stored.counted_as_state,
            )
            for s in settled
        ]
        return set(self._commit_in_order(changes, deadline, lanes))

    def retry_later(
        self,
        stored: Stored,
        *,
        due: float,
        own_failure: bool,
        operator: bool = False,
        link_only: bool = False,
        reason: str | None,
        code: str | None,
    ) -> None:
        """Note a failed attempt (counted only when the event's own call failed; a failure for a
        cause an operator must fix counts apart, as `waits`) and when to try again. `link_only`: its
        company was written, so it no longer holds the company's order.

        Raises:
            StoreError: when it cannot be written; the event then comes back at once, which is safe.
        """
        record = stored.record
        update = (
            "SET attempts = attempts + :n, waits = if_not_exists(waits, :zero) + :w, due = :due,"
            " reason = :reason, code = :code"
        )
        values: dict[str, Any] = {
            ":n": {"N": "1" if own_failure else "0"},
            ":w": {"N": "1" if operator else "0"},
            ":zero": {"N": "0"},
            ":due": {"N": f"{due:.3f}"},
            ":reason": {"S": reason or ""},
            ":code": {"S": code or ""},
            ":parked": {"S": PARKED},
            ":seq": {"S": record.seq},
        }
        dropped = [e for e in record.entities if e not in record.person] if link_only and not record.link_only else []
        condition = "#s = :parked AND seq = :seq"
        if dropped:
            update += ", linkOnly = :true, entities = :entities"
            values |= {":true": {"BOOL": True}, ":entities": {"L": [{"S": e} for e in record.person]}}
            condition += " AND attribute_not_exists(linkOnly)"  # the company's head is lowered once
        action = {
            "TableName": self.table,
            "Key": {"pk": {"S": _pk_event(record.event_id)}, "sk": {"S": "event"}},
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {"#s": "state"},
            "ExpressionAttributeValues": values,
        }
        if not dropped:
            self._call("update_item", **action)  # type: ignore[arg-type]
            return
        state = dict.fromkeys(dropped, -1) if stored.counted_as_state else {}
        items = [{"Update": action}, *self._head_actions(dict.fromkeys(dropped, -1), state)]
        # Our retries of it carry the same token: DynamoDB applies the transaction once.
        self._call("transact_write_items", TransactItems=items, ClientRequestToken=str(uuid.uuid4()))

    def replay(
        self,
        rejected: Sequence[Stored],
        deadline: float,
        *,
        link_only: Collection[str] = (),
        events: Mapping[str, dict[str, Any]] | None = None,
    ) -> dict[str, StoreError]:
        """Park rejected events (given oldest first) again, each at its own place in the arrival
        order: the drain then delivers it before any later event of its person or company. Those of
        one person or company are parked one after another, none after one that failed, so an
        interrupted replay, run again, never leaves an older event behind a newer one. Returns those
        that could not be parked (one already parked again is left as it is)."""
        changes: list[Change] = []
        for stored in rejected:
            record = stored.record
            if record.event_id in link_only and record.kind == "group":
                # A later group event of its company was delivered: only the person's link is left.
                record = dataclasses.replace(record, link_only=True, entities=record.person)
            narrowed = record.link_only and not stored.record.link_only
            values: dict[str, Any] = {
                ":parked": {"S": PARKED},
                ":queue": {"S": _queue(record, PARKED)},
                ":rejected": {"S": REJECTED},
                ":seq": {"S": record.seq},
                ":zero": {"N": "0"},
            }
            if narrowed:
                values |= {":true": {"BOOL": True}, ":entities": {"L": [{"S": e} for e in record.entities]}}
            replaced = (events or {}).get(record.event_id)
            if replaced is not None:  # what later events wrote is left out of it
                values[":event"] = {"S": json.dumps(replaced, separators=(",", ":"))}
            update = {
                "Update": {
                    "TableName": self.table,
                    "Key": {"pk": {"S": _pk_event(record.event_id)}, "sk": {"S": "event"}},
                    "UpdateExpression": "SET #s = :parked, #q = :queue, attempts = :zero, waits = :zero, due = :zero"
                    + (", linkOnly = :true, entities = :entities" if narrowed else "")
                    + (", #e = :event" if ":event" in values else "")
                    + " REMOVE expiresAt",
                    "ConditionExpression": "#s = :rejected AND seq = :seq",
                    "ExpressionAttributeNames": {"#s": "state", "#q": "queue"}
                    | ({"#e": "event"} if ":event" in values else {}),
                    "ExpressionAttributeValues": values,
                }
            }
            changes.append(Change(record, [update], dict.fromkeys(record.entities, 1), +1, record.state))
        records = [dataclasses.replace(c.record, index=n) for n, c in enumerate(changes)]
        return self._commit_in_order(changes, deadline, lane_keys(records))

    # -- items -----------------------------------------------------------------------------

    def _record_item(self, record: Record, state: str, reason: str | None, code: str | None) -> dict[str, Any]:
        item: dict[str, Any] = {
            "pk": {"S": _pk_event(record.event_id)},
            "sk": {"S": "event"},
            "state": {"S": state},
            "queue": {"S": _queue(record, state)},
            "seq": {"S": record.seq},
            "eventId": {"S": record.event_id},
            "kind": {"S": record.kind or "unknown"},
            # ASCII-escaped: a lone surrogate from a sender's JSON cannot be stored as UTF-8.
            "event": {"S": json.dumps(record.event, separators=(",", ":"))},
            "entities": {"L": [{"S": e} for e in record.entities]},
            "attempts": {"N": "0"},
            "due": {"N": "0"},
            "reason": {"S": reason or ""},
            "code": {"S": code or ""},
        }
        if record.link_only:
            item["linkOnly"] = {"BOOL": True}
        return item

    def _park_action(self, record: Record, reason: str | None, code: str | None) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self.table,
                "Item": self._record_item(record, PARKED, reason, code),
                # A sender's retry of a parked or delivered event must not park it again behind newer
                # events; a rejected one may be parked (the cause may be fixed).
                "ConditionExpression": "attribute_not_exists(pk) OR #s = :rejected",
                "ExpressionAttributeNames": {"#s": "state"},
                "ExpressionAttributeValues": {":rejected": {"S": REJECTED}},
            }
        }

    def _settle_action(self, item: Settled, now: int) -> dict[str, Any]:
        record = item.stored.record
        if item.state == DONE:
            update = "SET #s = :state, expiresAt = :expires REMOVE #q, #e, entities"
            expires = now + self.done_ttl
        else:
            update = "SET #s = :state, #q = :state, reason = :reason, code = :code, expiresAt = :expires"
            expires = now + self.rejected_ttl
        values = {
            ":state": {"S": item.state},
            ":parked": {"S": PARKED},
            ":seq": {"S": record.seq},
            ":expires": {"N": str(expires)},
        }
        names = {"#s": "state", "#q": "queue"}
        if item.state == DONE:
            names["#e"] = "event"
        else:
            values |= {":reason": {"S": item.reason or ""}, ":code": {"S": item.code or ""}}
        return {
            "Update": {
                "TableName": self.table,
                "Key": {"pk": {"S": _pk_event(record.event_id)}, "sk": {"S": "event"}},
                "UpdateExpression": update,
                "ConditionExpression": "#s = :parked AND seq = :seq",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        }

    def _count_action(self, change: int) -> list[dict[str, Any]]:
        shard = random.randrange(PARKED_SHARDS)
        return [
            {
                "Update": {
                    "TableName": self.table,
                    "Key": _key(f"parked#{shard}", "count"),
                    "UpdateExpression": "ADD parked :change, changes :one",
                    "ExpressionAttributeValues": {":change": {"N": str(change)}, ":one": {"N": "1"}},
                }
            }
        ]

    def _head_actions(self, changes: Mapping[str, int], state: Mapping[str, int]) -> list[dict[str, Any]]:
        """One update per entity (a transaction may touch an item once): its count moves by the sum,
        and its count of identify and group events by theirs (`state`; written even when 0, so that
        a head without one is known to be older than that count: see lookup)."""
        expires = int(self.clock.wall()) + HEAD_TTL_SECONDS
        return [
            {
                "Update": {
                    "TableName": self.table,
                    "Key": {"pk": {"S": _pk_entity(entity)}, "sk": {"S": "head"}},
                    "UpdateExpression": "ADD parked :change, #state :state SET expiresAt = :expires",
                    "ExpressionAttributeNames": {"#state": "state"},
                    "ExpressionAttributeValues": {
                        ":change": {"N": str(change)},
                        ":state": {"N": str(state.get(entity, 0))},
                        ":expires": {"N": str(expires)},
                    },
                }
            }
            for entity, change in changes.items()
            if change
        ]

    # -- calls -----------------------------------------------------------------------------

    def _commit_in_order(
        self, changes: Sequence[Change], deadline: float, lanes: Mapping[str, str] | None
    ) -> dict[str, StoreError]:
        """Commit the changes: those sharing a `lanes` key one transaction after another, in the
        order given, stopping at the first that fails; different keys concurrently."""
        groups: dict[str, list[Change]] = {}
        for change in changes:
            event_id = change.record.event_id
            groups.setdefault((lanes or {}).get(event_id, event_id), []).append(change)
        # Whole groups, largest first, each into the lane with the least work so far; as many lanes
        # as it takes to fill about half a transaction each (every transaction touches a shared
        # counter, so fewer of them conflict less), at most LANES.
        size = sum(len(change.actions) + len(change.heads) for change in changes)
        lanes_wanted = min(len(groups), LANES, max(1, math.ceil(size / (MAX_TRANSACTION_ACTIONS // 2))))
        queues: list[list[Change]] = [[] for _ in range(lanes_wanted)]
        for group in sorted(groups.values(), key=len, reverse=True):
            min(queues, key=len).extend(group)

        def run(queue: list[Change]) -> dict[str, StoreError]:
            chunks = _chunks(queue)
            for n, chunk in enumerate(chunks):
                if failures := self._commit(chunk, deadline):
                    later = [change for rest in chunks[n + 1 :] for change in rest]
                    return failures | _failed(later, "not stored: an earlier event of the request could not be")
            return {}

        failures: dict[str, StoreError] = {}
        for result in self._map(run, [queue for queue in queues if queue]):
            failures |= result
        return failures

    def _commit(self, chunk: list[Change], deadline: float) -> dict[str, StoreError]:
        """One transaction for the chunk: each record's own items, then its entities' heads moved by
        the sum of the changes, and a counter by how many records were parked or settled. A record
        whose own item fails its condition (already parked, or already settled) is dropped and the
        rest committed; conflicts and throttling are retried."""
        pending = list(chunk)
        token = str(uuid.uuid4())  # the same token for a retry of the same items: DynamoDB applies it once
        attempt = 0
        while pending:
            heads: dict[str, int] = {}
            state: dict[str, int] = {}
            for change in pending:
                for entity, moved in change.heads.items():
                    heads[entity] = heads.get(entity, 0) + moved
                    if change.state:
                        state[entity] = state.get(entity, 0) + moved
            own = [action for change in pending for action in change.actions]
            parked = sum(change.parked for change in pending)
            counter = self._count_action(parked) if parked else []
            try:
                self.dynamodb.transact_write_items(
                    TransactItems=own + self._head_actions(heads, state) + counter, ClientRequestToken=token
                )
                return {}
            except Exception as error:
                code = _error_code(error)
                if code == "TransactionCanceledException":
                    reasons = _cancellation_reasons(error)
                    refused = _refused_records(pending, reasons)
                    if refused:
                        pending = [p for n, p in enumerate(pending) if n not in refused]
                        token = str(uuid.uuid4())
                        continue
                elif code not in RETRYABLE_CODES and code != "TransactionConflictException":
                    return _failed(pending, f"event store refused the write ({code})")
                attempt += 1
                if not self._pause(attempt, deadline):
                    return _failed(pending, f"event store unavailable ({code})")
        return {}

    def _get(self, keys: list[dict[str, Any]], deadline: float) -> list[dict[str, Any]]:
        def batch(chunk: list[dict[str, Any]]) -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = []
            request = {self.table: {"Keys": chunk, "ConsistentRead": True}}
            attempt = 0
            while request:
                reply = self._call("batch_get_item", deadline=deadline, RequestItems=request)
                found += reply.get("Responses", {}).get(self.table, [])
                request = reply.get("UnprocessedKeys") or {}
                if request:
                    attempt += 1
                    if not self._pause(attempt, deadline):
                        raise StoreError("event store could not be read before the deadline (throttled)")
            return found

        results = self._map(batch, [keys[n : n + BATCH_GET] for n in range(0, len(keys), BATCH_GET)])
        return [item for found in results for item in found]

    def _put_all(self, items: Mapping[str, dict[str, Any]], deadline: float) -> dict[str, str]:
        """Event id -> why it could not be written (naming the AWS error code), for those that could not."""
        ids = list(items)

        def batch(chunk: list[str]) -> dict[str, str]:
            request = {self.table: [{"PutRequest": {"Item": items[i]}} for i in chunk]}
            attempt = 0
            try:
                while request:
                    reply = self._call("batch_write_item", deadline=deadline, RequestItems=request)
                    request = reply.get("UnprocessedItems") or {}
                    if request:
                        attempt += 1
                        if not self._pause(attempt, deadline):
                            left = {r["PutRequest"]["Item"]["pk"]["S"] for r in request[self.table]}
                            why = "event store unavailable (unprocessed items: throttled)"
                            return {i: why for i in chunk if _pk_event(i) in left}
            except StoreError as error:
                return dict.fromkeys(chunk, error.message)
            return {}

        failed: dict[str, str] = {}
        for result in self._map(batch, [ids[n : n + BATCH_WRITE] for n in range(0, len(ids), BATCH_WRITE)]):
            failed |= result
        return failed

    def _queue_page(
        self,
        queue: str,
        bounds: Mapping[str, str],
        start: Mapping[str, Any] | None,
        limit: int,
        *,
        newest_first: bool = False,
        code: str | None = None,
    ) -> tuple[list[Stored], Mapping[str, Any] | None]:
        condition = "#q = :q AND seq < :hi" if "lo" not in bounds else "#q = :q AND seq BETWEEN :lo AND :hi"
        values = {":q": {"S": queue}} | {f":{k}": {"S": v} for k, v in bounds.items()}
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": QUEUE_INDEX,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": {"#q": "queue"},
            "ExpressionAttributeValues": values,
            "ScanIndexForward": not newest_first,
        }
        if code is not None:
            kwargs["FilterExpression"] = "code = :code"
            values[":code"] = {"S": code}
        page: list[Stored] = []
        while True:
            if start:
                kwargs["ExclusiveStartKey"] = start
            kwargs["Limit"] = min(QUERY_LIMIT, limit - len(page))
            reply = self._call("query", **kwargs)
            page += [_stored(item, item["eventId"]["S"]) for item in reply.get("Items", [])]
            start = reply.get("LastEvaluatedKey")
            if not start or len(page) >= limit:
                return page, start

    def _call(self, operation: str, *, deadline: float | None = None, **kwargs: Any) -> Any:
        """One call, tried again with backoff while DynamoDB throttles or fails transiently and the
        deadline (by default a couple of seconds from now) allows.

        Raises:
            StoreError: when it still fails.
        """
        deadline = self.clock.monotonic() + 2.0 if deadline is None else deadline
        attempt = 0
        while True:
            try:
                return getattr(self.dynamodb, operation)(**kwargs)
            except Exception as error:  # botocore raises many types; all mean "not available now"
                code = _error_code(error)
                attempt += 1
                if code not in RETRYABLE_CODES or not self._pause(attempt, deadline):
                    raise StoreError(f"event store unavailable ({code})") from error

    def _pause(self, attempt: int, deadline: float) -> bool:
        """Back off before another try; False when that would pass the deadline."""
        delay = min(1.0, 0.05 * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
        if self.clock.monotonic() + delay > deadline:
            return False
        self.clock.sleep(delay)
        return True

    def _map(self, function: Callable[[Any], Any], chunks: list[Any]) -> list[Any]:
        if self.executor is None or len(chunks) <= 1:
            return [function(chunk) for chunk in chunks]
        return list(self.executor.map(function, chunks))


def _queue(record: Record, state: str) -> str:
    """The queue index partition of a parked or rejected record."""
    return PARKED_STATE if state == PARKED and record.state else state


def _done_item(record: Record, expires: int) -> dict[str, Any]:
    return _key(_pk_event(record.event_id), "event") | {
        "state": {"S": DONE},
        "seq": {"S": record.seq},
        "expiresAt": {"N": str(expires)},
    }


SUM_PREFIX, DISTINCT_PREFIX = "sum:", "distinct:"


def _window(item: Mapping[str, Any]) -> dict[str, Any]:
    """A rollup window item, decoded (see rollup.published)."""
    return {
        "pk": item["pk"]["S"],
        "key": item["rollupKey"]["S"],
        "name": item["name"]["S"],
        "entity": item["entity"]["S"],
        "generation": int(item["generation"]["N"]),
        "identity": json.loads(item["identity"]["S"]),
        "windowStart": float(item["windowStart"]["N"]),
        "windowEnd": float(item["windowEnd"]["N"]),
        "count": int(item["count"]["N"]),
        "firstAt": float(item["firstAt"]["N"]),
        "lastAt": float(item["lastAt"]["N"]),
        "sums": {k.removeprefix(SUM_PREFIX): float(v["N"]) for k, v in item.items() if k.startswith(SUM_PREFIX)},
        "distinct": {
            k.removeprefix(DISTINCT_PREFIX): list(v["SS"]) for k, v in item.items() if k.startswith(DISTINCT_PREFIX)
        },
    }


def _state_entities(record: Record) -> list[str]:
    """What an identify (its email: the Person's key) or a group event (its company) writes."""
    if record.kind == "identify":
        return [e for e in record.entities if e.startswith("email:")]
    if record.kind == "group" and not record.link_only:
        return [e for e in record.entities if e.startswith("company:")]
    return []


def without_traits(record: Record, names: Collection[str]) -> dict[str, Any] | None:
    """The event of an identify or group record without the traits `names` (which later delivered
    events wrote), to apply what is left of it; None when nothing of it is left but its key."""
    event = copy.deepcopy(record.event) if isinstance(record.event, dict) else {}
    left = set().union(*(_written_traits(record, e) for e in _state_entities(record))) - set(names)
    if not left:
        return None
    for holder in (event, event.get("context")):
        if isinstance(holder, dict) and isinstance(holder.get("traits"), dict):
            holder["traits"] = {k: v for k, v in holder["traits"].items() if k not in names}
    return event


def _written_traits(record: Record, entity: str) -> set[str]:
    """The traits an identify or group event writes, but the one naming `entity` (its email or
    company key value): that one a later event of the same entity always has."""
    event = record.event if isinstance(record.event, dict) else {}
    sources = [event.get("traits")]
    if record.kind == "identify":
        sources.append((event.get("context") or {}).get("traits") if isinstance(event.get("context"), dict) else None)
    kind, _, identity = entity.partition(":")
    names: set[str] = set()
    for traits in sources:
        for name, value in (traits or {}).items() if isinstance(traits, dict) else ():
            same = isinstance(value, str | int) and (
                email_key(str(value)) == identity if kind == "email" else str(value).strip() == identity
            )
            if not same:
                names.add(name)
    return names


def _key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def _pk_event(event_id: str) -> str:
    return "event#" + digest(event_id)


def _pk_entity(entity: str) -> str:
    return "entity#" + digest(entity)


def _stored(item: Mapping[str, Any], event_id: str) -> Stored:
    state = item.get("state", {}).get("S", "")
    raw = item.get("event", {}).get("S")
    event = json.loads(raw) if raw is not None else None
    record = Record(
        index=0,
        event=event,
        event_id=event_id,
        seq=item.get("seq", {}).get("S", ""),
        kind=item.get("kind", {}).get("S", ""),
        entities=tuple(e["S"] for e in item.get("entities", {}).get("L", [])),
        link_only=bool(item.get("linkOnly", {}).get("BOOL", False)),
    )
    return Stored(
        record=record,
        state=state,
        attempts=int(item.get("attempts", {}).get("N", "0")),
        waits=int(item.get("waits", {}).get("N", "0")),
        due=float(item.get("due", {}).get("N", "0")),
        reason=item.get("reason", {}).get("S") or None,
        code=item.get("code", {}).get("S") or None,
        queue=item.get("queue", {}).get("S", ""),
    )


def _error_code(error: Exception) -> str:
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code") or type(error).__name__)
    return type(error).__name__


def _cancellation_reasons(error: Exception) -> list[str]:
    """Why DynamoDB cancelled a transaction: one code per action, in order ("None" for those it did not refuse)."""
    response = getattr(error, "response", None) or {}
    return [reason.get("Code") or "None" for reason in response.get("CancellationReasons") or []]


def _chunks(changes: list[Change]) -> list[list[Change]]:
    """Split changes into transactions of at most MAX_TRANSACTION_ACTIONS items, heads included."""
    chunks: list[list[Change]] = [[]]
    own: int = 0
    entities: set[str] = set()
    for change in changes:
        if chunks[-1] and own + len(change.actions) + len(entities | set(change.heads)) + 1 > MAX_TRANSACTION_ACTIONS:
            chunks.append([])
            own, entities = 0, set()
        chunks[-1].append(change)
        own += len(change.actions)
        entities |= set(change.heads)
    return [chunk for chunk in chunks if chunk]


def _refused_records(pending: list[Change], reasons: list[str]) -> set[int]:
    """Positions (in `pending`) of records whose own item failed its condition."""
    refused: set[int] = set()
    position = 0
    for n, change in enumerate(pending):
        if position < len(reasons) and reasons[position] == "ConditionalCheckFailed":
            refused.add(n)
        position += len(change.actions)
    return refused


def _failed(pending: list[Change], message: str) -> dict[str, StoreError]:
    error = StoreError(message)
    return {change.record.event_id: error for change in pending}
