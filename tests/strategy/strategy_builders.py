"""Builders of real domain values (configs, instruments, books, views) for strategy and risk tests."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from alpha.config.schema import StrategyConfig
from alpha.domain.account import AccountSnapshot, Balance, LendingHealth, LendingPosition, MarginHealth, Position
from alpha.domain.clock import utc
from alpha.domain.funding import FundingRate, next_settlement_after
from alpha.domain.instruments import Instrument, InstrumentKind
from alpha.domain.market import BookLevel, MarketSnapshot, OrderBook
from alpha.domain.portfolio import PortfolioView, market_key

D = Decimal
NOW = utc(2024, 3, 1, 12)
BASE = "USDC"
CASH = frozenset({BASE, "USDT"})  # config()'s cash: the base asset and the default stablecoins
_ZERO = D(0)
_ONE = D(1)
_DEPTH = D("2000000")
_BPS50 = D("50")
_NAV = D("1000000")


def config(**overrides: Any) -> StrategyConfig:
    """Return a valid strategy: spot + two perp venues + a lending fuse, BTC and ETH."""
    data: dict[str, Any] = {
        "version": 1,
        "mode": "paper",
        "vault": {"name": "t", "base_asset": BASE, "nav": "1000000"},
        "assets": ["BTC", "ETH"],
        "idle_buffer": "0.10",
        "delta_tolerance": "0.02",
        "fuses": [
            {"name": "spot", "kind": "sim", "venue": "sim-spot", "markets": ["BTC/USDC", "ETH/USDC"],
             "max_share": "0.40", "max_leverage": "1"},
            {"name": "perp-cex", "kind": "sim", "venue": "sim-cex", "markets": ["BTC/USDC:USDC", "ETH/USDC:USDC"],
             "max_share": "0.25", "max_leverage": "3"},
            {"name": "perp-dex", "kind": "sim", "venue": "sim-dex", "markets": ["BTC/USDC:USDC", "ETH/USDC:USDC"],
             "max_share": "0.15", "max_leverage": "3"},
            {"name": "lending", "kind": "lending", "venue": "sim", "assets": ["USDC", "BTC", "ETH"],
             "max_share": "0.20", "max_leverage": "1"},
        ],
        "thresholds": {"entry_min_net_apr": "0.05", "exit_min_net_apr": "0.01", "holding_period": "7d"},
        "risk": {"max_data_age": "60s", "max_venue_exposure": "0.60", "max_order_notional": "150000"},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return StrategyConfig.model_validate(data)


def instrument(fuse: str, symbol: str, *, lot: str = "0.001", tick: str = "0.1", min_notional: str = "10",
               taker: str = "0.0005") -> Instrument:
    base, rest = symbol.split("/")
    quote = rest.split(":")[0]
    kind = InstrumentKind.LINEAR_PERP if ":" in symbol else InstrumentKind.SPOT
    return Instrument(fuse, symbol, kind, base, quote, quote, D(tick), D(lot), D(min_notional), taker_fee=D(taker))


def book(mid: Decimal, *, depth_notional: Decimal = _DEPTH, levels: int = 20, spread_bps: Decimal = _ONE,
         depth_bps: Decimal = _BPS50) -> OrderBook:
    """A symmetric book holding ``depth_notional`` per side within ``depth_bps`` of mid."""
    half = mid * spread_bps / D(20000)
    per_level_qty = (depth_notional / levels / mid).quantize(D("0.000001"))
    step = mid * depth_bps / D(10000) / levels
    bids = tuple(BookLevel((mid - half - step * i).quantize(D("0.01")), per_level_qty) for i in range(levels))
    asks = tuple(BookLevel((mid + half + step * i).quantize(D("0.01")), per_level_qty) for i in range(levels))
    return OrderBook(bids, asks)


def snapshot(fuse: str, symbol: str, mark: Decimal, *, rate: str | None = "0.0001", interval_h: int = 8,
             ts: datetime = NOW, depth: Decimal = _DEPTH, **inst: Any) -> MarketSnapshot:
    ins = instrument(fuse, symbol, **inst)
    funding = None
    if ins.kind.is_perp and rate is not None:
        interval = timedelta(hours=interval_h)
        funding = FundingRate(D(rate), interval, next_settlement_after(ts, interval))
    return MarketSnapshot(fuse, ins, ts, mark, mark, funding, book(mark, depth_notional=depth))


PRICES = {"BTC": D("40000"), "ETH": D("2000")}


def markets(rates: dict[str, str] | None = None, prices: dict[str, Decimal] | None = None,
            ts: datetime = NOW) -> dict[str, MarketSnapshot]:
    """Every market of ``config()``; ``rates`` maps '<fuse>:<asset>' to the 8h/1h funding rate."""
    rates = rates or {}
    px = prices or PRICES
    out = {}
    for asset, price in px.items():
        out[market_key("spot", f"{asset}/USDC")] = snapshot("spot", f"{asset}/USDC", price, ts=ts, depth=D("5000000"))
        out[market_key("perp-cex", f"{asset}/USDC:USDC")] = snapshot(
            "perp-cex", f"{asset}/USDC:USDC", price, rate=rates.get(f"perp-cex:{asset}", "0.0001"), ts=ts,
            depth=D("4000000"))
        out[market_key("perp-dex", f"{asset}/USDC:USDC")] = snapshot(
            "perp-dex", f"{asset}/USDC:USDC", price, rate=rates.get(f"perp-dex:{asset}", "0.00001"), interval_h=1,
            ts=ts, depth=D("800000"))
    return out


def lending_account(fuse: str = "lending", *, borrow_apr: str = "0.03", supplied: Decimal = _ZERO,
                    borrowed: dict[str, Decimal] | None = None, cash: Decimal = _ZERO) -> AccountSnapshot:
    borrowed = borrowed or {}
    positions = [LendingPosition(BASE, supplied, D(0), D("0.04"), D("0.06"))]
    for asset in ("BTC", "ETH"):
        positions.append(LendingPosition(asset, D(0), borrowed.get(asset, D(0)), D("0.01"), D(borrow_apr)))
    health = LendingHealth(supplied, D(0), supplied * D("0.75"), D("0.75"), D("0.80"), D("Infinity"))
    balances = (Balance(BASE, cash, cash),) if cash else ()
    return AccountSnapshot(fuse, NOW, balances=balances, lending=health, lending_positions=tuple(positions))


def perp_account(fuse: str, equity: Decimal, positions: dict[str, Decimal] | None = None,
                 prices: dict[str, Decimal] | None = None) -> AccountSnapshot:
    px = prices or PRICES
    pos = tuple(
        Position(f"{a}/USDC:USDC", size, px[a], px[a]) for a, size in (positions or {}).items() if size
    )
    return AccountSnapshot(fuse, NOW, balances=(Balance(BASE, equity, equity),), positions=pos,
                           margin=MarginHealth(equity, D(0), D(0)))


def spot_account(cash: Decimal, coins: dict[str, Decimal] | None = None) -> AccountSnapshot:
    bals = [Balance(BASE, cash, cash)] + [Balance(a, q, q) for a, q in (coins or {}).items() if q]
    return AccountSnapshot("spot", NOW, balances=tuple(bals))


def fresh_view(nav: Decimal = _NAV, rates: dict[str, str] | None = None, ts: datetime = NOW,
               **kw: Any) -> PortfolioView:
    """All capital in the vault, no positions; every market present and fresh."""
    kw.setdefault("cash", CASH)
    return PortfolioView(
        ts=ts, base_asset=BASE, vault_cash=nav, accounts={"lending": lending_account()},
        markets=markets(rates, ts=ts), prices={**PRICES, "USDC": D(1), "USDT": D(1)}, **kw,
    )
