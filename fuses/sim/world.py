"""The simulated world: the vault's cash, one simulated venue per sim fuse, simulated lending, a market source.

``SimWorld.from_config(config)`` builds everything a strategy file describes: the vault holds
``vault.nav`` of the base asset; each enabled ``kind: sim`` fuse gets a ``SimExchange`` (venue
name = fuse name, our account on it = the fuse name); each enabled ``kind: lending, venue: sim``
fuse gets a ``SimLendingMarket``. Prices and funding come from a ``MarketSource`` (the synthetic
generator by default).

``step_to(now)`` moves the world forward: it stops at every funding settlement on the way so that
each is paid at its own time, and at each stop updates marks and books, fills resting orders,
settles funding due, records the next rates, accrues lending interest and runs liquidations.
``portfolio_view(now)`` is what the strategy core sees; ``ledger`` totals funding, fees,
slippage and interest per fuse for reconciliation against the daemon's journal.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path

from alpha.config.schema import FuseKind, RateFuseConfig, StrategyConfig
from alpha.domain.account import AccountSnapshot
from alpha.domain.funding import FundingRate
from alpha.domain.market import MarketSnapshot
from alpha.domain.money import ONE, ZERO, to_decimal
from alpha.domain.portfolio import PortfolioView, market_key
from alpha.domain.rates import RateAccount, RateBook, RateMarket, RateQuote, rate_key
from fuses.base import InsufficientFundsError, RejectedError
from fuses.sim.accounts import AMOUNT_QUANTUM
from fuses.sim.book import DepthModel
from fuses.sim.boros import SimBoros
from fuses.sim.engine import MarketData, SimExchange
from fuses.sim.events import (
    AccountEvent,
    Converted,
    Event,
    FundingPaid,
    InterestAccrued,
    LendingLiquidated,
    Liquidated,
    OrderFilled,
    Transferred,
)
from fuses.sim.lending import ReserveParams, SimLendingMarket, read_borrow_rates, reserve_params_for
from fuses.sim.markets import make_instrument
from fuses.sim.source import MarketSource, MarketState, MarketStates

VAULT = "vault"


@dataclass
class Ledger:
    """What the engine paid and charged our accounts, per fuse (and market or asset)."""

    funding: dict[tuple[str, str], Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    funding_received: dict[tuple[str, str], Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    funding_paid: dict[tuple[str, str], Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    fees: dict[tuple[str, str], Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    slippage: dict[tuple[str, str], Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    interest: dict[tuple[str, str], Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    liquidations: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    settlements: int = 0
    fills: int = 0

    def record(self, event: Event) -> None:
        """Add one event about one of our accounts."""
        if isinstance(event, FundingPaid):
            key = (event.venue, event.market)
            self.funding[key] += event.amount
            if event.amount >= 0:
                self.funding_received[key] += event.amount
            else:
                self.funding_paid[key] -= event.amount
            self.settlements += 1
        elif isinstance(event, OrderFilled):
            key = (event.venue, event.fill.market)
            self.fees[key] += event.fill.fee
            self.slippage[key] += event.fill.slippage
            self.fills += 1
        elif isinstance(event, InterestAccrued):
            self.interest[(event.venue, event.asset)] += event.amount
        elif isinstance(event, Liquidated | LendingLiquidated):
            self.liquidations[event.venue] += 1

    def total_funding(self, fuse: str | None = None) -> Decimal:
        """Net funding received (negative: paid), for one fuse or all."""
        return sum((v for (f, _), v in self.funding.items() if fuse is None or f == fuse), ZERO)

    def total_fees(self, fuse: str | None = None) -> Decimal:
        return sum((v for (f, _), v in self.fees.items() if fuse is None or f == fuse), ZERO)

    def total_slippage(self, fuse: str | None = None) -> Decimal:
        return sum((v for (f, _), v in self.slippage.items() if fuse is None or f == fuse), ZERO)

    def total_interest(self, fuse: str | None = None) -> Decimal:
        return sum((v for (f, _), v in self.interest.items() if fuse is None or f == fuse), ZERO)


def reserve_overrides(
    reserves: dict[str, ReserveParams], options: Mapping[str, object], fuse: str
) -> dict[str, ReserveParams]:
    """Apply a lending fuse's ``options`` of the form ``"<ASSET>.<parameter>": value`` to its reserves.

    For example ``{"USDC.fixed_borrow_rate": "0.05", "BTC.ltv": "0.70", "BTC.borrow_cap": "50"}``.
    """
    names = {f.name for f in fields(ReserveParams)}
    changes: dict[str, dict[str, Decimal]] = defaultdict(dict)
    for key, value in options.items():
        asset, dot, name = key.partition(".")
        if not dot or name not in names:
            raise ValueError(f"fuse {fuse}: option {key!r} is not '<ASSET>.<reserve parameter>' ({', '.join(sorted(names))})")
        if asset not in reserves:
            raise ValueError(f"fuse {fuse}: option {key!r} names asset {asset}, which has no reserve here")
        changes[asset][name] = to_decimal(value, field=f"fuse {fuse}: option {key}")
    out = dict(reserves)
    for asset, fields_ in changes.items():
        out[asset] = replace(out[asset], **fields_)
    return out


RATE_FILE = "borrow_rate_file"


def split_rate_files(options: Mapping[str, object]) -> tuple[dict[str, object], dict[str, Path]]:
    """Separate a lending fuse's ``"<ASSET>.borrow_rate_file": path`` options (recorded borrow rates) from the rest."""
    rest: dict[str, object] = {}
    files: dict[str, Path] = {}
    for key, value in options.items():
        asset, dot, name = key.partition(".")
        if dot and name == RATE_FILE:
            files[asset] = Path(str(value)).expanduser()
        else:
            rest[key] = value
    return rest, files


