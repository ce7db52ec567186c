"""Walk-forward sweeps off this process: local worker processes and a Dask cluster give the single-process figures exactly.

The Dask cluster is a real ``distributed.LocalCluster`` (a scheduler and two worker processes on
127.0.0.1); the data is a short slice of the shared Binance BTC history (``binance_dir``).
Wall times are printed (``pytest -s``), not asserted.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alpha.backtest import walkforward
from alpha.backtest.sweep import InProcess, JobError, SweepError, executor
from alpha.backtest.walkforward import WalkForward, grid_points
from alpha.config import load_config
from tests.backtest.test_walkforward import BINANCE, ROOT, binance_dir, walk_forward

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")

__all__ = ["binance_dir"]  # the fixture, shared with test_walkforward

START, END = datetime(2022, 1, 1, tzinfo=UTC), datetime(2022, 3, 1, tzinfo=UTC)
GRID = {"thresholds.entry_min_net_apr": ("0.05", "0.01")}


def evaluation(data: Path, **engine: Any) -> WalkForward:
    config = load_config(BINANCE)
    points, _ = grid_points(config, GRID)
    return WalkForward(config, data, points, train=timedelta(days=20), test=timedelta(days=10), **engine)


def timed(wf: WalkForward, name: str) -> WalkForward:
    t0 = time.perf_counter()
    wf.run(START, END)
    print(f"\nwalk-forward {len(wf.points)} points x {len(wf.results)} windows, {name}: {time.perf_counter() - t0:.2f} s wall")
    return wf


@pytest.fixture(scope="module")
def single(binance_dir: Path) -> WalkForward:
    """The reference: every job in this process, in order."""
    return timed(evaluation(binance_dir, workers=1), "1 process")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    t0 = time.perf_counter()
    with distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None, host="127.0.0.1"
    ) as c:
        print(f"\nLocalCluster(2 worker processes) up in {time.perf_counter() - t0:.2f} s")
        yield c


def test_the_default_engine_is_one_local_process_per_cpu_and_workers_1_is_this_process() -> None:
    with executor(jobs=1) as ex:
        assert isinstance(ex, InProcess)
    with executor(jobs=50, workers=1) as ex:
        assert isinstance(ex, InProcess)
    with executor(jobs=50, workers=3) as ex:
        assert isinstance(ex, ProcessPoolExecutor) and ex._max_workers == 3  # type: ignore[attr-defined]
    if (os.cpu_count() or 1) > 1:
        with executor(jobs=50) as ex:
            assert isinstance(ex, ProcessPoolExecutor) and ex._max_workers == min(os.cpu_count() or 1, 50)  # type: ignore[attr-defined]


def test_local_processes_give_the_single_process_figures_exactly(single: WalkForward, binance_dir: Path) -> None:
    pool = timed(evaluation(binance_dir, workers=2), "2 local processes")
    assert len(single.results) == 4
    # Per window: every training replay, the chosen point, the test replay and the baselines, Decimal for Decimal.
    assert pool.results == single.results
    assert pool.as_json() == single.as_json()


def test_a_dask_cluster_gives_the_single_process_figures_exactly(single: WalkForward, binance_dir: Path, cluster: Any, tmp_path: Path) -> None:
    remote = timed(evaluation(binance_dir, scheduler=cluster.scheduler_address), "LocalCluster, 2 workers")
    assert [r.window for r in remote.results] == [r.window for r in single.results]
    for mine, ref in zip(remote.results, single.results, strict=True):
        assert mine.train == ref.train and mine.chosen == ref.chosen and mine.test == ref.test and mine.baselines == ref.baselines
    assert remote.as_json()["aggregate"] == single.as_json()["aggregate"] and remote.as_json() == single.as_json()
    # The jobs ran on the workers (each read the tapes itself), not in this process.
    with distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
        loaded = client.run(lambda: len(walkforward._TAPES))
    assert len(loaded) == 2 and all(n >= 1 for n in loaded.values())

    # And end to end: `alpha backtest --walk-forward --dask ADDRESS --json` prints the same document.
    done = walk_forward(binance_dir, tmp_path, "--grid", "thresholds.entry_min_net_apr=0.05,0.01", "--json", "--dask", cluster.scheduler_address)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == json.loads(json.dumps({**single.as_json(), "dropped_grid_points": []}))


@pytest.mark.parametrize("engine", [{"workers": 1}, {"workers": 2}, "dask"])
def test_a_failing_job_names_the_job_the_host_and_the_cause(engine: Any, cluster: Any, tmp_path: Path) -> None:
    # The data directory is missing where the jobs run (as on a worker that cannot see it).
    kw = {"scheduler": cluster.scheduler_address} if engine == "dask" else engine
    with pytest.raises(JobError) as caught:
        evaluation(tmp_path / "nowhere", **kw).run(START, END)
    message = str(caught.value)
    assert message.startswith("training 2022-01-01..2022-01-21, entry_min_net_apr=0.05 failed on ")
    assert "DataError: fuse perp market BTC/USDT:USDT: no funding history" in message and "\n" not in message


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_an_unreachable_scheduler_is_one_line_and_exit_2(binance_dir: Path, tmp_path: Path) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    env = {**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"}
    done = subprocess.run(
        [sys.executable, "-m", "alpha", "backtest", "--config", str(BINANCE), "--data", str(binance_dir), "--from", "2022-01-01",
         "--to", "2022-03-01", "--walk-forward", "--train", "20d", "--test", "10d", "--out", str(tmp_path), "--dask", address],
        capture_output=True, text=True, cwd=ROOT, env=env,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(f"error: cannot reach the Dask scheduler at {address}: ") and done.stderr.count("\n") == 1, done.stderr
    with (
        dask.config.set({"distributed.comm.timeouts.connect": "2s"}),
        pytest.raises(SweepError, match="cannot reach the Dask scheduler"),
        executor(jobs=4, scheduler=address),
    ):
        pass


def test_a_malformed_address_or_both_engines_are_refused(binance_dir: Path, tmp_path: Path) -> None:
    bad = walk_forward(binance_dir, tmp_path, "--dask", "127.0.0.1:8786")
    assert bad.returncode == 2 and "argument --dask: '127.0.0.1:8786'" in bad.stderr and "Traceback" not in bad.stderr
    both = walk_forward(binance_dir, tmp_path, "--dask", "tcp://127.0.0.1:8786", "--workers", "2")
    assert both.returncode == 2 and "exclude each other" in both.stderr and both.stderr.count("\n") == 1
