"""``alpha research evaluate``: the case table, the generated configurations and one case end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from alpha.backtest.source import load_tapes
from alpha.backtest.walkforward import rolling_windows
from alpha.config import load_config
from alpha.research import evaluate as ev

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / ".." / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.exists(), reason="shared data missing")

# What a case may change in its template: venue, market, asset and data fields, nothing else.
ADAPTABLE = ("assets", "risk.max_data_age")
ADAPTABLE_IN_FUSE = ("venue", "markets", "options.", "sim.funding_interval")


def _allowed(path: str) -> bool:
    if path in ADAPTABLE:
        return True
    head, _, rest = path.partition(".")
    if head != "fuses":
        return False
    _fuse, _, field = rest.partition(".")
    return any(field == f or (f.endswith(".") and field.startswith(f)) for f in ADAPTABLE_IN_FUSE)


@needs_data
def test_every_listed_file_exists_and_every_recorded_series_is_evaluated_or_skipped_with_a_reason() -> None:
    used = {s.path for c in ev.CASES for s in c.sources}
    skipped = {f for s in ev.SKIPPED for f in s.files}
    for case in ev.CASES:
        assert ev.missing_files(case, DATA) == [], case.name
    recorded = {
        f"{d}/{p.name}" for d in ("prices", "funding", "uxd") for p in (DATA / d).iterdir() if p.suffix in (".csv", ".feather")
    }
    assert recorded - used - skipped == set()  # a new file in shared/data must be placed in the table
    assert used & skipped == set()
    assert all(s.reason for s in ev.SKIPPED)
    names = [c.name for c in ev.CASES]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("case", ev.CASES, ids=lambda c: c.name)
def test_generated_configs_validate_and_differ_from_the_template_only_in_venue_market_asset_and_data(case: ev.Case) -> None:
    template = load_config(case.template)
    config = ev.case_config(case, template)  # validated by StrategyConfig

    changed = ev.adapted_fields(template, config)

    assert [p for p in changed if not _allowed(p)] == []
    assert config.thresholds == template.thresholds
    assert config.pnl == template.pnl and config.margin == template.margin and config.vault == template.vault
    assert config.risk.model_copy(update={"max_data_age": template.risk.max_data_age}) == template.risk
    assert config.risk.max_data_age >= template.risk.max_data_age
    assert config.assets == (case.asset,)
    for old, new in zip(template.fuses, config.fuses, strict=True):
        assert (new.name, new.max_share, new.max_leverage, new.kind) == (old.name, old.max_share, old.max_leverage, old.kind)
        assert new.sim is not None and old.sim is not None
        assert (new.sim.maker_fee, new.sim.taker_fee, new.sim.depth_notional) == (old.sim.maker_fee, old.sim.taker_fee, old.sim.depth_notional)
        assert all(m.split("/")[0] == case.asset for m in new.markets)
    # The data location names the case's legs.
    legs = [case.spot, *case.perps]
    for fuse, leg in zip(config.fuses, legs, strict=True):
        (market,) = fuse.markets
        assert (fuse.venue, fuse.options["data_venue"], fuse.options[market]) == (leg.venue, leg.data_venue, leg.data_symbol)


def test_a_template_whose_fuses_do_not_match_the_legs_is_refused() -> None:
    (multi,) = [c for c in ev.CASES if c.name == "multivenue-btc-8h"]
    with pytest.raises(ValueError, match="perp fuses"):
        ev.case_config(multi, load_config(ev.SINGLE_TEMPLATE))


@needs_data
@pytest.mark.parametrize("name", ["binance-btc-mark-8h", "hyperliquid-btc-1h", "bitmex-xbtusd-8h"])
def test_renamed_and_borrowed_prices_give_every_leg_a_tape(name: str, tmp_path: Path) -> None:
    (case,) = ev.select([name])
    data = ev.prepare_data(case, DATA, tmp_path)

    tapes = load_tapes(ev.case_config(case), data)

    spot, perp = tapes
    assert perp.is_perp and perp.funding and perp.price_source.endswith(f"{case.perps[0].data_venue}_{case.perps[0].data_symbol}_price.csv")
    assert "shared with perp" in spot.price_source  # the spot leg takes the perp's price (alpha.backtest.source)
    assert spot.prices == perp.prices
    assert ev.prepare_data(case, DATA, tmp_path) == data  # reused while the sources are unchanged


def _aggregate(strategy: str, passives: dict[str, str], t7d: str, shares: dict[str, float]) -> dict[str, object]:
    bases = {**{f"passive {k}": v for k, v in passives.items()}, "trailing 7d": t7d, "trailing 7d, flat if negative": "0", "perfect foresight": "0.2"}
    return {
        "windows": 3,
        "strategy_apr": strategy,
        "baselines_apr": bases,
        "baselines_apr_on_notional": dict.fromkeys(bases, "0.1"),
        "strategy_at_least": {n: shares.get(n, 0.0) for n in bases},
    }


def test_figures_compare_with_the_best_passive_venue_and_the_trailing_rule() -> None:
    agg = _aggregate("0.05", {"a": "0.04", "b": "0.06"}, "0.03", {"passive a": 1.0, "passive b": 2 / 3, "trailing 7d": 1.0})
    f = ev.case_figures(agg)
    assert f["passive"] == "passive b" and f["passive_apr"] == "0.06"
    assert f["beats_in_aggregate"] is False  # 5% < the best passive's 6%, though above venue a's
    assert f["beats_in_two_thirds_of_windows"] is True  # 2 of 3 windows against b counts
    f = ev.case_figures(_aggregate("0.07", {"a": "0.04", "b": "0.06"}, "0.03", {"passive b": 0.5, "trailing 7d": 1.0}))
    assert f["beats_in_aggregate"] is True and f["beats_in_two_thirds_of_windows"] is False
    f = ev.case_figures(_aggregate("0", {"a": "-0.01"}, "-0.02", {}))
    assert f["every_passive_loses"] and f["non_negative"] and f["beats_in_aggregate"]


def test_figures_compare_with_the_best_passive_venue_held_within_the_caps() -> None:
    agg = _aggregate("0.05", {"a": "0.08"}, "0.03", {"passive a": 0.0})
    agg["baselines_apr"] = {**agg["baselines_apr"], "held within caps a": "0.045", "held within caps b": "0.02"}  # type: ignore[dict-item]
    agg["strategy_at_least"] = {**agg["strategy_at_least"], "held within caps a": 2 / 3, "held within caps b": 0.0}  # type: ignore[dict-item]
    f = ev.case_figures(agg)
    assert f["capped"] == "held within caps a" and f["capped_apr"] == "0.045"
    assert f["beats_capped_in_aggregate"] is True and f["beats_capped_in_two_thirds_of_windows"] is True
    assert f["beats_in_aggregate"] is False  # the passive that rode the rally past the caps earned 8%
    agg["baselines_apr"] = {**agg["baselines_apr"], "held within caps a": "0.055"}  # type: ignore[dict-item]
    assert ev.case_figures(agg)["beats_capped_in_aggregate"] is False


def _evaluate(out: Path, to: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alpha", "research", "evaluate", "--shared", str(DATA), "--only", "binance-btc-8h",
         "--from", "2023-01-01", "--to", to, "--train", "10d", "--test", "5d", "--out", str(out), *extra],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )


@needs_data
def test_one_case_end_to_end_prints_consistent_json_and_a_table_with_its_command(tmp_path: Path) -> None:
    done = _evaluate(tmp_path / "out", "2023-02-01", "--json", "--cache", str(tmp_path / "cache"))
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)  # pure JSON on stdout, progress on stderr
    assert "binance-btc-8h" in done.stderr

    (case,) = doc["cases"]
    assert doc["command"].startswith("alpha research evaluate ") and "--only binance-btc-8h" in doc["command"]
    assert case["status"] == "ok" and case["train"] == "10d" and case["test"] == "5d"
    assert case["files"] == [ev.LONG_8H] and case["template"] == "config/backtest-btc-binance.yaml"
    start, end = (datetime.fromisoformat(case[k].replace("Z", "+00:00")) for k in ("start", "end"))
    assert start == datetime.fromisoformat("2023-01-01T08:00:00+00:00")  # the first close in the file after --from
    expected = rolling_windows(start, end, timedelta(days=10), timedelta(days=5))
    f, wf = case["figures"], case["walk_forward"]
    assert f["windows"] == len(wf["windows"]) == len(expected) == wf["aggregate"]["windows"] > 0
    assert [w["test_start"] for w in wf["windows"]] == [w.test_start.isoformat().replace("+00:00", "Z") for w in expected]
    agg = wf["aggregate"]
    assert f["strategy_apr"] == agg["strategy_apr"] and f["passive"] == "passive perp"
    assert f["passive_apr"] == agg["baselines_apr"]["passive perp"] and f["t7d_apr"] == agg["baselines_apr"]["trailing 7d"]
    assert f["share_at_least_passive"] == agg["strategy_at_least"]["passive perp"]
    # The aggregate is the NAV-weighted sum of the windows' PnL.
    years = Decimal(agg["test_years"])
    pnl = sum(Decimal(w["strategy"]["net_pnl"]) for w in wf["windows"])
    assert abs(pnl / Decimal(wf["nav"]) / years - Decimal(f["strategy_apr"])) < Decimal("0.00001")
    beats = Decimal(f["strategy_apr"]) >= Decimal(f["passive_apr"]) and Decimal(f["strategy_apr"]) >= Decimal(f["t7d_apr"])
    assert f["beats_in_aggregate"] == beats and doc["summary"]["beats_in_aggregate"] == int(beats)
    assert doc["summary"]["ran"] == doc["summary"]["cases"] == 1
    assert set(case["adapted"]) == {
        "fuses.perp.options.BTC/USDT:USDT", "fuses.perp.options.data_venue", "fuses.spot.options.BTC/USDT",
        "fuses.spot.options.data_venue", "risk.max_data_age",
    }
    assert json.loads((tmp_path / "out" / "evaluate.json").read_text()) == doc
    assert "binance-btc-8h" in (tmp_path / "out" / "evaluate.html").read_text()

    # The text table: the command at the top, a row for the case, the counts (one window; the imported data is reused).
    text = _evaluate(tmp_path / "text", "2023-01-17", "--cache", str(tmp_path / "cache"))
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == (
        f"$ alpha research evaluate --shared {DATA} --out {tmp_path / 'text'} --only binance-btc-8h --train 10d --test 5d"
        f" --from 2023-01-01T00:00:00Z --to 2023-01-17T00:00:00Z --cache {tmp_path / 'cache'}"
    )
    (row,) = [line for line in lines if line.startswith("binance-btc-8h ")]
    (window,) = json.loads((tmp_path / "text" / "evaluate.json").read_text())["cases"][0]["walk_forward"]["windows"]
    assert f"{float(window['strategy']['net_apr']) * 100:.2f}%" in row and " 1 " in row
    assert any(line.startswith("strategy >= passive and >= T7d") for line in lines)
    assert (tmp_path / "cache" / "binance-btc-8h" / "binance_BTCUSDT_funding.csv").is_file()  # imported into --cache
    assert not (tmp_path / "out" / "data").exists()


def test_an_unknown_case_is_refused_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "alpha", "research", "evaluate", "--shared", str(tmp_path), "--only", "nope", "--out", str(tmp_path / "o")],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert done.returncode == 2 and "unknown case(s) nope" in done.stderr and "Traceback" not in done.stderr
