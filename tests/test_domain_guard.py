"""The secrets only ever go to Gainsight: `domain` lives in a plain String parameter, so it may
only name Gainsight's own hosts, a host the stack's environment allow-lists, or (for local runs)
loopback. Every refusal happens when the config is parsed, before any name is resolved."""

from __future__ import annotations

import json

import pytest

from config import base_url, parse_destination
from devtools.gainsight_sandbox import Sandbox
from devtools.local import demo_config, seed_parameters
from errors import ConfigurationError
from settings import parse_settings
from tests.helpers import identify, post, track

REQUIRED_ENV = {
    "DESTINATION_CONFIG_PARAM": "/c",
    "ACCESS_KEY_PARAM": "/a",
    "WRITE_KEYS_PARAM": "/w",
    "EVENT_TABLE": "events",
}


def _refusal(domain: str, **policy) -> str:
    with pytest.raises(ConfigurationError) as raised:
        base_url(domain, **policy)
    return raised.value.message


@pytest.mark.parametrize(
    ("domain", "message"),
    [
        ("https://169.254.169.254", "domain https://169.254.169.254 is a link-local address"),
        ("169.254.169.254", "domain https://169.254.169.254 is a link-local address"),
        ("0xa9fea9fe", "domain https://0xa9fea9fe is a link-local address"),  # the metadata IP, spelt in hex
        ("https://[::ffff:169.254.169.254]", "domain https://[::ffff:169.254.169.254] is a link-local address"),
        ("https://[fe80::1]", "domain https://[fe80::1] is a link-local address"),
        ("https://10.0.0.5", "domain https://10.0.0.5 is a private or reserved address"),
        ("https://172.16.3.4:8443", "domain https://172.16.3.4:8443 is a private or reserved address"),
        ("192.168.1.1", "domain https://192.168.1.1 is a private or reserved address"),
        ("https://[fd00::1]", "domain https://[fd00::1] is a private or reserved address"),
        ("https://0.0.0.0", "domain https://0.0.0.0 is a private or reserved address"),
        ("https://[2606:4700::1111]", "domain https://[2606:4700::1111] is an IP address"),
        ("https://1.1.1.1", "domain https://1.1.1.1 is an IP address"),
    ],
)
def test_ip_addresses_are_refused(outside_connections, domain, message) -> None:
    # Given a domain that is an IP address (metadata, private, IPv6, public)
    # When it is parsed, even with the address allow-listed and loopback enabled
    refusal = _refusal(domain, allowed_hosts=frozenset({domain.split("://")[-1]}), allow_loopback=True)
    # Then it is refused, naming the domain, and nothing was resolved or connected to
    assert refusal.startswith(message)
    assert refusal.endswith("the access key is only sent to a Gainsight host name")
    assert outside_connections == []


@pytest.mark.parametrize(
    "domain",
    [
        "acme.gainsightcloud.com.evil.example",
        "https://acme.gainsightcloud.com.evil.example",
        "evilgainsightcloud.com",
        "gainsightcloud.com",
        "acme.gainsightcloud.co",
        "cs.acme.example",
        "https://cs.acme.example:8443",
    ],
)
def test_hosts_outside_gainsight_are_refused_unless_allow_listed(outside_connections, domain) -> None:
    # Given a host that only looks like Gainsight's, or a custom domain nobody allow-listed
    # When it is parsed
    refusal = _refusal(domain)
    # Then it is refused, saying where a custom domain must be named
    shown = domain if "://" in domain else f"https://{domain}"
    assert refusal == (
        f"domain {shown} is not a Gainsight host (*.gainsightcloud.com); a custom domain must also be named"
        " in the stack's GAINSIGHT_ALLOWED_HOSTS"
    )
    assert outside_connections == []


@pytest.mark.parametrize(
    ("domain", "allowed", "expected"),
    [
        ("cs.acme.example", {"cs.acme.example"}, "https://cs.acme.example"),
        ("https://CS.Acme.Example:443/", {"cs.acme.example"}, "https://CS.Acme.Example:443"),
        ("https://cs.acme.example:8443", {"cs.acme.example:8443"}, "https://cs.acme.example:8443"),
    ],
)
def test_an_allow_listed_custom_domain_is_accepted(outside_connections, domain, allowed, expected) -> None:
    assert base_url(domain, allowed_hosts=frozenset(allowed)) == expected
    assert outside_connections == []


def test_an_allow_listed_host_does_not_allow_its_other_ports() -> None:
    assert "GAINSIGHT_ALLOWED_HOSTS" in _refusal("https://cs.acme.example:8443", allowed_hosts={"cs.acme.example"})


def test_an_allow_listed_host_still_needs_https() -> None:
    assert "must use https" in _refusal("http://cs.acme.example", allowed_hosts={"cs.acme.example"})


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("acme.gainsightcloud.com", "https://acme.gainsightcloud.com"),
        ("acme.eu.gainsightcloud.com", "https://acme.eu.gainsightcloud.com"),
        ("https://acme.us2.gainsightcloud.com", "https://acme.us2.gainsightcloud.com"),
        ("ACME.GainsightCloud.com", "https://ACME.GainsightCloud.com"),
    ],
)
def test_gainsight_hosts_regional_ones_included_are_accepted(outside_connections, domain, expected) -> None:
    assert base_url(domain) == expected
    assert outside_connections == []


