"""What the README and docs/ state that could drift is checked against what it describes: the
alarms against template.yaml, the environment table against the settings parser, MaxAttempts'
duration against the backoff, the sample events against events/. A user reading the README
gets the facts the code has today."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from errors import ConfigurationError
from settings import Settings, parse_settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DOCS = {path.name: path.read_text() for path in sorted((ROOT / "docs").glob("*.md"))}
EVERYWHERE = README + "".join(DOCS.values())
NUMBER_WORDS = dict(
    zip(
        ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"),
        range(1, 13),
        strict=True,
    )
)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    from cfnlint.decode import decode

    parsed, matches = decode(str(ROOT / "template.yaml"))
    assert not matches, matches
    return parsed


# -- the first screen and the map ---------------------------------------------------------------


def test_the_first_screen_says_what_it_is_how_to_run_deploy_and_send() -> None:
    first_screen = "\n".join(README.splitlines()[:60])
    assert "```mermaid" in first_screen  # senders -> API Gateway -> function -> Gainsight
    for step in ("make doctor ENV=dev", "make deploy ENV=dev ALARM_EMAIL=", "make smoke ENV=dev", "curl "):
        assert step in first_screen, step
    # the deploy is at most five numbered steps
    deploy = first_screen[first_screen.index("**Deploy**") :]
    steps = re.findall(r"^# (\d+)\. ", deploy, flags=re.MULTILINE)
    assert steps == [str(n) for n in range(1, len(steps) + 1)] and 3 <= len(steps) <= 5
    # and the table of contents follows it
    assert README.index("## Contents") > len(first_screen) - 200


def test_the_readme_is_a_map_under_300_lines_linking_the_depth() -> None:
    assert len(README.splitlines()) < 300
    for topic in ("delivery", "quota", "durability", "benchmark", "loadtest"):
        assert f"(docs/{topic}.md" in README, topic


# -- alarms -------------------------------------------------------------------------------------


def test_the_alarm_table_lists_exactly_the_templates_alarms(template) -> None:
    # Given the alarms template.yaml creates
    alarms = {name for name, r in template["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    # Then the README's alarm table lists exactly those
    shown = set(re.findall(r"^\| `(\w+Alarm)` \|", README, flags=re.MULTILINE))
    assert shown == alarms
    # and every count of them, in words or digits, says how many there are
    counts = [c for c in re.findall(r"\b(\w+) alarms\b", EVERYWHERE) if c.isdigit() or c.lower() in NUMBER_WORDS]
    assert counts, "no alarm count written"
    assert {int(c) if c.isdigit() else NUMBER_WORDS[c.lower()] for c in counts} == {len(alarms)}


def test_every_alarm_name_mentioned_is_one_the_stack_creates(template) -> None:
    names = {
        r["Properties"]["AlarmName"]["Fn::Sub"].replace("${AWS::StackName}", "<stack>")
        for r in template["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    }
    mentioned = set(re.findall(r"<stack>-[A-Za-z]+", EVERYWHERE))
    assert mentioned and mentioned <= names, mentioned - names


# -- the environment table -----------------------------------------------------------------------


class _ReadLog(dict):
    """An environment that records which variables the parser reads, in order."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.read: list[str] = []

    def get(self, key: Any, default: Any = None) -> Any:
        self.read.append(key)
        return super().get(key, default)


def _parser_variables() -> tuple[dict[str, str], list[str], Settings]:
    """The variables handler/settings.py reads, the required ones, and the settings with only those set."""
    required: dict[str, str] = {}
    for _ in range(100):
        env = _ReadLog(dict(required))
        try:
            settings = parse_settings(env)
        except ConfigurationError:
            # the variable read last is the one it refused: a required one, unset
            required[env.read[-1]] = f"value-of-{env.read[-1]}"
            continue
        return required, list(dict.fromkeys(env.read)), settings
    raise AssertionError("the settings parser never accepted an environment")


def _field_of(name: str, required: dict[str, str], base: Settings) -> str:
    """The Settings field a variable sets: the one that changes when it is set."""
    for value in ("7777", "7", "true", "cs.acme.example"):
        try:
            changed = parse_settings({**required, name: value})
        except ConfigurationError:
            continue
        fields = [f.name for f in dataclasses.fields(Settings) if getattr(changed, f.name) != getattr(base, f.name)]
        if len(fields) == 1:
            return fields[0]
    raise AssertionError(f"no field found for {name}")


