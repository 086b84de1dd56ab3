"""docs/cost.md's idle cost is what template.yaml holds, priced: a new alarm or a faster schedule
changes the figure, and the doc must be rewritten with it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from devtools import cost
from tests.helpers import dynamodb_requests


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return cost.load_template()


def test_the_docs_table_is_what_the_template_costs(template) -> None:
    # Given the table docs/cost.md shows
    shown = cost.table_in_doc(cost.DOC.read_text())
    # Then it is the one computed from template.yaml now (python -m devtools.cost --write rewrites it)
    assert shown == cost.render(cost.idle_monthly_cost(template), cost.backlog_daily_cost())


def test_the_readme_states_the_idle_cost_the_template_gives(template) -> None:
    readme = (cost.ROOT / "README.md").read_text()
    figure = cost.dollars(cost.total(cost.idle_monthly_cost(template)))
    assert f"costs about ${figure} a month at list price" in " ".join(readme.split())


def test_the_readme_states_what_a_backlog_costs_as_devtools_cost_computes_it() -> None:
    readme = " ".join((cost.ROOT / "README.md").read_text().split())
    idle, budget_bound, worst = cost.backlog_daily_cost()
    assert f"{cost.BACKLOG_EVENTS:,}-event backlog" in readme
    assert f"about ${cost.dollars(budget_bound.dollars)} a day in reads when the quota" in readme
    assert f"about ${cost.dollars(worst.dollars)} a day in the worst case" in readme
    assert f"reads {idle.item.split(': ')[1]}, whatever the backlog" in readme


def test_the_idle_cost_counts_the_templates_alarms_dashboard_and_schedule(template) -> None:
    lines = {line.item.split(" (")[0].split(":")[0]: line for line in cost.idle_monthly_cost(template)}
    alarms = [r for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    # Every alarm reads one metric but the 5xx rate, which divides two.
    assert lines[f"{len(alarms)} alarms"].dollars == pytest.approx((len(alarms) + 1) * 0.10)
    assert lines["1 dashboard"].dollars == 3.00
    # rate(1 minute) over a 730-hour month
    assert lines["The drain's schedule, rate(1 minute)"].dollars == pytest.approx(43_800 / 1e6)


def test_one_more_alarm_or_a_slower_schedule_changes_the_figure(template) -> None:
    # Given the template with one more alarm and the drain every 5 minutes
    before = cost.total(cost.idle_monthly_cost(template))
    changed = copy.deepcopy(template)
    changed["Resources"]["AnotherAlarm"] = copy.deepcopy(changed["Resources"]["EventsGaveUpAlarm"])
    [schedule] = changed["Resources"]["DrainFunction"]["Properties"]["Events"].values()
    schedule["Properties"]["ScheduleExpression"] = "rate(5 minutes)"
    # Then the alarm adds its $0.10 and every per-run line is a fifth of what it was
    lines = cost.idle_monthly_cost(template)
    per_run = sum(line.dollars for line in lines if line.per_run)
    assert per_run > 0
    assert cost.total(cost.idle_monthly_cost(changed)) == pytest.approx(before + 0.10 - per_run * 4 / 5)


@pytest.mark.parametrize(
    ("expression", "runs"), [("rate(1 minute)", 43_800), ("rate(5 minutes)", 8_760), ("rate(1 hour)", 730)]
)
def test_runs_per_month(expression, runs) -> None:
    assert cost.runs_per_month(expression) == runs


def test_an_idle_drain_run_puts_exactly_the_metrics_the_cost_counts(sandbox, fake_clock) -> None:
    # Given an empty event store
    import drain

    from observability import metrics

    metrics.clear_metrics()
    # When the drain runs with nothing to do
    report = drain.drain(50)
    # Then it put the metrics the idle cost prices, and no other
    assert report.parked == 0
    assert set(metrics.metric_set) == set(cost.IDLE_DRAIN_METRICS)
    # And the runs after the next, nothing having changed, read only the items the idle cost prices
    import ingest
    from settings import settings

    reads: list[float] = []

    def count(model, params, **_) -> None:
        # a consistent read costs a unit an item (of at most 4 KB), an eventually consistent one half
        units = [1.0 if r.get("ConsistentRead") else 0.5 for r in params["RequestItems"].values()]
        reads.append(sum(len(r["Keys"]) * u for r, u in zip(params["RequestItems"].values(), units, strict=True)))

    client = ingest.container(settings()).store.dynamodb
    client.meta.events.register("before-parameter-build.dynamodb.BatchGetItem", count)
    assert not drain.drain(50).idle  # the second pass from the same state confirms the first
    names = dynamodb_requests(client)
    assert drain.drain(50).idle
    assert names == ["BatchGetItem"] and reads[-1] == cost.IDLE_READ_UNITS
