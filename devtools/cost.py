"""The stack's monthly cost when no event arrives, at AWS list price, counted from template.yaml.

    python -m devtools.cost            # print the table
    python -m devtools.cost --write    # rewrite it in docs/cost.md (a test keeps the two equal)

Prices are us-east-1 list prices in USD, without the free tier (which covers most of it for a
small account): a price change is one edit here, a template change is none.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools.local import ROOT, use_handler_path

use_handler_path()

from store import DRAIN_PAGE, QUEUE_STATE_ITEMS  # noqa: E402

TEMPLATE = ROOT / "template.yaml"
DOC = ROOT / "docs" / "cost.md"
BEGIN, END = "<!-- idle-cost table: python -m devtools.cost --write -->", "<!-- end of idle-cost table -->"

HOURS_PER_MONTH = 730  # AWS's billing month
GIB = 1024**3
# List prices (USD, us-east-1).
ALARM_METRIC_MONTH = 0.10  # a standard-resolution alarm, per metric it reads (metric math: each metric)
DASHBOARD_MONTH = 3.00
CUSTOM_METRIC_MONTH = 0.30  # prorated by the hour: a metric put every minute is a full month
SCHEDULER_PER_MILLION = 1.00  # EventBridge Scheduler invocations
LAMBDA_REQUESTS_PER_MILLION = 0.20
LAMBDA_ARM_GB_SECOND = 0.0000133334
XRAY_TRACES_PER_MILLION = 5.00
LOGS_INGESTED_GB = 0.50
DYNAMODB_READ_UNITS_PER_MILLION = 0.125  # on-demand
PITR_GB_MONTH = 0.20
SNS_EMAILS_PER_100K = 2.00

# What an idle drain run does (handler/drain.py `drain`): one consistent read (a read unit an item)
# of the parked counters, the last pass's summary and the state watch, which say nothing changed and
# nothing is due, and these metrics.
IDLE_DRAIN_METRICS = ("ParkedEvents", "EventsGaveUp")
IDLE_READ_UNITS = QUEUE_STATE_ITEMS * 1.0
# A backlog's reads: a run that reads the queue reads each parked event it passes twice, from the
# queue index (eventually consistent: half a unit per 4 KB) and its record (consistent: a unit per
# 4 KB). Estimate: a parked record of about 1 KB (an event is at most 32 KB).
BACKLOG_EVENTS = 100_000
RECORD_KB = 1.0
RUNS_PER_DAY = 1440
# Estimates, not measured on AWS: an idle run's billed duration and its log lines (START, END,
# REPORT and the metrics' EMF line).
IDLE_RUN_SECONDS = 0.1
IDLE_RUN_LOG_BYTES = 1024


@dataclass(frozen=True)
class CostLine:
    item: str
    arithmetic: str
    dollars: float
    per_run: bool = False  # grows with the schedule's rate


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    from cfnlint.decode import decode

    parsed, matches = decode(str(path))
    if matches:
        raise ValueError(f"{path}: {matches[0]}")
    return dict(parsed)


def runs_per_month(expression: str) -> float:
    """How often `rate(N unit)` fires in a billing month."""
    match = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", expression)
    if not match:
        raise ValueError(f"not a rate expression: {expression}")
    minutes = int(match[1]) * {"minute": 1, "hour": 60, "day": 1440}[match[2].rstrip("s")]
    return HOURS_PER_MONTH * 60 / minutes


def alarm_metrics(alarm: dict[str, Any]) -> int:
    """The metrics an alarm is billed for: one, or each metric its math reads."""
    queries = alarm["Properties"].get("Metrics")
    return sum(1 for query in queries if "MetricStat" in query) if queries else 1


def idle_monthly_cost(template: dict[str, Any]) -> list[CostLine]:
    """What the stack costs in a month without a single event, item by item."""
    resources = template["Resources"]
    of_type = {kind: {n: r for n, r in resources.items() if r["Type"] == kind} for kind in _TYPES}
    alarms = of_type["AWS::CloudWatch::Alarm"]
    metrics = sum(alarm_metrics(alarm) for alarm in alarms.values())
    dashboards = len(of_type["AWS::CloudWatch::Dashboard"])
    [(name, drain)] = [
        (name, r["Properties"])
        for name, r in of_type["AWS::Serverless::Function"].items()
        if any(e["Type"] == "ScheduleV2" for e in r["Properties"].get("Events", {}).values())
    ]
    [schedule] = [e["Properties"] for e in drain["Events"].values() if e["Type"] == "ScheduleV2"]
    runs = runs_per_month(schedule["ScheduleExpression"])
    function = template["Globals"]["Function"] | drain
    assert function["Architectures"] == ["arm64"], "LAMBDA_ARM_GB_SECOND is the arm64 price"
    gb_seconds = runs * IDLE_RUN_SECONDS * function["MemorySize"] / 1024
    tables = [t for t in of_type["AWS::DynamoDB::Table"].values() if _pitr(t)]
    emails = [
        s
        for t in of_type["AWS::SNS::Topic"].values()
        for s in t["Properties"]["Subscription"]
        if s["Protocol"] == "email"
    ]
    n = f"{runs:,.0f}"
    math = [name.removesuffix("Alarm") for name, alarm in alarms.items() if alarm_metrics(alarm) > 1]
    lines = [
        CostLine(
            f"{len(alarms)} alarms ({metrics} alarm metrics: metric math in {', '.join(math) or 'none'})",
            f"{metrics} x ${ALARM_METRIC_MONTH:.2f}",
            metrics * ALARM_METRIC_MONTH,
        ),
        CostLine(f"{dashboards} dashboard", f"{dashboards} x ${DASHBOARD_MONTH:.2f}", dashboards * DASHBOARD_MONTH),
        CostLine(
            f"The drain's schedule, {schedule['ScheduleExpression']}: {n} runs",
            f"{n} x ${SCHEDULER_PER_MILLION:.2f} / 1M",
            runs * SCHEDULER_PER_MILLION / 1e6,
            per_run=True,
        ),
        CostLine(
            f"{name} requests",
            f"{n} x ${LAMBDA_REQUESTS_PER_MILLION:.2f} / 1M",
            runs * LAMBDA_REQUESTS_PER_MILLION / 1e6,
            per_run=True,
        ),
        CostLine(
            f"{name} duration (estimate: {IDLE_RUN_SECONDS * 1000:.0f} ms a run at {function['MemorySize']} MB, arm64)",
            f"{gb_seconds:,.0f} GB-s x ${LAMBDA_ARM_GB_SECOND:.10f}",
            gb_seconds * LAMBDA_ARM_GB_SECOND,
            per_run=True,
        ),
        CostLine(
            f"Metrics every run puts: {', '.join(IDLE_DRAIN_METRICS)}",
            f"{len(IDLE_DRAIN_METRICS)} x ${CUSTOM_METRIC_MONTH:.2f}",
            len(IDLE_DRAIN_METRICS) * CUSTOM_METRIC_MONTH,
        ),
        CostLine(
            "X-Ray: every run is traced (Tracing: Active)",
            f"{n} x ${XRAY_TRACES_PER_MILLION:.2f} / 1M",
            runs * XRAY_TRACES_PER_MILLION / 1e6 if function["Tracing"] == "Active" else 0.0,
            per_run=True,
        ),
        CostLine(
            f"Log lines of every run (estimate: {IDLE_RUN_LOG_BYTES:,} bytes)",
            f"{runs * IDLE_RUN_LOG_BYTES / GIB:.3f} GB x ${LOGS_INGESTED_GB:.2f}",
            runs * IDLE_RUN_LOG_BYTES / GIB * LOGS_INGESTED_GB,
            per_run=True,
        ),
        CostLine(
            f"The parked counters, the drain's summary, the state watch ({QUEUE_STATE_ITEMS} items), every run",
            f"{n} x {IDLE_READ_UNITS} read units x ${DYNAMODB_READ_UNITS_PER_MILLION} / 1M",
            runs * IDLE_READ_UNITS * DYNAMODB_READ_UNITS_PER_MILLION / 1e6,
            per_run=True,
        ),
        CostLine(
            f"Point-in-time recovery of {len(tables)} empty table", f"0 GB x ${PITR_GB_MONTH:.2f}", 0.0 * PITR_GB_MONTH
        ),
        CostLine(
            f"Alarm email ({len(emails)} subscription, with AlarmEmail): none sent",
            f"0 x ${SNS_EMAILS_PER_100K:.2f} / 100k",
            0.0,
        ),
    ]
    return lines


_TYPES = (
    "AWS::CloudWatch::Alarm",
    "AWS::CloudWatch::Dashboard",
    "AWS::Serverless::Function",
    "AWS::DynamoDB::Table",
    "AWS::SNS::Topic",
)


def _pitr(table: dict[str, Any]) -> bool:
    return bool(table["Properties"].get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled"))


def backlog_daily_cost(events: int = BACKLOG_EVENTS) -> list[CostLine]:
    """What the drain's reads of a parked backlog cost a day, in the three cases that decide it."""
    per_event = RECORD_KB / 4 * 0.5 + max(1.0, RECORD_KB / 4)
    unit = DYNAMODB_READ_UNITS_PER_MILLION / 1e6

    def line(case: str, items: str, units: float) -> CostLine:
        arithmetic = f"{RUNS_PER_DAY:,} runs x {units:,.1f} read units x ${DYNAMODB_READ_UNITS_PER_MILLION} / 1M"
        return CostLine(f"{case}: {items}", arithmetic, RUNS_PER_DAY * units * unit)

    return [
        line("Nothing due, nothing changed since the last pass", f"{QUEUE_STATE_ITEMS} items", IDLE_READ_UNITS),
        line(
            "Due events, the tenant's budget spent every run",
            f"one page of {DRAIN_PAGE} events",
            IDLE_READ_UNITS + DRAIN_PAGE * per_event,
        ),
        line(
            "The queue changed every run, yet most events wait behind a few (their first in backoff)",
            f"all {events:,} events",
            IDLE_READ_UNITS + events * per_event,
        ),
    ]


