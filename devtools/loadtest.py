"""`make loadtest`: sustained load against the sandbox enforcing Gainsight's quota, time-compressed.

Concurrent API invocations (in-process, one shared container) and the drain (every quota window,
one run at a time) at 0.5x, 1x, 2x and 5x the quota-sustainable event rate; per level what was
offered, delivered, parked, lost and duplicated, what the calls cost, and how the backlog drained.
See "Load test" in the README for the compression, the definitions and the targets.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from devtools.bench import Workload, reset_container
from devtools.gainsight_sandbox import Sandbox
from devtools.local import (
    ROOT,
    api_event,
    environment,
    invoke,
    moto_aws,
    quiet_powertools,
    seed_parameters,
    use_handler_path,
)
from devtools.measured import DOCS, machine, stamp, write_section

REAL_WINDOW_SECONDS = 60.0  # Gainsight's quota window
REAL_RETRY_BASE_SECONDS = 60.0  # the drain's schedule, and the first backoff
REAL_DRAIN_SETTLE_SECONDS = 20.0
REAL_MAX_BACKOFF_SECONDS = 3600.0
REAL_DRAIN_BUDGET_SECONDS = 50.0
REAL_LATENCY_SECONDS = 0.1  # Gainsight's, per call
MIN_DRAIN_BUDGET_SECONDS = 5.0  # settings' floor for DRAIN_BUDGET_SECONDS
FILTERED_EVERY = 50  # one event in 50 is a page event: dropped by design ("filtered")
SDK_RESENDS = 3  # a batch answered 503 is sent again, as the SDKs do


@dataclass(frozen=True, slots=True)
class Compression:
    """Time compressed by `factor`: the quota window, Gainsight's latency and every delay of the
    drain and of retries shrink together. What AWS does (moto, the request's budget and reserves)
    runs in real time, so API latencies are real seconds, and if anything pessimistic."""

    factor: float

    @property
    def window(self) -> float:
        return REAL_WINDOW_SECONDS / self.factor

    def latency(self, real: float) -> float:
        return real / self.factor

    @property
    def drain_seconds(self) -> float:
        """The drain's run length, as its Lambda timeout would allow it (50 s of each minute)."""
        return REAL_DRAIN_BUDGET_SECONDS / self.factor

    def environment(self, *, quota_per_window: int, quota_per_day: int) -> dict[str, str]:
        """The settings a compressed run needs; QUOTA_* are read by the shared quota limiter."""
        return {
            "QUOTA_WINDOW_SECONDS": f"{self.window:g}",
            "QUOTA_PER_MINUTE": str(quota_per_window),  # per window: a compressed minute
            "QUOTA_PER_DAY": str(quota_per_day),
            "RETRY_BASE_SECONDS": f"{REAL_RETRY_BASE_SECONDS / self.factor:g}",
            "DRAIN_SETTLE_SECONDS": f"{REAL_DRAIN_SETTLE_SECONDS / self.factor:g}",
            "MAX_BACKOFF_SECONDS": f"{REAL_MAX_BACKOFF_SECONDS / self.factor:g}",
            # The run's length is what `drain` is handed as the Lambda's remaining time.
            "DRAIN_BUDGET_SECONDS": f"{max(MIN_DRAIN_BUDGET_SECONDS, self.drain_seconds):g}",
        }


@dataclass(frozen=True, slots=True)
class Options:
    levels: Sequence[float] = (0.5, 1.0, 2.0, 5.0)
    factor: float = 5.0
    quota_per_window: int = 100
    quota_per_day: int = 50_000
    load_windows: int = 5
    max_drain_windows: int = 40
    batch_size: int = 20
    latency: float = REAL_LATENCY_SECONDS  # Gainsight's, per call, before compression
    senders: int = 16  # API invocations in flight at most
    users: int = 300
    companies: int = 40
    active: int = 25
    calibration_batches: int = 10
    seed: int = 42


@dataclass
class LevelReport:
    level: float
    offered: int = 0
    delivered: int = 0
    deferred: int = 0
    filtered: int = 0
    rejected: int = 0
    lost: int = 0
    duplicated: int = 0
    still_parked: int = 0
    dead_lettered: int = 0
    calls: int = 0
    throttled: int = 0
    goodput: float = 0.0  # delivered while load lasted / the quota-ideal
    calls_per_delivered: float = 0.0
    api_p50: float = 0.0
    api_p99: float = 0.0
    backlog_peak: int = 0
    backlog_at_stop: int = 0
    drain_windows: float | None = None  # None: not drained within max_drain_windows
    ideal_drain_windows: float = 0.0
    delivered_during_load: int = 0  # events whose delivering call answered while load lasted
    requests: int = 0
    late_seconds: float = 0.0  # how far the senders fell behind their schedule, at worst


@dataclass
class Tally:
    """What the senders and the drain saw, as it happened."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)  # messageId -> last result
    api_seconds: list[float] = field(default_factory=list)
    delivered_at: list[tuple[float, int]] = field(default_factory=list)  # (when, events) per delivering call
    late: float = 0.0

    def answered(self, results: list[dict[str, Any]], seconds: float, late: float) -> None:
        with self.lock:
            self.api_seconds.append(seconds)
            self.late = max(self.late, late)
            for result in results:
                self.answers[result["messageId"]] = result

    def delivered(self, count: int) -> None:
        with self.lock:
            self.delivered_at.append((time.monotonic(), count))


@contextmanager
def delivery_times(tally: Tally) -> Iterator[None]:
    """Each event counted as delivered when the Gainsight call that delivered it answered, by a
    request or by the drain: a person's write (its identify and group events), a track's publish,
    a batch's Timeline activities."""
    use_handler_path()
    import delivery

    originals = {name: getattr(delivery.Delivery, name) for name in ("_person", "_track", "_activities")}
    nested = threading.local()  # a refused merged write is split into calls of its own: count once

    def counting(name: str) -> Any:
        original = originals[name]

        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            depth = getattr(nested, "depth", 0)
            nested.depth = depth + 1
            try:
                outcomes = original(self, *args, **kwargs)
            finally:
                nested.depth = depth
            if depth == 0:
                tally.delivered(sum(o.outcome == "delivered" for o in outcomes.values()))
            return outcomes

        return wrapper

    for name in originals:
        setattr(delivery.Delivery, name, counting(name))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(delivery.Delivery, name, original)


class Backlog:
    """Parked events, as the event store counts them (its `parked#<n>` counters), sampled every
    twentieth of a window from when the level starts: the peak, and whether the drain is done."""

    def __init__(self, every: float) -> None:
        import boto3

        use_handler_path()
        import store

        self._dynamodb = boto3.client("dynamodb")
        self._keys = [{"pk": {"S": f"parked#{n}"}, "sk": {"S": "count"}} for n in range(store.PARKED_SHARDS)]
        self._every = every
        self._stop = threading.Event()
        self.baseline = self.count(relative=False)  # parked by an earlier level and never drained
        self.peak = self.latest = 0
        self._thread = threading.Thread(target=self._loop, name="loadtest-backlog", daemon=True)

    def count(self, *, relative: bool = True) -> int:
        table = os.environ["EVENT_TABLE"]
        reply = self._dynamodb.batch_get_item(RequestItems={table: {"Keys": self._keys, "ConsistentRead": True}})
        parked = sum(int(item["parked"]["N"]) for item in reply["Responses"][table])
        return parked - self.baseline if relative else parked

    def __enter__(self) -> Backlog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            self.latest = self.count()
            self.peak = max(self.peak, self.latest)


class Drain:
    """The scheduled drain: a run every window, never two at once (reserved concurrency 1); a tick
    that finds the previous run still going is skipped."""

    def __init__(self, compression: Compression) -> None:
        use_handler_path()
        import drain

        self._drain = drain
        self.compression = compression
        self.stop = threading.Event()
        self.runs = 0
        self.skipped = 0
        self._thread = threading.Thread(target=self._loop, name="loadtest-drain", daemon=True)

    def __enter__(self) -> Drain:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join()

    def _loop(self) -> None:
        window = self.compression.window
        start = time.monotonic()
        tick = 1
        while not self.stop.wait(max(0.0, start + tick * window - time.monotonic())):
            self._drain.drain(self.compression.drain_seconds + self._drain.SAFETY_MARGIN_SECONDS)
            self.runs += 1
            # Ticks that passed while it ran were throttled: the next run is the next tick.
            following = max(tick + 1, math.floor((time.monotonic() - start) / window) + 1)
            self.skipped += following - tick - 1
            tick = following


@contextmanager
def container_per_invocation() -> Iterator[None]:
    """Each concurrent invocation in a container of its own, as Lambda runs them: its own executor,
    DynamoDB client and company cache. Every sender thread is one concurrently warm container, and
    the drain (its own function) another; one shared container would make them queue for its
    executor's threads, which no deployment does."""
    use_handler_path()
    import ingest

    shared = ingest.container
    local = threading.local()

    def container(config: Any) -> Any:
        if getattr(local, "parts", None) is None:
            local.parts = ingest.Container(config)
        return local.parts

    ingest.container = container
    try:
        yield
    finally:
        ingest.container = shared


def _events(workload: Workload, size: int, prefix: str, counter: Iterator[int]) -> list[dict[str, Any]]:
    """One batch: tracks carry their messageId as a marker property; one event in 50 is a page."""
    batch = []
    for drawn in workload.batch(size):
        n = next(counter)
        message_id = f"{prefix}-{n}"
        event = drawn | {"messageId": message_id}
        if n % FILTERED_EVERY == FILTERED_EVERY - 1:
            event = {k: v for k, v in event.items() if k not in ("event", "properties", "traits", "groupId")}
            event |= {"type": "page", "name": "Docs"}
        elif event["type"] == "track":
            event["properties"] = event["properties"] | {"loadMarker": message_id}
        batch.append(event)
    return batch


def _counter() -> Iterator[int]:
    n = 0
    while True:
        yield n
        n += 1


def _post(batch: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], float]:
    """Send a batch as an SDK does: again on 503, at most SDK_RESENDS times; the last answers."""
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    for attempt in range(SDK_RESENDS + 1):
        response = invoke(api_event("/v1/batch", {"batch": batch}))
        results = json.loads(response["body"])["results"]
        if response["statusCode"] != 503 or attempt == SDK_RESENDS:
            break
        time.sleep(0.5)
    return results, time.perf_counter() - started


