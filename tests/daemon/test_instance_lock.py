"""One process per journal: the lock, the clean refusals of a second instance, and the client-id marker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from alpha.daemon.app import build_daemon
from alpha.daemon.journal import Journal
from alpha.daemon.lifecycle import InstanceHeld, InstanceLock, foreign_orders, instance_id, lock_path_of
from alpha.domain.account import AccountSnapshot, Order, OrderStatus
from alpha.domain.clock import utc
from alpha.domain.instruments import Side
from fuses.ccxt.fuse import CLIENT_ID_FORMATS
from tests.e2e.harness import DEMO, SteppedClock, demo_config, run_for
from tests.e2e.prom import free_port

ALPHA = [sys.executable, "-m", "alpha"]
STARTED = utc(2026, 1, 1)


def test_a_second_lock_on_the_same_journal_is_refused_naming_the_holder(tmp_path: Path) -> None:
    journal = tmp_path / "journal.db"
    first = InstanceLock.acquire(journal, run_id="aaaaaa", mode="live", started=STARTED)
    try:
        with pytest.raises(InstanceHeld) as refused:
            InstanceLock.acquire(journal, run_id="bbbbbb", mode="live", started=STARTED)
        assert refused.value.holder["pid"] == os.getpid() and refused.value.holder["run_id"] == "aaaaaa"
        assert "aaaaaa" in str(refused.value) and str(os.getpid()) in str(refused.value)
        assert not journal.exists(), "the lock never touches the journal"
    finally:
        first.release()
    again = InstanceLock.acquire(journal, run_id="cccccc", mode="live", started=STARTED)
    again.release()


def test_kill_9_frees_the_lock(tmp_path: Path) -> None:
    journal = tmp_path / "journal.db"
    code = (
        "import sys, time; from pathlib import Path; from alpha.daemon.lifecycle import InstanceLock;"
        "from alpha.domain.clock import utc;"
        f"InstanceLock.acquire(Path({str(journal)!r}), run_id='dddddd', mode='live', started=utc(2026, 1, 1));"
        "print('locked', flush=True); time.sleep(600)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"locked"
        with pytest.raises(InstanceHeld):
            InstanceLock.acquire(journal, run_id="eeeeee", mode="live", started=STARTED)
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        InstanceLock.acquire(journal, run_id="eeeeee", mode="live", started=STARTED).release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


# -- the real ``alpha run``: a second instance is refused before it touches anything ---------------


class Demo:
    def __init__(self, proc: subprocess.Popen[bytes], journal: Path, metrics: str, control: str, out: Path) -> None:
        self.proc, self.journal, self.metrics, self.control, self.out = proc, journal, metrics, control, out


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    journal, out = tmp_path / "var" / "journal.db", tmp_path / "first.log"
    metrics, control = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [*ALPHA, "run", "--config", str(DEMO), "--speed", "3600", "--journal", str(journal),
         "--metrics-address", metrics, "--control-address", control],
        stdout=out.open("wb"), stderr=subprocess.STDOUT, cwd=tmp_path,
    )
    deadline = time.monotonic() + 60
    while not (journal.exists() and Journal(journal).count("start") == 1):
        assert proc.poll() is None, out.read_text()[-3000:]
        assert time.monotonic() < deadline, "the first instance did not start within 60 s"
        time.sleep(0.1)
    try:
        yield Demo(proc, journal, metrics, control, out)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _second(tmp_path: Path, journal: Path, metrics: str, control: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*ALPHA, "run", "--config", str(DEMO), "--speed", "3600", "--journal", str(journal),
         "--metrics-address", metrics, "--control-address", control, "--for", "1h"],
        capture_output=True, timeout=120, cwd=tmp_path,
    )


def _one_line(result: subprocess.CompletedProcess[bytes]) -> str:
    err = result.stderr.decode().strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("same_ports", [True, False], ids=["same-ports", "other-ports"])
def test_a_second_instance_on_the_same_journal_exits_3_naming_the_holder_and_leaves_the_journal_alone(
    demo: Demo, tmp_path: Path, same_ports: bool
) -> None:
    ports = (demo.metrics, demo.control) if same_ports else (f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}")
    seqs_before = max(r.seq for r in Journal(demo.journal).records())

    second = _second(tmp_path, demo.journal, *ports)

    assert second.returncode == 3, second.stderr.decode()
    message = _one_line(second)
    assert f"pid {demo.proc.pid}" in message and "run_id" in message and "started" in message
    later = [r for r in Journal(demo.journal).records() if r.seq > seqs_before]
    assert not [r for r in later if r.kind in ("start", "stop")], "the second instance wrote into the journal"
    assert list(demo.journal.parent.glob("journal.db.1*")) == [], "the demo's journal was not set aside"
    assert demo.proc.poll() is None, "the first instance keeps running"


def test_a_port_in_use_is_a_one_line_error_exit_2_and_the_journal_is_not_created(demo: Demo, tmp_path: Path) -> None:
    other = tmp_path / "other" / "journal.db"

    second = _second(tmp_path, other, demo.metrics, f"127.0.0.1:{free_port()}")

    assert second.returncode == 2
    assert "cannot listen on" in _one_line(second)
    assert not other.exists(), "a port in use leaves the journal untouched"


# -- the venue-side marker: client ids carry the journal's instance id ----------------------------


def _order(client_id: str) -> Order:
    return Order(client_id, "1", "BTC/USDC:USDC", Side.BUY, Decimal("1"), OrderStatus.NEW)


def test_open_orders_without_our_prefix_or_journal_entry_are_foreign() -> None:
    accounts = {
        "perp": AccountSnapshot(
            "perp", STARTED, open_orders=(_order("1a2b3c4d-abcdef00001-0001"), _order("99999999-abcdef00001-0001"), _order("old-0001"))
        )
    }
    found = foreign_orders(accounts, "1a2b3c4d", known=["old-0001"])
    assert [(f, o.client_id) for f, o in found] == [("perp", "99999999-abcdef00001-0001")]


def test_the_instance_id_is_kept_from_the_journals_first_start() -> None:
    assert instance_id([{"run_id": "x"}, {"instance": "0badc0de"}, {"instance": "12345678"}]) == "0badc0de"
    fresh = instance_id([{"run_id": "x"}])
    assert len(fresh) == 8 and all(c in "0123456789abcdef" for c in fresh)


def test_hyperliquid_cloids_keep_the_instance_prefix() -> None:
    to_cloid = CLIENT_ID_FORMATS["cloid"]
    ours = to_cloid("1a2b3c4d-abcdef00001-0001")
    assert ours.startswith("0x1a2b3c4d") and len(ours) == 34
    assert ours != to_cloid("1a2b3c4d-abcdef00001-0002")
    assert to_cloid("legacy-0001") == to_cloid("legacy-0001") != ours


async def test_every_client_id_of_a_daemon_carries_its_instance_and_a_restart_keeps_it(tmp_path: Path) -> None:
    cfg = demo_config(tmp_path)
    clock = SteppedClock(cfg.clock.start)
    daemon = build_daemon(cfg, clock=clock, serve_http=False)
    task = asyncio.create_task(daemon.run(install_signals=False))
    await run_for(daemon, clock, timedelta(hours=2))
    daemon.request_stop()
    assert await asyncio.wait_for(task, timeout=60) == 0
    ids = Journal(cfg.journal.path).client_ids()
    assert ids and all(cid.startswith(f"{daemon.instance}-") for cid in ids)

    again = build_daemon(cfg, clock=clock, serve_http=False, world=daemon.wiring.world)
    await again.start()
    try:
        assert again.instance == daemon.instance and again.run_id != daemon.run_id
    finally:
        await again.shutdown()
    assert lock_path_of(cfg.journal.path).name == "journal.db.lock"
