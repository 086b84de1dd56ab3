"""`make smoke`: against `make local-stack` (LOCAL=1) one identify and one mapped track go through
the API with the stack's own write key; each outcome is one line, a deferred one is confirmed in
the event table, and anything neither delivered nor deferred fails with its reason."""

from __future__ import annotations

import json
import re

from devtools import smoke
from devtools.local import DEMO_WRITE_KEY, PARAMS, demo_config
from devtools.local_stack import HOST_CONFIG_PARAM
from tests.local_stack_process import RunningStack, run_tool


def run_smoke(*argv: str) -> tuple[int, list[str]]:
    return run_tool(smoke, *argv)


def test_an_identify_and_a_mapped_track_are_delivered(local: RunningStack) -> None:
    # When make smoke LOCAL=1 runs against a healthy local stack
    status, lines = run_smoke(*local.args, "--email", "smoke@initech.example")
    # Then both events are delivered, one line each, and the stack is said to work
    assert status == 0, lines
    assert re.fullmatch(r"✓ identify smoke-[0-9a-f-]{36}: delivered", lines[1]), lines
    assert re.fullmatch(r"✓ track smoke-[0-9a-f-]{36}: delivered", lines[2]), lines
    assert lines[-1] == "The stack works: every event was delivered or deferred (the local stack)."
    # and Gainsight has the Person and the event; the write key was never printed
    state = local.sandbox("/_sandbox/state")
    assert [p["Email"] for p in state["people"]] == ["smoke@initech.example"]
    assert len(state["events"]) == 1
    assert DEMO_WRITE_KEY not in "\n".join(lines)


def test_a_deferred_event_is_confirmed_in_the_event_table(local: RunningStack) -> None:
    # Given Gainsight failing every Person upsert
    local.sandbox("/_sandbox/faults", {"scripted": [{"status": 503, "operation": "person_upsert", "times": 50}]})
    # When make smoke runs
    status, lines = run_smoke(*local.args)
    # Then the identify is deferred, found parked in the table, and the line says how to follow it
    assert status == 0, lines
    [line] = [line for line in lines if line.startswith("✓ identify")]
    message_id = line.split()[2].rstrip(":")
    assert line == (
        f"✓ identify {message_id}: deferred (queued for retry: Gainsight GU_1101: Oops, something went wrong.); "
        f"parked in gainsight-destination-events: make events LOCAL=1 ID={message_id}"
    )


def test_a_rejected_event_fails_the_smoke_test_with_its_reason(local: RunningStack) -> None:
    local.sandbox("/_sandbox/faults", {"scripted": [{"status": 400, "operation": "person_upsert", "times": 5}]})
    status, lines = run_smoke(*local.args)
    assert status == 1
    [line] = [line for line in lines if "identify" in line and line.startswith("✗")]
    assert line.endswith(": rejected: Gainsight GU_1101: Oops, something went wrong.")
    assert lines[-1] == "1 event neither delivered nor deferred: see the reason above."


def test_a_write_key_the_api_refuses_is_said_so(local: RunningStack) -> None:
    # Given the API has read its write keys (it keeps them up to five minutes), and then the
    # SecureString was changed to a key it does not know yet
    assert local.post("/v1/batch", {"batch": []})[0] != 401  # the keys were read: the key was accepted
    local.client("ssm").put_parameter(Name=PARAMS["WRITE_KEYS_PARAM"], Type="SecureString", Value="k2", Overwrite=True)
    status, lines = run_smoke(*local.args)
    assert status == 1
    assert lines[-1] == (
        f"✗ the API refused the write key from {PARAMS['WRITE_KEYS_PARAM']} (401: write key is missing or not valid)"
    )
    assert "k2" not in "\n".join(lines)


def test_without_a_mapped_track_only_the_identify_is_sent(local: RunningStack) -> None:
    config = demo_config(f"http://127.0.0.1:{local.sandbox_port}") | {"eventNameMap": [], "timelineMap": []}
    local.client("ssm").put_parameter(Name=HOST_CONFIG_PARAM, Type="String", Value=json.dumps(config), Overwrite=True)
    status, lines = run_smoke(*local.args)
    assert status == 0, lines
    assert "· no track event: the config maps none (eventNameMap with an eventVersionMap entry)" in lines
    assert [line.split()[1] for line in lines if line.startswith("✓")] == ["identify"]


def test_an_api_that_does_not_answer_is_one_sentence(local: RunningStack) -> None:
    status, lines = run_smoke(*local.args[:-1], "1")  # API port 1: nothing listens there
    assert status == 1
    assert lines[-1].startswith("✗ the API at http://127.0.0.1:1 could not be reached (")
