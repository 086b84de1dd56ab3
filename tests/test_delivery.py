"""Quota-efficient delivery: the plan (pure), then exact Gainsight call counts, chunking, bisection,
cache staleness, shared backoff and per-event outcomes through lambda_handler against the sandbox."""

from __future__ import annotations

import time

import pytest

import ingest
from delivery import CompanyCache, person_body, plan
from devtools.gainsight_sandbox import Fault, Sandbox
from devtools.local import demo_config, seed_parameters
from gainsight import DeadlineTimeout, Throttle
from mapping import CompanyUpsert, EventPublish, PersonUpsert
from tests.helpers import FakeClock, group, identify, post, track

# -- the plan (pure) --------------------------------------------------------------


def test_plan_merges_companies_and_people_in_event_order() -> None:
    # Given a batch naming one company twice and one person three times
    operations = [
        (0, PersonUpsert("ada@x.io", {"Email": "ada@x.io", "Name": "Ada", "Timezone": "UTC"})),
        (1, CompanyUpsert("Acme", {"Name": "Acme", "Stage": "Onboarding", "Employees": 10}, "ada@x.io")),
        (2, EventPublish({"eventName": "e"}, {})),
        (3, CompanyUpsert("Acme", {"Name": "Acme", "Stage": "Adoption"}, "grace@x.io")),
        (4, PersonUpsert("ada@x.io", {"Email": "ada@x.io", "Name": "Ada L"})),
        (5, CompanyUpsert("Initech", {"Name": "Initech"}, "ada@x.io")),
    ]
    # When it is planned (the track linked to nobody's write)
    chains = {0: "ada", 1: "ada", 2: "user:u1", 3: "grace", 4: "ada", 5: "ada"}
    result = plan(operations, chains)
    # Then each company is written once with later values winning
    assert result.companies["Acme"].fields == {"Name": "Acme", "Stage": "Adoption", "Employees": 10}
    assert result.companies["Acme"].events == [1, 3]
    assert result.companies["Acme"].parts[0] == (1, {"Name": "Acme", "Stage": "Onboarding", "Employees": 10})
    # and each person is one PUT: identify fields merged, company links united
    body = person_body("ada@x.io", result.people["ada"]["ada@x.io"].parts, {"Acme": "G1", "Initech": "G2"})
    assert body == {
        "Email": "ada@x.io",
        "Name": "Ada L",
        "Timezone": "UTC",
        "companies": [{"Company_ID": "G1"}, {"Company_ID": "G2"}],
    }
    assert [i for i, _ in result.people["grace"]["grace@x.io"].parts] == [3]
    assert {key: [i for i, _ in tracks] for key, tracks in result.events.items()} == {"user:u1": [2]}


def test_plan_treats_emails_differing_in_case_as_one_person() -> None:
    operations = [
        (0, PersonUpsert("Ada@X.io", {"Email": "Ada@X.io", "Timezone": "UTC"})),
        (1, PersonUpsert(" ada@x.io", {"Email": " ada@x.io", "Name": "Ada"})),
    ]
    [person] = plan(operations, {0: "ada", 1: "ada"}).people["ada"].values()
    assert person_body(person.email, person.parts, {}) == {"Email": " ada@x.io", "Timezone": "UTC", "Name": "Ada"}


def test_company_cache_expires_and_is_bounded() -> None:
    clock = FakeClock(tick=0)
    cache = CompanyCache(ttl_seconds=60, max_entries=2, clock=clock.clock)
    cache.put("t", "a", "G1")
    cache.put("t", "b", "G2")
    cache.put("t", "c", "G3")
    assert (cache.get("t", "a"), cache.get("t", "c"), cache.get("other", "c")) == (None, "G3", None)
    clock.advance(59)
    assert cache.get("t", "c") == "G3"
    clock.advance(2)
    assert cache.get("t", "c") is None


def test_throttle_is_shared_and_only_moves_forward() -> None:
    clock = FakeClock(tick=0)
    throttle = Throttle(clock.clock)
    throttle.hold(0.5)
    throttle.hold(0.1)
    assert throttle.remaining() == 0.5
    clock.advance(0.4)
    assert 0.09 < throttle.remaining() < 0.11
    clock.advance(0.2)
    assert throttle.remaining() == 0.0


