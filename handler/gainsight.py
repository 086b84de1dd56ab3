"""The Gainsight HTTP client: one urllib3 pool per container, retries bounded by a deadline."""

from __future__ import annotations

import json
import random
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import urllib3
from clock import REAL_CLOCK, Clock
from urllib3.exceptions import (
    HTTPError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ResponseError,
    TimeoutError,
)
from urllib3.util.retry import Retry

from config import Destination
from errors import GainsightError
from quota import Usage

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
INSERT_RETRY_STATUSES = frozenset({429, 503})
MIN_ATTEMPT_SECONDS = 1.0
# Telemetry: what the day's state reserve is kept from (quota.Budget.state_reserve).
TELEMETRY_OPERATIONS = frozenset({"event_publish", "activity_insert", "activity_update"})
AUTH_ERROR_CODES = frozenset({"GS_APIG_2401", "GSOBJ_1024"})
NOT_FOUND_CODES = frozenset({"GSOBJ_1011"})
MAX_WRITE_RECORDS = 50
# Timeline activities per single-insert call: the number Gainsight accepts is not documented; the
# sandbox refuses more than this (see README, Timeline activities).
MAX_ACTIVITY_RECORDS = 25
MAX_QUERY_ROWS = 5000

_pool_lock = threading.Lock()
_pool: urllib3.PoolManager | None = None


def pool(maxsize: int) -> urllib3.PoolManager:
    """The container's one PoolManager (TLS verified, keep-alive), created on first use."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = urllib3.PoolManager(num_pools=4, maxsize=maxsize, block=False, retries=False)
        return _pool


class Throttle:
    """A backoff shared by every call of a request: one 429 slows them all down together."""

    def __init__(self, clock: Clock = REAL_CLOCK) -> None:
        self._lock = threading.Lock()
        self._until = 0.0
        self.clock = clock

    def hold(self, seconds: float) -> None:
        with self._lock:
            self._until = max(self._until, self.clock.monotonic() + seconds)

    def remaining(self) -> float:
        return max(0.0, self._until - self.clock.monotonic())


class DeadlineTimeout(urllib3.Timeout):
    """Timeouts that shrink to the time left: urllib3 clones the Timeout for every attempt,
    retries included, so no attempt can outlive the deadline."""

    def __init__(self, *, connect: float, read: float, deadline: float, clock: Clock = REAL_CLOCK) -> None:
        super().__init__(connect=connect, read=read)
        self.limits = (connect, read)
        self.deadline = deadline
        self.clock = clock

    def clone(self) -> DeadlineTimeout:
        left = max(0.001, self.deadline - self.clock.monotonic())
        connect, read = self.limits
        clone = DeadlineTimeout(
            connect=min(connect, left), read=min(read, left), deadline=self.deadline, clock=self.clock
        )
        clone.total = left  # the read timeout applies per socket read: cap the whole attempt too
        return clone


class DeadlineRetry(Retry):
    """urllib3's Retry that shares 429 backoff through a Throttle and never sleeps past a deadline."""

    def __init__(
        self,
        *args: Any,
        deadline: float = float("inf"),
        throttle: Throttle | None = None,
        least: float = 0.0,
        clock: Clock = REAL_CLOCK,
        quota: Any = None,
        telemetry: bool = False,
        **kw: Any,
    ):
        super().__init__(*args, **kw)
        self.telemetry = telemetry  # the call publishes telemetry: it takes no share of the state reserve
        self.deadline = deadline
        self.clock = clock
        self.quota = quota  # the tenant's shared budget (quota.SharedQuota): every attempt needs a share
        self.throttle = throttle or Throttle(clock)
        self.least = least  # the time an attempt must have left to be worth starting

    def new(self, **kw: Any) -> DeadlineRetry:
        kw.setdefault("deadline", self.deadline)
        kw.setdefault("throttle", self.throttle)
        kw.setdefault("least", self.least)
        kw.setdefault("clock", self.clock)
        kw.setdefault("quota", self.quota)
        kw.setdefault("telemetry", self.telemetry)
        return super().new(**kw)

    def get_backoff_time(self) -> float:
        # urllib3 waits 0 s before the first retry; Gainsight's quota wants a pause from the start.
        attempts = len(self.history)
        if attempts == 0:
            return 0.0
        return min(self.backoff_max, self.backoff_factor * 2 ** (attempts - 1)) + self.backoff_jitter * random.random()

    def _delay(self, response: Any) -> float:
        retry_after = self.get_retry_after(response) if response is not None else None
        delay = retry_after if retry_after is not None else self.get_backoff_time()
        return max(delay, self.throttle.remaining())

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        if self.clock.monotonic() + retry._delay(response) + self.least > self.deadline:
            reason = error or ResponseError(f"retry would pass the deadline (HTTP {getattr(response, 'status', '-')})")
            raise MaxRetryError(_pool, url or "", reason) from reason
        return retry

    def sleep(self, response: Any = None) -> None:
        delay = self._delay(response)
        if response is not None and response.status == 429:
            self.throttle.hold(delay)
            if self.quota is not None:
                self.quota.throttled(self.get_retry_after(response))
        self.clock.sleep(delay)
        # The retry's share is taken now, when it is about to go out: a share taken before the
        # pause would hold a place in the budget's window for a call made long after it.
        # (Raised from here, urllib3 passes these on as they are, not wrapped in a MaxRetryError.)
        if self.quota is not None:
            if not self.quota.take(telemetry=self.telemetry):
                raise QuotaSpent("no share of the Gainsight quota left for a retry")
            if self.clock.monotonic() + self.least > self.deadline:  # it waited for room
                self.quota.give_back(telemetry=self.telemetry)
                raise DeadlineReached("retry would pass the deadline once the budget had room")


