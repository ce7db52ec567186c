"""Download funding and price history through ccxt (async) into the canonical format.

Resumable: each file is appended page by page, and a new run starts after the newest stored
row. Only settled funding and closed candles (at or before ``now``) are stored. Venue names
map to ccxt classes and options through ``VENUES`` (a table, not branches).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from alpha.data.canonical import funding_path, last_timestamp, price_path, write_funding, write_prices
from alpha.data.importers import from_ccxt_funding_history, from_ccxt_ohlcv
from alpha.data.series import DataError, FundingRecord

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class VenueSpec:
    """How to reach a venue's history through ccxt."""

    ccxt_id: str
    options: Mapping[str, Any]
    funding_page: int  # rows per funding-history request
    candle_page: int  # candles per OHLCV request (ccxt may clamp it; paging stops on an empty page)
    api_keys: tuple[str, ...]  # keys of ccxt's urls['api'] to point at --api-url, with their path


VENUES: dict[str, VenueSpec] = {
    "binance": VenueSpec(
        "binanceusdm",
        {"defaultType": "future", "fetchMarkets": {"types": ["linear"]}},
        1000,
        1500,
        ("fapiPublic=/fapi/v1", "fapiPublicV2=/fapi/v2", "fapiPublicV3=/fapi/v3", "fapiData=/futures/data"),
    ),
    "bybit": VenueSpec("bybit", {"defaultType": "swap"}, 200, 1000, ("public=",)),
    "okx": VenueSpec("okx", {"defaultType": "swap"}, 100, 300, ("rest=",)),
    "hyperliquid": VenueSpec("hyperliquid", {}, 500, 5000, ("public=", "private=")),
}

TIMEFRAMES: dict[str, timedelta] = {
    "1h": timedelta(hours=1),
    "4h": timedelta(hours=4),
    "8h": timedelta(hours=8),
    "1d": timedelta(days=1),
}


def _ms(ts: datetime) -> int:
    return int((ts - EPOCH).total_seconds() * 1000)


def make_exchange(venue: str, api_url: str | None = None) -> Any:
    """Build the async ccxt client for ``venue`` (public endpoints only; no keys)."""
    import ccxt.async_support as ccxt

    spec = VENUES.get(venue)
    if spec is None:
        raise DataError(f"unknown venue {venue!r}; known: {', '.join(sorted(VENUES))}")
    config: dict[str, Any] = {"enableRateLimit": True, "options": dict(spec.options)}
    if api_url is not None:
        base = api_url.rstrip("/")
        config["urls"] = {"api": {k: base + p for k, _, p in (key.partition("=") for key in spec.api_keys)}}
        config["rateLimit"] = 1  # a local server: no need to pace requests
    return getattr(ccxt, spec.ccxt_id)(config)


class Progress:
    """A one-line progress bar on a terminal; silent elsewhere."""

    def __init__(self, label: str, start: datetime, end: datetime, stream: TextIO | None = None) -> None:
        self.label = label
        self.start = start
        self.end = end
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty()

    def update(self, reached: datetime) -> None:
        """Draw the bar for having fetched up to ``reached``."""
        if not self.enabled:
            return
        span = (self.end - self.start).total_seconds() or 1.0
        done = min(max((reached - self.start).total_seconds() / span, 0.0), 1.0)
        width = 30
        bar = "#" * int(done * width) + "-" * (width - int(done * width))
        self.stream.write(f"\r{self.label:<28} [{bar}] {done * 100:5.1f}% {reached:%Y-%m-%d}")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What one fetch added."""

    funding_file: Path
    price_file: Path
    funding_rows: int
    price_rows: int
    resumed_funding_from: datetime | None
    resumed_prices_from: datetime | None


ProgressFactory = Callable[[str, datetime, datetime], Progress]


async def fetch_history(
    exchange: Any,
    *,
    venue: str,
    symbol: str,
    since: datetime,
    now: datetime,
    out: Path,
    timeframe: str = "1h",
    progress: ProgressFactory = Progress,
) -> FetchResult:
    """Fetch ``symbol``'s funding and ``timeframe`` closes from ``since`` to ``now`` into ``out``.

    ``exchange`` is a ccxt async client (markets are loaded here). Files already in ``out``
    are extended from their newest row, so an interrupted fetch picks up where it stopped.
    """
    if timeframe not in TIMEFRAMES:
        raise DataError(f"timeframe {timeframe!r} not supported; choose one of {', '.join(TIMEFRAMES)}")
    spec = VENUES.get(venue)
    funding_page = spec.funding_page if spec else 500
    candle_page = spec.candle_page if spec else 500
    await exchange.load_markets()
    if symbol not in exchange.markets:
        matches = [s for s, m in exchange.markets.items() if m.get("id") == symbol]
        if not matches:
            raise DataError(f"{venue} has no market {symbol!r}")
        symbol = matches[0]
    market_id = exchange.markets[symbol]["id"]
    f_path = funding_path(out, venue, market_id)
    p_path = price_path(out, venue, market_id)

    # Funding: resume strictly after the newest stored settlement.
    last_f = last_timestamp(f_path)
    cursor = last_f + timedelta(milliseconds=1) if last_f else since
    previous: datetime | None = last_f
    bar = progress(f"{venue} {market_id} funding", cursor, now)
    added_f = 0
    while cursor <= now:
        page = await exchange.fetch_funding_rate_history(symbol, since=_ms(cursor), limit=funding_page)
        entries = [e for e in page if e.get("timestamp") is not None and _ms(cursor) <= e["timestamp"] <= _ms(now)]
        if not entries:
            break
        series = from_ccxt_funding_history(entries, venue=venue, symbol=market_id, source=f"{venue} {symbol} funding")
        records = list(series.records)
        if previous is not None and records:
            first = records[0]
            records[0] = FundingRecord(first.ts, first.rate, first.ts - previous, first.mark, first.index)
        write_funding(f_path, records, append=True)
        added_f += len(records)
        previous = records[-1].ts
        cursor = previous + timedelta(milliseconds=1)
        bar.update(previous)
    bar.close()

    # Prices: candles are stored at their close; the next candle opens at the newest close.
    period = TIMEFRAMES[timeframe]
    last_p = last_timestamp(p_path)
    opened = last_p if last_p else since
    bar = progress(f"{venue} {market_id} {timeframe} closes", opened, now)
    added_p = 0
    while opened + period <= now:
        page = await exchange.fetch_ohlcv(symbol, timeframe, since=_ms(opened), limit=candle_page)
        candles = [c for c in page if _ms(opened) <= c[0] and c[0] + _ms(EPOCH + period) <= _ms(now)]
        if not candles:
            break
        closes = from_ccxt_ohlcv(
            candles, venue=venue, symbol=market_id, period=period, source=f"{venue} {symbol} ohlcv"
        )
        write_prices(p_path, closes.points, append=True)
        added_p += len(closes.points)
        opened = closes.points[-1].ts
        bar.update(opened)
    bar.close()
    return FetchResult(f_path, p_path, added_f, added_p, last_f, last_p)