def test_an_attempt_never_outlives_the_deadline() -> None:
    # Given 3 s left before the deadline
    clock = FakeClock(tick=0)
    timeout = DeadlineTimeout(connect=2.0, read=5.0, deadline=clock.now + 3.0, clock=clock.clock)
    assert (timeout.clone().connect_timeout, timeout.clone().total) == (2.0, 3.0)
    # When an attempt starts with half a second left
    clock.advance(2.5)
    attempt = timeout.clone()
    # Then its timeouts shrink to that half second, however long the read timeout
    assert attempt.connect_timeout == pytest.approx(0.5)
    assert attempt.total == pytest.approx(0.5)


# -- call counts through lambda_handler ----------------------------------------------


def test_a_batch_costs_one_call_per_person_company_write_and_track(sandbox: Sandbox) -> None:
    # Given three identifies and two groups of one person, a second company, and two tracks
    batch = [
        identify(message_id="1", firstName="Ada"),
        group("Acme", message_id="2", stage="Onboarding"),
        identify(message_id="3", lastName="Lovelace"),
        group("Acme", message_id="4", stage="Adoption"),
        group("Initech", message_id="5"),
        identify(message_id="6", timezone="UTC"),
        track(message_id="7"),
        track(message_id="8"),
    ]
    # When it is posted
    reply = post("/v1/batch", {"batch": batch})
    # Then one request per event (3 + 3*3 + 2 = 14) became 5 calls
    assert reply.outcomes == ["delivered"] * 8
    calls = sandbox.state.snapshot()["calls"]
    assert calls == {
        "activity_insert": 0,
        "activity_update": 0,
        "company_insert": 1,
        "company_query": 1,
        "company_update": 0,
        "event_publish": 2,
        "person_upsert": 1,
        "total": 5,
    }
    [person] = sandbox.state.snapshot()["people"]
    assert (person["FirstName"], person["LastName"], person["Timezone"]) == ("Ada", "Lovelace", "UTC")
    assert len(person["companies"]) == 2
    companies = {c["Name"]: c for c in sandbox.state.snapshot()["companies"]}
    assert companies["Acme"]["Stage"] == "Adoption"


def test_company_writes_are_chunked_at_50_records(sandbox: Sandbox) -> None:
    batch = [group(f"Company {n:03}", email=f"user{n}@x.io", message_id=str(n)) for n in range(120)]
    reply = post("/v1/batch", {"batch": batch})
    assert set(reply.outcomes) == {"delivered"}
    inserts = [len(c.body["records"]) for c in sandbox.state.calls if c.operation == "company_insert"]
    assert sorted(inserts) == [20, 50, 50]
    assert sandbox.state.count("company_query") == 2  # 100 names per IN query
    # A second batch naming the same companies skips the lookup: the warm container remembers Gsids
    reply = post("/v1/batch", {"batch": batch})
    assert set(reply.outcomes) == {"delivered"}
    assert sandbox.state.count("company_query") == 2
    updates = [len(c.body["records"]) for c in sandbox.state.calls if c.operation == "company_update"]
    assert sorted(updates) == [20, 50, 50]
    assert len(sandbox.state.snapshot()["companies"]) == 120


def test_a_refused_company_batch_is_split_so_only_bad_records_are_rejected(sandbox: Sandbox) -> None:
    batch = [group(f"C{n}", email=f"u{n}@x.io", message_id=str(n)) for n in range(8)]
    batch[5]["traits"]["originalContractDate"] = "210318"
    reply = post("/v1/batch", {"batch": batch})
    assert reply.outcomes == ["delivered"] * 5 + ["rejected"] + ["delivered"] * 2
    bad = reply.body["results"][5]
    assert bad["statusCode"] == 400
    assert bad["error"] == "Gainsight GSOBJ_1006: Invalid value (OriginalContractDate = 210318)."
    assert sorted(c["Name"] for c in sandbox.state.snapshot()["companies"]) == [f"C{n}" for n in range(8) if n != 5]
    assert "u5@x.io" not in {p["Email"] for p in sandbox.state.snapshot()["people"]}
    # 1 refused write of 8, then halves: 4 (ok) + 4 (refused) -> 2 (ok) + 2 (refused) -> 1 + 1;
    # then the refused one is looked up again (it might have been created meanwhile) and tried once more
    assert sandbox.state.count("company_insert") == 8
    assert sandbox.state.count("company_query") == 2


def test_a_stale_cached_company_is_looked_up_again(sandbox: Sandbox) -> None:
    post("/v1/group", group("Acme"))
    # Someone deletes the company in Gainsight while our container still caches its Gsid
    with sandbox.state.lock:
        sandbox.state.companies.clear()
    reply = post("/v1/group", group("Acme", email="grace@example.com", stage="Adoption"))
    assert reply.outcomes == ["delivered"]
    [company] = sandbox.state.snapshot()["companies"]
    assert company["Stage"] == "Adoption"
    grace = next(p for p in sandbox.state.snapshot()["people"] if p["Email"] == "grace@example.com")
    assert grace["companies"] == [company["Gsid"]]


