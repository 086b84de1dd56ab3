"""`make events`: against `make local-stack` (LOCAL=1), events sent through its API are found by
their messageId in the state the store holds them, listed newest first with paging, and their
payload (personal data) shown only when asked."""

from __future__ import annotations

import os
import uuid

from devtools import events
from tests.local_stack_process import RunningStack, run_tool


def run_events(*argv: str) -> tuple[int, list[str]]:
    return run_tool(events, *argv)


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_a_deferred_event_is_found_parked_with_its_reason_and_no_payload(local: RunningStack) -> None:
    # Given an identify that Gainsight answered 503 to, every time: the API defers it
    local.sandbox("/_sandbox/faults", {"scripted": [{"status": 503, "operation": "person_upsert", "times": 50}]})
    message_id = fresh("m-deferred")
    identify = {"type": "identify", "messageId": message_id, "userId": "u-7", "traits": {"email": "ada@example.com"}}
    status, answer = local.post("/v1/batch", {"batch": [identify]})
    assert (status, answer["results"][0]["outcome"]) == (200, "deferred"), answer
    # When make events ID=<messageId> looks it up
    code, lines = run_events(*local.args, "--id", message_id)
    # Then it says parked, with its type, arrival, attempts, next try, reason and code
    assert code == 0
    assert lines[0] == f"{message_id}: parked: waiting to be delivered; the drain tries it again when due"
    assert lines[1] == "  type: identify"
    assert lines[2].startswith("  arrived: 20") and lines[2].endswith("Z")
    assert lines[3] == "  attempts: 0"
    assert lines[4] == "  next try: due now (the drain runs every minute)"
    assert lines[5] == "  last reason: Gainsight GU_1101: Oops, something went wrong."
    assert lines[6] == "  code: GU_1101"
    # and the payload, personal data, is not shown unless asked
    assert "ada@example.com" not in "\n".join(lines)
    _, shown = run_events(*local.args, "--id", message_id, "--show")
    assert "  payload:" in shown
    assert any(line.strip() == '"email": "ada@example.com"' for line in shown)


def test_a_delivered_track_event_is_found_while_its_record_lives(local: RunningStack) -> None:
    message_id = fresh("m-track")
    track = {"type": "track", "messageId": message_id, "event": "Ticket Closed", "userId": "u-1", "properties": {}}
    _, answer = local.post("/v1/batch", {"batch": [track]})
    assert answer["results"][0]["outcome"] == "delivered", answer
    code, lines = run_events(*local.args, "--id", message_id)
    assert code == 0
    assert lines[0].startswith(f"{message_id}: delivered: Gainsight has it")
    assert "  type: not kept once delivered" in lines


def test_an_unknown_message_id_says_why_there_may_be_no_record(local: RunningStack) -> None:
    code, lines = run_events(*local.args, "--id", "never-sent")
    assert code == 1
    assert lines[0].startswith("No record of 'never-sent' in gainsight-destination-events: it was never accepted here")


def test_rejected_events_are_listed_newest_first_a_page_at_a_time(local: RunningStack) -> None:
    # Given three track events whose names have no mapping, sent one after another (each is rejected and kept)
    sent = []
    for n in range(3):
        message_id = fresh(f"m-unmapped-{n}")
        track = {"type": "track", "messageId": message_id, "event": f"Unmapped {n}", "userId": "u-2", "properties": {}}
        _, answer = local.post("/v1/batch", {"batch": [track]})
        assert answer["results"][0]["outcome"] == "rejected", answer
        sent.append(message_id)
    # When the first page of two is listed
    code, lines = run_events(*local.args, "--state", "rejected", "--code", "no_event_name_mapping", "--limit", "2")
    # Then the newest two come first, with their code and reason, and the command for the next page
    assert code == 0
    assert lines[0] == "2 rejected events, newest first, code no_event_name_mapping:"
    assert [sent[2] in lines[1], sent[1] in lines[2]] == [True, True], lines
    assert "no_event_name_mapping: Event name mapping not provided for Unmapped 2" in lines[1]
    more = lines[-1]
    assert more.startswith("More: make events LOCAL=1 STATE=rejected CODE=no_event_name_mapping BEFORE=")
    # and the next page holds the oldest, and no further page
    before = more.rsplit("BEFORE=", 1)[1]
    _, page = run_events(*local.args, "--state", "rejected", "--limit", "2", "--before", before)
    assert page[0] == "1 rejected event, newest first:"
    assert sent[0] in page[1]
    assert not page[-1].startswith("More:")
    # and another code lists none of them
    _, none = run_events(*local.args, "--state", "rejected", "--code", "unsupported_type")
    assert none == ["0 rejected events, newest first, code unsupported_type:"]


def test_since_leaves_out_older_events(local: RunningStack) -> None:
    track = {"type": "track", "messageId": fresh("m-old"), "event": "Unmapped", "userId": "u-3", "properties": {}}
    _, answer = local.post("/v1/batch", {"batch": [track]})
    assert answer["results"][0]["outcome"] == "rejected"
    # (listed without --since: it is there to leave out)
    _, everything = run_events(*local.args, "--state", "rejected")
    assert any(track["messageId"] in line for line in everything)
    _, lines = run_events(*local.args, "--state", "rejected", "--since", "2999-01-01T00:00:00Z")
    assert lines == ["0 rejected events, newest first, since 2999-01-01T00:00:00Z:"]


def test_next_try_is_told_from_the_clock_it_is_given() -> None:
    assert events.next_try(1_000_600.0, now=1_000_000.0) == "1970-01-12T13:56:40Z (in 10 min)"
    assert events.next_try(1_000_000.0, now=1_000_030.0) == "due now (the drain runs every minute)"


def test_without_a_region_it_says_what_to_set(monkeypatch, tmp_path, outside_connections) -> None:
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    code, lines = run_events("--env", "dev", "--id", "m-1")
    assert code == 1
    assert lines == [
        "✗ reading the stack gainsight-destination-dev: no AWS region: set AWS_DEFAULT_REGION (export "
        "AWS_DEFAULT_REGION=eu-west-1) or your profile's region (aws configure set region eu-west-1 --profile <name>)"
    ]
    assert outside_connections == []