class QuotaSpent(ResponseError):
    """No share of the tenant's Gainsight budget is left for this call now."""


class DeadlineReached(ResponseError):
    """The budget had room for a retry only too late for the deadline."""


@dataclass(frozen=True, slots=True)
class Call:
    operation: str
    outcome: str  # "ok", "rejected" or "failed"
    latency_ms: float
    throttled: int = 0  # 429 answers seen, retries included
    auth_rejected: bool = False


@dataclass
class CallLog:
    """What one request spent at Gainsight, for metrics and the benchmark."""

    calls: list[Call] = field(default_factory=list)
    usage: Usage | None = None  # the tenant's budget as the last reservation saw it
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)


def error_for(status: int, body: Mapping[str, Any] | None, operation: str) -> GainsightError | None:
    """Classify a Gainsight answer: None when it succeeded, else the error with its retryable flag."""
    body = body or {}
    code = body.get("errorCode") if isinstance(body.get("errorCode"), str) else None
    desc = body.get("errorDesc") or body.get("message")
    request_id = body.get("requestId") if isinstance(body.get("requestId"), str) else None
    detail = f"{code}: {desc}" if code and desc else str(code or desc or f"HTTP {status}")
    if status in (401, 403) or code in AUTH_ERROR_CODES:
        secret = "shared secret or access key" if operation == "event_publish" else "access key"
        return GainsightError(
            f"Gainsight rejected the {secret} ({detail})",
            status_code=status if status >= 400 else 401,
            retryable=True,
            code=code or "unauthorized",
            request_id=request_id,
            operator=True,  # an expired or wrong key: waits for the operator, never counts as an attempt
        )
    if 200 <= status < 300:
        if body.get("result") is False:
            return GainsightError(
                f"Gainsight {detail}", status_code=400, retryable=False, code=code, request_id=request_id
            )
        return None
    if 300 <= status < 400:
        return GainsightError(
            f"Gainsight answered with a redirect (HTTP {status}); check the domain setting",
            status_code=status,
            retryable=True,
            code="redirect",
        )
    retryable = status in RETRY_STATUSES or status >= 500
    return GainsightError(
        f"Gainsight {detail}", status_code=status, retryable=retryable, code=code, request_id=request_id
    )


