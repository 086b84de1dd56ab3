"""The local stack: a moto SSM server seeded with demo settings, the Gainsight sandbox, and a
Docker-free way to invoke the handler with API Gateway events as `sam local invoke` would."""

from __future__ import annotations

import base64
import copy
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HANDLER = ROOT / "handler"

DEMO_WRITE_KEY = "demo-write-key"
PARAMS = {
    "DESTINATION_CONFIG_PARAM": "/gainsight-destination/local/config",
    "ACCESS_KEY_PARAM": "/gainsight-destination/local/access-key",
    "SHARED_SECRET_PARAM": "/gainsight-destination/local/shared-secret",
    "WRITE_KEYS_PARAM": "/gainsight-destination/local/write-keys",
}
DEMO_EVENT_NAMES = [{"from": "Ticket Closed", "to": "ticket_closed"}, {"from": "Feature Used", "to": "feature_used"}]
DEMO_EVENT_VERSIONS = [{"from": "Ticket Closed", "to": "1.0"}, {"from": "Feature Used", "to": "2.1"}]
DEMO_TIMELINE = [
    {
        "eventName": "Seats Added",
        "activityType": "Update",
        "subject": "{{seats}} seats added",
        "notes": "{{seats}} seats added by {{email}} (plan {{plan}})",
        "author": "csm@example.com",
    }
]
# make run's companies are matched by their groupId, kept in an external id field.
DEMO_COMPANY_KEY = {"field": "ExternalId__gc", "from": "groupId"}


def demo_config(domain: str) -> dict[str, Any]:
    """RudderStack-style destination config pointing at the sandbox."""
    return {
        "domain": domain,
        "tenantId": "sandbox-tenant",
        "topicName": "product_usage",
        "contractId": "default-contract",
        "eventNameMap": DEMO_EVENT_NAMES,
        "eventVersionMap": DEMO_EVENT_VERSIONS,
        "personMap": [{"from": "plan", "to": "Plan__gc"}],
        "companyMap": [{"from": "region", "to": "Region__gc"}],
        "companyPersonMap": [{"from": "title", "to": "Title"}, {"from": "role", "to": "Role"}],
        "timelineMap": DEMO_TIMELINE,
    }


def use_handler_path() -> None:
    """Put handler/ first on sys.path, as Lambda does with CodeUri: handler/."""
    if str(HANDLER) not in sys.path:
        sys.path.insert(0, str(HANDLER))


@dataclass
class LambdaContext:
    """The attributes of a Lambda context that Powertools and the handler read."""

    function_name: str = "gainsight-destination-local"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:gainsight-destination-local"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    timeout_seconds: float = 30.0
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self._started)) * 1000))


def api_event(
    path: str,
    body: str | bytes | dict | None,
    *,
    write_key: str | None = DEMO_WRITE_KEY,
    headers: Mapping[str, str] | None = None,
    method: str = "POST",
    base64_body: bool = False,
    http_api: bool = False,
) -> dict[str, Any]:
    """An API Gateway proxy event (REST payload 1.0, or HTTP API payload 2.0)."""
    all_headers = {"Content-Type": "application/json"}
    if write_key is not None:
        all_headers["Authorization"] = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    all_headers.update(headers or {})
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    text: str | None
    if isinstance(raw, bytes) and (base64_body or not _is_text(raw)):
        text, encoded = base64.b64encode(raw).decode(), True
    else:
        text, encoded = (raw.decode() if isinstance(raw, bytes) else raw), False
    request_id = str(uuid.uuid4())
    if http_api:
        return {
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": path,
            "rawQueryString": "",
            "headers": {k.lower(): v for k, v in all_headers.items()},
            "requestContext": {"requestId": request_id, "http": {"method": method, "path": path}, "stage": "$default"},
            "body": text,
            "isBase64Encoded": encoded,
        }
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": all_headers,
        "multiValueHeaders": {k: [v] for k, v in all_headers.items()},
        "queryStringParameters": None,
        "requestContext": {"requestId": request_id, "resourcePath": path, "httpMethod": method, "stage": "v1"},
        "body": text,
        "isBase64Encoded": encoded,
    }


