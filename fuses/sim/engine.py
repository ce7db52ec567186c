"""A simulated venue: many accounts, spot and linear-perp markets, books, fees, margin, funding.

Every trade has a counterparty: the ``market`` account takes the other side of each fill,
fees go to the ``fees`` account and liquidation penalties to ``insurance``, so money is
conserved across the venue: the sum over all accounts of balances plus unrealised PnL never
changes except by deposits and withdrawals. System accounts may hold negative balances (the
market is an infinite counterparty).

Accounting is exact. A perp position keeps its signed ``cost`` (sum of signed quantity x price
of the open size); unrealised PnL is ``size x mark - cost``; reducing a position releases a
share of the cost rounded to ``AMOUNT_QUANTUM`` and realises the rest, so nothing is lost to
rounding. Fees and funding payments are rounded to ``AMOUNT_QUANTUM``; the market account
takes the rounding residual of each funding settlement.

Methods take ``now`` explicitly and return the past-tense events they caused (also kept in
``events`` until drained).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal

from alpha.domain.account import (
    AccountSnapshot,
    Balance,
    Fill,
    MarginHealth,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    Position,
    TimeInForce,
)
from alpha.domain.funding import next_settlement_after
from alpha.domain.instruments import Instrument, InstrumentKind, Side
from alpha.domain.market import OrderBook
from alpha.domain.money import ZERO, is_multiple
from fuses.base import InsufficientFundsError, OrderNotFoundError, RejectedError
from fuses.sim.accounts import (
    AMOUNT_QUANTUM,
    AccountState,
    OrderState,
    PositionState,
    fill_costs,
    funding_amount,
    quantize_amount,
)
from fuses.sim.book import DepthModel, build_book, walk
from fuses.sim.events import (
    Deposited,
    Event,
    FundingPaid,
    Liquidated,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    Withdrawn,
)
from fuses.sim.margin import MarginTier, MarginTiers, tiers_for

MARKET = "market"
FEES = "fees"
INSURANCE = "insurance"
SYSTEM_ACCOUNTS = (MARKET, FEES, INSURANCE)


def _check_number(value: object, what: str, *, venue: str, positive: bool = True) -> Decimal:
    if not isinstance(value, Decimal):
        raise RejectedError(f"{what} must be a Decimal, got {type(value).__name__} {value!r}", venue=venue, code="bad_number")
    if not value.is_finite():
        raise RejectedError(f"{what} {value} is not a finite number", venue=venue, code="bad_number")
    if positive and value <= 0:
        raise RejectedError(f"{what} {value} must be positive", venue=venue, code="bad_number")
    return value


class MarketData:
    """Latest price and funding state of one market on the venue; the book is built when first read."""

    __slots__ = (
        "_book", "_model", "funding_interval", "funding_rate", "index", "instrument", "mark", "next_settlement", "predicted_rate", "ts"
    )

    def __init__(self, instrument: Instrument, model: DepthModel, mark: Decimal, index: Decimal) -> None:
        self.instrument = instrument
        self._model = model
        self.mark = mark
        self.index = index
        self.funding_rate: Decimal = ZERO
        self.predicted_rate: Decimal | None = None  # what the venue publishes for the next settlement (None: funding_rate)
        self.funding_interval: timedelta | None = None
        self.next_settlement: datetime | None = None
        self.ts: datetime | None = None
        self._book: OrderBook | None = None

    @property
    def published_rate(self) -> Decimal:
        """The rate the venue shows for its next settlement: the prediction, else the rate it will pay."""
        return self.funding_rate if self.predicted_rate is None else self.predicted_rate

    def move(self, mark: Decimal, index: Decimal, now: datetime) -> None:
        """Take a new mark and index; the book follows on the next read."""
        if mark != self.mark:
            self._book = None
        self.mark, self.index, self.ts = mark, index, now

    @property
    def book(self) -> OrderBook:
        if self._book is None:
            self._book = build_book(self.mark, self.instrument, self._model)
        return self._book


class SimExchange:
    """One simulated venue with spot and linear-perp ``instruments`` and many accounts."""

    def __init__(
        self,
        name: str,
        instruments: Iterable[Instrument],
        *,
        depth: DepthModel | None = None,
        funding_interval: timedelta = timedelta(hours=8),
        margin_tiers: dict[str, tuple[MarginTier, ...]] | None = None,
        default_leverage: Decimal = Decimal("10"),
    ) -> None:
        self.name = name
        self.instruments: dict[str, Instrument] = {}
        for inst in instruments:
            if inst.kind is InstrumentKind.INVERSE_PERP:
                raise ValueError(f"{inst.key}: inverse perps are not simulated; use a linear perp (BASE/QUOTE:QUOTE)")
            if inst.kind is InstrumentKind.LENDING_RESERVE:
                raise ValueError(f"{inst.key}: lending reserves belong to a SimLendingMarket, not a venue")
            self.instruments[inst.symbol] = inst
        settles = {i.settle for i in self.instruments.values() if i.kind.is_perp}
        if len(settles) > 1:
            raise ValueError(f"{name}: perps settle in several assets {sorted(settles)}; one margin asset per venue")
        self.margin_asset: str | None = next(iter(settles)) if settles else None
        self.depth = depth or DepthModel()
        self.funding_interval = funding_interval
        # Perps carry their tiers (the core sizes margin with them): an instrument's own tiers
        # (e.g. a real venue's brackets in paper mode) unless a table is given.
        self._tiers: dict[str, MarginTiers] = {}
        for s, i in self.instruments.items():
            own = i.margin_tiers if margin_tiers is None else None
            self._tiers[s] = own or MarginTiers(tiers_for(i.base, margin_tiers))
            if i.kind.is_perp and i.margin_tiers != self._tiers[s]:
                self.instruments[s] = replace(i, margin_tiers=self._tiers[s])
        self.default_leverage = default_leverage
        self.accounts: dict[str, AccountState] = {n: AccountState(n) for n in SYSTEM_ACCOUNTS}
        self.markets: dict[str, MarketData] = {}
        self.events: list[Event] = []
        self.fill_cap: Decimal | None = None  # fault hook: cap the quantity of each fill
        self._ids = itertools.count(1)
        self._resting: dict[str, dict[tuple[str, str], OrderState]] = {}  # market -> open orders

    # ------------------------------------------------------------------ accounts and cash

    def open_account(self, name: str) -> AccountState:
        """Create (or return) the account ``name``."""
        acct = self.accounts.get(name)
        if acct is None:
            acct = self.accounts[name] = AccountState(name)
        return acct

    def _account(self, name: str) -> AccountState:
        try:
            return self.accounts[name]
        except KeyError:
            raise RejectedError(f"{self.name}: no account {name!r}", venue=self.name, code="unknown_account") from None

    def deposit(self, account: str, asset: str, amount: Decimal, now: datetime) -> list[Event]:
        """Credit ``amount`` of ``asset`` to ``account`` (from outside the venue)."""
        _check_number(amount, f"{self.name}: deposit of {asset}", venue=self.name)
        self.open_account(account).credit(asset, amount)
        return self._emit([Deposited(now, self.name, account, asset, amount)])

    def withdraw(self, account: str, asset: str, amount: Decimal, now: datetime) -> list[Event]:
        """Debit ``amount`` of ``asset`` from ``account``; refuse more than is free (margin stays covered)."""
        _check_number(amount, f"{self.name}: withdrawal of {asset}", venue=self.name)
        acct = self._account(account)
        free = self.free_balance(account, asset)
        if amount > free:
            raise InsufficientFundsError(
                f"{self.name}: cannot withdraw {amount} {asset} from {account}: only {free} is free",
                venue=self.name,
                code="insufficient_balance",
            )
        acct.credit(asset, -amount)
        return self._emit([Withdrawn(now, self.name, account, asset, amount)])

    def free_balance(self, account: str, asset: str) -> Decimal:
        """What ``account`` could withdraw of ``asset``: balance not needed as margin or locked in orders."""
        acct = self._account(account)
        total = acct.balance(asset)
        locked = self._locked_by_orders(acct, asset)
        free = total - locked
        if asset == self.margin_asset and self._has_perp_exposure(acct):
            health = self.margin_health(account)
            assert health is not None
            free = min(free, health.equity - health.initial_margin - self._order_margin(acct))
        return max(free, ZERO)

    # ------------------------------------------------------------------ market data

    def update_market(self, market: str, mark: Decimal, now: datetime, *, index: Decimal | None = None) -> list[Event]:
        """Set the mark (and index) of ``market``; its book follows the mark; fill resting orders it crosses."""
        inst = self._instrument(market)
        _check_number(mark, f"{self.name}:{market} mark price", venue=self.name)
        if index is not None:
            _check_number(index, f"{self.name}:{market} index price", venue=self.name)
        data = self.markets.get(market)
        if data is None:
            data = self.markets[market] = MarketData(inst, self.depth, mark, index or mark)
            if inst.kind.is_perp:
                data.funding_interval = self.funding_interval
                data.next_settlement = next_settlement_after(now, self.funding_interval)
        data.move(mark, index or mark, now)
        if not self._resting.get(market):
            return []
        return self._fill_resting(market, now)

    def set_funding(
        self,
        market: str,
        rate: Decimal,
        *,
        next_settlement: datetime | None = None,
        interval: timedelta | None = None,
        predicted: Decimal | None = None,
    ) -> None:
        """Set the rate ``market`` will pay at its next settlement (and, if given, when that is).

        ``predicted``: the rate the venue publishes meanwhile (None: the rate it will pay).
        """
        inst = self._instrument(market)
        if not inst.kind.is_perp:
            raise RejectedError(f"{self.name}:{market} is not a perp; it has no funding", venue=self.name)
        _check_number(rate, f"{self.name}:{market} funding rate", venue=self.name, positive=False)
        data = self._data(market)
        data.funding_rate = rate
        data.predicted_rate = predicted
        if interval is not None:
            if interval.total_seconds() <= 0:
                raise RejectedError(f"{self.name}:{market}: funding interval must be positive", venue=self.name)
            data.funding_interval = interval
        if next_settlement is not None:
            data.next_settlement = next_settlement

    def mark(self, market: str) -> Decimal:
        return self._data(market).mark

    def book(self, market: str) -> OrderBook:
        """The current book of ``market``."""
        return self._data(market).book

    def _instrument(self, market: str) -> Instrument:
        try:
            return self.instruments[market]
        except KeyError:
            raise RejectedError(
                f"{self.name}: unknown market {market!r} (has {', '.join(sorted(self.instruments))})",
                venue=self.name,
                code="unknown_market",
            ) from None

    def _data(self, market: str) -> MarketData:
        self._instrument(market)
        data = self.markets.get(market)
        if data is None:
            raise RejectedError(f"{self.name}:{market} has no price yet", venue=self.name, code="no_price")
        return data

    # ------------------------------------------------------------------ funding

    def next_settlement(self, market: str) -> datetime | None:
        data = self.markets.get(market)
        return data.next_settlement if data else None

    def settle_due(self, now: datetime) -> list[Event]:
        """Settle funding on every perp market whose next settlement is at or before ``now``."""
        events: list[Event] = []
        for market, data in self.markets.items():
            if not self.instruments[market].kind.is_perp:
                continue
            while data.next_settlement is not None and data.next_settlement <= now:
                when = data.next_settlement
                events += self.settle_funding(market, data.funding_rate, when)
                assert data.funding_interval is not None
                data.next_settlement = when + data.funding_interval
        return events

    def settle_funding(self, market: str, rate: Decimal, now: datetime) -> list[Event]:
        """Pay funding on ``market`` at the current mark: size x mark x rate, longs pay shorts when positive."""
        inst = self._instrument(market)
        if not inst.kind.is_perp:
            raise RejectedError(f"{self.name}:{market} is not a perp; it has no funding", venue=self.name)
        _check_number(rate, f"{self.name}:{market} funding rate", venue=self.name, positive=False)
        mark = self._data(market).mark
        payments: list[tuple[AccountState, Decimal, Decimal]] = []
        market_acct = self.accounts[MARKET]
        total = ZERO
        for acct in self.accounts.values():
            if acct is market_acct:
                continue
            pos = acct.positions.get(market)
            if pos is None or pos.size == 0:
                continue
            amount = funding_amount(pos.size, mark, rate)
            payments.append((acct, pos.size, amount))
            total += amount
        counter = market_acct.positions.get(market)
        if counter is not None and counter.size != 0:
            payments.append((market_acct, counter.size, -total))
        events: list[Event] = []
        for acct, size, amount in payments:
            acct.credit(inst.settle, amount)
            events.append(FundingPaid(now, self.name, acct.name, market, size, mark, rate, amount, inst.settle))
        return self._emit(events)

    # ------------------------------------------------------------------ orders

    def set_leverage(self, account: str, market: str, leverage: Decimal) -> None:
        """Choose the leverage used for initial margin on ``market`` (capped by the tier table)."""
        _check_number(leverage, f"{self.name}:{market} leverage", venue=self.name)
        inst = self._instrument(market)
        if not inst.kind.is_perp:
            raise RejectedError(f"{self.name}:{market} is spot; leverage does not apply", venue=self.name)
        self._account(account).leverage[market] = leverage

    def submit(self, account: str, request: OrderRequest, now: datetime) -> Order:
        """Accept, fill and/or rest an order; refuse it with ``RejectedError`` or ``InsufficientFundsError``."""
        acct = self._account(account)
        inst = self._instrument(request.market)
        data = self._data(request.market)
        if not request.client_id:
            raise RejectedError(f"{self.name}: an order needs a client id", venue=self.name, code="missing_client_id")
        if request.client_id in acct.orders:
            raise RejectedError(
                f"{self.name}: duplicate client id {request.client_id!r}", venue=self.name, code="duplicate_client_id"
            )
        quantity = _check_number(request.quantity, f"{self.name}:{request.market} order quantity", venue=self.name)
        if not is_multiple(quantity, inst.lot_step):
            raise RejectedError(
                f"{self.name}:{request.market}: quantity {quantity} is not a multiple of lot step {inst.lot_step}",
                venue=self.name,
                code="bad_step",
            )
        if quantity < inst.min_quantity:
            raise RejectedError(
                f"{self.name}:{request.market}: quantity {quantity} is below the minimum {inst.min_quantity}",
                venue=self.name,
                code="min_quantity",
            )
        price: Decimal | None = None
        if request.type is OrderType.LIMIT:
            if request.price is None:
                raise RejectedError(f"{self.name}:{request.market}: a limit order needs a price", venue=self.name, code="bad_price")
            price = _check_number(request.price, f"{self.name}:{request.market} order price", venue=self.name)
            if not is_multiple(price, inst.tick_size):
                raise RejectedError(
                    f"{self.name}:{request.market}: price {price} is not a multiple of tick size {inst.tick_size}",
                    venue=self.name,
                    code="bad_tick",
                )
        elif request.time_in_force is TimeInForce.POST_ONLY:
            raise RejectedError(f"{self.name}: a market order cannot be post-only", venue=self.name, code="bad_tif")
        reference = price if price is not None else data.mark
        if not request.reduce_only and quantity * reference < inst.min_notional:
            raise RejectedError(
                f"{self.name}:{request.market}: notional {quantity * reference} is below the minimum {inst.min_notional}",
                venue=self.name,
                code="min_notional",
            )
        if request.reduce_only:
            self._check_reduce_only(acct, inst, request.side, quantity)
        book = data.book
        if request.time_in_force is TimeInForce.POST_ONLY:
            best = book.asks[0].price if request.side is Side.BUY else book.bids[0].price
            assert price is not None
            crosses = price >= best if request.side is Side.BUY else price <= best
            if crosses:
                raise RejectedError(
                    f"{self.name}:{request.market}: post-only order at {price} would take liquidity (best {best})",
                    venue=self.name,
                    code="post_only_would_cross",
                )
        executions = [] if request.time_in_force is TimeInForce.POST_ONLY else walk(book, request.side, quantity, price)
        executions = self._cap(executions)
        taken = sum((q for _, q in executions), ZERO)
        if request.time_in_force is TimeInForce.FOK and taken < quantity:
            executions, taken = [], ZERO
        rests = request.type is OrderType.LIMIT and request.time_in_force in (TimeInForce.GTC, TimeInForce.POST_ONLY)
        self._check_funds(acct, inst, request.side, executions, quantity - taken if rests else ZERO, price, request.reduce_only)
        order = OrderState(
            client_id=request.client_id,
            venue_order_id=f"{self.name}-{next(self._ids)}",
            market=request.market,
            side=request.side,
            quantity=quantity,
            type=request.type,
            price=price,
            time_in_force=request.time_in_force,
            reduce_only=request.reduce_only,
            ts=now,
        )
        acct.orders[order.client_id] = order
        events: list[Event] = [OrderAccepted(now, self.name, account, order.client_id, order.market)]
        for px, qty in executions:
            events.append(self._execute(acct, inst, order, px, qty, now, is_maker=False))
        if order.remaining == 0:
            order.status = OrderStatus.FILLED
        elif rests:
            order.status = OrderStatus.PARTIALLY_FILLED if order.filled > 0 else OrderStatus.NEW
            self._resting.setdefault(order.market, {})[(account, order.client_id)] = order
        else:
            order.status = OrderStatus.EXPIRED
            events.append(OrderCanceled(now, self.name, account, order.client_id, order.market, "unfilled remainder expired"))
        self._emit(events)
        return order.to_order()

    def cancel(self, account: str, client_id: str, now: datetime) -> Order:
        """Cancel a resting order by client id (a final order is returned unchanged)."""
        order = self._order_state(account, client_id)
        if not order.status.is_final:
            order.status = OrderStatus.CANCELED
            self._resting.get(order.market, {}).pop((account, client_id), None)
            self._emit([OrderCanceled(now, self.name, account, client_id, order.market, "canceled by request")])
        return order.to_order()

    def order(self, account: str, client_id: str) -> Order:
        """Look up an order by client id (``OrderNotFoundError`` when unknown)."""
        return self._order_state(account, client_id).to_order()

    def open_orders(self, account: str) -> list[Order]:
        """Every resting order of ``account``."""
        self._account(account)
        return [o.to_order() for o in self._open_orders_of(account)]

    def _open_orders_of(self, account: str) -> list[OrderState]:
        return [o for resting in self._resting.values() for (a, _), o in resting.items() if a == account and not o.status.is_final]

    def _order_state(self, account: str, client_id: str) -> OrderState:
        acct = self._account(account)
        order = acct.orders.get(client_id)
        if order is None:
            raise OrderNotFoundError(f"{self.name}: no order with client id {client_id!r}", venue=self.name, code="unknown_order")
        return order

    def _cap(self, executions: list[tuple[Decimal, Decimal]]) -> list[tuple[Decimal, Decimal]]:
        if self.fill_cap is None:
            return executions
        left = self.fill_cap
        capped: list[tuple[Decimal, Decimal]] = []
        for px, qty in executions:
            if left <= 0:
                break
            take = min(qty, left)
            capped.append((px, take))
            left -= take
        return capped

    def _check_reduce_only(self, acct: AccountState, inst: Instrument, side: Side, quantity: Decimal) -> None:
        if not inst.kind.is_perp:
            raise RejectedError(f"{self.name}:{inst.symbol}: reduce-only applies to perps only", venue=self.name, code="reduce_only")
        pos = acct.positions.get(inst.symbol)
        size = pos.size if pos else ZERO
        if size == 0 or (size > 0) == (side is Side.BUY):
            raise RejectedError(
                f"{self.name}:{inst.symbol}: reduce-only {side.value} would not reduce position {size}",
                venue=self.name,
                code="reduce_only",
            )
        resting = sum((o.remaining for o in self._open_orders_of(acct.name) if o.market == inst.symbol and o.reduce_only), ZERO)
        if quantity + resting > abs(size):
            raise RejectedError(
                f"{self.name}:{inst.symbol}: reduce-only {quantity} (+{resting} resting) exceeds position {abs(size)}",
                venue=self.name,
                code="reduce_only",
            )

    def _check_funds(
        self,
        acct: AccountState,
        inst: Instrument,
        side: Side,
        executions: list[tuple[Decimal, Decimal]],
        resting: Decimal,
        price: Decimal | None,
        reduce_only: bool,
    ) -> None:
        taken_qty = sum((q for _, q in executions), ZERO)
        taken_cost = sum((p * q for p, q in executions), ZERO)
        fee = quantize_amount(taken_cost * inst.taker_fee)
        if inst.kind is InstrumentKind.SPOT:
            if side is Side.BUY:
                need = taken_cost + fee + (resting * price * (1 + inst.maker_fee) if price is not None and resting else ZERO)
                have = acct.balance(inst.quote) - self._locked_by_orders(acct, inst.quote)
                asset = inst.quote
            else:
                need = taken_qty + resting
                have = acct.balance(inst.base) - self._locked_by_orders(acct, inst.base)
                asset = inst.base
            if need > have:
                raise InsufficientFundsError(
                    f"{self.name}:{inst.symbol}: needs {need} {asset}, {acct.name} has {max(have, ZERO)} free",
                    venue=self.name,
                    code="insufficient_balance",
                )
            return
        if reduce_only:
            return
        data = self.markets[inst.symbol]
        pos = acct.positions.get(inst.symbol)
        size = pos.size if pos else ZERO
        delta = taken_qty * side.sign
        new_size = size + delta
        increases = abs(new_size) > abs(size) or (resting > 0)
        if not increases:
            return
        health = self.margin_health(acct.name)
        equity = health.equity if health else acct.balance(inst.settle)
        # what the trade costs versus mark, now: fee plus the executions' distance from mark
        equity_after = equity - fee - sum(((p - data.mark) * q * side.sign for p, q in executions), ZERO)
        im_other = ZERO
        for market, p in acct.positions.items():
            if market != inst.symbol and p.size != 0:
                im_other += self._position_im(acct, market, p.size)
        worst = abs(new_size) + resting
        im_this = self._tiers[inst.symbol].initial_margin(worst * data.mark, self._leverage(acct, inst.symbol))
        im_orders = self._order_margin(acct, exclude=inst.symbol)
        need = im_other + im_this + im_orders
        if need > equity_after:
            raise InsufficientFundsError(
                f"{self.name}:{inst.symbol}: insufficient margin: initial margin {quantize_amount(need)} "
                f"would exceed equity {quantize_amount(equity_after)} of {acct.name}",
                venue=self.name,
                code="insufficient_margin",
            )

    def _execute(
        self, acct: AccountState, inst: Instrument, order: OrderState, price: Decimal, qty: Decimal, now: datetime, *, is_maker: bool
    ) -> OrderFilled:
        counter = self.accounts[MARKET]
        fee_rate = inst.maker_fee if is_maker else inst.taker_fee
        mid = self.markets[inst.symbol].book.mid or self.markets[inst.symbol].mark
        fee, slippage = fill_costs(price, qty, order.side, mid, fee_rate)
        delta = qty * order.side.sign
        if inst.kind is InstrumentKind.SPOT:
            acct.credit(inst.base, delta)
            acct.credit(inst.quote, -delta * price)
            counter.credit(inst.base, -delta)
            counter.credit(inst.quote, delta * price)
        else:
            acct.credit(inst.settle, acct.position(inst.symbol).apply(delta, price))
            counter.credit(inst.settle, counter.position(inst.symbol).apply(-delta, price))
        fee_asset = inst.quote if inst.kind is InstrumentKind.SPOT else inst.settle
        acct.credit(fee_asset, -fee)
        self.accounts[FEES].credit(fee_asset, fee)
        order.filled += qty
        order.filled_notional += price * qty
        order.fee += fee
        order.fee_asset = fee_asset
        fill = Fill(order.client_id, inst.symbol, order.side, qty, price, fee, fee_asset, now, is_maker, slippage)
        return OrderFilled(now, self.name, acct.name, fill)

    def _fill_resting(self, market: str, now: datetime) -> list[Event]:
        data = self.markets[market]
        inst = self.instruments[market]
        events: list[Event] = []
        resting = self._resting.get(market, {})
        if not resting or not data.book.bids or not data.book.asks:
            return events
        best_ask, best_bid = data.book.asks[0].price, data.book.bids[0].price
        for key, order in list(resting.items()):
            acct = self.accounts[key[0]]
            if order.status.is_final or order.price is None:
                resting.pop(key, None)
                continue
            crossed = best_ask <= order.price if order.side is Side.BUY else best_bid >= order.price
            if not crossed:
                continue
            qty = order.remaining
            if order.reduce_only:
                pos = acct.positions.get(market)
                size = pos.size if pos else ZERO
                reducible = abs(size) if size != 0 and (size > 0) != (order.side is Side.BUY) else ZERO
                qty = min(qty, reducible)
            if self.fill_cap is not None:
                qty = min(qty, self.fill_cap)
            if qty > 0:
                events.append(self._execute(acct, inst, order, order.price, qty, now, is_maker=True))
            if order.remaining == 0:
                order.status = OrderStatus.FILLED
            elif order.reduce_only and (acct.positions.get(market) or PositionState()).size == 0:
                order.status = OrderStatus.CANCELED
                events.append(OrderCanceled(now, self.name, acct.name, order.client_id, market, "reduce-only: position closed"))
            elif order.filled > 0:
                order.status = OrderStatus.PARTIALLY_FILLED
            if order.status.is_final:
                resting.pop(key, None)
        return self._emit(events)

    # ------------------------------------------------------------------ margin

    def _leverage(self, acct: AccountState, market: str) -> Decimal:
        return acct.leverage.get(market, self.default_leverage)

    def _position_im(self, acct: AccountState, market: str, size: Decimal) -> Decimal:
        mark = self.markets[market].mark
        return self._tiers[market].initial_margin(abs(size) * mark, self._leverage(acct, market))

    def _order_margin(self, acct: AccountState, exclude: str | None = None) -> Decimal:
        """Initial margin reserved by resting perp orders that would grow a position."""
        total = ZERO
        for order in self._open_orders_of(acct.name):
            if order.reduce_only or order.market == exclude:
                continue
            inst = self.instruments[order.market]
            if not inst.kind.is_perp or order.price is None:
                continue
            total += self._tiers[order.market].initial_margin(order.remaining * order.price, self._leverage(acct, order.market))
        return total

    def _locked_by_orders(self, acct: AccountState, asset: str) -> Decimal:
        locked = ZERO
        for order in self._open_orders_of(acct.name):
            if order.price is None:
                continue
            inst = self.instruments[order.market]
            if inst.kind is not InstrumentKind.SPOT:
                continue
            if order.side is Side.BUY and asset == inst.quote:
                locked += order.remaining * order.price * (1 + inst.maker_fee)
            elif order.side is Side.SELL and asset == inst.base:
                locked += order.remaining
        return locked

    def _has_perp_exposure(self, acct: AccountState) -> bool:
        return any(p.size != 0 for p in acct.positions.values()) or any(
            self.instruments[o.market].kind.is_perp for o in self._open_orders_of(acct.name)
        )

    def equity(self, account: str) -> Decimal:
        """Margin-asset balance plus unrealised PnL of every perp position of ``account``."""
        acct = self._account(account)
        if self.margin_asset is None:
            return ZERO
        upnl = sum((p.unrealised(self.markets[m].mark) for m, p in acct.positions.items() if p.size != 0), ZERO)
        return acct.balance(self.margin_asset) + upnl

    def margin_health(self, account: str) -> MarginHealth | None:
        """Equity, initial and maintenance margin of ``account`` (None on a venue without perps)."""
        acct = self._account(account)
        if self.margin_asset is None:
            return None
        im = ZERO
        mm = ZERO
        for market, pos in acct.positions.items():
            if pos.size == 0:
                continue
            notional = abs(pos.size) * self.markets[market].mark
            im += self._tiers[market].initial_margin(notional, self._leverage(acct, market))
            mm += self._tiers[market].maintenance_margin(notional)
        liq: Decimal | None = None
        open_markets = [m for m, p in acct.positions.items() if p.size != 0]
        if len(open_markets) == 1:
            liq = self.liquidation_price(account, open_markets[0])
        return MarginHealth(equity=self.equity(account), initial_margin=im, maintenance_margin=mm, liquidation_price=liq)

    def liquidation_price(self, account: str, market: str) -> Decimal | None:
        """The mark of ``market`` at which ``account`` would reach its maintenance line, others unchanged."""
        acct = self._account(account)
        pos = acct.positions.get(market)
        if pos is None or pos.size == 0 or self.margin_asset is None:
            return None
        others_upnl = ZERO
        others_mm = ZERO
        for m, p in acct.positions.items():
            if m == market or p.size == 0:
                continue
            mark = self.markets[m].mark
            others_upnl += p.unrealised(mark)
            others_mm += self._tiers[m].maintenance_margin(abs(p.size) * mark)
        a = acct.balance(self.margin_asset) + others_upnl - pos.cost
        s = pos.size
        lower = ZERO
        cumulative = ZERO
        for tier in self._tiers[market].tiers:
            r = tier.maintenance_rate
            denominator = s - r * abs(s)
            if denominator != 0:
                price = (cumulative - r * lower + others_mm - a) / denominator
                notional = abs(s) * price
                if price > 0 and lower <= notional <= tier.up_to:
                    return price
            if tier.up_to.is_infinite():
                break
            cumulative += (tier.up_to - lower) * r
            lower = tier.up_to
        return None

    def check_liquidations(self, now: datetime) -> list[Event]:
        """Liquidate every account whose equity is at or below its maintenance margin."""
        events: list[Event] = []
        if self.margin_asset is None:
            return []
        for acct in list(self.accounts.values()):
            if acct.name in SYSTEM_ACCOUNTS:
                continue
            # Maintenance and equity first (cheap); the full health only for an account on the line.
            maintenance = ZERO
            for market, pos in acct.positions.items():
                if pos.size != 0:
                    maintenance += self._tiers[market].maintenance_margin(abs(pos.size) * self.markets[market].mark)
            if maintenance <= 0 or self.equity(acct.name) > maintenance:
                continue
            health = self.margin_health(acct.name)
            if health is not None and health.is_liquidatable:
                events.append(self._liquidate(acct, health, now))
        return self._emit(events)

    def _liquidate(self, acct: AccountState, health: MarginHealth, now: datetime) -> Liquidated:
        assert self.margin_asset is not None
        counter = self.accounts[MARKET]
        closed: list[tuple[str, Decimal, Decimal]] = []
        for order in self._open_orders_of(acct.name):
            if self.instruments[order.market].kind.is_perp:
                order.status = OrderStatus.CANCELED
                self._resting.get(order.market, {}).pop((acct.name, order.client_id), None)
        for market, pos in acct.positions.items():
            if pos.size == 0:
                continue
            mark = self.markets[market].mark
            size = pos.size
            acct.credit(self.margin_asset, pos.apply(-size, mark))
            counter.credit(self.margin_asset, counter.position(market).apply(size, mark))
            closed.append((market, size, mark))
        balance = acct.balance(self.margin_asset)
        penalty = min(max(balance, ZERO), quantize_amount(health.maintenance_margin))
        acct.credit(self.margin_asset, -penalty)
        self.accounts[INSURANCE].credit(self.margin_asset, penalty)
        deficit = ZERO
        if acct.balance(self.margin_asset) < 0:
            deficit = -acct.balance(self.margin_asset)
            acct.credit(self.margin_asset, deficit)
            self.accounts[INSURANCE].credit(self.margin_asset, -deficit)
        return Liquidated(now, self.name, acct.name, health.equity, health.maintenance_margin, tuple(closed), penalty, deficit)

    # ------------------------------------------------------------------ snapshots

    def snapshot(self, account: str, now: datetime, *, fuse: str | None = None) -> AccountSnapshot:
        """The account as ``alpha.domain.account.AccountSnapshot`` (positions at mark, margin health)."""
        acct = self._account(account)
        balances = tuple(
            Balance(asset, total, self.free_balance(account, asset)) for asset, total in sorted(acct.balances.items())
        )
        health = self.margin_health(account) if self._is_margin_account(acct) else None
        positions = []
        for market, pos in sorted(acct.positions.items()):
            if pos.size == 0:
                continue
            mark = self.markets[market].mark
            positions.append(
                Position(
                    market=market,
                    size=pos.size,
                    entry_price=pos.entry_price,
                    mark_price=mark,
                    unrealised_pnl=pos.unrealised(mark),
                    liquidation_price=self.liquidation_price(account, market),
                )
            )
        return AccountSnapshot(
            fuse=fuse or self.name,
            ts=now,
            balances=balances,
            positions=tuple(positions),
            margin=health,
            open_orders=tuple(self.open_orders(account)),
        )

    def _is_margin_account(self, acct: AccountState) -> bool:
        return self.margin_asset is not None

    def total_value(self, asset: str) -> Decimal:
        """Sum over every account of ``asset`` balances plus unrealised PnL settled in it (conserved)."""
        total = sum((a.balance(asset) for a in self.accounts.values()), ZERO)
        for acct in self.accounts.values():
            for market, pos in acct.positions.items():
                if self.instruments[market].settle == asset and pos.size != 0:
                    total += pos.unrealised(self.markets[market].mark)
        return total

    def _emit(self, events: list[Event]) -> list[Event]:
        self.events.extend(events)
        return events

    def drain_events(self) -> list[Event]:
        """Return and forget the events recorded so far."""
        events, self.events = self.events, []
        return events


__all__ = [
    "AMOUNT_QUANTUM",
    "FEES",
    "INSURANCE",
    "MARKET",
    "SYSTEM_ACCOUNTS",
    "AccountState",
    "MarketData",
    "OrderState",
    "PositionState",
    "SimExchange",
    "quantize_amount",
]
