"""Walk-forward: grid parsing and overrides, window tiling, the fit's choice, and the command end to end."""

from __future__ import annotations

import asyncio
import html
import itertools
import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from alpha.backtest.runner import replay
from alpha.backtest.source import load_tapes
from alpha.backtest.tearsheet import monthly_returns, tearsheet, worst_drawdown
from alpha.backtest.walkforward import (
    GridError,
    RunFigures,
    apply_overrides,
    choose,
    grid_points,
    parse_grid,
    rolling_windows,
)
from alpha.config import load_config

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / ".." / "shared" / "data"
BINANCE = ROOT / "config" / "backtest-btc-binance.yaml"


def test_grid_items_are_read_in_order_and_bad_items_are_refused() -> None:
    grid = parse_grid(["thresholds.entry_min_net_apr=0.02, 0.05", "fuses.perp.max_leverage=2,3"])
    assert grid == {"thresholds.entry_min_net_apr": ("0.02", "0.05"), "fuses.perp.max_leverage": ("2", "3")}
    for bad in ("thresholds.entry_min_net_apr", "=1,2", "thresholds.entry_min_net_apr="):
        with pytest.raises(GridError, match="KEY=V1,V2"):
            parse_grid([bad])


def test_overrides_set_dotted_paths_fuses_by_name_and_are_validated() -> None:
    config = load_config(BINANCE)
    changed = apply_overrides(config, {"thresholds.entry_min_net_apr": "0.02", "fuses.perp.max_leverage": "2", "thresholds.holding_period": "30d"})
    assert changed.thresholds.entry_min_net_apr == Decimal("0.02")
    assert changed.thresholds.holding_period == timedelta(days=30)
    assert changed.fuse("perp").max_leverage == Decimal(2) and config.fuse("perp").max_leverage == Decimal(3)
    with pytest.raises(GridError, match="no field"):
        apply_overrides(config, {"thresholds.entry_apr": "0.02"})
    with pytest.raises(GridError, match="no fuse named 'nope'"):
        apply_overrides(config, {"fuses.nope.max_leverage": "2"})
    with pytest.raises(GridError, match="exit_min_net_apr must not exceed"):
        apply_overrides(config, {"thresholds.entry_min_net_apr": "-0.01"})


def test_grid_points_drop_invalid_combinations_and_default_to_the_fields_the_file_has() -> None:
    config = load_config(BINANCE)
    points, dropped = grid_points(config, {"thresholds.entry_min_net_apr": ("-0.01", "0.03")})
    assert [p.values for p in points] == [{"thresholds.entry_min_net_apr": "0.03"}] and len(dropped) == 1
    default, _ = grid_points(config, None)
    assert len(default) == 4 and default[0].config.thresholds.entry_min_net_apr == Decimal("0.02")
    with pytest.raises(GridError, match=r"no field 'thresholds\.entry_apr'"):
        grid_points(config, {"thresholds.entry_apr": ("0.1",)})


def test_windows_tile_the_history_after_the_first_training_window() -> None:
    start = datetime(2022, 1, 1, tzinfo=UTC)
    ws = rolling_windows(start, start + timedelta(days=400), timedelta(days=180), timedelta(days=90))
    assert [(w.test_start - start).days for w in ws] == [180, 270]
    assert ws[1].test_end == start + timedelta(days=360)
    assert all(a.test_end == b.test_start for a, b in itertools.pairwise(ws))
    assert all(w.test_start - w.train_start == timedelta(days=180) for w in ws)
    # 400 - 360 = 40 days left: less than half a test window, not tested.
    assert rolling_windows(start, start + timedelta(days=200), timedelta(days=180), timedelta(days=90)) == []


def test_the_fit_picks_the_best_training_pnl_and_breaks_ties_conservatively() -> None:
    def fig(pnl: str, rebalances: int) -> RunFigures:
        return RunFigures(Decimal(pnl), Decimal(0), Decimal(0), Decimal(0), rebalances, {})

    assert choose([fig("10", 1), fig("12", 9), fig("11", 0)]) == 1
    assert choose([fig("12.001", 5), fig("12.004", 2), fig("11", 0)]) == 1  # equal to the cent: fewer rebalances
    assert choose([fig("12", 2), fig("12", 2)]) == 0  # then the earlier point


