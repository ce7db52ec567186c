"""What a live operator sees, against the Binance USD-M emulator with the real ccxt client.

* ``alpha plan`` on a live file reads the venue (account, positions, marks, funding, books)
  and never sends an order: a position opened there first is in the plan; ``--simulated``
  plans on a simulated stand-in instead, which holds nothing.
* A live daemon's idle buffer is capital allocated to the vault in the journal only (it never
  leaves the venue): its events, status, terminal screen and portfolio say so, and so do
  ``alpha status`` and ``alpha inspect`` found from the strategy file (the daemon's accounts
  while it runs, the venue's afresh once it has stopped); a plan made afterwards counts it as
  the vault's idle capital, as the daemon does.

Everything runs on the wall clock (the emulator's and the fuse's), as ``alpha emulate`` does.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from alpha.commands.plan import build_live_plan, build_plan
from alpha.config import load_config
from alpha.daemon.app import build_daemon
from alpha.daemon.console import render
from alpha.daemon.journal import Journal
from alpha.domain.account import OrderRequest, OrderType
from alpha.domain.clock import LiveClock
from alpha.domain.instruments import Side
from alpha.domain.money import ZERO
from fuses.emulators.common import EmulatorServer
from fuses.sim.engine import SimExchange
from tests.e2e.prom import free_port
from tests.emulators.sim_backend import SimBackend
from tests.live.test_live_streams import STRATEGY, SYMBOL, binance, credentials

__all__ = ["binance", "credentials"]  # fixtures of the live streams test, used here

ORDER_PATH = "/fapi/v1/order"



@dataclass
class Venue:
    server: EmulatorServer
    engine: SimExchange
    backend: SimBackend


@pytest.fixture
def venue(binance: EmulatorServer) -> Venue:
    """The Binance emulator of the live streams test (100,000 USDT on account "us", BTC at 60,000) and its engine."""
    backend: SimBackend = binance.state.backend
    return Venue(binance, backend.engine, backend)


def _strategy(tmp_path: Path, venue: Venue) -> Path:
    path = tmp_path / "live-views.yaml"  # the streams test's strategy: one Binance fuse, 100,000 USDT
    path.write_text(STRATEGY.format(url=venue.server.url, symbol=SYMBOL, journal=tmp_path / "journal.db"))
    return path


def _open_by_hand(venue: Venue, size: Decimal) -> None:
    """A position opened on the account before the plan (by hand, through the venue itself)."""
    venue.backend.submit("us", OrderRequest("by-hand-1", SYMBOL, Side.BUY, size, OrderType.MARKET), LiveClock().now())
    held = venue.engine.snapshot("us", LiveClock().now()).position(SYMBOL)
    assert held is not None and held.size == size


async def alpha(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the ``alpha`` command line while this loop keeps serving the emulator (and the daemon)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "alpha", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=cwd, env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert "Traceback" not in err.decode()
    return int(proc.returncode or 0), out.decode(), err.decode()


async def test_a_live_plan_reads_the_position_open_on_the_venue_and_sends_no_order(tmp_path: Path, venue: Venue) -> None:
    _open_by_hand(venue, Decimal("0.5"))
    config = load_config(_strategy(tmp_path, venue))
    orders_before = venue.server.state.log.count(path=ORDER_PATH)

    report = await build_live_plan(config, LiveClock())

    assert report["simulated"] == []
    assert report["read_from"] == {"binance": f"binanceusdm at {venue.server.url}"}
    assert [(p["fuse"], p["market"], Decimal(p["size"])) for p in report["positions"]] == [("binance", SYMBOL, Decimal("0.5"))]
    unwind = [a for a in report["actions"] if a["type"] == "CloseHedge"]
    assert [(a["fuse"], a["market"], a["side"], Decimal(a["quantity"])) for a in unwind] == [("binance", SYMBOL, "sell", Decimal("0.5"))]
    assert "not part of any hedge" in unwind[0]["reason"], "the plan unwinds the leg it found on the venue"
    assert all(a.get("allocation") == "journal-only allocation" for a in report["actions"] if a["type"] == "Transfer")
    equity = venue.engine.snapshot("us", LiveClock().now()).margin.equity  # type: ignore[union-attr]
    assert abs(Decimal(report["nav"]) - equity) <= equity * Decimal("0.001"), "NAV is the venue's equity (less planned costs)"
    assert venue.server.state.log.count(path="/fapi/v2/account") + venue.server.state.log.count(path="/fapi/v3/account") >= 1
    assert venue.server.state.log.count(path=ORDER_PATH) == orders_before == 0, "planning sends no order"
    assert venue.engine.snapshot("us", LiveClock().now()).position(SYMBOL).size == Decimal("0.5")  # type: ignore[union-attr]

    simulated = build_plan(config)
    assert simulated["simulated"] and "positions" not in simulated
    assert Decimal(simulated["nav"]) != Decimal(report["nav"])


async def test_alpha_plan_on_a_live_file_prints_pure_json_and_says_what_it_read(tmp_path: Path, venue: Venue) -> None:
    _open_by_hand(venue, Decimal("0.25"))
    path = _strategy(tmp_path, venue)

    async def plan(*extra: str) -> tuple[int, str, str]:
        return await alpha("plan", "--config", str(path), *extra, cwd=tmp_path)

    code, out, err = await plan("--json")
    assert code == 0, err
    report = json.loads(out)  # the whole of stdout
    assert [Decimal(p["size"]) for p in report["positions"]] == [Decimal("0.25")]
    code, text, err = await plan()
    assert code == 0, err
    assert f"read from the venue (read only): binance on binanceusdm at {venue.server.url}" in text
    assert f"open now: binance {SYMBOL} 0.25" in text
    code, out, err = await plan("--simulated", "--json")
    assert code == 0, err
    assert json.loads(out)["simulated"]
    assert venue.server.state.log.count(path=ORDER_PATH) == 0


async def test_a_live_daemons_idle_buffer_is_labelled_a_journal_only_allocation(
    tmp_path: Path, venue: Venue, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _strategy(tmp_path, venue)
    control = f"127.0.0.1:{free_port()}"
    path.write_text(path.read_text() + f"control: {{address: '{control}'}}\nmetrics: {{address: '127.0.0.1:{free_port()}'}}\n")
    config = load_config(path)
    env = {k: v for k, v in os.environ.items() if k != "ALPHA_CONTROL_TOKEN"}  # the daemon writes one beside its journal
    monkeypatch.delenv("ALPHA_CONTROL_TOKEN", raising=False)
    daemon = build_daemon(config, mode="live", poll_every=timedelta(milliseconds=300))
    task = asyncio.create_task(daemon.run(install_signals=False))
    journal_path = tmp_path / "journal.db"
    try:
        loop = asyncio.get_running_loop()
        end = loop.time() + 60
        while daemon.journal is None or daemon.journal.count("allocation") == 0:
            assert not task.done() and loop.time() < end, "no allocation journalled within 60 s"
            await asyncio.sleep(0.05)
        while daemon.executing or not daemon.decisions:
            await asyncio.sleep(0.05)
        daemon.export_view(await daemon.view(daemon.clock.now()))
        status = daemon.status()
        portfolio = daemon.portfolio()
        # The operator's commands, from another directory, find the daemon from the file alone.
        code, inspected, err = await alpha("inspect", "--config", str(path), cwd=tmp_path.parent, env=env)
        assert code == 0, err
        code, out, err = await alpha("inspect", "--config", str(path), "--json", cwd=tmp_path.parent, env=env)
        assert code == 0, err
        accounts = json.loads(out)
        code, out, err = await alpha("status", "--config", str(path), "--json", cwd=tmp_path.parent, env=env)
        assert code == 0, err
        remote = json.loads(out)
        code, screen, err = await alpha("status", "--config", str(path), cwd=tmp_path.parent, env=env)
        assert code == 0, err
    finally:
        daemon.request_stop()
        assert await asyncio.wait_for(task, 30) == 0

    allocated = sum((r.amount or ZERO for r in Journal(journal_path).records("allocation")), ZERO)
    assert allocated > 0
    assert status["allocations"]["label"] == "journal-only allocation"
    assert Decimal(status["allocations"]["total"]) == allocated.quantize(Decimal("0.01"))
    assert Decimal(status["fuses"]["binance"]["allocated"]) == allocated.quantize(Decimal("0.01"))
    assert Decimal(status["idle"]) == allocated.quantize(Decimal("0.01")), "the vault's idle is the allocation"
    assert portfolio["allocations"] == status["allocations"]
    assert any("journal-only allocation" in e and "no money moved" in e for e in status["events"])
    assert not any(e.split(" ", 2)[2].startswith("Transfer done") for e in status["events"]), status["events"]
    words = " ".join(render(status, width=80, height=24).split())
    assert "journal-only allocation (binance" in words and "idle here (journal only)" in words

    assert inspected.startswith(f"from the running daemon at {control} (mode live")
    assert "journal-only allocation: 100000" in inspected and "not in the balance above" in inspected
    assert accounts[0]["source"] == f"running daemon at {control}"
    assert accounts[0]["allocated_to_vault"] == {"amount": status["allocations"]["fuses"]["binance"], "label": "journal-only allocation", "included": False}
    assert remote["allocations"] == status["allocations"] and [a["fuse"] for a in remote["accounts"]] == ["binance"]
    assert "journal-only allocation" in " ".join(screen.split())

    # Once it has stopped, inspect reads the venue afresh: the allocation is in the balance it reports.
    code, fresh, err = await alpha("inspect", "--config", str(path), cwd=tmp_path.parent, env=env)
    assert code == 0, err
    assert fresh.startswith("read afresh (live: the venues")
    assert "journal-only allocation: 100000" in fresh and "included in the balance above" in fresh

    # A plan made now counts the allocation as the vault's idle capital, as the daemon did.
    report = await build_live_plan(config, LiveClock())
    assert Decimal(report["idle"]) == allocated and report["actions"] == [], "the allocation stands: nothing more to move"
    assert venue.engine.snapshot("us", LiveClock().now()).balance("USDT").total >= allocated, "the money never left the venue"