class SimWorld:
    """The vault, its simulated venues and lending markets, and the source that moves their prices."""

    def __init__(
        self,
        *,
        base_asset: str,
        vault_cash: Decimal,
        venues: Mapping[str, SimExchange],
        lending: Mapping[str, SimLendingMarket] | None = None,
        source: MarketSource,
        start: datetime,
        stablecoins: tuple[str, ...],
        cash_at_par: bool = True,
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("the world's start must be timezone-aware")
        if not isinstance(vault_cash, Decimal) or not vault_cash.is_finite() or vault_cash < 0:
            raise ValueError(f"vault cash must be a non-negative Decimal, got {vault_cash!r}")
        self.base_asset = base_asset
        self.vault: dict[str, Decimal] = {base_asset: vault_cash}
        self.venues = dict(venues)
        self.lending = dict(lending or {})
        self.rates: dict[str, SimBoros] = {}
        self._prices_box: dict[str, Decimal] = {}
        self.source = source
        self.stablecoins = stablecoins
        self.cash = frozenset((base_asset, *stablecoins))
        self.cash_at_par = cash_at_par
        self.now = start
        self.ledger = Ledger()
        self.states: MarketStates = {}
        self._subscribers: list[Callable[[Event], None]] = []
        for name, venue in self.venues.items():
            venue.open_account(name)
        for name, market in self.lending.items():
            market.open_account(name)
        self._advance_to(start, first=True)

    # ------------------------------------------------------------------ building

    @classmethod
    def from_config(
        cls,
        config: StrategyConfig,
        source: MarketSource | None = None,
        start: datetime | None = None,
    ) -> SimWorld:
        """Build the world a strategy file describes (default source: the synthetic market)."""
        begin = start or config.clock.start
        if begin is None:
            raise ValueError("the simulated world needs a start time: set clock.start in the strategy file or pass start=")
        if source is None:
            from fuses.sim.synthetic import SyntheticSource  # loads numpy: only when no source is given

            source = SyntheticSource.from_config(config, begin)
        first = source.advance(begin)
        venues: dict[str, SimExchange] = {}
        lending_fuses = []
        for fuse in config.enabled_fuses:
            if fuse.kind is FuseKind.SIM:
                params = fuse.sim
                states = first.get(fuse.name, {})
                instruments = []
                for symbol in fuse.markets:
                    state = states.get(symbol)
                    if state is None:
                        raise ValueError(f"fuse {fuse.name}: the market source gives no price for {symbol}")
                    instruments.append(
                        make_instrument(
                            fuse.name,
                            symbol,
                            state.mark,
                            maker_fee=params.maker_fee if params else Decimal("0.0002"),
                            taker_fee=params.taker_fee if params else Decimal("0.0005"),
                        )
                    )
                depth = (
                    DepthModel(params.spread_bps, params.depth_notional, params.depth_bps, params.levels)
                    if params
                    else DepthModel()
                )
                interval = params.funding_interval if params else timedelta(hours=8)
                venues[fuse.name] = SimExchange(
                    fuse.name,
                    instruments,
                    depth=depth,
                    funding_interval=interval,
                    default_leverage=fuse.max_leverage,
                )
            elif fuse.kind is FuseKind.LENDING and fuse.venue == "sim":
                lending_fuses.append(fuse)
        world = cls(
            base_asset=config.vault.base_asset,
            vault_cash=config.vault.nav,
            venues=venues,
            source=source,
            start=begin,
            stablecoins=config.stablecoins,
            cash_at_par=config.cash_at_par,
        )
        for rate_fuse in config.enabled_rates:
            if rate_fuse.venue == "sim":
                world.add_rates(world.sim_boros(rate_fuse))
        for fuse in lending_fuses:
            assets = list(dict.fromkeys([*fuse.assets, *config.assets]))
            options, rate_files = split_rate_files(fuse.options)
            reserves = reserve_overrides({a: reserve_params_for(a) for a in assets}, options, fuse.name)
            collateral = config.vault.base_asset if config.vault.base_asset in reserves else None
            rates = {asset: read_borrow_rates(path) for asset, path in rate_files.items()}
            world.add_lending(
                fuse.name,
                SimLendingMarket(fuse.name, reserves, world.price_of, begin, collateral_asset=collateral, listed=fuse.assets or None, borrow_rates=rates),
            )
        return world

    def sim_boros(self, config: RateFuseConfig) -> SimBoros:
        """The simulated Boros fuse ``config`` describes, on this world's perps."""
        intervals: dict[str, timedelta] = {}
        assets: dict[str, str] = {}
        for m in config.markets:
            fuse, _, symbol = m.underlying.partition(":")
            venue = self.venues.get(fuse)
            data = venue.markets.get(symbol) if venue is not None else None
            if venue is None or data is None or data.funding_interval is None:
                raise ValueError(f"rate fuse {config.name}: {m.underlying} is not a simulated perp market of this world")
            intervals[m.underlying] = data.funding_interval
            assets[m.underlying] = venue.instruments[symbol].base
        return SimBoros.from_config(config, intervals, assets)

    def add_rates(self, boros: SimBoros) -> None:
        """Attach a simulated rate fuse (its markets' underlyings are this world's perps)."""
        if boros.name in self.venues or boros.name in self.lending or boros.name in self.rates:
            raise ValueError(f"a simulated fuse named {boros.name!r} already exists")
        self.rates[boros.name] = boros
        self._observe_rates()
        boros.advance(self.now)

    def _perp_data(self, key: str) -> MarketData | None:
        fuse, _, symbol = key.partition(":")
        venue = self.venues.get(fuse)
        return venue.markets.get(symbol) if venue is not None else None

    def _observe_rates(self) -> None:
        for boros in self.rates.values():
            for underlying in sorted({m.underlying for m in boros.markets.values()}):
                data = self._perp_data(underlying)
                if data is not None and data.funding_interval is not None:
                    boros.observe(underlying, data.published_rate, data.funding_interval)

    def _due_settlements(self, t: datetime) -> list[tuple[datetime, str, Decimal, timedelta]]:
        """The settlements of rate markets' underlyings due by ``t``: (when, underlying, rate, interval), before the venues settle them."""
        due: list[tuple[datetime, str, Decimal, timedelta]] = []
        for underlying in sorted({m.underlying for b in self.rates.values() for m in b.markets.values()}):
            data = self._perp_data(underlying)
            if data is None or data.funding_interval is None:
                continue
            when = data.next_settlement
            while when is not None and when <= t:
                due.append((when, underlying, data.funding_rate, data.funding_interval))
                when += data.funding_interval
        return sorted(due)

    def rate_deposit(self, fuse: str, amount: Decimal) -> Decimal:
        """Post ``amount`` of a rate zone's asset as collateral, bought from the vault at its index price; return the cost."""
        boros = self.rates[fuse]
        cost = (amount * self.price_of(boros.asset)).quantize(AMOUNT_QUANTUM, rounding=ROUND_CEILING)
        have = self.vault.get(self.base_asset, ZERO)
        if cost > have:
            raise InsufficientFundsError(f"the vault holds {have} {self.base_asset}, cannot buy {amount} {boros.asset} ({cost})", venue=VAULT)
        self.vault[self.base_asset] = have - cost
        boros.deposit(amount)
        return cost

    def rate_withdraw(self, fuse: str, amount: Decimal) -> Decimal:
        """Return ``amount`` of a rate zone's collateral to the vault, sold at its index price; return the proceeds."""
        boros = self.rates[fuse]
        boros.withdraw(amount, self.now)
        proceeds = (amount * self.price_of(boros.asset)).quantize(AMOUNT_QUANTUM, rounding=ROUND_FLOOR)
        self.vault[self.base_asset] = self.vault.get(self.base_asset, ZERO) + proceeds
        return proceeds

    def rate_book(self) -> RateBook:
        """What the simulated rate fuses show now: markets, quotes and our zones."""
        markets: dict[str, RateMarket] = {}
        quotes: dict[str, RateQuote] = {}
        accounts: dict[str, RateAccount] = {}
        for name, boros in self.rates.items():
            for market in boros.markets.values():
                markets[rate_key(market)] = market
                quotes[rate_key(market)] = boros.quote(market.market, self.now)
            accounts[name] = boros.account(self.now)
        return RateBook(markets, quotes, accounts)

    def add_lending(self, name: str, market: SimLendingMarket) -> None:
        """Attach a simulated lending market as fuse ``name`` (our account on it is ``name``)."""
        if name in self.venues or name in self.lending:
            raise ValueError(f"a simulated fuse named {name!r} already exists")
        market.open_account(name)
        self.lending[name] = market

    # ------------------------------------------------------------------ events

    def subscribe(self, callback: Callable[[Event], None]) -> None:
        """Call ``callback`` with every event the world emits from now on."""
        self._subscribers.append(callback)

    def _publish(self, events: list[Event]) -> None:
        for event in events:
            if self._is_ours(event):
                self.ledger.record(event)
            for callback in self._subscribers:
                callback(event)

    def _is_ours(self, event: Event) -> bool:
        return isinstance(event, AccountEvent) and event.account == event.venue

    # ------------------------------------------------------------------ time

    def step_to(self, now: datetime) -> list[Event]:
        """Advance to ``now``, stopping at every funding settlement on the way; return the events."""
        if now.tzinfo is None:
            raise ValueError("step_to needs a timezone-aware time")
        if now < self.now:
            raise ValueError(f"the simulated world cannot go back from {self.now} to {now}")
        events: list[Event] = []
        while True:
            due = self.next_settlement()
            target = now if due is None or due > now else max(due, self.now)
            events += self._advance_to(target)
            if target >= now:
                break
        return events

    def next_settlement(self) -> datetime | None:
        """The earliest next funding settlement over every simulated perp market."""
        times = [t for v in self.venues.values() for m in v.markets if (t := v.next_settlement(m)) is not None]
        return min(times) if times else None

    def _advance_to(self, t: datetime, *, first: bool = False) -> list[Event]:
        states = self.source.advance(t)
        for fuse, markets in states.items():
            self.states.setdefault(fuse, {}).update(markets)
        due = self._due_settlements(t) if self.rates and not first else []
        for name, venue in self.venues.items():
            fuse_states = states.get(name, {})
            for symbol, state in fuse_states.items():
                if symbol in venue.instruments:
                    venue.update_market(symbol, state.mark, t, index=state.index)
            if not first:
                venue.settle_due(t)
            for symbol, state in fuse_states.items():
                if symbol in venue.instruments and venue.instruments[symbol].kind.is_perp:
                    self._set_funding(venue, symbol, state, t)
            venue.check_liquidations(t)
        self._refresh_prices()
        for market in self.lending.values():
            market.accrue(t)
            market.check_liquidations(t)
        for when, underlying, rate, interval in due:
            for boros in self.rates.values():
                boros.settle(underlying, rate, interval, when)
        if self.rates:
            self._observe_rates()
            for boros in self.rates.values():
                boros.advance(t)
        self.now = t
        return self.flush()

    def flush(self) -> list[Event]:
        """Publish (to the ledger and subscribers) every event the venues recorded since the last flush."""
        events: list[Event] = []
        for venue in self.venues.values():
            events += venue.drain_events()
        for market in self.lending.values():
            events += market.drain_events()
        self._publish(events)
        return events

    def _set_funding(self, venue: SimExchange, symbol: str, state: MarketState, t: datetime) -> None:
        if state.funding_rate is None:
            return
        next_settlement = state.next_settlement
        if next_settlement is not None and next_settlement <= t:
            next_settlement = None  # the source lags; keep the engine's own schedule
        venue.set_funding(
            symbol, state.funding_rate, next_settlement=next_settlement, interval=state.funding_interval, predicted=state.predicted_rate
        )

    # ------------------------------------------------------------------ prices

    def _refresh_prices(self) -> None:
        prices: dict[str, Decimal] = {}
        index_prices = getattr(self.source, "index_prices", None)
        if callable(index_prices):
            prices.update(index_prices())
        else:
            seen: dict[str, list[Decimal]] = defaultdict(list)
            for fuse, markets in self.states.items():
                venue = self.venues.get(fuse)
                for symbol, state in markets.items():
                    base = venue.instruments[symbol].base if venue and symbol in venue.instruments else symbol.split("/")[0]
                    seen[base].append(state.index)
            for asset, values in seen.items():
                prices[asset] = sum(values, ZERO) / len(values)
        for coin in self.stablecoins:
            prices.setdefault(coin, ONE)
        prices[self.base_asset] = ONE
        self._prices_box.clear()
        self._prices_box.update(prices)

    def price_of(self, asset: str) -> Decimal:
        """Index price of ``asset`` in the base asset."""
        try:
            return self._prices_box[asset]
        except KeyError:
            raise RejectedError(f"no price for {asset} in the simulated world", code="no_price") from None

    @property
    def prices(self) -> dict[str, Decimal]:
        """Index price of every known asset in the base asset."""
        return dict(self._prices_box)

    # ------------------------------------------------------------------ money movement

    def cash_price(self, asset: str) -> Decimal:
        """Value of one unit of ``asset`` in the base asset, as the views value it (cash at par is 1)."""
        if asset == self.base_asset or (self.cash_at_par and asset in self.cash):
            return ONE
        return self.price_of(asset)

    def booked_as(self, end: str, asset: str) -> str:
        """The coin ``end`` books a transfer of ``asset`` in (as ``PortfolioView.booked_as``).

        Cash reaching the vault is its base asset, cash reaching a venue with perps its margin
        asset; anything else stays ``asset``.
        """
        if asset not in self.cash:
            return asset
        if end == VAULT:
            return self.base_asset
        venue = self.venues.get(end)
        return venue.margin_asset if venue is not None and venue.margin_asset is not None else asset

    def _booked(self, end: str, asset: str, amount: Decimal, *, rounding: str) -> tuple[str, Decimal, Converted | None]:
        """The coin and amount ``end`` books for ``amount`` of ``asset``, and the conversion if any."""
        coin = self.booked_as(end, asset)
        if coin == asset:
            return coin, amount, None
        rate = self.cash_price(asset) / self.cash_price(coin)
        booked = amount if rate == ONE else (amount * rate).quantize(AMOUNT_QUANTUM, rounding=rounding)
        return coin, booked, Converted(end, coin, booked, rate)

    def transfer(self, asset: str, amount: Decimal, source: str, destination: str, now: datetime | None = None) -> Transferred:
        """Move ``amount`` of ``asset`` between the vault and a fuse's account (or between two fuses).

        An end that keeps its cash in another coin converts at ``cash_price`` (1:1 at par):
        what leaves is rounded up and what arrives rounded down to ``AMOUNT_QUANTUM``, so a
        conversion never creates money. The event lists each conversion.
        """
        when = now or self.now
        if not isinstance(amount, Decimal) or not amount.is_finite() or amount <= 0:
            raise RejectedError(f"transfer amount must be a positive finite Decimal, got {amount!r}", code="bad_number")
        if source == destination:
            raise RejectedError(f"transfer from {source} to itself", code="bad_transfer")
        for end in (source, destination):
            if end != VAULT and end not in self.venues and end not in self.lending:
                raise RejectedError(f"unknown transfer end {end!r} (use 'vault' or a simulated fuse name)", code="bad_transfer")
        out_asset, out_amount, out_conv = self._booked(source, asset, amount, rounding=ROUND_CEILING)
        in_asset, in_amount, in_conv = self._booked(destination, asset, amount, rounding=ROUND_FLOOR)
        if source == VAULT:
            have = self.vault.get(out_asset, ZERO)
            if out_amount > have:
                raise InsufficientFundsError(f"the vault holds {have} {out_asset}, cannot move {out_amount}", venue=VAULT)
            self.vault[out_asset] = have - out_amount
        elif source in self.venues:
            self.venues[source].withdraw(source, out_asset, out_amount, when)
        else:
            self.lending[source].withdraw_wallet(source, out_asset, out_amount, when)
        if destination == VAULT:
            self.vault[in_asset] = self.vault.get(in_asset, ZERO) + in_amount
        elif destination in self.venues:
            self.venues[destination].deposit(destination, in_asset, in_amount, when)
        else:
            self.lending[destination].deposit(destination, in_asset, in_amount, when)
        conversions = tuple(c for c in (out_conv, in_conv) if c is not None)
        event = Transferred(when, source, destination, asset, amount, conversions)
        self._publish([event])
        return event

    # ------------------------------------------------------------------ views

    def account_snapshot(self, fuse: str, now: datetime | None = None) -> AccountSnapshot:
        """The ``AccountSnapshot`` of one simulated fuse."""
        when = now or self.now
        if fuse in self.venues:
            return self.venues[fuse].snapshot(fuse, when, fuse=fuse)
        if fuse in self.lending:
            return self.lending[fuse].snapshot(fuse, when, fuse=fuse)
        raise KeyError(f"no simulated fuse named {fuse!r}")

    def market_snapshots(self, *, books: bool = True) -> dict[str, MarketSnapshot]:
        """Every simulated market's snapshot (mark, index, funding, book), keyed by ``market_key``.

        ``books=False`` leaves the books out (None): building them is the costly part, and
        valuing the portfolio does not need them.
        """
        out: dict[str, MarketSnapshot] = {}
        for name, venue in self.venues.items():
            for symbol, inst in venue.instruments.items():
                data = venue.markets.get(symbol)
                if data is None:
                    continue
                funding = None
                if inst.kind.is_perp and data.next_settlement is not None and data.funding_interval is not None:
                    funding = FundingRate(data.published_rate, data.funding_interval, data.next_settlement)
                out[market_key(name, symbol)] = MarketSnapshot(
                    fuse=name,
                    instrument=inst,
                    ts=data.ts or self.now,
                    mark=data.mark,
                    index=data.index,
                    funding=funding,
                    book=data.book if books else None,
                )
        return out

    def portfolio_view(self, now: datetime | None = None, *, books: bool = True) -> PortfolioView:
        """The portfolio at ``now`` (the world is stepped there first if it is behind).

        ``books=False``: market snapshots without order books (for valuation only; ``decide``
        refuses a market without its book).
        """
        when = now or self.now
        if when > self.now:
            self.step_to(when)
        elif when < self.now:
            raise ValueError(f"the world is at {self.now}; cannot show it as of the earlier {when}")
        accounts = {name: self.account_snapshot(name, when) for name in (*self.venues, *self.lending)}
        prices = {a: p for a, p in self.prices.items() if a != self.base_asset}
        return PortfolioView(
            ts=when,
            base_asset=self.base_asset,
            vault_cash=self.vault.get(self.base_asset, ZERO),
            accounts=accounts,
            markets=self.market_snapshots(books=books),
            prices=prices,
            cash=self.cash,
            cash_at_par=self.cash_at_par,
            rates=self.rate_book(),
        )
