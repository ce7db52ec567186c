"""Live mode's Boros fuse: built from the strategy file's rates entry, seen through it, checked at start.

The real ``BorosFuse`` against the Boros emulator on 127.0.0.1: the entry's credentials are
read from the environment, only the markets the file names are offered, each with the file's
underlying (one of the strategy's own perp markets), and positions carry the file's fuse name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from eth_account import Account

from alpha.config import ConfigError, load_config
from alpha.config.schema import RateFuseConfig
from alpha.config.startup import startup_problems
from alpha.daemon.book import read_rates
from alpha.daemon.rates_live import ConfiguredRateVenue, live_rate_fuses
from alpha.domain.clock import SimulatedClock
from alpha.domain.instruments import Side
from alpha.domain.rates import rate_key
from fuses.base import RejectedError
from fuses.emulators.boros import BorosMarket, BorosVenue, create_app
from fuses.emulators.common import EmulatorServer

ROOT = Path(__file__).resolve().parents[3]
START = datetime(2026, 10, 1, tzinfo=UTC)
MATURITY = START + timedelta(days=73)
SYMBOL = "BINANCE-BTCUSDT-13DEC2026"
OTHER = "BINANCE-BTCUSDT-27MAR2027"
UNDERLYING = "perp-cex:BTC/USDT:USDT"


def _entry(url: str, root: str) -> RateFuseConfig:
    return RateFuseConfig.model_validate(
        {
            "name": "boros-live",
            "venue": "boros",
            "api_url": url,
            "credentials": {"wallet_address": root, "wallet_key": {"env": "ALPHA_TEST_BOROS_AGENT"}},
            "markets": [{"market": SYMBOL, "underlying": UNDERLYING, "maturity": MATURITY.isoformat()}],
        }
    )


@pytest.fixture
async def live(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ConfiguredRateVenue]:
    root, agent = Account.create(), Account.create()
    clock = SimulatedClock(START)
    venue = BorosVenue(tokens={1: "BTC"})
    venue.add_market(BorosMarket(2, 1, SYMBOL, "Binance", "BTCUSDT", MATURITY, Decimal("0.08")), START)
    venue.add_market(BorosMarket(3, 1, OTHER, "Binance", "BTCUSDT", MATURITY + timedelta(days=104), Decimal("0.09")), START)
    venue.fund(root.address, 1, Decimal(10))
    venue.approve_agent(root.address, agent.address, START + timedelta(days=400))
    monkeypatch.setenv("ALPHA_TEST_BOROS_AGENT", agent.key.hex())
    async with EmulatorServer(create_app(venue, clock=clock)) as server:
        (fuse,) = live_rate_fuses((_entry(server.url, root.address),), clock).values()
        try:
            yield fuse
        finally:
            await fuse.close()


async def test_only_the_files_markets_are_offered_with_the_files_underlying(live: ConfiguredRateVenue) -> None:
    book = await read_rates({live.name: live})
    (market,) = book.markets.values()
    assert market.market == SYMBOL and market.underlying == UNDERLYING and market.fuse == "boros-live"
    assert rate_key(market) in book.quotes and book.quotes[rate_key(market)].bids
    with pytest.raises(RejectedError, match="not in the strategy file"):
        await live.rate_quote(OTHER)
    with pytest.raises(RejectedError, match="not in the strategy file"):
        await live.swap(OTHER, Side.SELL, Decimal(1), Decimal("0.01"), client_id="other")


async def test_a_lock_through_the_configured_fuse_reads_back_under_its_name(live: ConfiguredRateVenue) -> None:
    quote = await live.rate_quote(SYMBOL)
    fill = await live.swap(SYMBOL, Side.SELL, Decimal(2), quote.bids[0].apr, client_id="live-lock-1")
    assert fill.size == Decimal(-2)
    account = await live.rate_account("BTC")
    (position,) = account.positions
    assert account.fuse == position.fuse == "boros-live" and position.market == SYMBOL and position.size == Decimal(-2)


def test_start_up_says_what_a_rate_fuse_lacks_for_its_mode(tmp_path: Path) -> None:
    raw = yaml.safe_load((ROOT / "config" / "boros.yaml").read_text(encoding="utf-8"))
    raw["rates"][0].update({"venue": "boros", "api_url": "http://127.0.0.1:9"})
    path = tmp_path / "strategy.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    config = load_config(path)
    demo = [p.message for p in startup_problems(config, "demo")]
    assert any("simulates every rate fuse" in m and "'boros'" in m for m in demo)
    live = [p.message for p in startup_problems(config, "live")]
    assert any("needs credentials wallet_address, wallet_key" in m for m in live)
    raw["rates"][0]["venue"] = "nowhere"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(ConfigError, match="not a rate venue"):
        load_config(path)