class Gainsight:
    """Calls for one request, against one destination, bounded by one deadline."""

    def __init__(
        self,
        destination: Destination,
        *,
        deadline: float,
        http: urllib3.PoolManager,
        max_retries: int = 3,
        connect_timeout: float = 2.0,
        read_timeout: float = 5.0,
        backoff_factor: float = 0.25,
        log: CallLog | None = None,
        clock: Clock = REAL_CLOCK,
        quota: Any = None,
    ) -> None:
        self.destination = destination
        self.quota = quota  # the tenant's shared budget (quota.SharedQuota), or None for no limit
        self.deadline = deadline
        self.http = http
        self.max_retries = max_retries
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.backoff_factor = backoff_factor
        self.clock = clock
        self.throttle = Throttle(clock)
        self.log = log if log is not None else CallLog()

    # -- the operations ---------------------------------------------------

    def upsert_person(self, body: Mapping[str, Any]) -> None:
        """PUT one Person (Email is the key), with company links when present."""
        self._call("person_upsert", "PUT", "/v1.0/api/people", body)

    def query_companies(self, keys: Sequence[str], field: str = "Name") -> dict[str, str]:
        """Key value -> Gsid for the companies whose `field` is one of `keys`."""
        query = {
            "select": ["Gsid", field],
            "where": {
                "conditions": [{"name": field, "alias": "A", "value": list(keys), "operator": "IN"}],
                "expression": "A",
            },
            "limit": MAX_QUERY_ROWS,
            "offset": 0,
        }
        reply = self._call("company_query", "POST", "/v1/data/objects/query/Company", query, absent_ok=True)
        return {str(r[field]): str(r["Gsid"]) for r in _records(reply) if r.get(field) is not None and r.get("Gsid")}

    def write_companies(self, records: Sequence[Mapping[str, Any]], *, insert: bool, key: str = "Name") -> list[str]:
        """Insert, or update keyed on `key` (a field name checked by the config), up to 50 companies;
        their Gsids, in order."""
        if insert:
            reply = self._call("company_insert", "POST", "/v1/data/objects/Company", {"records": list(records)})
        else:
            reply = self._call(
                "company_update", "PUT", f"/v1/data/objects/Company?keys={key}", {"records": list(records)}
            )
        gsids = [str(r.get("Gsid") or "") for r in _records(reply)]
        if len(gsids) != len(records) or not all(gsids):
            raise GainsightError(
                "Gainsight did not return a Gsid for every company written",
                status_code=502,
                retryable=True,
                code="no_gsid",
            )
        return gsids

    def insert_activities(
        self, records: Sequence[Mapping[str, Any]], lookups: Mapping[str, Any]
    ) -> list[GainsightError | None]:
        """Insert up to MAX_ACTIVITY_RECORDS Timeline activities; per record, None when it is in
        Gainsight (created now, or already there under its ExternalId) or the error refusing it.

        How Gainsight refuses an ExternalId that exists is not documented, so every record it
        refuses is confirmed with an update matched by ExternalId (its documented match key): one
        that updates was there already (an earlier attempt created it, with these same fields);
        one that does not is refused for the insert's reason.

        Raises:
            GainsightError: when the whole call failed or was refused.
        """
        body = {"records": list(records), "lookups": lookups}
        errors = self._activity_results("activity_insert", "POST", "/v1/ant/es/activity", body, len(records))
        refused = [n for n, error in enumerate(errors) if error is not None]
        if refused:
            again = {"records": [records[n] for n in refused], "lookups": lookups}
            path = "/v1/ant/es/activity?identifier=externalid"
            try:
                updated = self._activity_results("activity_update", "PUT", path, again, len(refused))
            except GainsightError:
                updated = [errors[n] for n in refused]  # not confirmed: the insert's answer stands
            for n, error in zip(refused, updated, strict=True):
                if error is None:
                    errors[n] = None
        return errors

    def _activity_results(
        self, operation: str, method: str, path: str, body: Mapping[str, Any], expected: int
    ) -> list[GainsightError | None]:
        reply = self._call(operation, method, path, body)
        results = list(_records(reply))
        if len(results) != expected:
            raise GainsightError(
                "Gainsight did not answer for every activity sent",
                status_code=502,
                retryable=True,
                code="no_activity_result",
            )
        return [_activity_error(result) for result in results]

    def publish_event(self, headers: Mapping[str, str], body: Mapping[str, Any]) -> None:
        """POST one Events Framework event."""
        self._call("event_publish", "POST", "/v1.0/api/eventManager/event", body, headers=headers)

    # -- the transport ----------------------------------------------------

    def _call(
        self,
        operation: str,
        method: str,
        path: str,
        body: Any,
        *,
        headers: Mapping[str, str] | None = None,
        absent_ok: bool = False,
    ) -> Mapping[str, Any]:
        telemetry = operation in TELEMETRY_OPERATIONS
        least = self._admit(telemetry=telemetry)  # not made: not a call, nor logged
        started = self.clock.monotonic()
        throttled, auth_rejected = 0, False
        try:
            response = self._send(operation, method, path, body, headers, least=least, telemetry=telemetry)
            history = response.retries.history if response.retries else ()
            throttled = sum(1 for attempt in history if attempt.status == 429) + (response.status == 429)
            reply = _json(response.data)
            if self.quota is not None:
                self.quota.calibrate(*rate_limit(response.headers))
            if response.status == 429 and self.quota is not None:
                self.quota.throttled(response.retries.get_retry_after(response) if response.retries else None)
            auth_rejected = response.status in (401, 403) or reply.get("errorCode") in AUTH_ERROR_CODES
            if absent_ok and _means_absent(response.status, reply):
                reply = {}
            elif (refusal := error_for(response.status, reply, operation)) is not None:
                raise refusal
        except GainsightError as error:
            outcome = "failed" if error.retryable else "rejected"
            self.log.add(Call(operation, outcome, (self.clock.monotonic() - started) * 1000, throttled, auth_rejected))
            raise
        self.log.add(Call(operation, "ok", (self.clock.monotonic() - started) * 1000, throttled))
        return reply

    def _admit(self, *, telemetry: bool) -> float:
        """Time and a share of the tenant's budget for one call, or why not; the least time an
        attempt needs. An attempt cut short while Gainsight is still working on it leaves its outcome
        unknown (a track event could then be published twice): only start one that has time to finish."""
        least = min(self.read_timeout, MIN_ATTEMPT_SECONDS)
        if self.clock.monotonic() + self.throttle.remaining() + least > self.deadline:
            raise budget_exhausted()
        if self.quota is not None and not self.quota.take(telemetry=telemetry):
            raise reserve_kept() if telemetry and self.quota.reserve_reached else quota_spent()
        # Checked again once the share is in hand: taking it may have waited, and a 429 come meanwhile.
        wait = self.throttle.remaining()
        if self.clock.monotonic() + wait + least > self.deadline:
            if self.quota is not None:
                self.quota.give_back(telemetry=telemetry)
            raise budget_exhausted()
        if wait:
            self.clock.sleep(wait)
        return least

    def _send(
        self,
        operation: str,
        method: str,
        path: str,
        body: Any,
        headers: Mapping[str, str] | None,
        *,
        least: float,
        telemetry: bool,
    ) -> urllib3.BaseHTTPResponse:
        retries = DeadlineRetry(
            total=self.max_retries,
            # An insert whose answer was lost may have created the company: never resend it blind;
            # it is retried later through a fresh lookup instead.
            read=0 if operation == "company_insert" else None,
            redirect=False,
            # An insert answered 500/502/504 may have been stored: only 429 and 503 say it was not.
            status_forcelist=INSERT_RETRY_STATUSES if operation == "company_insert" else RETRY_STATUSES,
            allowed_methods=frozenset({"POST", "PUT"}),
            backoff_factor=self.backoff_factor,
            backoff_max=4.0,
            backoff_jitter=self.backoff_factor,
            raise_on_status=False,
            raise_on_redirect=False,
            respect_retry_after_header=True,
            deadline=self.deadline,
            throttle=self.throttle,
            least=least,
            clock=self.clock,
            quota=self.quota,
            telemetry=telemetry,
        )
        request_headers = {"Content-Type": "application/json", **(headers or {})}
        if "Accesskey" not in request_headers and operation != "event_publish":
            request_headers["Accesskey"] = self.destination.access_key
        try:
            response = self.http.request(
                method,
                self.destination.base_url + path,
                # ASCII-escaped: a lone surrogate from a sender's JSON cannot be encoded as UTF-8.
                body=json.dumps(body, separators=(",", ":")).encode(),
                headers=request_headers,
                timeout=DeadlineTimeout(
                    connect=self.connect_timeout, read=self.read_timeout, deadline=self.deadline, clock=self.clock
                ),
                retries=retries,
                redirect=False,
            )
        except (MaxRetryError, HTTPError) as error:
            raise unreachable(error.reason if isinstance(error, MaxRetryError) else error) from error
        return response


