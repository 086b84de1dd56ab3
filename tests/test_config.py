"""Configuration parsing: the destination JSON and the environment, each bad key named."""

from __future__ import annotations

import json

import pytest

from config import base_url, parse_destination
from errors import ConfigurationError
from settings import parse_settings

REQUIRED_ENV = {
    "DESTINATION_CONFIG_PARAM": "/c",
    "ACCESS_KEY_PARAM": "/a",
    "WRITE_KEYS_PARAM": "/w",
    "EVENT_TABLE": "events",
}


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("acme.gainsightcloud.com", "https://acme.gainsightcloud.com"),
        ("  acme.eu.gainsightcloud.com ", "https://acme.eu.gainsightcloud.com"),
        ("https://acme.us2.gainsightcloud.com/", "https://acme.us2.gainsightcloud.com"),
        ("http://127.0.0.1:8900", "http://127.0.0.1:8900"),
        ("http://localhost:8900", "http://localhost:8900"),
        ("http://[::1]:8900", "http://[::1]:8900"),
    ],
)
def test_domain_is_a_host_or_a_base_url(domain, expected) -> None:
    assert base_url(domain, allow_loopback=True) == expected


@pytest.mark.parametrize(
    "domain",
    [
        "http://acme.gainsightcloud.com",
        "ftp://acme.gainsightcloud.com",
        "https://user:pw@acme.gainsightcloud.com",
        "acme.gainsightcloud.com/path",
        "https://acme.gainsightcloud.com/?q=1",
        "",
    ],
)
def test_bad_domains_are_refused(domain) -> None:
    with pytest.raises(ConfigurationError) as raised:
        base_url(domain)
    assert "domain" in raised.value.message


@pytest.mark.parametrize(
    "domain", ["https://user:s3cret@acme.gainsightcloud.com", "user:s3cret@acme.gainsightcloud.com"]
)
def test_a_domain_with_credentials_is_refused_without_echoing_them(domain) -> None:
    with pytest.raises(ConfigurationError) as raised:
        base_url(domain)
    assert "s3cret" not in raised.value.message
    assert raised.value.message == "domain must not contain credentials (user:password@)"


def test_rudderstack_config_is_parsed() -> None:
    raw = json.dumps(
        {
            "domain": "acme.gainsightcloud.com",
            "tenantId": "t-1",
            "topicName": "usage",
            "contractId": "",
            "eventNameMap": [{"from": "Ticket Closed", "to": "ticket_closed"}, {"from": "", "to": ""}],
            "eventVersionMap": [{"from": "Ticket Closed", "to": 1.0}],
            "personMap": [{"from": "age", "to": "age__gc"}],
            "companyMap": [],
        }
    )
    destination = parse_destination(raw, " access ", "shared")
    assert destination.base_url == "https://acme.gainsightcloud.com"
    assert (destination.tenant_id, destination.topic_name, destination.contract_id) == ("t-1", "usage", None)
    assert destination.event_names == {"ticket closed": "ticket_closed"}
    assert destination.event_versions == {"ticket closed": "1.0"}
    assert destination.person_map == (("age", "age__gc"),)
    assert destination.access_key == "access"
    assert "access" not in repr(destination) and "shared" not in repr(destination)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("not json", "destination config is not valid JSON"),
        ("[]", "destination config must be a JSON object"),
        ("{}", "destination config key domain is required"),
        (
            '{"domain": "a.gainsightcloud.com", "tenantId": {"x": 1}}',
            "destination config key tenantId must be a string",
        ),
        (
            '{"domain": "a.gainsightcloud.com", "personMap": {"from": "a"}}',
            "destination config key personMap must be a list",
        ),
        (
            '{"domain": "a.gainsightcloud.com", "companyMap": ["x"]}',
            "destination config key companyMap[0] must be an object",
        ),
        (
            '{"domain": "a.gainsightcloud.com", "eventVersionMap": [{"from": "A", "to": ""}]}',
            "destination config key eventVersionMap[0].to must be a non-empty",
        ),
        (
            '{"domain": "a.gainsightcloud.com", "sharedSecret": "s"}',
            "destination config key sharedSecret must not hold a secret",
        ),
    ],
)
def test_bad_destination_config_names_the_key(raw, message) -> None:
    with pytest.raises(ConfigurationError) as raised:
        parse_destination(raw, "key", None)
    assert raised.value.message.startswith(message)


def test_empty_access_key_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="ACCESS_KEY_PARAM"):
        parse_destination('{"domain": "a.gainsightcloud.com"}', "  ", None)


def test_settings_defaults() -> None:
    settings = parse_settings(REQUIRED_ENV)
    assert settings.shared_secret_param is None
    assert (settings.delivery_budget_seconds, settings.concurrency, settings.max_retries) == (8.0, 8, 3)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ACCESS_KEY_PARAM": "/a", "WRITE_KEYS_PARAM": "/w"}, "DESTINATION_CONFIG_PARAM is not set"),
        (REQUIRED_ENV | {"WRITE_KEYS_PARAM": " "}, "WRITE_KEYS_PARAM is not set"),
        (REQUIRED_ENV | {"GAINSIGHT_CONCURRENCY": "many"}, "GAINSIGHT_CONCURRENCY must be a number"),
        (REQUIRED_ENV | {"DELIVERY_BUDGET_SECONDS": "0"}, "DELIVERY_BUDGET_SECONDS must be at least 1"),
    ],
)
def test_bad_settings_name_the_variable(env, message) -> None:
    with pytest.raises(ConfigurationError) as raised:
        parse_settings(env)
    assert raised.value.message.startswith(message)
