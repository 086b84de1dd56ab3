"""Configuration parsing is total: whatever JSON value any key holds, the parser answers with a
Destination or a ConfigurationError that names the key, never a crash (a crash answered every
request 503 with a traceback and failed every drain run) and never the value (it may hold a token)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config import CONFIG_KEYS, parse_destination
from errors import ConfigurationError

SECRET = "tok3n-in-a-query"
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
# Hosts a person may really type: brackets, fullwidth # / and https, ports out of range, a token.
domains = (
    st.sampled_from(
        [
            "acme[.gainsightcloud.com",
            "acme].gainsightcloud.com",
            "acme.gainsightcloud.com\uff03x",
            "acme.gainsightcloud.com\uff0fx",
            "https://[::1",
            "https://acme.gainsightcloud.com:99999",
            "https://acme.gainsightcloud.com:-1",
            f"https://acme.gainsightcloud.com/?token={SECRET}",
            "acme.gainsightcloud.com\u3002",
            "\uff48\uff54\uff54\uff50\uff53://acme.gainsightcloud.com",
        ]
    )
    | st.text()
)


def _parse(config: dict[str, Any]) -> None:
    try:
        parse_destination(json.dumps(config), "access-key", "shared-secret")
    except ConfigurationError as error:
        assert SECRET not in error.message
        assert error.message  # a sentence, naming what is wrong


@pytest.mark.parametrize("key", sorted(CONFIG_KEYS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=json_values)
def test_any_json_value_of_any_key_is_parsed_or_refused_with_a_configuration_error(key: str, value: Any) -> None:
    # Given a valid config with one key set to an arbitrary JSON value
    # When it is parsed
    # Then it is accepted, or refused with a ConfigurationError, nothing else
    _parse({"domain": "acme.gainsightcloud.com", key: value})


@settings(max_examples=200, deadline=None)
@given(domain=domains)
def test_any_domain_is_parsed_or_refused_with_a_configuration_error_that_does_not_echo_it(domain: str) -> None:
    _parse({"domain": domain})