def rate_limit(headers: Mapping[str, str]) -> tuple[int | None, int | None, float | None]:
    """Gainsight's own limit, as its answer states it (`x-ratelimit-limit`, `-remaining`, `-reset`,
    as its Timeline API documents; also the IETF draft's `100, 100;w=60` form): each None when the
    answer does not say."""

    def number(name: str) -> float | None:
        match = _LEADING_NUMBER.match(str(headers.get(name) or ""))
        return float(match.group(1)) if match else None

    limit, remaining = number("x-ratelimit-limit"), number("x-ratelimit-remaining")
    return (
        int(limit) if limit is not None else None,
        int(remaining) if remaining is not None else None,
        number("x-ratelimit-reset"),
    )


_LEADING_NUMBER = re.compile(r"\s*(\d+(?:\.\d+)?)")


def budget_exhausted() -> GainsightError:
    return GainsightError(
        "time budget ran out before this call could be made", status_code=504, retryable=True, code="budget_exhausted"
    )


def reserve_kept() -> GainsightError:
    """The call was not made: what is left of the day's budget is kept for people and companies."""
    return GainsightError(
        "what is left of the day's Gainsight budget is kept for identify and group events (StateReservePercent)",
        status_code=429,
        retryable=True,
        code="budget_reserve",
    )