def test_a_refused_merged_person_is_split_per_event(sandbox: Sandbox) -> None:
    # personMap sends "nick" to a field Gainsight does not have: that identify alone is refused
    config = demo_config(sandbox.url) | {"personMap": [{"from": "nick", "to": "Nickname"}]}
    seed_parameters(sandbox.url, config=config)
    batch = [identify(message_id="a", firstName="Ada"), identify(message_id="b", nick="A"), group(message_id="c")]
    reply = post("/v1/batch", {"batch": batch})
    assert reply.outcomes == ["delivered", "rejected", "delivered"]
    assert reply.body["results"][1]["error"] == "Gainsight GSOBJ_1002: Invalid field (Nickname)"
    [person] = sandbox.state.snapshot()["people"]
    assert person["FirstName"] == "Ada" and len(person["companies"]) == 1


def test_group_is_delivered_only_when_company_and_link_both_succeed(sandbox: Sandbox) -> None:
    reply = post("/v1/batch", {"batch": [group("Acme", email="not-an-email")]})
    assert reply.outcomes == ["rejected"]
    assert reply.body["results"][0]["error"] == "Gainsight GSOBJ_VDT1001: Invalid Email (not-an-email)"
    sandbox.fail(Fault(status=500, operation="company_query", times=10))
    reply = post("/v1/batch", {"batch": [group("Initech"), identify(email="grace@example.com")]})
    assert reply.outcomes == ["deferred", "delivered"]
    assert "Initech" not in {c["Name"] for c in sandbox.state.snapshot()["companies"]}


def test_a_429_slows_every_call_down_together(sandbox: Sandbox, monkeypatch) -> None:
    # Given Gainsight throttles the first call and asks for one second's pause, and a request that
    # may wait that long for the budget (by default it waits half a second, then parks the rest)
    monkeypatch.setattr(ingest, "INTAKE_QUOTA_WAIT_SECONDS", 2.0)
    sandbox.fail(Fault(status=429, retry_after="1"))
    pauses: list[tuple[float, float]] = []  # from once the function had taken in the 429 to its end
    hold = Throttle.hold

    def watched(throttle: Throttle, seconds: float) -> None:
        asked = time.monotonic()  # the sandbox's clock
        hold(throttle, seconds)
        pauses.append((time.monotonic(), asked + seconds))

    monkeypatch.setattr(Throttle, "hold", watched)
    # When 30 tracks go out on 8 concurrent connections
    reply = post("/v1/batch", {"batch": [track(message_id=str(n)) for n in range(30)]})
    # Then all are delivered, and during the pause only calls already on their way when the function
    # took in the 429 reached Gainsight (at most one on each of the 7 other connections): without a
    # shared backoff, the other 29 would all have gone out at once
    assert set(reply.outcomes) == {"delivered"}
    start, end = pauses[0]
    during_pause = [c for c in sandbox.state.calls if start < c.at < end]
    assert len(during_pause) <= 7
    assert len(sandbox.state.snapshot()["events"]) == 30


def test_gainsight_down_for_the_whole_budget_still_answers_in_time(
    sandbox: Sandbox, fake_clock: FakeClock, monkeypatch
) -> None:
    # Given Gainsight answering 503 with Retry-After: 1 to everything, and a 4 s budget
    monkeypatch.setenv("DELIVERY_BUDGET_SECONDS", "4")
    monkeypatch.setenv("GAINSIGHT_MAX_RETRIES", "10")
    sandbox.fail(Fault(status=503, retry_after="1", times=1000))
    # When a batch arrives
    started = fake_clock.monotonic()
    reply = post("/v1/batch", {"batch": [track(message_id=str(n)) for n in range(20)] + [group()]})
    # Then it is answered within its budget, every event kept for retry
    assert fake_clock.monotonic() - started <= 4.0
    assert reply.status == 200
    assert set(reply.outcomes) == {"deferred"}
    # after retrying, as Retry-After asked, while the budget allowed
    assert sandbox.state.count() > 21
    assert 1.0 in fake_clock.slept