@contextmanager
def compressed(compression: Compression, options: Options) -> Iterator[None]:
    """The compressed settings in this process's environment, a cold container, then as before."""
    with cold_container_with(
        compression.environment(quota_per_window=options.quota_per_window, quota_per_day=options.quota_per_day)
    ):
        yield


@contextmanager
def cold_container_with(values: dict[str, str]) -> Iterator[None]:
    """These settings and a cold container (settings and parameters read afresh), then as before."""
    with environment(values):
        reset_container()
        try:
            yield
        finally:
            reset_container()


def _set_faults(sandbox: Sandbox, options: Options, compression: Compression, *, quota: bool) -> None:
    sandbox.state.reset()
    with sandbox.state.lock:
        sandbox.state.faults.latency = compression.latency(options.latency)
        sandbox.state.faults.quota_window = compression.window
        sandbox.state.faults.quota_per_minute = options.quota_per_window if quota else None


def calibrate(sandbox: Sandbox, options: Options, compression: Compression) -> float:
    """Gainsight calls per delivered event of the workload, one request at a time, no quota (in the
    sandbox, nor in the shared budget)."""
    _set_faults(sandbox, options, compression, quota=False)
    with cold_container_with({"QUOTA_PER_MINUTE": "1000000"}):
        return _calibrate(sandbox, options)