@pytest.fixture(scope="module")
def binance_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not DATA.exists():
        pytest.skip("shared data missing")
    from alpha.data.canonical import load_funding, price_path, write_funding, write_prices
    from alpha.data.importers import import_file

    d = tmp_path_factory.mktemp("binance")
    for (venue, symbol), series in import_file(DATA / "prices" / "binance_BTC_spot_perp_close_1h_2021-07_to_2024-07.csv").prices.items():
        write_prices(price_path(d, venue, symbol), [p for p in series.points if p.ts < datetime(2022, 4, 1, tzinfo=UTC)])
    funding = load_funding(DATA / "funding" / "binance_BTCUSDT_funding.csv").between(datetime(2021, 12, 1, tzinfo=UTC), datetime(2022, 4, 1, tzinfo=UTC))
    write_funding(d / "binance_BTCUSDT_funding.csv", funding.records)
    return d


def walk_forward(data: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alpha", "backtest", "--config", str(BINANCE), "--data", str(data), "--from", "2022-01-01",
         "--to", "2022-03-01", "--walk-forward", "--train", "20d", "--test", "10d", "--out", str(out), *extra],
        capture_output=True, text=True, cwd=ROOT,
    )


def test_walk_forward_reports_every_window_against_the_baselines_in_json_and_html(binance_dir: Path, tmp_path: Path) -> None:
    grid = ("--grid", "thresholds.entry_min_net_apr=0.05,0.01")
    done = walk_forward(binance_dir, tmp_path / "one", *grid, "--json", "--workers", "1")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)  # pure JSON on stdout
    assert doc["train"] == "20d" and doc["test"] == "10d" and len(doc["grid"]) == 2
    windows = doc["windows"]
    assert [w["test_start"] for w in windows] == ["2022-01-21T00:00:00Z", "2022-01-31T00:00:00Z", "2022-02-10T00:00:00Z", "2022-02-20T00:00:00Z"]
    for w in windows:
        best = max(range(2), key=lambda i: (Decimal(w["train_net_pnl"][i]), -i))
        assert w["chosen"] == doc["grid"][best] or w["train_net_pnl"][0] == w["train_net_pnl"][1]
        assert {"passive perp", "trailing 7d", "trailing 7d, flat if negative", "perfect foresight"} <= set(w["baselines_apr"])
        (btc,) = w["assets"]
        # The bound maximises funding net of costs: its carry is at least the passive one's.
        assert Decimal(btc["baselines_apr"]["perfect foresight"]) >= Decimal(btc["baselines_apr"]["passive perp"])
        assert btc["asset"] == "BTC" and btc["venues"][0]["venue"] == "perp"
    agg = doc["aggregate"]
    assert agg["windows"] == 4 and set(agg["strategy_at_least"]) == set(windows[0]["baselines_apr"])
    assert all(0 <= v <= 1 for v in agg["strategy_at_least"].values())
    assert set(agg["baselines_carry_apr"]) == set(agg["strategy_carry_at_least"]) == set(agg["baselines_apr"])
    carry = sum(Decimal(w["strategy"]["funding"]) - Decimal(w["strategy"]["fees"]) - Decimal(w["strategy"]["slippage"]) for w in windows)
    assert (carry > 0) == (Decimal(agg["strategy_carry_apr"]) > 0)
    assert json.loads((tmp_path / "one" / "walk-forward.json").read_text()) == doc
    page = (tmp_path / "one" / "walk-forward.html").read_text()
    assert "2022-01-21..2022-01-31" in page and "Out of sample, all test windows" in page
    assert all(f'<section id="{key}">' in page for key in ("summary", "windows", "equity", "assets", "venues", "fits"))
    assert 'src="http' not in page and "plotly.js v" in page  # interactive, self-contained
    assert_chained_risk_figures(page, doc, binance_dir)
    # The default (one local worker process per CPU) gives the same figures as one process.
    two = walk_forward(binance_dir, tmp_path / "two", *grid, "--json")
    assert two.returncode == 0, two.stderr
    assert json.loads(two.stdout) == doc


