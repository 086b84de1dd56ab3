"""config/destination.schema.json and the parser (handler/config.py) agree: a config an editor
marks valid is one the function accepts, and one it marks invalid the function refuses, for
every key the parser accepts."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from config import CONFIG_KEYS, parse_destination
from errors import ConfigurationError

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "config" / "destination.schema.json").read_text())
VALIDATOR = Draft202012Validator(SCHEMA)
BASE: dict[str, Any] = {"domain": "acme.gainsightcloud.com"}
ACTIVITY = {
    "eventName": "Seats Added",
    "activityType": "Update",
    "subject": "{{seats}} seats",
    "author": "c@example.com",
}


ROLLUP = {"eventName": "Feature Used", "window": "1h", "to": {"eventName": "feature_usage", "eventVersion": "1.0"}}


def _with(**keys: Any) -> dict[str, Any]:
    return {**copy.deepcopy(BASE), **keys}


VALID = {
    "only the domain": BASE,
    "the example config": json.loads((ROOT / "config" / "destination.example.json").read_text()),
    "a full base URL": {"domain": "https://acme.eu.gainsightcloud.com"},
    "ids as numbers or null": _with(tenantId=123, topicName=None, contractId=""),
    "maps with an empty row": _with(eventNameMap=[{"from": "A", "to": "a"}, {"from": "", "to": None}, {}]),
    "numbers in a map": _with(personMap=[{"from": "age", "to": 7}]),
    "null maps": _with(eventVersionMap=None, companyMap=None, companyPersonMap=None),
    "filtering disabled": _with(eventFilteringOption="disable", whitelistedEvents=[{"eventName": ""}]),
    "a whitelist": _with(eventFilteringOption="whitelistedEvents", whitelistedEvents=[{"eventName": "A"}, {}]),
    "a blacklist": _with(eventFilteringOption="blacklistedEvents", blacklistedEvents=[{"eventName": "B"}]),
    "a company key from groupId": _with(companyKey={"field": "ExternalId__gc"}),
    "a company key from a trait": _with(companyKey={"field": "SfdcAccountId", "from": "traits.accountId"}),
    "the Name company key, spelt out": _with(companyKey={"field": "Name", "from": "traits.name"}),
    "no company key": _with(companyKey=None),
    "an activity": _with(timelineMap=[ACTIVITY]),
    "an activity with every key": _with(
        eventNameMap=[{"from": "Seats Added", "to": "seats"}],
        eventVersionMap=[{"from": "Seats Added", "to": "1"}],
        timelineMap=[ACTIVITY | {"notes": "n", "companyProperty": "accountId", "eventsFramework": True}],
    ),
    "an empty activity row": _with(timelineMap=[{"eventName": "", "author": None}]),
    "a rollup": _with(rollupMap=[ROLLUP]),
    "a rollup with every key": _with(rollupMap=[ROLLUP | {"by": "company", "sum": ["d"], "distinct": ["f"]}]),
    "no rollups": _with(rollupMap=None),
}

INVALID = {
    "no domain": {"tenantId": "t"},
    "an empty domain": {"domain": ""},
    "a blank domain": {"domain": "   "},
    "a misspelt key": _with(eventNameMaps=[]),
    "a secret": _with(accessKey="k"),
    "the shared secret": _with(sharedSecret="s"),
    "not an object": [BASE],
    "a boolean id": _with(tenantId=True),
    "an object as id": _with(topicName={"a": 1}),
    "a map that is not a list": _with(personMap={"from": "a", "to": "b"}),
    "a map row that is not an object": _with(companyMap=["region"]),
    "a map row with one side": _with(eventNameMap=[{"from": "A", "to": ""}]),
    "a map row with a blank side": _with(eventNameMap=[{"from": " ", "to": "a"}]),
    "a map row with a boolean": _with(personMap=[{"from": "a", "to": True}]),
    "an unknown filtering option": _with(eventFilteringOption="allow"),
    "a whitelist that is not a list": _with(eventFilteringOption="whitelistedEvents", whitelistedEvents={"x": 1}),
    "a blacklisted name that is not a string": _with(
        eventFilteringOption="blacklistedEvents", blacklistedEvents=[{"eventName": 5}]
    ),
    "a company key that is not an object": _with(companyKey="ExternalId__gc"),
    "a company key without its field": _with(companyKey={"from": "groupId"}),
    "a company key field with a space": _with(companyKey={"field": "External Id"}),
    "a company key with an unknown key": _with(companyKey={"field": "X", "form": "groupId"}),
    "a company key from elsewhere": _with(companyKey={"field": "X", "from": "properties.x"}),
    "a company key from an empty trait": _with(companyKey={"field": "X", "from": "traits. "}),
    "the Name key from groupId": _with(companyKey={"field": "Name", "from": "groupId"}),
    "a timeline that is not a list": _with(timelineMap=ACTIVITY),
    "an activity that is not an object": _with(timelineMap=["Seats Added"]),
    "an activity without a subject": _with(timelineMap=[{k: v for k, v in ACTIVITY.items() if k != "subject"}]),
    "an activity author that is not an email": _with(timelineMap=[ACTIVITY | {"author": "csm"}]),
    "an activity with an unknown key": _with(timelineMap=[ACTIVITY | {"date": "today"}]),
    "an activity with eventsFramework not a boolean": _with(timelineMap=[ACTIVITY | {"eventsFramework": "yes"}]),
    "an activity with blank notes": _with(timelineMap=[ACTIVITY | {"notes": " "}]),
    "a row with only eventsFramework false": _with(timelineMap=[{"eventsFramework": False}]),
    "a list as contract id": _with(contractId=["c"]),
    "a version row that is not an object": _with(eventVersionMap=[["Ticket Closed", "1.0"]]),
    "a company-person row with one side": _with(companyPersonMap=[{"from": "title"}]),
    "a rollup that is not a list": _with(rollupMap=ROLLUP),
    "a rollup without its window": _with(rollupMap=[{k: v for k, v in ROLLUP.items() if k != "window"}]),
    "a rollup window that does not divide a day": _with(rollupMap=[ROLLUP | {"window": "7m"}]),
    "a rollup by session": _with(rollupMap=[ROLLUP | {"by": "session"}]),
    "a rollup without its event version": _with(rollupMap=[ROLLUP | {"to": {"eventName": "x"}}]),
    "a rollup with an unknown key": _with(rollupMap=[ROLLUP | {"sums": ["d"]}]),
    "a rollup sum that is not a list": _with(rollupMap=[ROLLUP | {"sum": "d"}]),
    "a rollup without its event name": _with(rollupMap=[{k: v for k, v in ROLLUP.items() if k != "eventName"}]),
}


def _parser_accepts(config: Any) -> bool:
    try:
        parse_destination(json.dumps(config), "access-key", "shared-secret")
    except ConfigurationError:
        return False
    return True


def test_the_schema_is_a_2020_12_schema_of_every_key_the_parser_accepts() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(SCHEMA["properties"]) == CONFIG_KEYS | {"$schema"}
    assert SCHEMA["additionalProperties"] is False


def test_the_example_config_names_the_schema_and_the_parser_ignores_that() -> None:
    example_path = ROOT / "config" / "destination.example.json"
    example = json.loads(example_path.read_text())
    # an editor resolves $schema relative to the file (config/destination.json is a copy beside it)
    assert (example_path.parent / example["$schema"]).resolve() == ROOT / "config" / "destination.schema.json"
    assert _parser_accepts(example)


@pytest.mark.parametrize("name", VALID)
def test_a_config_the_schema_accepts_the_function_accepts(name: str) -> None:
    config = VALID[name]
    assert list(VALIDATOR.iter_errors(config)) == []
    assert _parser_accepts(config)


@pytest.mark.parametrize("name", INVALID)
def test_a_config_the_schema_refuses_the_function_refuses(name: str) -> None:
    config = INVALID[name]
    assert not VALIDATOR.is_valid(config)
    assert not _parser_accepts(config)


def test_every_key_appears_in_a_valid_and_an_invalid_example() -> None:
    def keys(examples: dict[str, Any]) -> set[str]:
        return {key for config in examples.values() if isinstance(config, dict) for key in config}

    assert keys(VALID) >= CONFIG_KEYS
    assert keys(INVALID) >= CONFIG_KEYS