def _calibrate(sandbox: Sandbox, options: Options) -> float:
    workload = Workload(users=options.users, companies=options.companies, active=options.active, seed=options.seed)
    counter = _counter()
    delivered = 0
    for _ in range(options.calibration_batches):
        results, _ = _post(_events(workload, options.batch_size, "calibrate", counter))
        delivered += sum(r["outcome"] == "delivered" for r in results)
    return sandbox.state.count() / max(1, delivered)


def run_level(sandbox: Sandbox, options: Options, compression: Compression, level: float, single: float) -> LevelReport:
    """Offer `level` x the quota-sustainable rate for `load_windows` windows, then drain."""
    # The shared budget idle for as long as a call holds its place first: the calls the previous
    # level (or the calibration) made in its last window are not this level's to spend.
    use_handler_path()
    import quota

    time.sleep(compression.window + quota.RESERVATION_SKEW_SECONDS)
    _set_faults(sandbox, options, compression, quota=True)
    report = LevelReport(level)
    ideal_rate = options.quota_per_window / single  # events per window the quota lets through
    load_seconds = options.load_windows * compression.window
    requests = max(1, round(level * ideal_rate * options.load_windows / options.batch_size))
    workload = Workload(
        users=options.users, companies=options.companies, active=options.active, seed=options.seed + int(level * 10)
    )
    counter = _counter()
    prefix = f"load-{level:g}x-{time.time_ns()}"
    batches = [_events(workload, options.batch_size, prefix, counter) for _ in range(requests)]
    offered = {e["messageId"]: e for batch in batches for e in batch}
    tally = Tally()

    def send(batch: list[dict[str, Any]], due: float) -> None:
        results, seconds = _post(batch)
        tally.answered(results, seconds, late=time.monotonic() - due)

    with (
        delivery_times(tally),
        Backlog(every=compression.window / 20) as backlog,
        Drain(compression) as drain,
    ):
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=options.senders, thread_name_prefix="sender") as senders:
            for n, batch in enumerate(batches):
                due = started + n * load_seconds / requests
                time.sleep(max(0.0, due - time.monotonic()))
                senders.submit(send, batch, due)
            load_ends = started + load_seconds
            time.sleep(max(0.0, load_ends - time.monotonic()))
        # Every request answered: what is parked now is the drain's alone.
        stopped = time.monotonic()
        report.backlog_at_stop = left = backlog.count()
        while left > 0 and time.monotonic() - stopped < options.max_drain_windows * compression.window:
            time.sleep(compression.window / 20)
            left = backlog.latest  # the sampler's: reading the counters again is moto's time, not ours
        if left <= 0:
            report.drain_windows = (time.monotonic() - stopped) / compression.window
        else:
            drain.stop.set()
    report.backlog_peak = max(backlog.peak, report.backlog_at_stop)
    report.delivered_during_load = sum(n for at, n in tally.delivered_at if at <= load_ends)
    _settle_report(report, sandbox, offered, tally, options=options, ideal_rate=ideal_rate)
    return report


