"""A smoke test of the chaos runner (the full suite is ``make chaos``, not part of ``make test``).

One scenario end to end: fresh emulators, a real ``alpha run --mode live`` process, positions
sampled through the chaos API, the daemon stopped with SIGTERM, the row judged.
"""

from __future__ import annotations

from pathlib import Path

from tests.chaos.runner import HEADER, baseline, row, run_scenario


async def test_the_baseline_scenario_opens_the_spread_hedged_and_reports_it(tmp_path: Path) -> None:
    result = await run_scenario("baseline", baseline, seed=19, workdir=tmp_path)

    assert result.ok, f"{result.problems}; notes: {result.notes}"
    assert result.orders > 0 and result.final_gross > 0, "the daemon traded against the emulators"
    assert result.duplicates == 0 and result.failed_restarts == 0
    assert result.time_to_hedged is not None
    line = row(result)
    assert line.startswith("baseline") and line.endswith("OK") and len(HEADER.split()) > 5
    assert (tmp_path / "baseline" / "daemon-1.out").stat().st_size > 0, "the daemon's log is kept for the reader"
