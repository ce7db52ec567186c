"""The terminal view (``alpha.daemon.console``) drawn by rich from a real demo daemon's status.

A demo daemon runs in-process for a simulated day on the stepped clock (hedges open, funding
and fees accrue); its ``status()`` is rendered on recording consoles of fixed sizes. At 80x24
the header (mode, readiness, NAV, net PnL, funding, fees, idle) is on the first lines and the
screen never runs past 24 lines; at 160x48 it grows (more positions, events, and columns).
No figure is cut: each amount the status holds appears whole on the screen.
"""

from __future__ import annotations

import asyncio
import io
import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from rich.console import Console

from alpha.daemon.app import build_daemon
from alpha.daemon.console import StatusScreen, money, quantity, render
from tests.e2e.harness import SteppedClock, demo_config, run_for

NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?")


@pytest.fixture(scope="module")
def status(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The status of the demo daemon after a simulated day (hedges open, funding and fees paid)."""
    tmp = tmp_path_factory.mktemp("console")

    async def day() -> dict[str, Any]:
        cfg = demo_config(tmp)
        assert cfg.clock.start is not None
        clock = SteppedClock(cfg.clock.start)
        daemon = build_daemon(cfg, clock=clock, serve_http=False)
        task = asyncio.create_task(daemon.run(install_signals=False))
        await run_for(daemon, clock, timedelta(days=1))
        daemon.set_paused("operator", True)
        snapshot = daemon.status()
        daemon.request_stop()
        assert await asyncio.wait_for(task, 30) == 0
        return snapshot

    return asyncio.run(day())


def _screen(status: dict[str, Any], width: int, height: int) -> list[str]:
    console = Console(width=width, height=height, record=True, file=io.StringIO(), color_system=None)
    console.print(StatusScreen(status))
    return console.export_text().rstrip("\n").splitlines()


def _figures(status: dict[str, Any]) -> dict[str, str]:
    pnl = status["pnl"]
    return {
        "nav": money(status["nav"]),
        "net PnL": money(pnl["net_pnl"], signed=True),
        "funding": money(pnl["funding"], signed=True),
        "fees": money(-Decimal(pnl["fees"]), signed=True),
        "idle": money(status["idle"]),
    }


def test_the_demo_status_carries_what_the_screen_needs(status: dict[str, Any]) -> None:
    pnl = status["pnl"]
    assert Decimal(pnl["fees"]) > 0, "a day of hedging pays fees"
    assert Decimal(pnl["funding"]) != 0, "and earns or pays funding"
    assert Decimal(pnl["net_pnl"]) == Decimal(status["nav"]) - Decimal(pnl["start_nav"])
    assert status["positions"] and status["fuses"] and status["events"]
    assert status["allocations"] is None, "demo mode moves real (simulated) money: no journal-only allocation"


def test_80x24_keeps_the_header_and_the_key_figures_on_screen(status: dict[str, Any]) -> None:
    lines = _screen(status, 80, 24)

    assert len(lines) <= 24
    assert all(len(line) <= 80 for line in lines)
    assert lines[0].startswith("alpha demo") and "PAUSED: operator" in lines[0]
    head = "\n".join(lines[:3])
    for label, value in _figures(status).items():
        assert label in head or label.upper() in head, label
        assert value in head.split(), f"{label} {value} is whole in the header: {head}"
    body = "\n".join(lines)
    for name, info in status["fuses"].items():
        assert re.search(rf"^{re.escape(name)}\s+{re.escape(money(info['capital']))}(\s|$)", body, re.M), name
    assert "…" not in body  # nothing ellipsised: numbers are never cut


def test_160x48_grows_with_the_terminal(status: dict[str, Any]) -> None:
    small, large = _screen(status, 80, 24), _screen(status, 160, 48)

    assert len(large) <= 48 and all(len(line) <= 160 for line in large)
    assert large[0] == small[0]
    assert "notional" in "\n".join(large) and "notional" not in "\n".join(small)
    shown_small = sum(1 for p in status["positions"] if any(quantity(p["size"]) in line.split() for line in small))
    shown_large = sum(1 for p in status["positions"] if any(quantity(p["size"]) in line.split() for line in large))
    assert shown_large >= shown_small
    events_large = [line for line in large if line.startswith("  ")]
    events_small = [line for line in small if line.startswith("  ")]
    assert len(events_large) > len(events_small)
    assert status["events"][-1].split()[-1] in "\n".join(large)  # the newest event is shown


def test_no_number_is_cut_at_any_width(status: dict[str, Any]) -> None:
    wanted = set(_figures(status).values()) | {money(i["capital"]) for i in status["fuses"].values()}
    for width, height in ((80, 24), (100, 30), (132, 40), (160, 48)):
        lines = _screen(status, width, height)
        tokens = {t for line in lines for t in NUMBER.findall(line)}
        assert wanted <= tokens, f"{width}x{height}: missing {wanted - tokens}"
        assert len(lines) <= height


def test_journal_only_allocations_are_labelled(status: dict[str, Any]) -> None:
    live = {
        **status,
        "mode": "live",
        "allocations": {"label": "journal-only allocation", "asset": "USDC", "total": "40000.00", "fuses": {"spot": "40000.00"}},
        "fuses": {**status["fuses"], "spot": {**status["fuses"]["spot"], "allocated": "40000.00"}},
    }
    text = render(live, width=80, height=24)
    words = " ".join(text.split())

    assert "idle includes 40,000.00 USDC journal-only allocation (spot 40,000.00): no money moved between venues" in words
    assert "idle here (journal only)" in text
    assert re.search(r"^spot\s+\S+\s+\S+\s+40,000\.00$", text, re.M)



def test_a_wide_screen_shows_how_far_each_perp_is_from_liquidation(status: dict[str, Any]) -> None:
    liquidatable = [r for r in status["perp_power"] if r["liquidation_distance"] is not None]
    assert liquidatable, "the demo's perps can be liquidated"
    large, small = "\n".join(_screen(status, 160, 48)), "\n".join(_screen(status, 80, 24))

    for row in liquidatable:
        move = "rise" if row["direction"] == "up" else "fall"
        assert f"a {Decimal(row['liquidation_distance']) * 100:.1f}% {move}" in large
    assert "liquidated after" in large and "liquidated after" not in small
