"""Helpers for tests that go through lambda_handler."""

from __future__ import annotations

import gzip
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from clock import Clock

from devtools.local import api_event, invoke


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    raw: dict[str, Any]

    @property
    def outcomes(self) -> list[str]:
        return [r["outcome"] for r in self.body["results"]]


def post(path: str, body: Any, *, gzip_body: bool = False, **kw: Any) -> Reply:
    """POST through lambda_handler exactly as API Gateway would deliver it."""
    data = json.dumps(body).encode() if isinstance(body, dict | list) else body
    if gzip_body:
        data = gzip.compress(data)
        kw.setdefault("headers", {})["Content-Encoding"] = "gzip"
    response = invoke(api_event(path, data, **kw))
    return Reply(response["statusCode"], json.loads(response["body"]), response)


def configure(sandbox: Any, **keys: Any) -> None:
    """Seed the demo destination config with `keys` added or replaced, and start a fresh container."""
    from devtools.local import demo_config, seed_parameters
    from tests.conftest import clear_caches

    seed_parameters(sandbox.url, config=demo_config(sandbox.url) | keys)
    clear_caches()


def identify(email: str | None = "ada@example.com", message_id: str = "m-identify", **traits: Any) -> dict[str, Any]:
    return {
        "type": "identify",
        "messageId": message_id,
        "userId": "u1",
        "traits": {"email": email, **traits} if email else traits,
    }


def group(name: str | None = "Acme", email: str = "ada@example.com", message_id: str = "m-group", **traits: Any):
    return {
        "type": "group",
        "messageId": message_id,
        "groupId": name,
        "traits": {"name": name, **traits} if name else traits,
        "context": {"traits": {"email": email}},
    }


def track(event: str = "Ticket Closed", message_id: str = "m-track", **properties: Any) -> dict[str, Any]:
    return {"type": "track", "messageId": message_id, "event": event, "properties": properties}


def dynamodb_requests(*clients: Any) -> list[str]:
    """The names of the DynamoDB requests these boto3 clients make from now on, in order."""
    names: list[str] = []
    for client in clients:
        client.meta.events.register("before-call.dynamodb.*", lambda model, **_: names.append(model.name))
    return names


def drain_on(fake: FakeClock) -> Any:
    """One drain run as the schedule makes it, on the test's clock: its DrainReport."""
    import drain

    return drain.drain(60.0, clock=fake.clock)


def stored(state: str = "parked") -> list[Any]:
    """The event store's parked (or rejected) records, oldest first."""
    import boto3

    from devtools.local import EVENT_TABLE
    from store import EventStore

    records: list[Any] = []
    store = EventStore(EVENT_TABLE, boto3.client("dynamodb"))
    for queue in (True, False) if state == "parked" else (None,):
        start = None
        while True:
            if queue is None:
                page, start = store.rejected_page("0", "~", start)
            else:
                page, start = store.parked_page(start, state=queue)
            records += page
            if start is None:
                break
    return sorted(records, key=lambda stored: stored.record.seq)


class FakeClock:
    """Monotonic time that passes only when the code waits, and by `tick` per reading, so tests of
    time take microseconds on any machine. A sleep moves the clock to where its thread wakes (its
    last reading plus the sleep): threads that read the clock together and then wait, wait together."""

    def __init__(self, tick: float = 0.001) -> None:
        self.now = time.monotonic()  # near the real clock, should anything compare the two
        self.tick = tick
        self.slept: list[float] = []
        self._lock = threading.Lock()
        self._seen = threading.local()  # what this thread last read: where its sleep starts
        self._wall_offset: float | None = None  # None: the real wall clock
        self.clock = Clock(monotonic=self.monotonic, sleep=self.sleep, wall=self.wall)

    def start_wall_at(self, wall: float) -> None:
        """From now on the wall clock reads `wall`, and moves with this clock's monotonic time."""
        with self._lock:
            self._wall_offset = wall - self.now

    def wall(self) -> float:
        with self._lock:
            return time.time() if self._wall_offset is None else self.now + self._wall_offset

    def monotonic(self) -> float:
        with self._lock:
            self.now += self.tick
            self._seen.at = self.now
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            woke = getattr(self._seen, "at", self.now) + seconds
            self.now = max(self.now, woke)
            self._seen.at = woke

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds
