"""`alpha backtest` end to end: summary, JSON and a self-contained interactive HTML page."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / ".." / "shared" / "data"
pytestmark = pytest.mark.skipif(not DATA.exists(), reason="shared data missing")


def alpha(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "alpha", *args], capture_output=True, text=True, cwd=ROOT)


def test_example_backtest_configs_validate() -> None:
    for f in sorted((ROOT / "config").glob("backtest-*.yaml")):
        done = alpha("check", str(f))
        assert done.returncode == 0, done.stderr


def test_backtest_writes_summary_json_and_an_interactive_html_report(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "report"
    imported = alpha(
        "data",
        "import",
        str(DATA / "prices" / "binance-bybit-okx_BTC-ETH_8h_spot_perp_ohlc_funding_2023-2024.csv"),
        "--out",
        str(data),
    )
    assert imported.returncode == 0, imported.stderr
    done = alpha(
        "backtest",
        "--config",
        str(ROOT / "config" / "backtest-btc-eth-multivenue.yaml"),
        "--data",
        str(data),
        "--from",
        "2023-02-01",
        "--to",
        "2023-03-15",
        "--out",
        str(out),
        "--json",
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert set(summary) == {"strategy", "baseline", "baselines"}
    names = {(b["asset"], b["name"]) for b in summary["baselines"]}
    for asset in ("BTC", "ETH"):
        for name in ("passive binance-perp", "passive bybit-perp", "best venue (hindsight)", "trailing 7d", "perfect foresight"):
            assert (asset, name) in names
    assert all({"net_pnl", "fees", "funding", "apr_on_nav", "apr_on_notional", "switches"} <= set(b) for b in summary["baselines"])
    keys = {
        "net_apr",
        "funding_income",
        "fees",
        "slippage",
        "lending_income",
        "max_drawdown",
        "sharpe",
        "negative_day_share",
        "rebalances",
        "liquidations",
        "cagr",
        "volatility",
        "sortino",
        "calmar",
        "max_drawdown_days",
        "turnover",
        "fee_share_of_funding",
    }
    assert keys <= set(summary["strategy"]) and keys <= set(summary["baseline"])
    s = summary["strategy"]
    assert abs(Decimal(s["fee_share_of_funding"]) - Decimal(s["fees"]) / Decimal(s["funding_income"])) < Decimal("0.00001")  # amounts to the cent
    assert Decimal(s["turnover"]) > 0 and s["rebalances"] > 0
    assert summary["baseline"]["rebalances"] <= 1
    assert json.loads((out / "summary.json").read_text()) == summary
    page = (out / "report.html").read_text()
    for name in ("equity", "drawdown", "funding", "exposure", "margin"):
        assert f'id="chart-{name}"' in page
    assert page.count("Plotly.newPlot") >= 5 and "plotly.js v" in page  # plotly.js inlined, once
    for section in ("summary", "baselines", "monthly", "venues", "assets", "trades", "fills"):
        assert f'<section id="{section}">' in page
    assert "perfect foresight" in page and "Sharpe-like ratio" in page and "OpenHedge" in page
    assert 'src="http' not in page and "<link" not in page  # self-contained: opens offline
    assert not list(out.glob("*.png"))


def test_backtest_refuses_missing_data_naming_the_file(tmp_path: Path) -> None:
    done = alpha("backtest", "--config", str(ROOT / "config" / "backtest-btc-binance.yaml"), "--data", str(tmp_path))
    assert done.returncode == 2
    assert "binance_BTCUSDT_funding.csv" in done.stderr
