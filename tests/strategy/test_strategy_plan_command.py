"""``alpha plan``: every example strategy plans; the JSON keeps its shape and its invariants."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest

from alpha.cli import main
from alpha.config import load_config

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "config").glob("*.yaml"))
D = Decimal


def _plan_json(path: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    # A live example is planned on the real venues unless --simulated (no keys or venues here).
    simulated = ["--simulated"] if load_config(path).mode == "live" else []
    code = main(["plan", "--config", str(path), "--json", *simulated])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def _check_invariants(report: dict, path: Path) -> None:
    config = load_config(path)
    nav = D(report["nav"])
    assert D(report["idle"]) >= config.idle_buffer * nav * (1 - D("1e-9"))
    for name, fuse in report["fuses"].items():
        assert set(fuse) == {"capital", "cap", "leverage", "max_leverage"}
        assert D(fuse["capital"]) <= D(fuse["cap"]) * (1 + D("1e-9")) + D("1e-6"), name
        assert D(fuse["leverage"]) <= D(fuse["max_leverage"]) * (1 + D("1e-9")), name
    for asset, delta in report["net_delta"].items():
        assert abs(D(delta)) <= config.delta_tolerance * D(report["gross"][asset]) + D("1e-9"), asset
    for row in report["actions"]:
        assert {"type", "fuse", "market", "side", "quantity", "reason"} <= set(row)
        assert D(row["quantity"]) > 0 and row["reason"]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_strategy_plans_without_error(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = _plan_json(path, capsys)
    assert {"nav", "idle", "fuses", "net_delta", "gross", "actions"} <= set(report)
    assert isinstance(report["nav"], str) and D(report["nav"]) > 0
    _check_invariants(report, path)


def test_plan_opens_delta_neutral_hedges_when_funding_is_rich(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (REPO / "config" / "demo.yaml").read_text()
    text = text.replace('bull_mean_apr: "0.15"', 'bull_mean_apr: "2.5"').replace("holding_period: 7d", "holding_period: 60d")
    text = text.replace('volatility_apr: "0.25"', 'volatility_apr: "0.01"').replace('regime_switch_per_year: "6"', 'regime_switch_per_year: "0"')
    path = tmp_path / "rich.yaml"
    path.write_text(text)
    report = _plan_json(path, capsys)
    kinds = [row["type"] for row in report["actions"]]
    assert "OpenHedge" in kinds, report["reasons"]
    # Margin reaches a perp fuse before the hedge that needs it is opened.
    first_open = kinds.index("OpenHedge")
    opened_fuses = {row["fuse"] for row in report["actions"] if row["type"] == "OpenHedge"}
    funded = {row["fuse"] for row in report["actions"][:first_open] if row["type"] == "Transfer"}
    assert opened_fuses <= funded
    assert any(D(g) > 0 for g in report["gross"].values())
    _check_invariants(report, path)


def test_human_readable_table_and_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(REPO / "config" / "demo.yaml")]) == 0
    out = capsys.readouterr().out
    assert "NAV 1,000,000.00" in out and "perp-cex" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nvault: {nav: '1'}\nfuses: []\nassets: [BTC]\nbogus: 1\n")
    assert main(["plan", str(bad)]) == 1
    assert "bogus" in capsys.readouterr().err


@pytest.mark.parametrize("path", [p for p in EXAMPLES if load_config(p).mode == "live"], ids=lambda p: p.name)
def test_a_live_example_without_its_venues_is_one_clear_line(
    path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in re.findall(r"env:\s*([A-Za-z_][A-Za-z0-9_]*)", path.read_text()):  # no keys: never reach a real venue
        monkeypatch.delenv(name, raising=False)
    code = main(["plan", "--config", str(path), "--json"])
    out = capsys.readouterr()
    assert code == 1 and out.out == ""
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("alpha plan: cannot read the venues: ") and "--simulated" in lines[0], out.err
