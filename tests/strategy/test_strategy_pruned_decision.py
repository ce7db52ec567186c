"""The pruned decision (``decide``) equals the reference, plain decision (``decide(..., reference=True)``).

The pruned path skips candidates that cannot clear their threshold at any size, ranks the
rest lazily and memoises carries; none of that may change a target book. Random universes
(``alpha.bench.decision_scenario``: several venues, open hedges, synthetic shorts) and the
strategy property scenarios are decided both ways and compared whole.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alpha.bench import decision_scenario
from alpha.config.schema import StrategyConfig
from alpha.core.pipeline import decision_step
from alpha.domain.market import BadMarketData
from alpha.domain.portfolio import PortfolioView
from alpha.strategy.decide import decide
from alpha.strategy.signals import Signals
from tests.budgets import examples
from tests.strategy.strategy_builders import NOW
from tests.strategy.test_strategy_properties import OVER_CAP_BELOW_MINIMUM, scenarios


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    venues=st.integers(min_value=1, max_value=4),
    markets=st.integers(min_value=1, max_value=6),
    spot_venues=st.integers(min_value=1, max_value=2),
    open_hedges=st.integers(min_value=0, max_value=4),
    seed=st.integers(min_value=0, max_value=10_000),
    entry=st.sampled_from(["0.0", "0.02", "0.05", "0.2"]),
    exit_=st.sampled_from(["-0.05", "0.0", "0.01"]),
    asset_share=st.sampled_from(["0.02", "0.08", "0.3", "1"]),
    venue_exposure=st.sampled_from(["0.05", "0.5", "1"]),
)
def test_pruned_decision_equals_the_reference_on_random_universes(
    venues: int, markets: int, spot_venues: int, open_hedges: int, seed: int, entry: str, exit_: str, asset_share: str,
    venue_exposure: str,
) -> None:
    if float(exit_) > float(entry):
        exit_ = entry
    s = decision_scenario(
        venues, markets, seed=seed, spot_venues=spot_venues, open_hedges=open_hedges, entry=entry, exit_=exit_,
        asset_share=asset_share, venue_exposure=venue_exposure,
    )
    ref = decide(s.view, s.signals, s.config, s.now, reference=True)
    assert decide(s.view, s.signals, s.config, s.now) == ref
    step_ref = decision_step(s.view, s.signals, s.config, s.state, s.now, reference=True)
    assert decision_step(s.view, s.signals, s.config, s.state, s.now) == step_ref


def _both(view: PortfolioView, cfg: StrategyConfig) -> None:
    signals = Signals(ts=NOW)
    try:
        ref = decide(view, signals, cfg, NOW, reference=True)
    except (BadMarketData, ValueError) as exc:
        try:
            decide(view, signals, cfg, NOW)
        except type(exc) as again:
            assert str(again) == str(exc)
        else:
            raise AssertionError(f"the reference raised {exc!r}, the pruned decision did not")
        return
    assert decide(view, signals, cfg, NOW) == ref


@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_pruned_decision_equals_the_reference_on_the_strategy_scenarios(scenario: tuple[PortfolioView, StrategyConfig]) -> None:
    _both(*scenario)


def test_pruned_decision_equals_the_reference_over_a_cap_below_the_minimum() -> None:
    _both(*OVER_CAP_BELOW_MINIMUM)


def test_the_bench_universe_opens_and_keeps_hedges_both_ways() -> None:
    """A decision on the bench view is not trivially empty: hedges are opened and open ones kept, both ways."""
    s = decision_scenario(3, 12, seed=11)
    ref = decide(s.view, s.signals, s.config, s.now, reference=True)
    fast = decide(s.view, s.signals, s.config, s.now)
    assert fast == ref
    hedges = {tp.hedge_id for tp in fast.positions if tp.quantity}
    assert len(hedges) >= 3
    assert any("(open;" in r for r in fast.reasons) and any("(new;" in r for r in fast.reasons)
