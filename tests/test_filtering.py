"""RudderStack's event filtering (eventFilteringOption): low-value track events stay out of the quota."""

from __future__ import annotations

import json

import pytest

from config import parse_destination
from devtools.gainsight_sandbox import Fault, Sandbox
from devtools.local import drain
from errors import ConfigurationError
from tests.helpers import configure, identify, post, stored, track


def test_a_blacklisted_track_event_is_filtered_and_costs_no_call(sandbox: Sandbox) -> None:
    # Given "Feature Used" blacklisted
    configure(sandbox, eventFilteringOption="blacklistedEvents", blacklistedEvents=[{"eventName": "Feature Used"}])
    # When it arrives with an allowed track and an identify
    reply = post(
        "/v1/batch",
        {"batch": [track("Feature Used", message_id="f"), track("Ticket Closed", message_id="t"), identify()]},
    )
    # Then it has its own outcome, names the reason, and Gainsight never sees it
    assert reply.status == 200
    assert reply.outcomes == ["filtered", "delivered", "delivered"]
    assert reply.body["results"][0]["error"] == "event Feature Used is filtered out by eventFilteringOption"
    assert sandbox.state.count("event_publish") == 1


def test_only_whitelisted_track_events_go_out(sandbox: Sandbox) -> None:
    configure(sandbox, eventFilteringOption="whitelistedEvents", whitelistedEvents=[{"eventName": "Ticket Closed"}, {}])
    reply = post(
        "/v1/batch", {"batch": [track("Feature Used", message_id="f"), track("Ticket Closed", message_id="t")]}
    )
    assert reply.outcomes == ["filtered", "delivered"]
    assert [e["eventName"] for e in sandbox.state.snapshot()["events"]] == ["ticket_closed"]


def test_a_parked_event_filtered_since_is_kept_as_rejected_not_sent(sandbox: Sandbox) -> None:
    # Given a track parked while Gainsight was down
    sandbox.fail(Fault(status=503, operation="event_publish", times=4))
    assert post("/v1/track", track("Feature Used", message_id="f")).outcomes == ["deferred"]
    # When the operator blacklists it before the drain runs
    configure(sandbox, eventFilteringOption="blacklistedEvents", blacklistedEvents=[{"eventName": "Feature Used"}])
    drain()
    # Then it is not published, and is kept (replayable) with the reason
    assert sandbox.state.count("event_publish") == 4
    assert [s.code for s in stored("rejected")] == ["filtered"]
    assert stored() == []


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"eventFilteringOption": "allowlist"}, "eventFilteringOption must be one of disable, whitelistedEvents"),
        (
            {"eventFilteringOption": "whitelistedEvents", "whitelistedEvents": "Order"},
            "whitelistedEvents must be a list",
        ),
        (
            {"eventFilteringOption": "blacklistedEvents", "blacklistedEvents": [{"eventName": 3}]},
            "blacklistedEvents[0].eventName must be a non-empty string",
        ),
    ],
)
def test_bad_filtering_settings_are_refused_naming_the_key(keys, message) -> None:
    config = json.dumps({"domain": "acme.gainsightcloud.com"} | keys)
    with pytest.raises(ConfigurationError) as raised:
        parse_destination(config, "key", "secret")
    assert message in raised.value.message