def _table_states() -> dict[str, tuple[str, str]]:
    """messageId -> (state, code) of every record in the event table."""
    import boto3

    dynamodb = boto3.client("dynamodb")
    states: dict[str, tuple[str, str]] = {}
    for page in dynamodb.get_paginator("scan").paginate(
        TableName=os.environ["EVENT_TABLE"], ProjectionExpression="eventId, #s, code",
        ExpressionAttributeNames={"#s": "state"},
    ):  # fmt: skip
        for item in page["Items"]:
            if "eventId" in item:
                states[item["eventId"]["S"]] = (item["state"]["S"], item.get("code", {}).get("S", ""))
    return states


def _settle_report(
    report: LevelReport,
    sandbox: Sandbox,
    offered: dict[str, dict[str, Any]],
    tally: Tally,
    *,
    options: Options,
    ideal_rate: float,
) -> None:
    """Every offered event's fate, from what Gainsight holds and what the event table holds."""
    states = _table_states()
    with sandbox.state.lock:
        published = Counter(e["body"].get("loadMarker") for e in sandbox.state.events)
        people = dict(sandbox.state.people)
        companies = {c.get("Name"): c["Gsid"] for c in sandbox.state.companies.values()}
        calls = list(sandbox.state.calls)
        lost_answers = len(sandbox.state.lost_answers)
    report.offered = len(offered)
    report.requests = len(tally.api_seconds)
    for message_id, event in offered.items():
        answer = tally.answers.get(message_id, {})
        state, code = states.get(message_id, ("", ""))
        if answer.get("outcome") == "deferred":
            report.deferred += 1
        if event["type"] == "page":
            report.filtered += answer.get("outcome") == "rejected"
            report.lost += answer.get("outcome") != "rejected"
            continue
        email = event["context"]["traits"]["email"]
        if event["type"] == "track":
            seen = published[message_id]
            report.duplicated += max(0, seen - 1)
            present = seen > 0
        elif event["type"] == "identify":
            present = email in people
        else:
            gsid = companies.get(event["groupId"])
            present = gsid is not None and gsid in people.get(email, {}).get("companies", [])
        if present:
            report.delivered += 1
        elif state == "rejected" and code == "gave_up":
            report.dead_lettered += 1
        elif state == "rejected" or answer.get("outcome") == "rejected":
            report.rejected += 1
        elif state == "parked":
            report.still_parked += 1
        else:
            report.lost += 1
    report.duplicated = max(0, report.duplicated - lost_answers)
    report.calls = len(calls)
    report.throttled = sum(c.status == 429 for c in calls)
    report.calls_per_delivered = report.calls / max(1, report.delivered)
    ideal_during_load = min(report.level, 1.0) * ideal_rate * options.load_windows
    report.goodput = report.delivered_during_load / ideal_during_load
    report.ideal_drain_windows = report.backlog_at_stop / ideal_rate
    seconds = sorted(tally.api_seconds)
    report.api_p50 = statistics.median(seconds) if seconds else 0.0
    report.api_p99 = seconds[min(len(seconds) - 1, math.ceil(0.99 * len(seconds)) - 1)] if seconds else 0.0
    report.late_seconds = tally.late


