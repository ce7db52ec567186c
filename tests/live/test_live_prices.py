"""A Binance mark ten times Hyperliquid's, against the venue emulators: refused, counted, and traded again once sane.

The set-up of ``test_live_spread``: the daemon in live mode, real ccxt clients signing against
the Binance USD-M and Hyperliquid emulators over the real engine, one stepped clock. Binance
prints a mark ten times its own index (and Hyperliquid's mark) before the daemon starts.
Binance's market is refused against its index (which the ccxt fuse reads from the funding
answer) and only it: no order (Hyperliquid alone is no hedge), no capital moved off Binance, the refused
price journalled with each decision and counted in ``alpha_risk_price_outliers_total``. Once
Binance's mark is sane again, the next decisions open the spread.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alpha.domain.money import ZERO
from tests.live import test_live_spread as spread
from tests.live.test_live_spread import B_SYMBOL, BTC_PRICE, Venues, _daemon, _drive, _legs, _stop

credentials = spread.credentials
venues = spread.venues


async def test_a_binance_mark_ten_times_hyperliquids_is_refused_until_it_is_sane_again(tmp_path: Path, venues: Venues) -> None:
    v = venues
    v.binance.update_market(B_SYMBOL, BTC_PRICE * 10, v.clock.now(), index=BTC_PRICE)
    daemon = _daemon(tmp_path, v)
    task = asyncio.create_task(daemon.run(install_signals=False))
    try:
        await _drive(task, v, 0)
        daemon.trigger("operator")
        await _drive(task, v, 1)
        journal = daemon.journal
        assert journal is not None

        decisions = [r for r in journal.records("decision") if r.data.get("trigger") != "margin"]
        refused = [o for r in decisions for o in r.data.get("price_outliers", [])]
        assert decisions and refused, "the decisions name the refused price"
        # Refused against Binance's own index (read from the funding answer); Hyperliquid's sane mark is not blamed.
        assert refused and all(o.startswith(f"binance:{B_SYMBOL}: index: mark 600000") for o in refused), refused
        assert _legs(v) == (ZERO, ZERO), "nothing traded on the refused price, and Hyperliquid alone is no hedge"
        assert journal.count("order_intent") == 0
        moved = [r.fuse for r in journal.records("allocation")]
        assert "binance" not in moved, "no capital moved off the fuse whose price is refused"
        counted = daemon.metrics.price_outliers.labels(fuse="binance", market=B_SYMBOL, check="index")._value.get()
        assert counted >= len(decisions)

        v.binance.update_market(B_SYMBOL, BTC_PRICE, v.clock.now(), index=BTC_PRICE)
        await _drive(task, v, 1)  # the market data service polls the sane mark
        daemon.trigger("operator")
        await _drive(task, v, 1)

        long, short = _legs(v)
        assert long > 0 and short < 0, f"the spread opens once the price is sane: {long} / {short}"
        assert daemon.metrics.price_outliers.labels(fuse="binance", market=B_SYMBOL, check="index")._value.get() == counted
    finally:
        assert await _stop(daemon, task) == 0
