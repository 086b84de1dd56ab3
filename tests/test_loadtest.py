"""The load test's harness at one small level: its report has every figure, and against the
sandbox's quota nothing is lost or duplicated. Figures belong to `make loadtest`."""

from __future__ import annotations

from devtools.gainsight_sandbox import Sandbox
from devtools.loadtest import Options, run, table, targets


def test_a_small_compressed_load_loses_and_duplicates_nothing(sandbox: Sandbox) -> None:
    # Given a 3 s quota window of 30 calls, and two windows of load at the sustainable rate
    options = Options(
        levels=(1.0,), factor=20, quota_per_window=30, load_windows=2, max_drain_windows=4,
        batch_size=10, calibration_batches=3,
    )  # fmt: skip

    # When the harness runs it
    single, reports = run(sandbox, options)

    # Then every offered event is accounted for, and none is lost or published twice
    (report,) = reports
    assert single > 0 and report.offered > 0
    accounted = report.delivered + report.filtered + report.rejected + report.still_parked + report.dead_lettered
    assert accounted == report.offered
    assert (report.lost, report.duplicated, report.dead_lettered) == (0, 0, 0)
    assert report.calls > 0 and report.requests > 0
    assert "| **lost**" in table(reports)
    assert targets(single, reports)[0] == ("0 lost, 0 duplicated, 0 dead-lettered at every level", True)
