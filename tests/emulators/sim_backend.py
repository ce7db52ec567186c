"""Stand-in ``VenueBackend`` over the real engine (``fuses.sim.engine.SimExchange``).

``fuses.emulators.common.EngineBackend`` (the CCXT engineer's) serves a whole ``SimWorld``;
it had not landed when these tests were written. These tests need one bare venue they can
drive directly, so they use this thin adapter. Nothing here is faked: every call goes to
the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from alpha.domain.account import AccountSnapshot, Order, OrderRequest
from alpha.domain.funding import FundingRate
from alpha.domain.instruments import Instrument
from alpha.domain.market import OrderBook
from fuses.base import InsufficientFundsError, RejectedError
from fuses.emulators.common import FundingEvent, MarketView
from fuses.sim.engine import SimExchange
from fuses.sim.events import FundingPaid

WALLETS = ("spot", "futures")


class SimBackend:
    """Serve a ``SimExchange`` through the emulators' ``VenueBackend`` protocol."""

    def __init__(self, engine: SimExchange) -> None:
        self.engine = engine
        self.public: list[FundingEvent] = []
        self.paid: list[FundingPaid] = []
        self._listeners: list[Callable[[Any], None]] = []
        self._published = 0  # engine events already passed to listeners

    def listen(self, callback: Callable[[Any], None]) -> None:
        """Call ``callback`` with every engine event from now on (the emulator's user data stream)."""
        self._listeners.append(callback)
        self._published = len(self.engine.events)

    def _publish(self) -> None:
        events = self.engine.events
        if self._published > len(events):  # someone drained the engine's record
            self._published = 0
        fresh, self._published = events[self._published :], len(events)
        for event in fresh:
            for callback in self._listeners:
                callback(event)

    def instruments(self) -> Sequence[Instrument]:
        return list(self.engine.instruments.values())

    def step(self, now: datetime) -> None:
        for market, data in self.engine.markets.items():
            when = data.next_settlement
            while when is not None and data.funding_interval is not None and when <= now:
                self.public.append(FundingEvent(market, when, data.funding_rate, data.mark))
                when += data.funding_interval
        events = self.engine.settle_due(now) + self.engine.check_liquidations(now)
        self.paid += [e for e in events if isinstance(e, FundingPaid)]
        self._publish()

    def market(self, symbol: str, now: datetime) -> MarketView:
        data = self.engine.markets[symbol]
        inst = self.engine.instruments[symbol]
        funding = None
        if inst.kind.is_perp and data.funding_interval and data.next_settlement:
            funding = FundingRate(data.funding_rate, data.funding_interval, data.next_settlement)
        return MarketView(inst, data.mark, data.index, funding, data.predicted_rate)

    def book(self, symbol: str, depth: int, now: datetime) -> OrderBook:
        book = self.engine.book(symbol)
        return OrderBook(book.bids[:depth], book.asks[:depth])

    def submit(self, account: str, request: OrderRequest, now: datetime, max_fill: Decimal | None = None) -> Order:
        self.engine.fill_cap = max_fill
        try:
            return self.engine.submit(account, request, now)
        finally:
            self.engine.fill_cap = None
            self._publish()

    def cancel(self, account: str, symbol: str, client_id: str, now: datetime) -> Order:
        try:
            return self.engine.cancel(account, client_id, now)
        finally:
            self._publish()

    def order(self, account: str, symbol: str, client_id: str) -> Order:
        return self.engine.order(account, client_id)

    def open_orders(self, account: str, symbol: str | None = None) -> Sequence[Order]:
        return [o for o in self.engine.open_orders(account) if symbol is None or o.market == symbol]

    def account(self, account: str, now: datetime) -> AccountSnapshot:
        return self.engine.snapshot(account, now)

    def leverage(self, account: str, symbol: str) -> Decimal:
        return self.engine.accounts[account].leverage.get(symbol, self.engine.default_leverage)

    def set_leverage(self, account: str, symbol: str, leverage: Decimal) -> None:
        self.engine.set_leverage(account, symbol, leverage)

    def transfer(self, account: str, asset: str, amount: Decimal, source: str, destination: str, now: datetime) -> None:
        # The engine keeps one wallet per account: a spot <-> futures move only checks the funds.
        if source not in WALLETS or destination not in WALLETS:
            raise RejectedError(f"unknown wallet route {source} -> {destination}")
        if amount > self.engine.free_balance(account, asset):
            raise InsufficientFundsError(f"{account}: not enough free {asset} for {amount}")

    def mark_history(self, symbol: str) -> Sequence[tuple[datetime, Decimal]]:
        # The HL emulator builds candles from its own samples; this bare engine keeps no history.
        return ()

    def funding_history(self, symbol: str, account: str | None = None) -> Sequence[FundingEvent]:
        if account is None:
            return [e for e in self.public if e.market == symbol]
        return [
            replace(FundingEvent(e.market, e.ts, e.rate, e.mark), amount=e.amount)
            for e in self.paid
            if e.market == symbol and e.account == account
        ]
