"""The simulated venue publishes the margin tiers it applies on each perp instrument."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from alpha.domain.account import OrderRequest
from alpha.domain.instruments import Side
from alpha.domain.margin import INFINITE, MarginTier, MarginTiers
from fuses.base import InsufficientFundsError
from fuses.sim.book import DepthModel
from fuses.sim.engine import SimExchange
from fuses.sim.margin import MARGIN_TIERS
from fuses.sim.markets import make_instrument
from tests.sim.helpers import PERP, SPOT, T0, market_order, venue

D = Decimal


def test_perp_instruments_carry_the_tiers_the_venue_charges_and_spot_none() -> None:
    ex = venue(leverage=D("3"))
    assert ex.instruments[PERP].margin_tiers == MarginTiers(MARGIN_TIERS["BTC"])
    assert ex.instruments[SPOT].margin_tiers is None
    ex.deposit("a", "USDC", D("2000000"), T0)
    ex.submit("a", market_order(PERP, Side.SELL, "30"), T0)  # 1.2M notional: the 20x tier, 3x chosen
    health = ex.margin_health("a")
    assert health is not None
    notional = D("30") * ex.mark(PERP)
    assert health.initial_margin == ex.instruments[PERP].initial_margin(notional, D("3"))
    assert health.maintenance_margin == ex.instruments[PERP].margin_tiers.maintenance_margin(notional)  # type: ignore[union-attr]


def test_an_instruments_own_tiers_are_what_the_venue_applies() -> None:
    steep = MarginTiers((MarginTier(D("20000"), D("50"), D("0.005")), MarginTier(INFINITE, D("2"), D("0.05"))))
    inst = make_instrument("v", PERP, D("40000"), maker_fee=D("0.0002"), taker_fee=D("0.0005"))
    ex = SimExchange("v", [replace(inst, margin_tiers=steep)], depth=DepthModel(), default_leverage=D("3"))
    ex.update_market(PERP, D("40000"), T0)
    assert ex.instruments[PERP].margin_tiers == steep
    ex.deposit("a", "USDC", D("35000"), T0)
    # 2 BTC = 80k notional: 2x past 20k, so 40k of initial margin (not 26,667 at 3x): refused.
    with pytest.raises(InsufficientFundsError, match="insufficient margin"):
        ex.submit("a", OrderRequest("big", PERP, Side.SELL, D("2")), T0)
    ex.submit("a", OrderRequest("small", PERP, Side.SELL, D("0.5")), T0)  # 20k notional: 50x tier, 3x chosen