def figure(page: str, section: str, label: str) -> str:
    """The value cell beside ``label`` in the page's section ``section``."""
    body = page.split(f'<section id="{section}">', 1)[1].split("</section>", 1)[0]
    found = re.search(rf"<td>{re.escape(html.escape(label))}</td><td[^>]*>([^<]*)</td>", body)
    assert found, (section, label)
    return html.unescape(found.group(1))


def assert_chained_risk_figures(page: str, doc: dict[str, Any], data: Path) -> None:
    """The page's out-of-sample risk and monthly figures are those of the test windows' NAV chained end to end.

    Computed here independently: each test window replayed again with the grid point it chose, its
    samples scaled onto the NAV the previous window ended with, and the tearsheet of that series.
    """
    config = load_config(BINANCE)
    tapes = load_tapes(config, data)
    points: list[tuple[datetime, Decimal]] = []
    for w in doc["windows"]:
        start, end = (datetime.fromisoformat(w[k]) for k in ("test_start", "test_end"))
        run = asyncio.run(replay(apply_overrides(config, w["chosen"]), tapes, start, end))
        assert str((run.final_nav - run.initial_nav).quantize(Decimal("0.01"))) == w["strategy"]["net_pnl"]  # the same replay
        base = points[-1][1] if points else Decimal(doc["nav"])
        if not points:
            points.append((start, base))
        # Each window keeps its last sample of each UTC day (drawdowns and months are read on those).
        points += sorted({s.ts.date(): (s.ts, base * s.nav / run.initial_nav) for s in run.samples}.values())
    sheet = tearsheet(points, funding=Decimal(0), fees=Decimal(0), slippage=Decimal(0), traded_notional=Decimal(0))
    assert sheet.volatility is not None and sheet.volatility > 0
    assert figure(page, "risk", "volatility (annualised)") == f"{sheet.volatility * 100:.2f}%"
    assert figure(page, "risk", "total return") == f"{float(sheet.total_return) * 100:.2f}%"
    assert figure(page, "risk", "max drawdown") == f"{float(sheet.max_drawdown) * 100:.2f}%"
    assert figure(page, "risk", "Sortino") == ("n/a" if sheet.sortino is None else f"{sheet.sortino:.2f}")
    assert figure(page, "risk", "Calmar") == ("n/a" if sheet.calmar is None else f"{sheet.calmar:.2f}")
    worst = worst_drawdown(points)
    assert worst is not None and f"{worst.peak:%Y-%m-%d} .. {worst.trough:%Y-%m-%d}" in figure(page, "risk", "max drawdown peak .. trough")
    # Monthly returns of the chained test windows only: January (from the first test start) and February 2022, no
    # training month (December 2021) and no look-ahead past the last test window.
    monthly = monthly_returns(points)
    assert sorted(monthly) == [(2022, 1), (2022, 2), (2022, 3)] or sorted(monthly) == [(2022, 1), (2022, 2)]
    table = page.split('<section id="monthly">', 1)[1].split("</section>", 1)[0]
    assert "<td>2022</td>" in table and "<td>2021</td>" not in table
    for (_, m), r in monthly.items():
        cells = re.findall(r'<td class="n[^"]*">([^<]*)</td>', table)
        assert cells[m - 1] == f"{float(r) * 100:.2f}%", (m, cells)


def test_walk_forward_refuses_a_bad_grid_and_too_short_a_history_in_one_line(binance_dir: Path, tmp_path: Path) -> None:
    bad = walk_forward(binance_dir, tmp_path, "--grid", "thresholds.entry_apr=0.1")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "no field 'thresholds.entry_apr'" in bad.stderr
    short = walk_forward(binance_dir, tmp_path, "--train", "90d", "--grid", "thresholds.entry_min_net_apr=0.05")
    assert short.returncode == 2 and "shorter than one training" in short.stderr and "Traceback" not in short.stderr