def run(sandbox: Sandbox, options: Options) -> tuple[float, list[LevelReport]]:
    """Every level, against a sandbox and an event store this process's boto3 already points at."""
    compression = Compression(options.factor)
    with compressed(compression, options), container_per_invocation():
        single = calibrate(sandbox, options, compression)
        reports = [run_level(sandbox, options, compression, level, single) for level in options.levels]
    return single, reports


def targets(single: float, reports: Sequence[LevelReport]) -> list[tuple[str, bool]]:
    """The issue's targets, each with whether this run met it."""
    by_level = {r.level: r for r in reports}
    checks = [
        ("0 lost, 0 duplicated, 0 dead-lettered at every level",
         all(r.lost == r.duplicated == r.dead_lettered == 0 for r in reports)),
        ("at most 1 % of calls answered 429", all(r.throttled <= 0.01 * r.calls for r in reports)),
        ("goodput >= 95 % of the quota-ideal at 1x and above",
         all(r.goodput >= 0.95 for r in reports if r.level >= 1)),
        # The drain runs once a window: a backlog it clears in its next run is drained at its pace.
        ("backlog drained within 10 % of the ideal number of windows (or in the drain's next run)",
         all(r.drain_windows is not None and r.drain_windows <= max(1.1 * r.ideal_drain_windows, 1.0)
             for r in reports if r.backlog_at_stop)),
    ]  # fmt: skip
    if 5.0 in by_level:
        top = by_level[5.0]
        checks.append(("API p99 < 1.5 s at 5x", top.api_p99 < 1.5))
        checks.append(("calls per delivered event at 5x >= 20 % below the single-request figure",
                       top.calls_per_delivered <= 0.8 * single))  # fmt: skip
    return checks


def table(reports: Sequence[LevelReport]) -> str:
    """A Markdown table, one column per level."""

    def windows(value: float | None) -> str:
        return "not drained" if value is None else f"{value:.1f}"

    rows: list[tuple[str, list[str]]] = [
        ("events offered", [f"{r.offered}" for r in reports]),
        ("delivered", [f"{r.delivered}" for r in reports]),
        ("deferred (parked by the API)", [f"{r.deferred}" for r in reports]),
        ("filtered (page events)", [f"{r.filtered}" for r in reports]),
        ("rejected", [f"{r.rejected}" for r in reports]),
        ("still parked at the end", [f"{r.still_parked}" for r in reports]),
        ("**lost**", [f"**{r.lost}**" for r in reports]),
        ("**duplicated**", [f"**{r.duplicated}**" for r in reports]),
        ("**dead-lettered** (gave_up)", [f"**{r.dead_lettered}**" for r in reports]),
        ("Gainsight calls", [f"{r.calls}" for r in reports]),
        ("calls answered 429", [f"{r.throttled} ({100 * r.throttled / max(1, r.calls):.0f} %)" for r in reports]),
        ("goodput / quota-ideal", [f"{r.goodput:.2f}" for r in reports]),
        ("calls per delivered event", [f"{r.calls_per_delivered:.2f}" for r in reports]),
        ("API p50 / p99 (s)", [f"{r.api_p50:.2f} / {r.api_p99:.2f}" for r in reports]),
        ("API requests (senders' worst lag, s)", [f"{r.requests} ({r.late_seconds:.1f})" for r in reports]),
        ("backlog peak", [f"{r.backlog_peak}" for r in reports]),
        ("backlog when load stops", [f"{r.backlog_at_stop}" for r in reports]),
        ("windows to drain it (ideal)",
         [f"{windows(r.drain_windows)} ({r.ideal_drain_windows:.1f})" for r in reports]),
    ]  # fmt: skip
    width = max(len(name) for name, _ in rows)
    header = f"| {'level':<{width}} | " + " | ".join(f"{r.level:g}x" for r in reports) + " |"
    lines = [header, "|" + "-" * (width + 2) + "|" + "|".join("---:" for _ in reports) + "|"]
    lines += [f"| {name:<{width}} | " + " | ".join(values) + " |" for name, values in rows]
    return "\n".join(lines)


