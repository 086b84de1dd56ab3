"""When Gainsight cannot be reached, the error says why: a refused connection, a host name that
does not resolve, or a timeout. Each stays retryable. Nothing outside loopback is ever contacted:
name resolution fails at the socket layer (outside_connections)."""

from __future__ import annotations

import socket
import time

import pytest

from config import Destination
from devtools.gainsight_sandbox import Sandbox
from devtools.local import demo_config, seed_parameters
from errors import GainsightError
from gainsight import Gainsight, pool
from tests.helpers import identify, post


def _closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _upsert(base_url: str) -> GainsightError:
    gainsight = Gainsight(
        Destination(base_url=base_url, access_key="key"), deadline=time.monotonic() + 5, http=pool(2), max_retries=0
    )
    with pytest.raises(GainsightError) as raised:
        gainsight.upsert_person({"Email": "ada@example.com"})
    return raised.value


def test_a_refused_connection_is_named_as_such() -> None:
    # Given nothing listening where the domain points
    # When a call is made
    error = _upsert(f"http://127.0.0.1:{_closed_port()}")
    # Then the error says the connection was refused (not a timeout), and may be retried
    assert error.message == "Gainsight refused the connection (NewConnectionError)"
    assert (error.code, error.status_code, error.retryable) == ("connection_refused", 502, True)


def test_a_host_name_that_does_not_resolve_is_named_as_such(outside_connections) -> None:
    # Given a Gainsight host whose name cannot be resolved (refused at getaddrinfo)
    # When a call is made
    error = _upsert("https://acme.gainsightcloud.com")
    # Then the error says the name did not resolve, and may be retried
    assert (
        error.message == "Gainsight's host name could not be resolved (NameResolutionError); check the domain setting"
    )
    assert (error.code, error.status_code, error.retryable) == ("dns", 502, True)
    assert outside_connections == [("getaddrinfo", "acme.gainsightcloud.com")]  # looked up, never reached


def test_an_unresolvable_domain_is_named_to_the_sender(sandbox: Sandbox, outside_connections, monkeypatch) -> None:
    # Given the domain's host name does not resolve
    monkeypatch.setenv("GAINSIGHT_MAX_RETRIES", "0")
    seed_parameters(sandbox.url, config=demo_config("acme.gainsightcloud.com"))
    # When an event arrives
    reply = post("/v1/identify", identify())
    # Then it is kept for retry, with the reason named
    assert reply.outcomes == ["deferred"]
    assert reply.body["results"][0]["error"] == (
        "queued for retry: Gainsight's host name could not be resolved (NameResolutionError); check the domain setting"
    )
    assert {host for _, host in outside_connections} == {"acme.gainsightcloud.com"}


def test_a_refused_connection_is_named_to_the_sender(sandbox: Sandbox, monkeypatch) -> None:
    # Given a domain where nothing listens
    monkeypatch.setenv("GAINSIGHT_MAX_RETRIES", "0")
    seed_parameters(sandbox.url, config=demo_config(f"http://127.0.0.1:{_closed_port()}"))
    # When an event arrives
    reply = post("/v1/identify", identify())
    # Then it is kept for retry, with the reason named
    assert reply.outcomes == ["deferred"]
    assert (
        reply.body["results"][0]["error"] == "queued for retry: Gainsight refused the connection (NewConnectionError)"
    )
