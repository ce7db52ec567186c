"""The synthetic market: deterministic, correlated, funding mean-reverting with regimes, scripted shocks."""

from __future__ import annotations

import math
from datetime import timedelta
from decimal import Decimal

import numpy as np
import pytest

from alpha.config.schema import SyntheticMarket
from fuses.sim.source import MarketSource, MarketState
from fuses.sim.synthetic import MarketSpec, SyntheticSource, market_specs
from tests.sim.helpers import T0, demo_config

D = Decimal


def source(seed: int = 7, shocks: str = "[]") -> SyntheticSource:
    return SyntheticSource.from_config(demo_config(seed, shocks), T0)


def test_it_is_a_market_source_with_every_sim_market() -> None:
    src = source()
    states = src.advance(T0)
    assert isinstance(src, MarketSource)
    assert set(states) == {"spot", "perp-cex", "perp-dex"}
    assert set(states["perp-dex"]) == {"BTC/USDC:USDC", "ETH/USDC:USDC"}
    perp = states["perp-dex"]["BTC/USDC:USDC"]
    assert perp.funding_interval == timedelta(hours=1) and perp.next_settlement == T0 + timedelta(hours=1)
    assert states["spot"]["BTC/USDC"].funding_rate is None
    assert perp.mark == perp.mark.quantize(D("0.1"))  # on the BTC tick


