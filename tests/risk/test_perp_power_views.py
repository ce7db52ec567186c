"""The p-perp view where people read it: ``alpha plan --json``, ``alpha status`` and the position metrics."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from alpha.cli import main
from alpha.daemon.app import build_daemon
from tests.budgets import CPU_BOUND
from tests.e2e.harness import SteppedClock, demo_config, run_for

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "config" / "demo.yaml"
D = Decimal
CLOSE = D("1e-5")  # the report rounds ratios to 6 places


def _plan(path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    code = main(["plan", "--config", str(path), "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    report: dict[str, Any] = json.loads(out.out)
    return report


def _recomputed(row: dict[str, Any]) -> Decimal:
    """c = collateral / (|quantity| x index^p), from the row's own figures."""
    return D(row["collateral"]) / (abs(D(row["quantity"])) * D(row["index"]) ** row["power"])


def test_plan_on_the_demo_shows_every_holding_as_a_p_perp(capsys: pytest.CaptureFixture[str]) -> None:
    report = _plan(DEMO, capsys)
    rows = report["perp_power"]
    kinds = {r["kind"] for r in rows}
    assert {"stablecoin", "spot", "linear_perp"} <= kinds, rows
    vault = next(r for r in rows if r["fuse"] == "vault")
    assert vault["power"] == 0 and D(vault["quantity"]) == D(report["idle"])
    for r in rows:
        assert abs(_recomputed(r) - D(r["collateral_ratio"])) < CLOSE, r
        if r["kind"] == "linear_perp":
            # The demo's short perp legs at up to 3x: c between 1/3 and 1, far above maintenance.
            assert r["power"] == 1 and D(r["quantity"]) < 0 and r["direction"] == "up"
            assert D("0.33") < D(r["collateral_ratio"]) < 1 and 0 < D(r["min_ratio"]) < D("0.05")
            assert D(r["liquidation_distance"]) == ((D(r["collateral_ratio"]) - D(r["min_ratio"])) / (1 + D(r["min_ratio"]))).quantize(CLOSE / 10)
        else:
            assert r["collateral_ratio"] == "1.000000" and r["liquidation_distance"] is None
    # The spot legs are the perps' hedges: as many coins long as the perps are short.
    for perp in (r for r in rows if r["kind"] == "linear_perp"):
        spot = next(r for r in rows if r["kind"] == "spot" and r["asset"] == perp["asset"])
        assert D(spot["quantity"]) == -D(perp["quantity"])


def test_plan_of_a_bear_market_shows_the_synthetic_shorts_loop_within_its_market(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = DEMO.read_text()
    for old, new in (
        ('bull_mean_apr: "0.30"', 'bull_mean_apr: "-1.5"'),
        ('bear_mean_apr: "-0.06"', 'bear_mean_apr: "-1.5"'),
        ('volatility_apr: "0.25"', 'volatility_apr: "0.01"'),
        ('regime_switch_per_year: "6"', 'regime_switch_per_year: "0"'),
        ("    assets: [USDC]\n", "    assets: [USDC, BTC, ETH]\n"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "bear.yaml"
    path.write_text(text)
    report = _plan(path, capsys)
    loops = [r for r in report["perp_power"] if r["kind"] == "lending_loop"]
    assert loops, report["reasons"]
    assert any(a["type"] == "Borrow" for a in report["actions"])
    for loop in loops:
        c, c_min = D(loop["collateral_ratio"]), D(loop["min_ratio"])
        assert loop["power"] == 1 and D(loop["quantity"]) < 0 and loop["market"] == f"borrow:{loop['asset']}"
        assert abs(_recomputed(loop) - c) < CLOSE
        assert c_min == D("1.25")  # the simulated market's liquidation threshold is 0.8
        assert D(loop["max_leverage"]) == 4  # 1 / (1.25 - 1)
        # Built at 1.25 x the strategy's minimum (health factor 1.5 / 0.8): checked before it was built.
        assert c >= D("1.5") / D("0.8")
        assert abs(D(loop["liquidation_distance"]) - (c / c_min - 1)) < CLOSE and loop["direction"] == "up"
        perp = next(r for r in report["perp_power"] if r["kind"] == "linear_perp" and r["asset"] == loop["asset"])
        assert D(perp["quantity"]) == -D(loop["quantity"]) and perp["direction"] == "down"
    assert not any("no synthetic short" in r for r in report["reasons"])
    # The table says the same.
    assert main(["plan", "--config", str(path)]) == 0
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if line.startswith(f"lending:borrow:{loops[0]['asset']}"))
    assert row.split()[1:] == ["1", f"{D(loops[0]['collateral_ratio']):.4f}", "1.2500", f"{D(loops[0]['liquidation_distance']) * 100:.1f}%", "up", "4.00x"]


@CPU_BOUND
def test_status_and_metrics_show_the_p_perp_view_of_a_running_demo(tmp_path: Path) -> None:
    async def half_day() -> tuple[dict[str, Any], dict[tuple[str, str], tuple[float | None, float | None]]]:
        cfg = demo_config(tmp_path)
        assert cfg.clock.start is not None
        clock = SteppedClock(cfg.clock.start)
        daemon = build_daemon(cfg, clock=clock, serve_http=False)
        task = asyncio.create_task(daemon.run(install_signals=False))
        try:
            await run_for(daemon, clock, timedelta(hours=12))
            daemon.set_paused("operator", True)
            status = daemon.status()
            samples = {}
            for row in status["perp_power"]:
                labels = {"fuse": row["fuse"], "market": row["market"]}
                samples[(row["fuse"], row["market"])] = (
                    daemon.metrics.registry.get_sample_value("alpha_position_collateral_ratio", labels),
                    daemon.metrics.registry.get_sample_value("alpha_position_liquidation_distance_ratio", labels),
                )
        finally:
            daemon.request_stop()
            assert await asyncio.wait_for(task, 60) == 0
        return status, samples

    status, samples = asyncio.run(half_day())
    rows = json.loads(json.dumps(status))["perp_power"]  # plain JSON, as `alpha status --json` prints it
    perps = [r for r in rows if r["kind"] == "linear_perp"]
    assert perps, rows
    held = {(p["fuse"], p["market"]): D(p["size"]) for p in status["positions"]}
    for r in perps:
        assert held[(r["fuse"], r["market"])] == D(r["quantity"])
        assert 0 < D(r["liquidation_distance"]) < 1
        ratio, distance = samples[(r["fuse"], r["market"])]
        assert ratio is not None and abs(D(str(ratio)) - D(r["collateral_ratio"])) < CLOSE
        assert distance is not None and abs(D(str(distance)) - D(r["liquidation_distance"])) < CLOSE
    for r in rows:
        if r["min_ratio"] is None:  # what cannot be liquidated is not exported
            assert samples[(r["fuse"], r["market"])] == (None, None)