def quiet() -> None:
    """The table is the output: no handler logs (VERBOSE=1 shows them), no EMF metrics."""
    if not os.environ.get("VERBOSE"):
        os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "CRITICAL")
    quiet_powertools()


def main() -> int:
    quiet()
    defaults = Options()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default=",".join(f"{x:g}" for x in defaults.levels))
    parser.add_argument("--factor", type=float, default=defaults.factor, help="time compression")
    parser.add_argument("--quota", type=int, default=defaults.quota_per_window, help="calls per quota window")
    parser.add_argument("--load-windows", type=int, default=defaults.load_windows)
    parser.add_argument("--max-drain-windows", type=int, default=defaults.max_drain_windows)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--latency", type=float, default=defaults.latency, help="Gainsight's seconds per call (real)")
    args = parser.parse_args()
    options = Options(
        levels=tuple(float(x) for x in args.levels.split(",")),
        factor=args.factor,
        quota_per_window=args.quota,
        load_windows=args.load_windows,
        max_drain_windows=args.max_drain_windows,
        batch_size=args.batch_size,
        latency=args.latency,
    )
    compression = Compression(options.factor)
    print(
        f"time compressed {options.factor:g}x: quota window {compression.window:g} s "
        f"({options.quota_per_window} calls), drain every window for {compression.drain_seconds:g} s; "
        f"Gainsight latency {compression.latency(options.latency) * 1000:g} ms ({options.latency * 1000:g} ms real); "
        f"{options.load_windows} windows of load per level",
        flush=True,
    )
    started = time.monotonic()
    with Sandbox() as sandbox, moto_aws(own_process=True):
        seed_parameters(sandbox.url)
        single, reports = run(sandbox, options)
    ideal = options.quota_per_window / single
    print(f"\nsingle-request calls per delivered event: {single:.2f}; 1x = {ideal:.0f} events per window")
    print(table(reports))
    print()
    for name, met in targets(single, reports):
        print(f"{'met    ' if met else 'NOT MET'}  {name}")
    seconds = time.monotonic() - started
    print(f"\n{seconds:.0f} s")
    target = DOCS / "loadtest.md"
    if options == Options():
        section = loadtest_section(
            single, reports, options.quota_per_window, seconds, today=date.today(), host=machine()
        )
        write_section(target, "loadtest", section)
        print(f"written to {target.relative_to(ROOT)}")
    else:
        print(f"not written to {target.relative_to(ROOT)}: these are not the documented run's options")
    return 0


def loadtest_section(
    single: float, reports: Sequence[LevelReport], quota_per_window: int, seconds: float, *, today: date, host: str
) -> str:
    """docs/loadtest.md's measured section: when, where, how long, the table and the targets."""
    lines = [
        f"{stamp(today, host)} The run took {seconds:.0f} s.",
        "",
        f"single-request calls per delivered event: {single:.2f}; "
        f"1x = {quota_per_window / single:.0f} events per window.",
        "",
        table(reports),
        "",
        "Targets:",
        "",
    ]
    lines += [f"- {'met' if met else '**not met**'}: {name}" for name, met in targets(single, reports)]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