@pytest.mark.parametrize(
    "domain", ["http://127.0.0.1:8900", "http://localhost:8900", "http://[::1]:8900", "http://127.8.9.1", "2130706433"]
)
def test_loopback_is_only_for_local_runs(outside_connections, domain) -> None:
    # Given a loopback domain (the sandbox), however spelt
    # When local runs are enabled, it is accepted
    assert base_url(domain, allow_loopback=True)
    # When they are not, it is refused, saying how to enable them
    assert _refusal(domain).endswith("is a loopback host, allowed only for local runs (ALLOW_LOOPBACK_GAINSIGHT=true)")
    assert outside_connections == []


def test_a_refusal_never_echoes_the_secrets() -> None:
    with pytest.raises(ConfigurationError) as raised:
        parse_destination(json.dumps({"domain": "https://169.254.169.254"}), "s3cret-access-key", "s3cret-shared")
    assert "s3cret" not in raised.value.message


def test_the_allow_list_and_the_loopback_flag_come_from_the_environment() -> None:
    # Given the stack's environment
    env = REQUIRED_ENV | {
        "GAINSIGHT_ALLOWED_HOSTS": " CS.acme.example, api.acme.example:8443 ,,x.io:443",
        "ALLOW_LOOPBACK_GAINSIGHT": "TRUE",
    }
    # When it is parsed
    settings = parse_settings(env)
    # Then hosts are normalised (lower case, :443 dropped) and the flag read
    assert settings.gainsight_allowed_hosts == {"cs.acme.example", "api.acme.example:8443", "x.io"}
    assert settings.allow_loopback_gainsight is True
    assert parse_settings(REQUIRED_ENV).gainsight_allowed_hosts == frozenset()
    assert parse_settings(REQUIRED_ENV).allow_loopback_gainsight is False


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"GAINSIGHT_ALLOWED_HOSTS": "https://cs.acme.example"},
            "GAINSIGHT_ALLOWED_HOSTS entry 'https://cs.acme.example'",
        ),
        ({"GAINSIGHT_ALLOWED_HOSTS": "*.acme.example"}, "GAINSIGHT_ALLOWED_HOSTS entry '*.acme.example'"),
        ({"ALLOW_LOOPBACK_GAINSIGHT": "sometimes"}, "ALLOW_LOOPBACK_GAINSIGHT must be true or false"),
    ],
)
def test_a_bad_allow_list_or_flag_is_refused_naming_it(env, message) -> None:
    with pytest.raises(ConfigurationError) as raised:
        parse_settings(REQUIRED_ENV | env)
    assert raised.value.message.startswith(message)


# -- through lambda_handler ---------------------------------------------------------


def test_a_config_pointing_at_the_metadata_service_parks_events_and_connects_nowhere(
    sandbox: Sandbox, outside_connections
) -> None:
    # Given someone pointed the destination at the instance metadata service
    seed_parameters(sandbox.url, config=demo_config("https://169.254.169.254"))
    # When a batch arrives
    reply = post("/v1/batch", {"batch": [identify(), track()]})
    # Then the events are kept until the configuration is fixed, naming the refused domain
    assert reply.status == 200
    assert reply.outcomes == ["deferred", "deferred"]
    assert all("domain https://169.254.169.254 is a link-local address" in r["error"] for r in reply.body["results"])
    # And nothing outside loopback (moto, the sandbox) was resolved or connected to
    assert outside_connections == []
    assert sandbox.state.count() == 0


def test_the_sandbox_is_refused_when_local_runs_are_not_enabled(
    sandbox: Sandbox, outside_connections, monkeypatch
) -> None:
    # Given a deployed stack (no ALLOW_LOOPBACK_GAINSIGHT) whose domain points at loopback
    monkeypatch.setenv("ALLOW_LOOPBACK_GAINSIGHT", "false")
    # When an event arrives
    reply = post("/v1/identify", identify())
    # Then nothing reaches the loopback server
    assert reply.outcomes == ["deferred"]
    assert "is a loopback host, allowed only for local runs" in reply.body["results"][0]["error"]
    assert sandbox.state.count() == 0
    assert outside_connections == []


def test_an_allow_listed_custom_domain_is_called(sandbox: Sandbox, outside_connections, monkeypatch) -> None:
    # Given a custom domain that the stack's environment allow-lists
    monkeypatch.setenv("GAINSIGHT_ALLOWED_HOSTS", "cs.acme.example")
    monkeypatch.setenv("GAINSIGHT_MAX_RETRIES", "0")
    seed_parameters(sandbox.url, config=demo_config("cs.acme.example"))
    # When an event arrives
    reply = post("/v1/identify", identify())
    # Then the guard let it through: the name was looked up (and, in tests, refused at the socket)
    assert reply.outcomes == ["deferred"]
    assert {host for _, host in outside_connections} == {"cs.acme.example"}