def _shown_default(value: object) -> str:
    if value is None:
        return "optional"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, frozenset):
        return ", ".join(sorted(value)) or "none"
    assert isinstance(value, int | float)
    return f"{value:g}"


def _documented_defaults() -> dict[str, str]:
    """The README's environment table: variable -> default as written."""
    section = README[README.index("| environment variable |") :]
    section = section[: section.index("\n\n")]
    documented = {}
    for row in section.splitlines()[2:]:
        names_cell, _, default_cell = (cell.strip() for cell in row.strip("|").split(" | "))
        names = re.findall(r"`([A-Z0-9_]+)`", names_cell)
        defaults = re.findall(r"`([^`]+)`", default_cell) or [default_cell.split(" ")[0]] * len(names)
        assert len(defaults) == len(names), row
        documented.update(zip(names, defaults, strict=True))
    return documented


def test_the_environment_table_names_every_setting_with_the_parsers_default() -> None:
    # Given what the settings parser reads, and what it uses when each is unset
    required, read, base = _parser_variables()
    expected = {
        name: "required" if name in required else _shown_default(getattr(base, _field_of(name, required, base)))
        for name in read
    }
    # Then the README's table has exactly those variables, each with that default
    assert _documented_defaults() == expected


# -- MaxAttempts --------------------------------------------------------------------------------


def test_max_attempts_duration_is_what_the_backoff_adds_up_to(template) -> None:
    from drain import _backoff

    # Given the default settings: an event is given up at its MaxAttempts-th failure
    _, _, settings = _parser_variables()
    retries = range(1, settings.max_attempts)
    hours = sum(_backoff(attempt, settings) for attempt in retries) / 3600
    # Then the docs and the template's parameter say how many attempts, over about that long
    stated = re.search(r"`MaxAttempts` \((\d+), about (\d+) hours\)", DOCS["durability.md"])
    assert stated, "docs/durability.md no longer states MaxAttempts' duration"
    assert int(stated[1]) == settings.max_attempts == template["Parameters"]["MaxAttempts"]["Default"]
    assert int(stated[2]) == round(hours)
    described = re.search(r"about (\d+) hours", template["Parameters"]["MaxAttempts"]["Description"])
    assert described and int(described[1]) == round(hours)


# -- configuration keys and sample events --------------------------------------------------------


def test_the_templates_config_parameter_names_every_key_the_parser_accepts(template) -> None:
    from config import CONFIG_KEYS

    description = template["Parameters"]["DestinationConfig"]["Description"]
    named = set(re.findall(r"\w+", description))
    assert not CONFIG_KEYS - named, CONFIG_KEYS - named


def test_every_sample_event_is_listed() -> None:
    listed = DOCS["local.md"]
    for path in sorted((ROOT / "events").glob("*.json")):
        assert f"`{path.stem}`" in listed, path.name
    assert "`events/drain/schedule.json`" in listed


def test_the_duplicate_bound_a_death_can_cause_is_the_default_concurrency() -> None:
    default = _parser_variables()[2].concurrency
    stated = re.findall(r"`GAINSIGHT_CONCURRENCY` \((\d+)\)", EVERYWHERE)
    assert stated and {int(n) for n in stated} == {default}


def test_the_readmes_budget_policy_states_the_stacks_defaults(template) -> None:
    # Given the stack's defaults for the day's budget, the state reserve and the telemetry age limit
    defaults = {name: template["Parameters"][name]["Default"] for name in
                ("GainsightCallsPerDay", "StateReservePercent", "TelemetryMaxAgeHours")}  # fmt: skip
    text = " ".join(README.split())
    # Then the README's policy paragraph states those, and its rollup arithmetic holds
    assert f"about {defaults['GainsightCallsPerDay']:,} Gainsight calls a day" in text
    assert f"the last {defaults['StateReservePercent']} % of the day's calls" in text
    assert f"after {defaults['TelemetryMaxAgeHours']} hours (`TelemetryMaxAgeHours`)" in text
    assert f"more than {defaults['TelemetryMaxAgeHours']} hours of track events" in text
    calls = 1_000_000 // 20  # at most one call per user-hour
    assert f"1,000,000 a day at 20 a user-hour fit in {calls:,} calls" in text
    assert calls <= defaults["GainsightCallsPerDay"]
