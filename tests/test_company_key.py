"""The company match key (companyKey): companies found, written, cached and linked by a field of
the configuration's choice instead of Name, so a renamed company stays one company."""

from __future__ import annotations

import json
from typing import Any

import pytest

from config import CompanyKey, Destination, parse_destination
from devtools.gainsight_sandbox import Sandbox
from errors import ConfigurationError
from record import entities_of
from tests.conftest import clear_caches
from tests.helpers import configure, group, post

EXTERNAL_ID = {"field": "ExternalId__gc", "from": "groupId"}


def account(name: str, account_id: str | None, message_id: str, **traits: Any) -> dict[str, Any]:
    """A group event naming the company `name`, its groupId the account's id."""
    return group(name, message_id=message_id, **traits) | {"groupId": account_id}


def companies(sandbox: Sandbox) -> list[dict[str, Any]]:
    return sandbox.state.snapshot()["companies"]


# -- through lambda_handler against the sandbox -----------------------------------------


def test_a_company_renamed_between_two_batches_stays_one_company_renamed(sandbox: Sandbox) -> None:
    # Given companies matched by an external id taken from the group event's groupId
    configure(sandbox, companyKey=EXTERNAL_ID)
    assert post("/v1/group", account("Acme", "acct-1", "g1", stage="Onboarding")).outcomes == ["delivered"]
    # When the next batch, from a cold container (no Gsid cached), sends the account under a new name
    clear_caches()
    reply = post("/v1/group", account("Acme Inc", "acct-1", "g2", stage="Adoption"))
    # Then it is the same company, renamed, and the person is linked to it once
    assert reply.outcomes == ["delivered"]
    [company] = companies(sandbox)
    assert (company["Name"], company["ExternalId__gc"], company["Stage"]) == ("Acme Inc", "acct-1", "Adoption")
    [person] = sandbox.state.snapshot()["people"]
    assert person["companies"] == [company["Gsid"]]
    lookup = next(c.body for c in sandbox.state.calls if c.operation == "company_query")
    assert lookup["where"]["conditions"][0]["name"] == "ExternalId__gc"


def test_a_rename_in_a_warm_container_updates_by_the_key(sandbox: Sandbox) -> None:
    # Given the company written once (its Gsid cached by the warm container)
    configure(sandbox, companyKey=EXTERNAL_ID)
    post("/v1/group", account("Acme", "acct-1", "g1"))
    # When it is renamed, and a second account takes its old name
    reply = post("/v1/batch", {"batch": [account("Acme Inc", "acct-1", "g2"), account("Acme", "acct-2", "g3")]})
    # Then there are two companies, each under its own key, and no further lookup was needed for the first
    assert reply.outcomes == ["delivered", "delivered"]
    assert sorted((c["ExternalId__gc"], c["Name"]) for c in companies(sandbox)) == [
        ("acct-1", "Acme Inc"),
        ("acct-2", "Acme"),
    ]
    assert sandbox.state.count("company_update") == 1


def test_under_the_name_key_a_rename_is_a_new_company(sandbox: Sandbox) -> None:
    # Given the default (Name): what the key exists to avoid
    post("/v1/group", account("Acme", "acct-1", "g1"))
    post("/v1/group", account("Acme Inc", "acct-1", "g2"))
    assert sorted(c["Name"] for c in companies(sandbox)) == ["Acme", "Acme Inc"]


def test_a_group_event_without_the_key_is_rejected_naming_it(sandbox: Sandbox) -> None:
    # Given companies matched by their Salesforce account id, from a trait
    configure(sandbox, companyKey={"field": "SfdcAccountId", "from": "traits.accountId"})
    # When one group event carries it and one does not
    batch = [account("Acme", "acme", "g1", accountId="0015g00000XyZ"), account("Initech", "initech", "g2")]
    reply = post("/v1/batch", {"batch": batch})
    # Then only the one without it is rejected, and the reason names the key and where it is read
    assert reply.outcomes == ["delivered", "rejected"]
    assert (
        reply.body["results"][1]["error"] == "company key SfdcAccountId is required for group (from traits.accountId)"
    )
    assert [(c["Name"], c["SfdcAccountId"]) for c in companies(sandbox)] == [("Acme", "0015g00000XyZ")]


def test_a_refused_company_under_the_key_rejects_only_its_event(sandbox: Sandbox) -> None:
    # Given three new accounts in one insert, one with a date Gainsight refuses
    configure(sandbox, companyKey=EXTERNAL_ID)
    batch = [
        account("Acme", "acct-1", "g1", email="a@x.io"),
        account("Initech", "acct-2", "g2", email="b@x.io", renewalDate="next spring"),
        account("Globex", "acct-3", "g3", email="c@x.io"),
    ]
    # When they are posted
    reply = post("/v1/batch", {"batch": batch})
    # Then the insert is split until only the bad record is left: only its event is rejected
    assert reply.outcomes == ["delivered", "rejected", "delivered"]
    assert "GSOBJ_1006" in reply.body["results"][1]["error"]
    assert sorted(c["ExternalId__gc"] for c in companies(sandbox)) == ["acct-1", "acct-3"]


# -- ordering (pure) ---------------------------------------------------------------------


def test_group_events_of_one_account_share_its_entity_whatever_their_names() -> None:
    destination = Destination("https://acme.gainsightcloud.com", "key", company_key=CompanyKey("ExternalId__gc", None))
    before, after = account("Acme", "acct-1", "g1"), account("Acme Inc", "acct-1", "g2")
    assert "company:acct-1" in entities_of(before, destination)
    assert "company:acct-1" in entities_of(after, destination)
    # Without a configured key (or when the destination cannot be read), the name, as before
    assert "company:Acme" in entities_of(before)


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, CompanyKey()),
        ({"field": "Name"}, CompanyKey()),
        ({"field": "ExternalId__gc"}, CompanyKey("ExternalId__gc", None)),
        ({"field": "SfdcAccountId", "from": "traits.accountId"}, CompanyKey("SfdcAccountId", "accountId")),
    ],
)
def test_the_company_key_setting(value, expected) -> None:
    config = {"domain": "acme.gainsightcloud.com", "companyKey": value}
    assert parse_destination(json.dumps(config), "key", None).company_key == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("ExternalId__gc", "companyKey must be an object"),
        ({"field": "External Id"}, "companyKey.field must be a Gainsight field name"),
        ({"field": "Id&keys=Name"}, "companyKey.field must be a Gainsight field name"),
        ({"field": "ExternalId__gc", "from": "context.groupId"}, "companyKey.from must be groupId or traits.<name>"),
        ({"field": "Name", "from": "groupId"}, "companyKey.from must be traits.name when field is Name"),
        ({"field": "ExternalId__gc", "source": "groupId"}, "companyKey.source is not known"),
    ],
)
def test_a_bad_company_key_is_refused_naming_it(value, message) -> None:
    config = json.dumps({"domain": "acme.gainsightcloud.com", "companyKey": value})
    with pytest.raises(ConfigurationError) as raised:
        parse_destination(config, "key", None)
    assert message in raised.value.message
