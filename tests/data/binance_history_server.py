"""A small local server speaking Binance USD-M's public history endpoints, over recorded data.

The CCXT engineer's emulator (fuses/emulators/binance.py) serves fundingRate history but not
klines, so the fetch tests use this: exactly /fapi/v1/exchangeInfo, /fapi/v1/fundingRate and
/fapi/v1/klines as Binance answers them (startTime/endTime/limit, ascending, strings for
decimals, klines as arrays), backed by real files from shared/data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from aiohttp import web

from alpha.data.series import FundingRecord, PricePoint

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
INTERVALS = {"1h": timedelta(hours=1), "4h": timedelta(hours=4), "8h": timedelta(hours=8), "1d": timedelta(days=1)}


def ms(ts: datetime) -> int:
    return int((ts - EPOCH).total_seconds() * 1000)


@dataclass
class History:
    symbol: str  # Binance id, e.g. BTCUSDT
    base: str
    funding: list[FundingRecord]
    closes: list[PricePoint]  # hourly closes, stamped at close
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)


def exchange_info(h: History) -> dict[str, object]:
    return {
        "timezone": "UTC",
        "serverTime": 0,
        "futuresType": "U_MARGINED",
        "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400}],
        "exchangeFilters": [],
        "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
        "symbols": [
            {
                "symbol": h.symbol,
                "pair": h.symbol,
                "contractType": "PERPETUAL",
                "deliveryDate": 4133404800000,
                "onboardDate": 1569398400000,
                "status": "TRADING",
                "baseAsset": h.base,
                "quoteAsset": "USDT",
                "marginAsset": "USDT",
                "pricePrecision": 2,
                "quantityPrecision": 3,
                "baseAssetPrecision": 8,
                "quotePrecision": 8,
                "underlyingType": "COIN",
                "underlyingSubType": [],
                "triggerProtect": "0.0500",
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": "0.10", "maxPrice": "4529764", "tickSize": "0.10"},
                    {"filterType": "LOT_SIZE", "stepSize": "0.001", "maxQty": "1000", "minQty": "0.001"},
                    {"filterType": "MARKET_LOT_SIZE", "stepSize": "0.001", "maxQty": "120", "minQty": "0.001"},
                    {"filterType": "MIN_NOTIONAL", "notional": "100"},
                ],
                "orderTypes": ["LIMIT", "MARKET"],
                "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
            }
        ],
    }


def _window(q: dict[str, str], default_limit: int, max_limit: int) -> tuple[int, int, int]:
    start = int(q.get("startTime", "0"))
    end = int(q.get("endTime", str(2**62)))
    limit = min(int(q.get("limit", str(default_limit))), max_limit)
    return start, end, limit


def make_app(h: History) -> web.Application:
    async def info(request: web.Request) -> web.Response:
        h.requests.append(("exchangeInfo", dict(request.query)))
        return web.json_response(exchange_info(h))

    async def funding(request: web.Request) -> web.Response:
        q = dict(request.query)
        h.requests.append(("fundingRate", q))
        if q.get("symbol") != h.symbol:
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
        start, end, limit = _window(q, 100, 1000)
        rows = [
            {"symbol": h.symbol, "fundingTime": ms(r.ts), "fundingRate": str(r.rate), "markPrice": str(r.mark or "")}
            for r in h.funding
            if start <= ms(r.ts) <= end
        ]
        return web.json_response(rows[:limit])

    async def klines(request: web.Request) -> web.Response:
        q = dict(request.query)
        h.requests.append(("klines", q))
        period = INTERVALS.get(q.get("interval", ""))
        if period is None or q.get("symbol") != h.symbol:
            return web.json_response({"code": -1120, "msg": "Invalid interval."}, status=400)
        start, end, limit = _window(q, 500, 1500)
        out = []
        # Aggregate the hourly closes into candles of the requested period, on the UTC grid.
        by_open: dict[datetime, list[Decimal]] = {}
        for p in h.closes:
            opened = p.ts - timedelta(hours=1)
            bucket = EPOCH + ((opened - EPOCH) // period) * period
            by_open.setdefault(bucket, []).append(p.price)
        for opened, prices in sorted(by_open.items()):
            t = ms(opened)
            if start <= t <= end:
                o, c = prices[0], prices[-1]
                out.append(
                    [
                        t,
                        str(o),
                        str(max(prices)),
                        str(min(prices)),
                        str(c),
                        "1.0",
                        t + ms(EPOCH + period) - 1,
                        "1.0",
                        1,
                        "0.5",
                        "0.5",
                        "0",
                    ]
                )
        return web.json_response(out[:limit])

    app = web.Application()
    app.router.add_get("/fapi/v1/exchangeInfo", info)
    app.router.add_get("/fapi/v1/fundingRate", funding)
    app.router.add_get("/fapi/v1/klines", klines)
    return app
