"""Rollups (`rollupMap`): track events of one name counted per entity (a user, or a company) and
window, and published as one Events Framework event per entity and window once the window has
closed, instead of one call per event. Pure: what one event adds to its window, and the event a
closed window publishes. The counting (idempotent per event) and the publishing (once per window)
are the store's and the drain's."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import mapping
from config import Destination, Rollup
from errors import EventRejected
from record import digest

# Late events of a window are counted into a late rollup of it while they keep arriving: the
# window is closed (and published) this long after it ends.
SETTLE_SECONDS = 300
DISTINCT_SHOWN = 100  # distinct values a published rollup lists per property (it counts them all)
VALUE_LENGTH = 100  # characters of a distinct value kept
FUTURE_TOLERANCE_SECONDS = 300  # a timestamp later than its arrival by more is a wrong clock: arrival counts
MAX_SUMMED = 10**30  # larger numbers are not summed (DynamoDB numbers hold 38 digits)


@dataclass(frozen=True, slots=True)
class Count:
    """What one track event adds to its rollup."""

    key: str  # the (rollup, entity, window) it is counted into: digest of them
    name: str  # the track event name, as the rollup is configured (casefolded)
    entity: str  # user:<userId>, email:<email>, anon:<anonymousId> or company:<key value>
    identity: Mapping[str, str]  # what the published event carries to name its user or company
    window_start: int  # epoch seconds, aligned to the UTC day
    window_end: int
    at: float  # the event's own time (its timestamp, else its arrival)
    sums: Mapping[str, float]
    distinct: Mapping[str, str]

    @property
    def closes_at(self) -> float:
        return self.window_end + SETTLE_SECONDS


def rollup_of(event: Any, destination: Destination | None) -> Rollup | None:
    """The rollup a track event is counted into, if its name has one."""
    if destination is None or not isinstance(event, dict) or mapping.event_type(event) != "track":
        return None
    name = event.get("event")
    return destination.rollups.get(name.strip().casefold()) if isinstance(name, str) else None


def count_of(event: Mapping[str, Any], rollup: Rollup, arrival: float) -> Count:
    """What `event` adds to its window of `rollup` (arrival: when it was accepted, its time when it
    carries none).

    Raises:
        EventRejected: when it names no user (or company) to count it for.
    """
    name = str(event.get("event", "")).strip().casefold()
    entity, identity = _entity(event, rollup)
    at = _time(event, arrival)
    start = int(at // rollup.window_seconds * rollup.window_seconds)
    properties = mapping.object_of(event.get("properties"))
    sums = {p: float(properties[p]) for p in rollup.sums if _number(properties.get(p))}
    distinct = {p: str(properties[p])[:VALUE_LENGTH] for p in rollup.distinct if _value(properties.get(p))}
    return Count(
        key=digest(f"{name}|{rollup.window_seconds}|{entity}|{start}"),
        name=name,
        entity=entity,
        identity=identity,
        window_start=start,
        window_end=start + rollup.window_seconds,
        at=at,
        sums=sums,
        distinct=distinct,
    )


def published(window: Mapping[str, Any], rollup: Rollup, destination: Destination) -> mapping.EventPublish:
    """The Events Framework event a closed window publishes (`window`: the stored rollup, decoded:
    name, identity, windowStart, windowEnd, count, firstAt, lastAt, generation, sums, distinct).

    Raises:
        EventRejected, ConfigurationError: as for any Events Framework event (mapping.event_publish).
    """
    headers = mapping.events_framework_headers(destination, rollup.event_name, rollup.event_version)
    distinct = {name: sorted(values) for name, values in window["distinct"].items()}
    generation = window["generation"]
    body = {
        "rollupOf": window["name"],
        "rollupId": f"{window['key']}#{generation}",
        "late": generation > 0,  # counted after the window was published: a late rollup of it
        **window["identity"],
        "windowStart": _iso(window["windowStart"]),
        "windowEnd": _iso(window["windowEnd"]),
        "count": window["count"],
        "firstTimestamp": _iso(window["firstAt"]),
        "lastTimestamp": _iso(window["lastAt"]),
        "sums": {name: _plain(total) for name, total in window["sums"].items()},
        "distinct": {name: values[:DISTINCT_SHOWN] for name, values in distinct.items()},
        "distinctCounts": {name: len(values) for name, values in distinct.items()},
    }
    return mapping.EventPublish(headers=headers, body=body, event_id=body["rollupId"])


def _entity(event: Mapping[str, Any], rollup: Rollup) -> tuple[str, dict[str, str]]:
    if rollup.by == "company":
        context = mapping.object_of(event.get("context"))
        company = mapping.key_text(context.get("groupId")) or mapping.key_text(event.get("groupId"))
        if company is None:
            raise EventRejected("a rollup by company needs the event's context.groupId", code="no_rollup_entity")
        return f"company:{company}", {"groupId": company}
    identity: dict[str, str] = {}
    for key in ("userId", "anonymousId"):
        value = mapping.key_text(event.get(key))
        if value is not None:
            identity[key] = value
    traits = mapping.object_of(mapping.object_of(event.get("context")).get("traits"))
    email = traits.get("email")
    if isinstance(email, str) and email.strip():
        identity["email"] = email.strip()
    if "userId" in identity:
        return f"user:{identity['userId']}", identity
    if "email" in identity:
        return f"email:{mapping.email_key(identity['email'])}", identity
    if "anonymousId" in identity:
        return f"anon:{identity['anonymousId']}", identity
    raise EventRejected(
        "a rollup by user needs the event's userId, anonymousId or context.traits.email", code="no_rollup_entity"
    )


def _time(event: Mapping[str, Any], arrival: float) -> float:
    """The event's timestamp (UTC when it names no zone), else originalTimestamp; its arrival when
    it has neither, or one that is not a date or is later than its arrival (a wrong clock)."""
    moment = mapping.event_moment(event)
    at = moment.timestamp() if moment is not None else arrival
    return at if at <= arrival + FUTURE_TOLERANCE_SECONDS else arrival


def _number(value: Any) -> bool:
    """A number DynamoDB can add up (at most 38 digits, below 1e126): others are not summed."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return abs(value) < MAX_SUMMED if isinstance(value, int) else math.isfinite(value) and abs(value) < MAX_SUMMED


def _value(value: Any) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool) and str(value) != ""


def _plain(number: float) -> int | float:
    return int(number) if float(number).is_integer() else number


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(float(seconds), UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