def quota_spent() -> GainsightError:
    """The call was not made: the tenant's budget has no room for it now. Never the event's fault."""
    return GainsightError(
        "the tenant's Gainsight budget has no room for this call now", status_code=429, retryable=True, code="quota"
    )


def unreachable(reason: BaseException | None) -> GainsightError:
    """Name why no answer came, so an operator knows where to look: DNS, a refused connection, a timeout."""
    if isinstance(reason, QuotaSpent):
        return quota_spent()
    if isinstance(reason, DeadlineReached):
        return budget_exhausted()
    name = type(reason).__name__
    # Checked before timeouts: urllib3's NewConnectionError subclasses ConnectTimeoutError.
    if isinstance(reason, NameResolutionError):
        return GainsightError(
            f"Gainsight's host name could not be resolved ({name}); check the domain setting",
            status_code=502,
            retryable=True,
            code="dns",
        )
    if isinstance(reason, NewConnectionError) and isinstance(reason.__cause__, ConnectionRefusedError):
        return GainsightError(
            f"Gainsight refused the connection ({name})", status_code=502, retryable=True, code="connection_refused"
        )
    if isinstance(reason, TimeoutError) and not isinstance(reason, NewConnectionError):
        return GainsightError(f"Gainsight timed out ({name})", status_code=504, retryable=True, code="timeout")
    return GainsightError(
        f"Gainsight could not be reached ({name})", status_code=502, retryable=True, code="connection"
    )


def _activity_error(result: Mapping[str, Any]) -> GainsightError | None:
    """One activity's answer: None when it is in Gainsight, else why it was refused."""
    if result.get("success") is not False:
        return None
    errors = [e for e in result.get("errors") or [] if isinstance(e, dict)]
    first = errors[0] if errors else {}
    code = first.get("errorCode") if isinstance(first.get("errorCode"), str) else None
    detail = f"{code}: {first.get('errorDesc')}" if code and first.get("errorDesc") else str(code or "refused")
    return GainsightError(
        f"Gainsight refused the Timeline activity ({detail})", status_code=400, retryable=False, code=code
    )


def _means_absent(status: int, reply: Mapping[str, Any]) -> bool:
    # Gainsight says "no match" in several ways; every one of them means "not found".
    if reply.get("errorCode") in NOT_FOUND_CODES:
        return status in (200, 400, 404)
    return status == 200 and reply.get("result") is False


def _json(data: bytes) -> Mapping[str, Any]:
    try:
        value = json.loads(data) if data else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _records(reply: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    data = reply.get("data")
    records = data.get("records") if isinstance(data, dict) else data
    return [r for r in records if isinstance(r, dict)] if isinstance(records, list) else []
