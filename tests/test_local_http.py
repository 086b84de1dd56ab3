"""Plain http to a non-loopback host: only a local run (ALLOW_LOOPBACK_GAINSIGHT=true) may use it, and
only for a host:port it names in GAINSIGHT_ALLOWED_HOSTS — the sandbox as a `sam local invoke`
container sees it (host.docker.internal). A deployed stack never sets the flag, so it stays https-only."""

from __future__ import annotations

import pytest

from config import base_url
from errors import ConfigurationError

SANDBOX = "http://host.docker.internal:4010"


def test_a_local_run_may_use_http_to_an_allow_listed_host_and_port(outside_connections) -> None:
    # Given a local run that names the sandbox's host and port
    allowed = frozenset({"host.docker.internal:4010"})
    # When the domain is parsed
    url = base_url(SANDBOX, allowed_hosts=allowed, allow_loopback=True)
    # Then plain http is accepted for it, without resolving anything
    assert url == SANDBOX
    assert outside_connections == []


@pytest.mark.parametrize(
    ("domain", "allowed", "allow_loopback"),
    [
        (SANDBOX, {"host.docker.internal:4010"}, False),  # a deployed stack: never
        (SANDBOX, {"host.docker.internal"}, True),  # the host without its port: https only
        ("http://host.docker.internal", {"host.docker.internal"}, True),  # no explicit port
        ("http://host.docker.internal:4011", {"host.docker.internal:4010"}, True),  # another port
        ("http://acme.gainsightcloud.com", set(), True),  # Gainsight itself: always https
        ("http://10.0.0.5:4010", {"10.0.0.5:4010"}, True),  # an address is refused before http is considered
    ],
)
def test_plain_http_is_refused_everywhere_else(domain, allowed, allow_loopback) -> None:
    with pytest.raises(ConfigurationError):
        base_url(domain, allowed_hosts=frozenset(allowed), allow_loopback=allow_loopback)
