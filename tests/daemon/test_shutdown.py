"""Shutdown is bounded and flushes the journal: a failing clean-up step, SIGTERM under load, ``--for``.

The process tests run the real ``alpha run`` on the demo at ``--speed 100000``, where a simulated
day passes in under a second and the event loop is never idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from alpha.config import load_config
from alpha.core.schedule import Schedule
from alpha.daemon.app import WORLD_CATCH_UP, build_daemon
from alpha.daemon.journal import Journal
from alpha.daemon.lifecycle import Watchdog
from alpha.domain.clock import AcceleratedClock, utc
from tests.e2e.harness import DEMO, SteppedClock, demo_config
from tests.e2e.prom import free_port


async def test_a_failing_clean_up_step_still_closes_fuses_and_flushes_the_journal(tmp_path: Path) -> None:
    cfg = demo_config(tmp_path)
    daemon = build_daemon(cfg, clock=SteppedClock(cfg.clock.start), serve_http=False)
    await daemon.start()

    async def broken_close() -> None:
        raise RuntimeError("wiring clean-up failed")

    daemon.wiring.close = broken_close
    await daemon.shutdown()
    assert daemon.journal is not None and daemon.journal.closed
    assert daemon.started_fuses == []
    stops = list(Journal(cfg.journal.path).records("stop"))
    assert len(stops) == 1 and stops[0].data["exit_code"] == 0


# -- bounded stop: the real process, and the parts that keep it bounded under load -------------------

ALPHA = [sys.executable, "-m", "alpha"]
BOUND = load_config(DEMO).execution.shutdown_bound.total_seconds()


def _start_demo(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """``alpha run`` on the demo at 100000x (a simulated day in under a second: the loop is busy)."""
    journal, out = tmp_path / "var" / "journal.db", tmp_path / "out.log"
    proc = subprocess.Popen(
        [*ALPHA, "run", "--config", str(DEMO), "--speed", "100000", "--journal", str(journal),
         "--metrics-address", f"127.0.0.1:{free_port()}", "--control-address", f"127.0.0.1:{free_port()}", *extra],
        stdout=out.open("wb"), stderr=subprocess.STDOUT, cwd=tmp_path,
    )
    return proc, journal, out


def _wait_for_decisions(proc: subprocess.Popen[bytes], journal: Path, out: Path, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, out.read_text()[-3000:]
        if journal.exists():
            with contextlib.suppress(sqlite3.Error):
                if Journal(journal).count("decision") >= n:
                    return
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"no {n} decisions within {timeout} s")


def test_sigterm_to_a_demo_at_full_speed_exits_zero_within_the_shutdown_bound(tmp_path: Path) -> None:
    proc, journal, out = _start_demo(tmp_path)
    _wait_for_decisions(proc, journal, out, 5)

    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=BOUND * 3)
    elapsed = time.monotonic() - started

    assert code == 0, out.read_text()[-3000:]
    assert elapsed < BOUND + 5, f"stopped after {elapsed:.1f} s (bound {BOUND} s)"  # the bound plus interpreter exit
    kinds = [r.kind for r in Journal(journal).records()]
    assert kinds[-1] == "stop" and Journal(journal).pending_orders() == []
    assert b"Traceback" not in out.read_bytes()
    print(f"SIGTERM to exit at --speed 100000: {elapsed:.2f} s, journal {journal.stat().st_size} bytes")


def test_a_demo_at_full_speed_stops_at_for_with_exit_zero(tmp_path: Path) -> None:
    proc, journal, out = _start_demo(tmp_path, "--for", "2d")
    code = proc.wait(timeout=120)
    assert code == 0, out.read_text()[-3000:]
    stops = list(Journal(journal).records("stop"))
    starts = list(Journal(journal).records("start"))
    assert len(stops) == 1 and stops[0].data["exit_code"] == 0
    simulated = datetime.fromisoformat(stops[0].ts) - datetime.fromisoformat(starts[0].ts)
    assert timedelta(days=2) <= simulated < timedelta(days=3), f"stopped after {simulated} of simulated time"


async def test_sleeping_until_a_time_already_past_yields_to_the_loop() -> None:
    clock = AcceleratedClock(utc(2026, 1, 1), 100000.0)
    ran = asyncio.Event()

    async def other() -> None:
        ran.set()

    asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(other()))
    for _ in range(5):  # a service behind its schedule: every wake-up time is already past
        await clock.sleep_until(utc(2025, 1, 1))
    assert ran.is_set(), "a sleep to a past time must let other tasks (and the stop) run"


def test_a_skipped_decision_is_retried_a_poll_after_it_finished_not_after_it_started() -> None:
    cfg = load_config(DEMO)
    schedule = Schedule()
    start, poll = utc(2026, 1, 1), timedelta(minutes=5)
    schedule.decided(start, skipped=False, retry_after=poll)
    due = start + cfg.pnl.rebalance_every  # the next periodic decision
    finished = due + timedelta(minutes=20)  # a slow step on an accelerated clock: longer than a poll

    schedule.decided(due, skipped=True, retry_after=poll, finished=finished)

    when, _ = schedule.next_decision(finished, {}, cfg)
    assert when == finished + poll, "counted from the start, the retry would be due at once"


def test_the_watchdog_ends_a_stop_that_overruns_its_bound_with_the_exit_code() -> None:
    exited: list[int] = []
    fired = threading.Event()

    def hard_exit(code: int) -> None:
        exited.append(code)
        fired.set()

    dog = Watchdog(0.2, lambda: 0, hard_exit=hard_exit)
    dog.start()
    dog.arm()
    assert fired.wait(30), "the watchdog did not fire"
    assert exited == [0] and dog.fired


def test_the_watchdog_stays_quiet_when_the_stop_finishes_in_time() -> None:
    exited: list[int] = []
    dog = Watchdog(0.3, lambda: 0, hard_exit=exited.append)
    dog.start()
    dog.arm()
    dog.done()
    dog._thread.join(timeout=30)
    assert not dog._thread.is_alive() and exited == [] and not dog.fired


async def test_the_world_catches_up_a_long_gap_a_day_at_a_time_and_stops_between(tmp_path: Path) -> None:
    cfg = demo_config(tmp_path)
    clock = SteppedClock(cfg.clock.start)
    daemon = build_daemon(cfg, clock=clock, serve_http=False)
    world = daemon.wiring.world
    steps: list[datetime] = []
    step_to = world.step_to

    def recording(now: datetime) -> object:
        steps.append(now)
        return step_to(now)

    world.step_to = recording
    clock.advance(timedelta(days=5))  # the world is five simulated days behind the clock
    stop = asyncio.Event()
    service = dict(daemon.wiring.services)["world"](daemon)

    def stop_after_two(now: datetime) -> object:
        if len(steps) == 1:
            stop.set()  # asked to stop during the second catch-up step
        return recording(now)

    world.step_to = stop_after_two
    await asyncio.wait_for(service(stop), timeout=30)

    assert steps == [cfg.clock.start + WORLD_CATCH_UP, cfg.clock.start + 2 * WORLD_CATCH_UP]
    assert world.now < clock.now(), "stopped between catch-up steps, not after the whole gap"
