"""A destination config that cannot be got wrong silently: unknown keys and domains with a path
are refused, naming what is wrong, instead of being ignored or turned into 404s."""

from __future__ import annotations

import json

import pytest

from config import CONFIG_KEYS, base_url, parse_destination
from errors import ConfigurationError


def _refusal(config: dict) -> str:
    with pytest.raises(ConfigurationError) as raised:
        parse_destination(json.dumps({"domain": "acme.gainsightcloud.com", **config}), "key", None)
    return raised.value.message


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("eventNameMaps", "unknown destination config key eventNameMaps (did you mean eventNameMap?)"),
        ("personmap", "unknown destination config key personmap (did you mean personMap?)"),
        ("TENANTID", "unknown destination config key TENANTID (did you mean tenantId?)"),
        ("tennantId", "unknown destination config key tennantId (did you mean tenantId?)"),
    ],
)
def test_a_misspelt_key_is_refused_with_the_closest_known_one(key, message) -> None:
    # Given a config whose mapping key has a typo
    # When it is parsed
    # Then it is refused, suggesting the key that was meant
    assert _refusal({key: [{"from": "a", "to": "b"}]}) == message


def test_an_unrelated_key_is_refused_listing_the_known_ones() -> None:
    message = _refusal({"someOtherRudderStackSetting": True})
    assert message.startswith("unknown destination config key someOtherRudderStackSetting (known keys: ")
    assert all(key in message for key in CONFIG_KEYS)


@pytest.mark.parametrize("value", ["a-real-key", "", None])
def test_a_secret_key_is_refused_even_when_empty(value) -> None:
    # The specific message tells the operator where the secret belongs instead.
    message = _refusal({"accessKey": value})
    assert message.startswith("destination config key accessKey must not hold a secret")
    assert "a-real-key" not in message


def test_every_known_key_is_accepted() -> None:
    # Given a config that uses every known key
    config = {key: [] for key in CONFIG_KEYS} | {
        "domain": "acme.gainsightcloud.com",
        "tenantId": "t",
        "topicName": "p",
        "contractId": "c",
        "eventFilteringOption": "blacklistedEvents",
    }
    # Then it parses
    assert parse_destination(json.dumps(config), "key", None).tenant_id == "t"


@pytest.mark.parametrize(
    ("domain", "message"),
    [
        (
            "https://cs.acme.example:8443/gainsight",
            "domain https://cs.acme.example:8443 must not have a path; give only https://host[:port]",
        ),
        ("acme.gainsightcloud.com/v1.0", "domain https://acme.gainsightcloud.com must not have a path"),
        ("https://acme.gainsightcloud.com?token=abc", "domain https://acme.gainsightcloud.com must not have a query"),
        ("https://acme.gainsightcloud.com/#top", "domain https://acme.gainsightcloud.com must not have a fragment"),
        ("https://acme.gainsightcloud.com/x?y#z", "must not have a path or a query or a fragment"),
    ],
)
def test_a_domain_with_a_path_query_or_fragment_is_refused(domain, message) -> None:
    # Given a domain with something after the host (every API path is appended to it)
    # When it is parsed
    with pytest.raises(ConfigurationError) as raised:
        base_url(domain)
    # Then it is refused, and what follows the host is not echoed
    assert message in raised.value.message
    assert "token=abc" not in raised.value.message


def test_a_trailing_slash_is_not_a_path() -> None:
    assert base_url("https://acme.gainsightcloud.com/") == "https://acme.gainsightcloud.com"
