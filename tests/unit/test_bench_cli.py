"""``python -m alpha.bench``: each subcommand's ``--json`` is one JSON document on stdout (figures are printed, never asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "alpha.bench", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_decide_json_has_the_figures_of_both_paths() -> None:
    done = _bench("decide", "--venues", "2", "--markets", "3", "--repeat", "2", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["bench"] == "decide" and out["market_count"] == 2 * 3 + 2 * 3
    assert {"median_ms", "p99_ms", "cpu_median_ms", "speedup"} <= out.keys()
    assert {"median_ms", "p99_ms", "runs"} <= out["reference"].keys()


def test_signals_json_has_one_figure_per_history_length() -> None:
    done = _bench("signals", "--samples", "5,20", "--venues", "1", "--markets", "2", "--repeat", "1", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert [r["samples"] for r in out["results"]] == [5, 20]
    assert all({"ms_per_decision", "reference_ms_per_decision", "speedup"} <= r.keys() for r in out["results"])


def test_a_bad_argument_is_an_error_line_not_a_traceback() -> None:
    done = _bench("decide", "--venues", "0")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "positive integer" in done.stderr
