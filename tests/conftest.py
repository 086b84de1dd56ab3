"""Shared fixtures: one moto SSM server and one Gainsight sandbox per session, both on loopback;
every test starts from an empty sandbox, freshly seeded parameters and cleared caches."""

from __future__ import annotations

import io
import ipaddress
import logging
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from devtools.gainsight_sandbox import Sandbox
from devtools.local import (
    EVENT_TABLE,
    LOCAL_ENV,
    LocalAws,
    moto_aws,
    reset_drain_clock,
    seed_parameters,
    use_handler_path,
)

# Powertools reads these when the handler modules are imported, before any fixture runs.
for _name in ("POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"):
    os.environ.setdefault(_name, LOCAL_ENV[_name])
# The Gainsight sandbox listens on 127.0.0.1, which only local runs may send the secrets to.
os.environ.setdefault("ALLOW_LOOPBACK_GAINSIGHT", LOCAL_ENV.get("ALLOW_LOOPBACK_GAINSIGHT", "true"))
use_handler_path()

import ingest  # noqa: E402
import parameters_store  # noqa: E402
from observability import metrics  # noqa: E402
from settings import settings  # noqa: E402
from tests.helpers import FakeClock  # noqa: E402
from tests.local_stack_process import RunningStack, local_stack  # noqa: E402


@pytest.fixture(scope="session")
def aws() -> Iterator[LocalAws]:
    """moto on loopback: SSM and the event store table."""
    with moto_aws() as local:
        yield local


def empty_aws() -> None:
    import boto3

    dynamodb = boto3.client("dynamodb")
    for item in dynamodb.scan(TableName=EVENT_TABLE, ProjectionExpression="pk, sk")["Items"]:
        dynamodb.delete_item(TableName=EVENT_TABLE, Key=item)


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[Sandbox]:
    with Sandbox() as server:
        yield server


def clear_caches() -> None:
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()
    settings.cache_clear()
    parameters_store._destination.cache_clear()
    metrics.clear_metrics()
    if ingest._container is not None:
        ingest._container.executor.shutdown(wait=False, cancel_futures=True)
        ingest._container = None  # a fresh container: no company Gsids remembered


@pytest.fixture
def sandbox(sandbox_server: Sandbox, aws: LocalAws) -> Iterator[Sandbox]:
    """The Gainsight sandbox, empty, with the demo destination config pointing at it, and an empty
    event store."""
    sandbox_server.state.reset()
    empty_aws()
    reset_drain_clock()  # this test's drain runs are not aged by an earlier test's
    seed_parameters(sandbox_server.url)
    clear_caches()
    yield sandbox_server
    clear_caches()


@pytest.fixture
def fake_clock(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """Request budgets, Gainsight's backoff, the store's and the company cache on a clock that
    moves only when the code waits: no test waits for real, none depends on the machine's speed."""
    fake = FakeClock()
    assert ingest._container is None  # cleared by `sandbox`: the next container is built on this clock
    monkeypatch.setattr(ingest, "clock", fake.clock)
    return fake


@pytest.fixture(scope="session")
def local_stack_server() -> Iterator[RunningStack]:
    """`make local-stack` as a child process on loopback and free ports, once for the session."""
    with local_stack() as running:
        yield running


@pytest.fixture
def local(local_stack_server: RunningStack) -> Iterator[RunningStack]:
    """The local stack with an empty event table and a well-behaved sandbox; its SSM parameters put
    back after the test."""
    local_stack_server.empty_event_table()
    local_stack_server.sandbox("/_sandbox/reset", {})
    with local_stack_server.parameters_restored():
        yield local_stack_server


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """Everything the Powertools logger writes during the test, formatted as in CloudWatch."""
    from observability import logger

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    logger._logger.addHandler(handler)
    yield stream
    logger._logger.removeHandler(handler)


def _is_loopback(host: Any) -> bool:
    if host is None:  # getaddrinfo(None, port): a server binding, not a destination
        return True
    name = (host.decode() if isinstance(host, bytes) else str(host)).strip("[]").partition("%")[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@pytest.fixture
def outside_connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every attempt to resolve or connect to anything but loopback, refused and recorded as
    (what, host). moto and the Gainsight sandbox are on 127.0.0.1, so they still work."""
    attempts: list[tuple[str, str]] = []
    real_getaddrinfo, real_create_connection = socket.getaddrinfo, socket.create_connection
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def refuse(what: str, host: Any) -> None:
        attempts.append((what, str(host)))

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_loopback(host):
            refuse("getaddrinfo", host)
            raise socket.gaierror(socket.EAI_NONAME, f"tests resolve no outside name ({host})")
        return real_getaddrinfo(host, *args, **kwargs)

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_loopback(address[0]):
            refuse("create_connection", address[0])
            raise ConnectionRefusedError(f"tests connect to no outside host ({address[0]})")
        return real_create_connection(address, *args, **kwargs)

    def guarded(real: Any, what: str) -> Any:
        def connect(self: socket.socket, address: Any) -> Any:
            if isinstance(address, tuple) and not _is_loopback(address[0]):
                refuse(what, address[0])
                raise ConnectionRefusedError(f"tests connect to no outside host ({address[0]})")
            return real(self, address)

        return connect

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    monkeypatch.setattr(socket.socket, "connect", guarded(real_connect, "connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", guarded(real_connect_ex, "connect_ex"))
    return attempts