def test_same_seed_same_path_whatever_the_call_pattern() -> None:
    a, b, c = source(), source(), source(seed=8)
    coarse = [a.advance(T0 + timedelta(hours=h)) for h in range(0, 49, 6)]
    fine = {}
    for m in range(0, 48 * 60 + 1, 5):
        t = T0 + timedelta(minutes=m)
        states = b.advance(t)
        if m % 360 == 0:
            fine[m // 60] = states
    assert coarse == [fine[h] for h in range(0, 49, 6)]
    assert c.advance(T0 + timedelta(hours=48)) != coarse[-1]


def test_time_cannot_go_back() -> None:
    src = source()
    src.advance(T0 + timedelta(hours=1))
    with pytest.raises(ValueError, match="back"):
        src.advance(T0)


def test_venues_see_close_but_different_marks_and_rates() -> None:
    src = source()
    states = src.advance(T0 + timedelta(days=3))
    cex, dex = states["perp-cex"]["BTC/USDC:USDC"], states["perp-dex"]["BTC/USDC:USDC"]
    assert cex.index == dex.index
    assert cex.mark != dex.mark and abs(cex.mark / dex.mark - 1) < D("0.005")
    assert cex.funding_rate != dex.funding_rate


def test_scripted_shock_gaps_the_price_by_exactly_its_move() -> None:
    calm = source()
    shocked = source(shocks='[{at: 30h, asset: BTC, move: "-0.30"}]')
    before = T0 + timedelta(hours=29, minutes=55)
    after = T0 + timedelta(hours=30)
    assert calm.advance(before) == shocked.advance(before)
    ratio_btc = shocked.advance(after)["spot"]["BTC/USDC"].index / calm.advance(after)["spot"]["BTC/USDC"].index
    later = T0 + timedelta(days=5)
    ratio_later = shocked.advance(later)["spot"]["BTC/USDC"].index / calm.advance(later)["spot"]["BTC/USDC"].index
    assert abs(ratio_btc - D("0.7")) < D("0.00001") and abs(ratio_later - D("0.7")) < D("0.00001")
    assert shocked.advance(later)["spot"]["ETH/USDC"] == calm.advance(later)["spot"]["ETH/USDC"]


def _long_run(years: int, switches: str = "6") -> tuple[np.ndarray, np.ndarray, np.ndarray, SyntheticSource]:
    params = SyntheticMarket.model_validate(
        {
            "seed": 11,
            "step": "1h",
            "assets": {"BTC": {"price": "40000"}, "ETH": {"price": "2000", "correlation": "0.85"}},
            "funding": {"bull_mean_apr": "0.15", "bear_mean_apr": "-0.08", "reversion_per_day": "2", "volatility_apr": "0.25", "regime_switch_per_year": switches},
        }
    )
    specs = [
        MarketSpec("f", "BTC/USDC:USDC", "BTC", True, D("0.1")),
        MarketSpec("f", "ETH/USDC:USDC", "ETH", True, D("0.01")),
    ]
    src = SyntheticSource(params, specs, T0)
    n = years * 365 * 24
    regimes = np.empty(n)
    funding = np.empty(n)
    logs = np.empty((n, 2))
    for k in range(n):
        src.advance(T0 + timedelta(hours=k))
        regimes[k] = src.regime
        funding[k] = src.annual_funding("f", "BTC/USDC:USDC")
        logs[k] = src._log_price  # read the generator's state directly (float research values)
    return regimes, funding, logs, src


def test_funding_mean_reverts_and_follows_the_regime_sign() -> None:
    regimes, funding, logs, _ = _long_run(4)
    bull, bear = funding[regimes == 0], funding[regimes == 1]
    assert len(bull) > 1000 and len(bear) > 1000  # both regimes visited
    assert abs(bull.mean() - 0.15) < 0.05 and abs(bear.mean() + 0.08) < 0.05
    switches = np.flatnonzero(np.diff(regimes))
    assert len(switches) >= 10
    # the sign follows the regime: most of each regime's second half has the regime's sign
    assert (bull > 0).mean() > 0.65 and (bear < 0).mean() > 0.55
    # mean reversion: deviations from the regime mean decay as exp(-kappa t), kappa = 2/day
    mean = np.where(regimes == 0, 0.15, -0.08)
    dev = funding - mean
    same = regimes[:-24] == regimes[24:]
    slope = np.polyfit(dev[:-24][same], dev[24:][same], 1)[0]
    assert abs(slope - math.exp(-2)) < 0.1
    # stationary spread close to volatility_apr (plus the per-market deviation)
    assert 0.2 < dev.std() < 0.33
    # prices are correlated through the market factor
    returns = np.diff(logs, axis=0)
    assert np.corrcoef(returns[:, 0], returns[:, 1])[0, 1] > 0.5


def test_funding_is_capped_per_interval() -> None:
    params = SyntheticMarket.model_validate(
        {"seed": 1, "step": "1h", "assets": {"BTC": {"price": "40000"}}, "funding": {"bull_mean_apr": "50", "bear_mean_apr": "50", "cap_per_interval": "0.001"}}
    )
    src = SyntheticSource(params, [MarketSpec("f", "BTC/USDC:USDC", "BTC", True, D("0.1"), timedelta(hours=8))], T0)
    state = src.advance(T0 + timedelta(hours=5))["f"]["BTC/USDC:USDC"]
    assert state.funding_rate == D("0.001")


def test_bias_is_bps_per_eight_hours_scaled_to_the_interval() -> None:
    config = demo_config()
    specs = {(s.fuse, s.symbol): s for s in market_specs(config)}
    assert specs[("perp-dex", "BTC/USDC:USDC")].funding_bias_bps == D("0.3")
    src = source()
    src.advance(T0)
    dex = src.annual_funding("perp-dex", "BTC/USDC:USDC")
    cex = src.annual_funding("perp-cex", "BTC/USDC:USDC")
    assert abs((dex - cex) - 0.3e-4 * 3 * 365) < 1e-9  # identical OU state at start, only the bias differs


def test_bad_market_states_are_refused() -> None:
    for bad in (D("NaN"), D("0"), D("-3"), D("Infinity")):
        with pytest.raises(ValueError, match="mark"):
            MarketState(mark=bad, index=D("1"))
    with pytest.raises(ValueError, match="funding"):
        MarketState(mark=D("1"), index=D("1"), funding_rate=D("NaN"))


def test_shock_on_unknown_asset_or_below_minus_one_is_refused() -> None:
    with pytest.raises(ValueError, match="no such asset"):
        source(shocks='[{at: 1h, asset: DOGE, move: "0.1"}]')
    with pytest.raises(ValueError, match="non-positive"):
        source(shocks='[{at: 1h, asset: BTC, move: "-1"}]')
