"""Paper mode's market source reads public data through the ccxt fuse, without keys."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from alpha.config.schema import FuseConfig
from alpha.domain.clock import LiveClock
from fuses.ccxt.paper import CcxtMarketSource
from fuses.sim.source import MarketSource


async def test_paper_source_reads_marks_and_funding_without_keys(rig_factory: Any) -> None:
    async with rig_factory() as rig:
        config = FuseConfig.model_validate(
            {"name": "binance", "kind": "cex", "venue": "binanceusdm", "markets": ["BTC/USDT:USDT"], "max_share": "0.5",
             "api_url": rig.server.url,
             "credentials": {"api_key": {"env": "UNSET_PAPER_KEY_1"}, "secret": {"env": "UNSET_PAPER_SECRET_1"}}}
        )
        source = CcxtMarketSource.from_configs([config], clock=LiveClock())
        try:
            await source.start()
            states = source.advance(LiveClock().now())
        finally:
            await source.close()
        assert isinstance(source, MarketSource)
        state = states["binance"]["BTC/USDT:USDT"]
        venue = rig.backend.market("BTC/USDT:USDT", LiveClock().now())
        assert state.mark == venue.mark
        assert venue.funding is not None and state.funding_rate == venue.funding.rate
        assert state.funding_interval == venue.funding.interval
        assert state.mark > Decimal(0)
        assert not source.fuses["binance"].settings.has_credentials  # the unset env vars were never read
