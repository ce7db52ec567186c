"""`alpha data fetch`: the real ccxt client against a local server speaking Binance's protocol."""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web

from alpha.data.canonical import load_funding, load_prices
from alpha.data.fetch import Progress, fetch_history, make_exchange
from alpha.data.importers import import_file
from tests.data.binance_history_server import History, make_app

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
SINCE = datetime(2021, 7, 1, tzinfo=UTC)
NOW = datetime(2021, 10, 1, tzinfo=UTC)


@pytest.fixture
def history() -> History:
    funding = load_funding(DATA / "funding" / "binance_BTCUSDT_funding.csv").between(
        datetime(2021, 6, 1, tzinfo=UTC), datetime(2021, 12, 1, tzinfo=UTC)
    )
    closes = import_file(DATA / "prices" / "binance_BTC_spot_perp_close_1h_2021-07_to_2024-07.csv").prices[
        ("binance", "BTCUSDT")
    ]
    pts = [p for p in closes.points if p.ts < datetime(2021, 12, 1, tzinfo=UTC)]
    return History("BTCUSDT", "BTC", list(funding.records), pts)


@pytest.fixture
async def server(history: History) -> AsyncIterator[str]:
    runner = web.AppRunner(make_app(history))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def fetch(url: str, out: Path, now: datetime, timeframe: str = "1h") -> object:
    ex = make_exchange("binance", url)
    try:
        return await fetch_history(
            ex, venue="binance", symbol="BTC/USDT:USDT", since=SINCE, now=now, out=out, timeframe=timeframe
        )
    finally:
        await ex.close()


async def test_fetch_writes_exactly_the_recorded_history_in_pages(
    server: str, history: History, tmp_path: Path
) -> None:
    await fetch(server, tmp_path, NOW)
    got = load_funding(tmp_path / "binance_BTCUSDT_funding.csv")
    expected = [r for r in history.funding if SINCE <= r.ts <= NOW]
    assert [(r.ts, r.rate) for r in got.records] == [(r.ts, r.rate) for r in expected]
    assert {r.interval.total_seconds() for r in got.records} == {8 * 3600}
    prices = load_prices(tmp_path / "binance_BTCUSDT_price.csv")
    source = {p.ts: p.price for p in history.closes}
    assert len(prices) > 2000  # more than one 1500-candle page
    assert all(source[p.ts] == p.price for p in prices.points)
    assert prices.points[-1].ts <= NOW
    assert sum(1 for kind, _ in history.requests if kind == "klines") >= 2


async def test_fetch_resumes_after_the_last_stored_row(server: str, history: History, tmp_path: Path) -> None:
    middle = datetime(2021, 8, 15, 3, tzinfo=UTC)
    await fetch(server, tmp_path, middle)
    first_rows = len(load_funding(tmp_path / "binance_BTCUSDT_funding.csv"))
    history.requests.clear()
    result = await fetch(server, tmp_path, NOW)
    full = load_funding(tmp_path / "binance_BTCUSDT_funding.csv")  # refuses duplicates: none were written
    assert result.resumed_funding_from == datetime(2021, 8, 15, 0, tzinfo=UTC)  # type: ignore[attr-defined]
    assert len(full) == first_rows + result.funding_rows  # type: ignore[attr-defined]
    assert len(full) == sum(1 for r in history.funding if SINCE <= r.ts <= NOW)
    first_request = next(q for kind, q in history.requests if kind == "fundingRate")
    assert int(first_request["startTime"]) == int(datetime(2021, 8, 15, tzinfo=UTC).timestamp() * 1000) + 1
    load_prices(tmp_path / "binance_BTCUSDT_price.csv")  # still in order, no repeats


async def test_fetch_8h_candles_are_stamped_at_close(server: str, tmp_path: Path) -> None:
    await fetch(server, tmp_path, datetime(2021, 7, 3, tzinfo=UTC), timeframe="8h")
    prices = load_prices(tmp_path / "binance_BTCUSDT_price.csv")
    assert [p.ts.hour for p in prices.points][:3] == [8, 16, 0]


async def test_cli_fetch_runs_end_to_end(server: str, tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "alpha",
        "data",
        "fetch",
        "--venue",
        "binance",
        "--symbol",
        "BTCUSDT",
        "--since",
        "2021-09-01",
        "--until",
        "2021-09-03",
        "--out",
        str(tmp_path),
        "--api-url",
        server,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert "+7 settlements" in out.decode()  # 00, 08, 16 UTC on two days, and --until itself
    assert len(load_funding(tmp_path / "binance_BTCUSDT_funding.csv")) == 7


def test_progress_bar_draws_only_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        bar = Progress("x", SINCE, NOW, stream)
        bar.update(datetime(2021, 8, 15, 12, tzinfo=UTC))  # 45.5 of 92 days
        bar.close()
    assert " 49.5% 2021-08-15" in tty.getvalue() and "[" + "#" * 14 + "-" * 16 + "]" in tty.getvalue()
    assert pipe.getvalue() == ""