def test_a_company_created_meanwhile_by_another_request_is_updated_not_rejected(sandbox: Sandbox) -> None:
    # Given our lookup answered "no such company" just before another request created it
    post("/v1/group", group("Acme", email="grace@example.com"))
    sandbox.fail(Fault(reply={"count": 0, "records": []}, operation="company_query"))
    ada = group("Acme", stage="Adoption")
    ada["context"]["traits"]["email"] = "ada@example.com"
    # When our insert is refused because the company now exists
    reply = post("/v1/batch", {"batch": [ada]})
    # Then it is looked up again and updated: one company, both people linked
    assert reply.outcomes == ["delivered"]
    [company] = sandbox.state.snapshot()["companies"]
    assert company["Stage"] == "Adoption"
    assert {p["Email"]: p["companies"] for p in sandbox.state.snapshot()["people"]} == {
        "grace@example.com": [company["Gsid"]],
        "ada@example.com": [company["Gsid"]],
    }


def test_one_bad_group_event_does_not_reject_the_others_naming_its_company(sandbox: Sandbox) -> None:
    batch = [
        group("Acme", email="a@x.io", message_id="good", stage="Adoption"),
        group("Acme", email="b@x.io", message_id="bad", originalContractDate="210318"),
    ]
    reply = post("/v1/batch", {"batch": batch})
    assert reply.outcomes == ["delivered", "rejected"]
    assert reply.body["results"][1]["error"] == "Gainsight GSOBJ_1006: Invalid value (OriginalContractDate = 210318)."
    [company] = sandbox.state.snapshot()["companies"]
    assert (company["Name"], company["Stage"]) == ("Acme", "Adoption")
    assert {p["Email"] for p in sandbox.state.snapshot()["people"]} == {"a@x.io"}


def test_a_persons_tracks_wait_for_their_write_and_stop_at_a_failure(sandbox: Sandbox, monkeypatch) -> None:
    # Given Gainsight failing Ada's People PUT for the whole budget, and one of Grace's publishes,
    # with one call at a time so that "not yet started" is deterministic
    monkeypatch.setenv("GAINSIGHT_MAX_RETRIES", "0")
    monkeypatch.setenv("GAINSIGHT_CONCURRENCY", "1")
    sandbox.fail(Fault(status=503, operation="person_upsert"), Fault(status=503, operation="event_publish"))
    ada = {"context": {"traits": {"email": "ada@example.com"}}}
    grace = {"context": {"traits": {"email": "grace@example.com"}}}
    batch = [
        track(message_id="ada-before", step=1) | ada,
        identify(message_id="ada-identify"),
        track(message_id="ada-after", step=2) | ada,
        track(message_id="grace-1", step=1) | grace,
        track(message_id="grace-2", step=2) | grace,
    ]
    reply = post("/v1/batch", {"batch": batch})
    results = {r["messageId"]: r for r in reply.body["results"]}
    # Then none of Ada's tracks went out ahead of her failed write: all wait in the retry queue
    assert [results[m]["outcome"] for m in ("ada-before", "ada-identify", "ada-after")] == ["deferred"] * 3
    assert "held behind an earlier event of this person" in results["ada-after"]["error"]
    # and Grace's second track, not yet started when her first failed, was held behind it
    assert [results[m]["outcome"] for m in ("grace-1", "grace-2")] == ["deferred", "deferred"]
    assert sandbox.state.snapshot()["events"] == []


def test_fast_failures_then_a_hang_still_answer_within_the_budget(
    sandbox: Sandbox, fake_clock: FakeClock, monkeypatch
) -> None:
    # Given two quick 503s and then an attempt that hangs longer than the 5 s read timeout
    monkeypatch.setenv("DELIVERY_BUDGET_SECONDS", "3")
    monkeypatch.setenv("GAINSIGHT_MAX_RETRIES", "10")
    sandbox.fail(Fault(status=503, times=2), Fault(delay=10, drop=True))
    started = fake_clock.monotonic()
    reply = post("/v1/track", track())
    # Then the last attempt is cut at the deadline: the request answers within its budget
    assert fake_clock.monotonic() - started <= 3.0
    assert reply.outcomes == ["deferred"]


def test_one_users_batch_of_tracks_is_published_concurrently(sandbox: Sandbox) -> None:
    # A client SDK's batch is one user's: their tracks must not queue up one after another
    sandbox.state.faults.latency = 0.1
    batch = [track(message_id=str(n), n=n) | {"context": {"traits": {"email": "ada@example.com"}}} for n in range(40)]
    reply = post("/v1/batch", {"batch": batch})
    assert set(reply.outcomes) == {"delivered"}
    # Calls of 100 ms overlapped at Gainsight (one after another, none would), however busy the machine
    calls = sandbox.state.calls
    assert max(sum(other.at <= call.at < other.answered for other in calls) for call in calls) > 1
