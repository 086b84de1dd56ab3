"""Each event read once: its durable id, its place in the order, the entities it must stay in order
with, and what to do with it. Every later step (plan, store, drain, response) uses this. Pure."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import mapping
from config import Destination

ENTITY_PREFIXES = ("email:", "user:", "anon:", "company:")
# People and company state: what CSMs see, never held behind telemetry (track events and the
# Timeline activities made of them), which waits behind the state it depends on.
STATE_KINDS = frozenset({"identify", "group"})


@dataclass(frozen=True, slots=True)
class Record:
    """One event of a request, or one parked event back from the store."""

    index: int  # its position in the request (or in the drain's page)
    event: Any  # the event as sent: what is stored when it is parked
    event_id: str  # the messageId (intake assigns one when missing): the key of its durable record
    seq: str  # arrival order: sortable, assigned once when the event is first accepted
    kind: str  # identify, group, track, ... ('' when missing)
    entities: tuple[str, ...]  # person identifiers and, for group, the company: kept in order with each other
    link_only: bool = False  # a group event whose company was written already: only the person's link is left

    @property
    def message_id(self) -> str | int | None:
        value = self.event.get("messageId") if isinstance(self.event, dict) else None
        return value if isinstance(value, str | int) and not isinstance(value, bool) else None

    @property
    def state(self) -> bool:
        """People or company state (identify, group), not telemetry."""
        return self.kind in STATE_KINDS

    @property
    def person(self) -> tuple[str, ...]:
        """The entities that name the person (not the company)."""
        return tuple(e for e in self.entities if not e.startswith("company:"))


def sequence(arrival_ns: int, request_tag: str, index: int) -> str:
    """A sortable arrival position: the request's arrival time, then the request, then the index."""
    return f"{arrival_ns:020d}.{request_tag[:12]}.{index:05d}"


def seq_before(wall_seconds: float) -> str:
    """The smallest sequence an event accepted at `wall_seconds` can have."""
    return f"{int(wall_seconds * 1e9):020d}"


def arrival(seq: str) -> float:
    """When an event was accepted (wall-clock seconds), from its sequence.

    Raises:
        ValueError: for a string that is not a sequence.
    """
    return int(seq.split(".", 1)[0]) / 1e9


def entities_of(
    event: Mapping[str, Any], destination: Destination | None = None, *, link_only: bool = False
) -> tuple[str, ...]:
    """Every identifier the event carries for a person (email, userId, anonymousId) and the company
    it writes to (a group event's, or a Timeline activity's), by the destination's company key (the
    name without one). Events sharing any of them are kept in the order they were accepted."""
    kind = mapping.event_type(event)
    context_traits = mapping.object_of(mapping.object_of(event.get("context")).get("traits"))
    sources = (context_traits,) if kind == "group" else (mapping.object_of(event.get("traits")), context_traits)
    found: list[str] = []
    email = next((s.get("email") for s in sources if isinstance(s.get("email"), str) and s["email"].strip()), None)
    if email is not None:
        found.append("email:" + mapping.email_key(email))
    for prefix, key in (("user:", "userId"), ("anon:", "anonymousId")):
        value = event.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            found.append(prefix + str(value).strip())
    company = None if link_only else mapping.company_of(event, destination)
    if company is not None:
        found.append("company:" + company)
    return tuple(found)


def read(index: int, event: Any, seq: str, destination: Destination | None = None) -> Record:
    """Read one event of a request (its company by `destination`'s company key)."""
    if not isinstance(event, dict):
        return Record(index, event, _content_id(event), seq, "", ())
    kind = mapping.event_type(event)
    return Record(index, event, mapping.event_id(event), seq, kind, entities_of(event, destination))


def digest(value: str) -> str:
    """A fixed-size opaque key: store keys carry no personal data."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def lane_keys(records: Sequence[Record]) -> dict[str, str]:
    """Event id -> its lane: events linked through a person or a company share one, and the store
    writes a lane's events one after another, in order (see components)."""
    lanes = components(records, companies=True)
    return {r.event_id: lanes[r.index] for r in records}


def components(records: Sequence[Record], *, companies: bool = False) -> dict[int, str]:
    """Index -> chain key: records linked through a shared person identifier form one chain, so
    an identify carrying userId and email and a later track carrying only the userId run in order.
    With `companies`, records naming the same company are linked too."""
    parent: dict[str, str] = {}

    def find(key: str) -> str:
        while parent.setdefault(key, key) != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    def keys(record: Record) -> tuple[str, ...]:
        return (record.entities if companies else record.person) or (f"event:{record.index}",)

    for record in records:
        own = keys(record)
        for other in own[1:]:
            parent[find(other)] = find(own[0])
    return {r.index: find(keys(r)[0]) for r in records}


def held_behind(records: Iterable[Record], blocked: set[str], blocked_state: set[str]) -> set[int]:
    """Records (taken in order) that must wait: telemetry behind any waiting event of one of its
    entities (`blocked`), state events only behind waiting state events (`blocked_state`). Both
    grow with the entities of every record found waiting."""
    waiting: set[int] = set()
    for record in records:
        if (blocked_state if record.state else blocked).intersection(record.entities):
            waiting.add(record.index)
            blocked.update(record.entities)
            if record.state:
                blocked_state.update(record.entities)
    return waiting


def _content_id(event: Any) -> str:
    import json

    canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