def total(lines: Sequence[CostLine]) -> float:
    return sum(line.dollars for line in lines)


def render(lines: Sequence[CostLine], backlog: Sequence[CostLine] = ()) -> str:
    """The markdown tables docs/cost.md holds between its markers: the idle month, and what the
    drain's reads of a backlog cost a day."""
    rows = [
        "| Item | Arithmetic | USD / month |",
        "| --- | --- | ---: |",
        *(f"| {line.item} | {line.arithmetic} | {dollars(line.dollars)} |" for line in lines),
        f"| **Total** | | **{dollars(total(lines))}** |",
    ]
    if backlog:
        rows += [
            "",
            f"A backlog of {BACKLOG_EVENTS:,} parked events: the drain's reads a day, by what each run finds.",
            "",
            "| Each run | Arithmetic | USD / day |",
            "| --- | --- | ---: |",
            *(f"| {line.item} | {line.arithmetic} | {dollars(line.dollars)} |" for line in backlog),
        ]
    return "\n".join(rows)


def dollars(amount: float) -> str:
    return "0.00" if amount == 0 else ("< 0.01" if amount < 0.005 else f"{amount:.2f}")


def table_in_doc(text: str) -> str:
    """The table between the doc's markers."""
    try:
        start = text.index(BEGIN) + len(BEGIN)
        return text[start : text.index(END, start)].strip()
    except ValueError:
        raise ValueError(f"{DOC.relative_to(ROOT)} has no {BEGIN} ... {END} block") from None


def write(doc: Path, table: str) -> None:
    text = doc.read_text()
    old = table_in_doc(text)
    doc.write_text(text.replace(old, table, 1))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.cost", description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"rewrite the table in {DOC.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    table = render(idle_monthly_cost(load_template()), backlog_daily_cost())
    if args.write:
        write(DOC, table)
        print(f"{DOC.relative_to(ROOT)}: idle-cost table rewritten")
    else:
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
