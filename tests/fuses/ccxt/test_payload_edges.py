"""What a refused venue answer does to its neighbours, and positions the fuse does not trade.

* A refused market drops out of one poll of the market data service (its snapshot ages, so the
  risk gate refuses it) while the venue's other markets keep refreshing: nothing crashes.
* A position in a market the fuse does not trade (a hand trade on the same account) is never
  read as ours: it is kept in ``foreign_positions``, warned about, and the fuse refuses to trade it.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from alpha.daemon.marketdata import MarketData
from alpha.domain.account import OrderRequest
from alpha.domain.clock import LiveClock
from alpha.domain.instruments import Side
from alpha.observability.metrics import Metrics
from fuses.base import RejectedError
from tests.fuses.conftest import ACCOUNT

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"


async def test_a_refused_market_ages_while_the_others_refresh(rig_factory: Any) -> None:
    async with rig_factory() as rig:
        metrics = Metrics()
        rig.fuse.metrics = metrics
        data = MarketData({"binance": rig.fuse}, LiveClock(), metrics)
        await data.refresh()
        first = {m: data.snapshots[f"binance:{m}"].ts for m in (BTC, ETH)}
        async with aiohttp.ClientSession() as http, http.get(f"{rig.server.url}/fapi/v1/premiumIndex") as answer:
            rows = await answer.json()
        at = next(i for i, row in enumerate(rows) if row["symbol"] == "BTCUSDT")
        rig.server.state.chaos.add({"kind": "corrupt", "duration_s": 30, "endpoint": "/fapi/v1/premiumIndex", "count": 1,
                                    "edits": [{"path": [at, "markPrice"], "value": "-60000"}]})
        await data.refresh()
        assert data.snapshots[f"binance:{BTC}"].ts == first[BTC]  # not refreshed: it ages towards max_data_age
        assert data.snapshots[f"binance:{ETH}"].ts > first[ETH]
        assert "binance" not in data.last_error  # the venue answered; one market of it was refused
        refused = metrics.registry.get_sample_value(
            "alpha_venue_payload_refusals_total", {"fuse": rig.fuse.name, "market": BTC, "check": "range"}
        )
        assert refused == 1
        await data.refresh()  # the next answer is clean again
        assert data.snapshots[f"binance:{BTC}"].ts > first[BTC]


async def test_a_position_in_a_market_we_do_not_trade_is_flagged_never_ours(
    rig_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with rig_factory(markets=(BTC,)) as rig:
        now = rig.server.state.now()
        rig.backend.submit(ACCOUNT, OrderRequest("hand-trade-1", ETH, Side.SELL, Decimal("0.5")), now)  # by hand, beside us
        await rig.fuse.submit(OrderRequest("ours-1", BTC, Side.BUY, Decimal("0.01")))
        with caplog.at_level(logging.WARNING):
            snap = await rig.fuse.account()
            again = await rig.fuse.account()
        assert [p.market for p in snap.positions] == [BTC] == [p.market for p in again.positions]
        (foreign,) = rig.fuse.foreign_positions
        assert foreign.market == ETH and foreign.side == "short"
        warned = [r for r in caplog.records if "does not trade" in r.getMessage()]
        assert len(warned) == 1  # once per change, not once per read
        with pytest.raises(RejectedError, match="not allowed on this fuse"):
            await rig.fuse.submit(OrderRequest("ours-2", ETH, Side.BUY, Decimal("0.5"), reduce_only=True))
        assert [o["client_id"] for o in rig.server.state.chaos.orders] == ["ours-1"]


async def test_with_the_halt_policy_an_account_holding_a_foreign_position_is_refused_until_it_is_gone(rig_factory: Any) -> None:
    from fuses.base import BadPayloadError

    async with rig_factory(markets=(BTC,)) as rig:
        rig.fuse.halt_on_foreign = True  # risk.foreign_positions: halt (the daemon passes it at build)
        metrics = Metrics()
        rig.fuse.metrics = metrics
        await rig.fuse.account()  # nothing foreign yet: the account reads
        now = rig.server.state.now()
        rig.backend.submit(ACCOUNT, OrderRequest("hand-trade-2", ETH, Side.SELL, Decimal("0.5")), now)
        with pytest.raises(BadPayloadError, match=r"does not trade \(risk.foreign_positions: halt\) \(got .ETH/USDT:USDT short 0.5.\)"):
            await rig.fuse.account()
        refused = metrics.registry.get_sample_value(
            "alpha_venue_payload_refusals_total", {"fuse": rig.fuse.name, "market": "-", "check": "foreign_position"}
        )
        assert refused == 1
        rig.backend.submit(ACCOUNT, OrderRequest("hand-trade-3", ETH, Side.BUY, Decimal("0.5")), rig.server.state.now())
        snap = await rig.fuse.account()  # closed by hand: the fuse reads its account again
        assert not rig.fuse.foreign_positions and all(p.market == BTC for p in snap.positions)