def _is_text(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def invoke(event: dict[str, Any], context: LambdaContext | None = None) -> dict[str, Any]:
    """Call the real lambda_handler in-process, as `sam local invoke -e event.json` would."""
    use_handler_path()
    from app import lambda_handler

    # Two functions in AWS: anything keyed on the function's name must not be shared by accident.
    os.environ["AWS_LAMBDA_FUNCTION_NAME"] = "gainsight-destination-api"
    return lambda_handler(event, context or LambdaContext())


def seed_parameters(
    domain: str,
    *,
    write_keys: str = DEMO_WRITE_KEY,
    access_key: str = "sandbox-access-key",
    shared_secret: str | None = "sandbox-shared-secret",
    config: dict[str, Any] | None = None,
) -> None:
    """Write the demo parameters into whatever SSM the environment points at (moto here)."""
    import boto3

    ssm = boto3.client("ssm")
    values = {
        "DESTINATION_CONFIG_PARAM": ("String", json.dumps(config or demo_config(domain))),
        "ACCESS_KEY_PARAM": ("SecureString", access_key),
        "WRITE_KEYS_PARAM": ("SecureString", write_keys),
    }
    if shared_secret is not None:
        values["SHARED_SECRET_PARAM"] = ("SecureString", shared_secret)
    for env_name, (kind, value) in values.items():
        ssm.put_parameter(Name=PARAMS[env_name], Type=kind, Value=value, Overwrite=True)


EVENT_TABLE = "gainsight-destination-events"


def create_resources() -> str:
    """The event store table, as template.yaml declares it; its name."""
    import boto3

    dynamodb: Any = boto3.client("dynamodb")
    if EVENT_TABLE not in dynamodb.list_tables()["TableNames"]:
        dynamodb.create_table(
            TableName=EVENT_TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": name, "AttributeType": "S"} for name in ("pk", "sk", "queue", "seq")
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "queue",
                    "KeySchema": [
                        {"AttributeName": "queue", "KeyType": "HASH"},
                        {"AttributeName": "seq", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
            BillingMode="PAY_PER_REQUEST",
        )
    os.environ["EVENT_TABLE"] = EVENT_TABLE
    return EVENT_TABLE


_simulated = {"runs": 0}  # drain runs simulated since the queue was last found empty


def reset_drain_clock() -> None:
    """The next simulated drain run is `hours_between` after now (see drain)."""
    _simulated["runs"] = 0


def drain(*, runs: int = 1, hours_between: float = 2.0) -> dict[str, int]:
    """Run the drain as its schedule would, `runs` times, each as if `hours_between` after the last
    (a clock moved forward), so every parked event is due again: the real schedule runs every
    minute and waits out each event's backoff (at most an hour). Once a run leaves nothing parked,
    the clock starts again from now: events parked later are not aged by runs before them."""
    use_handler_path()
    import dataclasses

    import drain as drain_module

    import ingest

    os.environ["AWS_LAMBDA_FUNCTION_NAME"] = "gainsight-destination-drain"
    totals: dict[str, int] = {}
    for _ in range(runs):
        _simulated["runs"] += 1
        offset = _simulated["runs"] * hours_between * 3600

        def later(offset: float = offset) -> float:
            return time.time() + offset

        report = drain_module.drain(60.0, clock=dataclasses.replace(ingest.clock, wall=later))
        settled = report.delivered + report.rejected + report.gave_up + report.expired
        if report.parked <= settled:
            reset_drain_clock()
        for key, value in vars(report).items():
            if isinstance(value, int):  # the counts (a time, like next_due, is not summed)
                totals[key] = totals.get(key, 0) + value
    return totals


LOCAL_ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "POWERTOOLS_SERVICE_NAME": "gainsight-destination",
    "POWERTOOLS_METRICS_NAMESPACE": "GainsightDestination",
    "AWS_READ_TIMEOUT_SECONDS": "10",  # moto serves one DynamoDB request at a time: slow under load
    # Local runs and tests are not limited by the tenant's budget unless they ask (tests/test_quota.py);
    # the sandbox enforces a quota only when told to.
    "QUOTA_PER_MINUTE": "100000",
    "ALLOW_LOOPBACK_GAINSIGHT": "true",  # the sandbox listens on 127.0.0.1; never set in the template
    **PARAMS,
}


@dataclass(frozen=True)
class LocalAws:
    endpoint: str
    table: str


@contextmanager
def moto_aws(*, host: str = "127.0.0.1", port: int = 0, own_process: bool = False) -> Iterator[LocalAws]:
    """A moto server for SSM and DynamoDB, on loopback unless told otherwise (make local-stack);
    AWS_ENDPOINT_URL points this process's boto3 at it. `own_process`: moto runs in a child
    process, on a core of its own (the load test), instead of competing for this one's GIL."""
    server = _moto_process(host, port) if own_process else _moto_thread(host, port)
    with server as listening, _pointed_at(f"http://127.0.0.1:{listening}") as local:
        yield local


@contextmanager
def _moto_thread(host: str, port: int) -> Iterator[int]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request access log
    isolate_moto_dynamodb()
    remember_moto_services()
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    try:
        yield server.get_host_and_port()[1]
    finally:
        server.stop()


@contextmanager
def _moto_process(host: str, port: int) -> Iterator[int]:
    import subprocess
    import urllib.request

    if not port:
        with socket.socket() as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
    child = subprocess.Popen(
        [sys.executable, "-c", f"from devtools.local import serve_moto; serve_moto({host!r}, {port})"],
        cwd=ROOT,
    )
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1).close()
                break
            except OSError:
                if child.poll() is not None:
                    raise RuntimeError("the moto server process exited") from None
                time.sleep(0.05)
        yield port
    finally:
        child.terminate()
        child.wait(timeout=10)


def serve_moto(host: str, port: int) -> None:
    """A moto server in this process until it is terminated (moto_aws(own_process=True))."""
    with _moto_thread(host, port):
        threading.Event().wait()


@contextmanager
def _pointed_at(endpoint: str) -> Iterator[LocalAws]:
    # EVENT_TABLE (create_resources) and AWS_LAMBDA_FUNCTION_NAME (invoke) are set later: put back too.
    with environment(LOCAL_ENV | {"AWS_ENDPOINT_URL": endpoint}, also=("EVENT_TABLE", "AWS_LAMBDA_FUNCTION_NAME")):
        yield LocalAws(endpoint, create_resources())


@contextmanager
def environment(values: Mapping[str, str], *, also: Iterable[str] = ()) -> Iterator[None]:
    """These variables in this process's environment, then every one of them (and `also`) as before."""
    previous = {key: os.environ.get(key) for key in [*values, *also]}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def isolate_moto_dynamodb() -> None:
    """One DynamoDB request at a time in moto, as DynamoDB isolates them, and transactions that undo
    only their own items. moto's backend is not thread-safe, and a transaction that fails puts back
    a copy of each whole table taken when it began: that wipes what concurrent requests wrote
    meanwhile (real DynamoDB never loses those), and copying a table of thousands of items for every
    transaction makes moto, not the code under test, what a load measures."""
    from moto.dynamodb import models
    from moto.dynamodb.responses import DynamoHandler

    if getattr(DynamoHandler.call_action, "isolated", False):
        return
    _one_request_at_a_time(DynamoHandler)
    _transactions_undo_their_own_items(models)


def _one_request_at_a_time(handler: Any) -> None:
    """A request holds the tables until its answer is known, not while moto writes the answer's JSON
    (most of a read's time): that is written from a copy while the next request goes on."""
    from moto.core.responses import ActionResult

    original, serialized = handler.call_action, handler.serialized
    lock = threading.Lock()
    holding = threading.local()

    def call_action(self: Any) -> Any:
        lock.acquire()
        holding.lock = True
        try:
            return original(self)
        finally:
            if holding.lock:
                holding.lock = False
                lock.release()

    def serialized_apart(self: Any, result: ActionResult) -> Any:
        if getattr(holding, "lock", False) and isinstance(result.result, dict):
            result = ActionResult(_detached(result.result))  # the items' attributes as they are now
            holding.lock = False
            lock.release()
        return serialized(self, result)

    call_action.isolated = True  # type: ignore[attr-defined]
    handler.serialized = serialized_apart
    handler.call_action = call_action


def _transactions_undo_their_own_items(models: Any) -> None:
    transact = models.DynamoDBBackend.transact_write_items
    undoing = threading.local()

    class TablesUncopied:
        """moto's own rollback copy of a table, while a transaction keeps its items' copies instead."""

        @staticmethod
        def deepcopy(value: Any) -> Any:
            if getattr(undoing, "active", False) and isinstance(value, models.Table):
                return value
            return copy.deepcopy(value)

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        before = []  # (table, hash, range, a copy of the item or None), as the transaction began
        for entry in transact_items:
            for kind, operation in entry.items():
                try:
                    table = self.get_table(operation["TableName"])
                    key = operation["Item"] if kind == "Put" else operation["Key"]
                    key = {name: key[name] for name in (table.hash_key_attr, table.range_key_attr) if name}
                    hash_key, range_key = self.get_keys_value(table, key)
                except Exception:  # moto refuses it itself, before anything is written
                    continue
                item = table.get_item(hash_key, range_key)
                before.append((table, hash_key, range_key, copy.deepcopy(item)))
        undoing.active = True
        try:
            transact(self, transact_items)
        except Exception:
            for table, hash_key, range_key, item in reversed(before):
                _put_back(table, hash_key, range_key, item)
            raise
        finally:
            undoing.active = False

    models.copy = TablesUncopied
    models.DynamoDBBackend.transact_write_items = transact_write_items


def _detached(value: Any) -> Any:
    """A copy of a moto answer's dicts and lists, sharing its values: a later write to one of its
    items sets or removes top-level attributes (moto assigns them anew), which the copy does not
    see. Our table is only ever updated at the top level; a nested update would change a shared
    value in place."""
    if isinstance(value, dict):
        return {key: _detached(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_detached(item) for item in value]
    return value


def remember_moto_services() -> None:
    """moto's server lists its package directory from disk and matches hundreds of URL patterns to
    find the service of every request: a tenth of its time under load. The answers never change
    while it runs, so it works each out once."""
    from moto import backends
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    if getattr(DomainDispatcherApplication.get_backend_for_host, "remembered", False):
        return
    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules
    find = DomainDispatcherApplication.get_backend_for_host
    found: dict[str | None, Any] = {}

    def get_backend_for_host(self: Any, host: str | None) -> Any:
        if host not in found:
            found[host] = find(self, host)
        return found[host]

    get_backend_for_host.remembered = True  # type: ignore[attr-defined]
    DomainDispatcherApplication.get_backend_for_host = get_backend_for_host  # type: ignore[method-assign]


def _put_back(table: Any, hash_key: Any, range_key: Any, item: Any) -> None:
    """One item of a moto table as it was (None: absent)."""
    if range_key is None:
        if item is None:
            table.items.pop(hash_key, None)
        else:
            table.items[hash_key] = item
        return
    if item is not None:
        table.items[hash_key][range_key] = item
        return
    table.items[hash_key].pop(range_key, None)
    if not table.items[hash_key]:
        del table.items[hash_key]


def quiet_powertools() -> None:
    """No JSON logs or EMF metrics: they are what CloudWatch gets, and VERBOSE=1 shows them."""
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    # Powertools prints its ColdStart metric whatever POWERTOOLS_METRICS_DISABLED says: this process
    # is the cold start, so it is marked as already past.
    from aws_lambda_powertools.metrics.provider import cold_start

    cold_start.is_cold_start = False
    # and it warns of an invocation that emitted no metric, which disabled metrics make every one.
    warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)
    # It also prints the set whenever 100 values of one metric pile up, metrics disabled or not.
    from aws_lambda_powertools.metrics.provider.cloudwatch_emf import cloudwatch

    cloudwatch.MAX_METRICS = sys.maxsize
