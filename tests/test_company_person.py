"""Company-person attributes (companyPersonMap): the person's fields on their company, set in the
People PUT's company link."""

from __future__ import annotations

from typing import Any

from delivery import person_body
from devtools.gainsight_sandbox import Sandbox
from mapping import CompanyUpsert, PersonUpsert
from tests.helpers import configure, group, identify, post

ROLES = [
    {"from": "role", "to": "Role"},
    {"from": "title", "to": "Title"},
    {"from": "primaryContact", "to": "PrimaryContact__gc"},
]


def person_links(sandbox: Sandbox) -> list[dict[str, Any]]:
    """The company links of the last People PUT."""
    return [c.body for c in sandbox.state.calls if c.operation == "person_upsert"][-1]["companies"]


def test_mapped_traits_become_the_persons_attributes_on_the_company(sandbox: Sandbox) -> None:
    # Given the person's role, title and primary-contact flag mapped to their company link
    configure(sandbox, companyPersonMap=ROLES)
    event = group("Acme", role="Admin", primaryContact=True)
    event["context"]["traits"] |= {"title": "CTO", "role": "Viewer"}
    # When a group event carries them (role in its traits and in context.traits, title in context.traits)
    reply = post("/v1/group", event)
    # Then the person is linked with them; the group event's own traits come first
    assert reply.outcomes == ["delivered"]
    [company] = sandbox.state.snapshot()["companies"]
    [person] = sandbox.state.snapshot()["people"]
    assert person["companyPerson"] == {company["Gsid"]: {"Role": "Admin", "Title": "CTO", "PrimaryContact__gc": True}}
    # and the company itself carries none of them
    assert "Role" not in company and "PrimaryContact__gc" not in company


def test_without_the_mapping_the_link_is_as_before(sandbox: Sandbox) -> None:
    configure(sandbox, companyPersonMap=[])
    reply = post("/v1/group", group("Acme", role="Admin"))
    assert reply.outcomes == ["delivered"]
    [company] = sandbox.state.snapshot()["companies"]
    assert person_links(sandbox) == [{"Company_ID": company["Gsid"]}]
    assert "companyPerson" not in sandbox.state.snapshot()["people"][0]


def test_an_attribute_gainsight_refuses_rejects_only_that_group_event(sandbox: Sandbox) -> None:
    # Given a mapping to a field the company-person object does not have
    configure(sandbox, companyPersonMap=[{"from": "rank", "to": "Rank"}])
    # When the person's identify and a group event carrying it arrive together
    reply = post("/v1/batch", {"batch": [identify(firstName="Ada"), group("Acme", rank=1)]})
    # Then the merged People PUT is refused, split, and only the group event is rejected
    assert reply.outcomes == ["delivered", "rejected"]
    assert "companies.Rank" in reply.body["results"][1]["error"]
    assert sandbox.state.snapshot()["people"][0]["FirstName"] == "Ada"


def test_links_to_one_company_merge_their_attributes_in_event_order() -> None:
    parts = [
        (0, PersonUpsert("ada@x.io", {"Email": "ada@x.io"})),
        (1, CompanyUpsert("Acme", {"Name": "Acme"}, "ada@x.io", link={"Role": "Viewer", "Title": "CTO"})),
        (2, CompanyUpsert("Acme", {"Name": "Acme"}, "ada@x.io", link={"Role": "Admin"})),
        (3, CompanyUpsert("Initech", {"Name": "Initech"}, "ada@x.io")),
    ]
    body = person_body("ada@x.io", parts, {"Acme": "G1", "Initech": "G2"})
    assert body["companies"] == [
        {"Company_ID": "G1", "Role": "Admin", "Title": "CTO"},
        {"Company_ID": "G2"},
    ]
