"""The real senders: rudder-sdk-python and segment-analytics-python, pointed at the local API,
deliver identify, group and track into the Gainsight sandbox."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from rudderstack.analytics.client import Client as RudderClient
from segment.analytics.client import Client as SegmentClient
from segment.analytics.request import APIError

from devtools.gainsight_sandbox import Sandbox
from devtools.local import DEMO_WRITE_KEY
from devtools.serve import LocalApi


@pytest.fixture
def api(sandbox: Sandbox) -> Iterator[LocalApi]:
    with LocalApi(port=0) as local_api:
        yield local_api


def _send_all(client) -> list[Exception]:
    errors: list[Exception] = []
    client.on_error = lambda error, batch: errors.append(error)
    client.identify("user-1", {"email": "ada@example.com", "firstName": "Ada", "lastName": "Lovelace"})
    client.group("user-1", "acme", {"name": "Acme", "employees": 40}, context={"traits": {"email": "ada@example.com"}})
    client.track(
        "user-1",
        "Ticket Closed",
        {"ticketId": "T-7"},
        context={"externalId": [{"type": "gainsightEventContractId", "id": "c-1"}]},
    )
    client.flush()
    return errors


def _assert_delivered(sandbox: Sandbox) -> None:
    state = sandbox.state.snapshot()
    [person] = state["people"]
    [company] = state["companies"]
    [event] = state["events"]
    assert (person["Email"], person["Name"], person["companies"]) == (
        "ada@example.com",
        "Ada Lovelace",
        [company["Gsid"]],
    )
    assert (company["Name"], company["Employees"]) == ("Acme", 40)
    assert (event["eventName"], event["contractId"], event["body"]) == ("ticket_closed", "c-1", {"ticketId": "T-7"})


def test_rudderstack_python_sdk_delivers_with_basic_auth_and_gzip(api: LocalApi, sandbox: Sandbox) -> None:
    client = RudderClient(write_key=DEMO_WRITE_KEY, host=api.url, sync_mode=True, gzip=True, max_retries=1)
    assert _send_all(client) == []
    _assert_delivered(sandbox)


def test_segment_python_sdk_delivers_with_the_write_key_in_the_body(api: LocalApi, sandbox: Sandbox) -> None:
    client = SegmentClient(write_key=DEMO_WRITE_KEY, host=api.url, sync_mode=True, max_retries=1)
    assert _send_all(client) == []
    _assert_delivered(sandbox)


def test_a_wrong_write_key_is_reported_to_the_sdk(api: LocalApi, sandbox: Sandbox) -> None:
    client = SegmentClient(write_key="wrong", host=api.url, sync_mode=True, max_retries=1)
    with pytest.raises(APIError) as raised:
        _send_all(client)
    assert (raised.value.status, raised.value.code) == (401, "unauthorized")
    assert raised.value.message == "write key is missing or not valid"
    assert sandbox.state.count() == 0
