"""The generic ccxt fuse: one class for every venue, driven by its ``VenueSpec`` row.

Every venue call goes through ``_call``, which translates ccxt exceptions once (see
``errors.py``) and counts errors by kind. Every answer is validated once, in ``parse``: a
refused value (``parse.BadPayload``, a ``BadPayloadError``) is logged with the venue, field
and value, counted in ``alpha_venue_payload_refusals_total``, and never becomes a domain
value. In the market data reads a refused entry drops only its market (its data ages and the
risk gate refuses it); a refused book or account raises; a refused order answer after sending
is an unknown outcome (reconciled by client id).

Positions in markets the fuse does not trade (a hand trade, another strategy on the account)
are never read as ours: ``account()`` leaves them out, keeps them in ``foreign_positions`` and
warns once per change, as the daemon flags open orders this instance did not send. Orders are validated against the instrument before
sending: bad input never reaches the venue. Quantities are base units at our side and
contracts at ccxt's (``contract_size``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import ccxt.async_support as ccxt

from alpha.domain.account import AccountSnapshot, FundingPayment, Order, OrderRequest, OrderType, TimeInForce
from alpha.domain.clock import Clock
from alpha.domain.funding import FundingIntervals, FundingRate, IntervalChanged
from alpha.domain.instruments import Instrument, Side
from alpha.domain.market import OrderBook
from alpha.domain.money import ONE, ZERO
from alpha.observability.metrics import Metrics
from fuses.base import (
    BadPayloadError,
    Capabilities,
    FatalError,
    FuseError,
    OrderNotFoundError,
    RejectedError,
    TransientError,
    UnknownOutcomeError,
    error_kind,
)
from fuses.ccxt import parse
from fuses.ccxt.client import SENDS_STATE, build_client, isolated
from fuses.ccxt.config import CcxtSettings
from fuses.ccxt.errors import NoChange, translate
from fuses.ccxt.venues import IntervalSource, VenueSpec
from fuses.ccxt.withdrawals import (
    NONCE_BUCKET,
    VenueDeposit,
    VenueWithdrawal,
    WithdrawalTerms,
    ledger_deposit,
    ledger_withdrawal,
    parse_deposit,
    parse_withdrawal,
    same_tx,
    terms_of,
    withdraw3_nonce,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

INSTANCE_PREFIX = re.compile(r"^([0-9a-f]{8})-")  # our client ids start with the instance id (``alpha.daemon.lifecycle``)


def _cloid(client_id: str) -> str:
    """Hyperliquid-style client id: 128 bits of hex, derived from ours (so a lookup needs no table).

    An instance prefix is kept as the cloid's first 32 bits, so the venue-side marker survives the hashing.
    """
    if len(client_id) == 34 and client_id.startswith("0x") and all(c in "0123456789abcdef" for c in client_id[2:]):
        return client_id
    digest = hashlib.sha256(client_id.encode()).hexdigest()
    prefix = INSTANCE_PREFIX.match(client_id)
    return "0x" + (prefix.group(1) + digest[:24] if prefix else digest[:32])


HYPERLIQUID_NETWORKS = frozenset({"ARBITRUM", "ARB", "ARBONE"})  # withdraw3 pays out on Arbitrum One, nowhere else
HYPERLIQUID_HORIZON = timedelta(days=2, milliseconds=NONCE_BUCKET, minutes=1)  # the nonce window, a bucket ahead, a margin

ALNUM32 = re.compile(r"^[A-Za-z0-9]{1,32}$")


def _alnum32(client_id: str) -> str:
    """OKX-style client id (``clOrdId``): at most 32 alphanumerics, ours as is when it already is one.

    Otherwise (our ids carry hyphens) 32 hex digits derived from ours, the instance prefix kept as
    the first 8, so a lookup needs no table and the venue-side marker survives.
    """
    if ALNUM32.match(client_id):
        return client_id
    digest = hashlib.sha256(client_id.encode()).hexdigest()
    prefix = INSTANCE_PREFIX.match(client_id)
    return prefix.group(1) + digest[:24] if prefix else digest[:32]


# How our client id travels to a venue (``VenueSpec.client_id_format``).
CLIENT_ID_FORMATS: dict[str, Callable[[str], str]] = {"plain": lambda cid: cid, "cloid": _cloid, "alnum32": _alnum32}
# How an instance's prefix shows in a venue client id, by format.
CLIENT_ID_MARKERS: dict[str, Callable[[str], str]] = {
    "plain": lambda instance: f"{instance}-", "cloid": lambda instance: f"0x{instance}", "alnum32": lambda instance: instance,
}

MAX_REFUSALS = 50  # refusals kept on the fuse for inspection
FUNDING_PAGES = 20  # most pages of funding history read per call

TIME_IN_FORCE = {TimeInForce.GTC: "GTC", TimeInForce.IOC: "IOC", TimeInForce.FOK: "FOK", TimeInForce.POST_ONLY: "PO"}


def _log_interval_change(change: IntervalChanged) -> None:
    log.warning("funding interval changed", extra={"fuse": change.fuse, "market": change.market, "old": str(change.old), "new": str(change.new)})


class CcxtFuse:
    """A ``fuses.base.Fuse`` over one ccxt venue client."""

    def __init__(
        self,
        settings: CcxtSettings,
        spec: VenueSpec,
        *,
        clock: Clock,
        metrics: Metrics | None = None,
        timeout_ms: int = 10_000,
        client: Any = None,
        max_data_age: timedelta = parse.MAX_DATA_AGE,
        halt_on_foreign: bool = False,
    ) -> None:
        self.name = settings.name
        self.settings = settings
        self.spec = spec
        # The venue's table, plus the optional protocols (``fuses.base``) this class has on every venue.
        self.capabilities: Capabilities = replace(
            spec.capabilities, transfers=True, funding_payments=True, funding_and_marks=True, open_orders=True
        )
        self.clock = clock
        self.metrics = metrics
        self.client = client if client is not None else build_client(settings, spec, metrics=metrics, timeout_ms=timeout_ms)
        self.intervals = FundingIntervals(self.name, on_change=_log_interval_change)
        self._indexes: dict[str, Decimal] = {}  # index price per perp, from the last funding answer
        self._instruments: dict[str, Instrument] = {}
        self._contract_sizes: dict[str, Decimal] = {}
        self._intervals_fetched: datetime | None = None
        self._started = False
        self.max_data_age = max_data_age  # the strategy's risk.max_data_age: older venue timestamps are refused
        self.clock_skew = parse.CLOCK_SKEW  # how far ahead of our clock a venue timestamp may be
        self.foreign_positions: tuple[parse.ForeignPosition, ...] = ()
        self.halt_on_foreign = halt_on_foreign  # risk.foreign_positions: halt (else flag)
        self.refusals: list[BadPayloadError] = []  # the latest refusals (bounded), for inspection
        hyperliquid = spec.withdrawal_id == "nonce_tag"
        # How long a requested withdrawal the venue does not show may still arrive (alpha.daemon.moves):
        # a signed withdraw3 is valid within the nonce window (two days), one nonce bucket ahead at most.
        # None: the mover's default (Binance: past its recvWindow).
        self.withdrawal_horizon: timedelta | None = HYPERLIQUID_HORIZON if hyperliquid else None
        self.replays_by_id = hyperliquid  # the venue refuses a nonce used once: a withdraw3 re-sent with its nonce cannot pay twice

    def __repr__(self) -> str:
        return f"CcxtFuse(name={self.name!r}, venue={self.spec.ccxt_id!r}, url={self.settings.api_url!r})"

    # -- plumbing ---------------------------------------------------------------------------------

    async def _call(
        self,
        fn: Callable[..., Awaitable[T]],
        *args: Any,
        sends_state: bool = False,
        client_id: str | None = None,
        **kwargs: Any,
    ) -> T:
        token = SENDS_STATE.set(sends_state)
        try:
            return await isolated(fn(*args, **kwargs))
        except ccxt.BaseError as exc:
            error = translate(exc, self.spec, venue=self.name, sends_state=sends_state, client_id=client_id)
            self._count(error)
            raise error from exc
        except TimeoutError as exc:
            error = translate(ccxt.RequestTimeout(str(exc)), self.spec, venue=self.name, sends_state=sends_state, client_id=client_id)
            self._count(error)
            raise error from exc
        except (FuseError, asyncio.CancelledError):
            raise
        except Exception as exc:
            # ccxt itself failed on the venue's answer (a TypeError on a null, a ValueError on a
            # non-number): an answer nobody can read. After an order it may have been booked.
            what = f"{type(exc).__name__}: {exc}"
            if sends_state:
                unknown = UnknownOutcomeError(
                    f"{self.name}: the venue's answer to order {client_id} cannot be read ({parse.shown(what)}); ask by client id",
                    venue=self.name, client_id=client_id,
                )
                self._count(unknown)
                raise unknown from exc
            name = getattr(fn, "__name__", "answer")
            raise self._refused(parse.refuse(name, what, "unreadable", "ccxt cannot read the venue's answer")) from exc
        finally:
            SENDS_STATE.reset(token)

    def _refused(self, exc: BadPayloadError, market: str = "") -> BadPayloadError:
        """Name the venue on a refused payload, log it (venue, field, value, check) and count it; return it to raise."""
        exc.venue = exc.venue or self.name
        if not str(exc).startswith(f"{self.name}:"):
            exc.args = (f"{self.name}: {exc}",)
        log.warning(
            "venue payload refused; nothing is traded on it",
            extra={"fuse": self.name, "market": market, "field": exc.field, "value": exc.value, "check": exc.check},
        )
        if self.metrics is not None:
            self.metrics.payload_refusals.labels(fuse=self.name, market=market or "-", check=exc.check).inc()
        self.refusals = [*self.refusals[-(MAX_REFUSALS - 1):], exc]
        return exc

    def _fresh(self) -> parse.Freshness:
        return parse.Freshness(self.clock.now(), self.max_data_age, self.clock_skew)

    def _count(self, error: FuseError) -> None:
        kind = error_kind(error)
        if self.metrics is not None and kind is not None:
            self.metrics.request_errors.labels(fuse=self.name, kind=kind).inc()

    def _instrument(self, market: str) -> Instrument:
        found = self._instruments.get(market)
        if found is None:
            raise RejectedError(f"{self.name}: market {market!r} is not allowed on this fuse", venue=self.name)
        return found

    def _perps(self, markets: Sequence[str] | None) -> list[str]:
        chosen = list(markets) if markets is not None else list(self._instruments)
        for m in chosen:
            self._instrument(m)
        return [m for m in chosen if self._instruments[m].kind.is_perp]

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the venue's markets and keep the allowed ones; a missing market is fatal."""
        if self._started:
            return
        await self._check_signer()
        markets = await self._call(self.client.load_markets)
        missing = [m for m in self.settings.markets if m not in markets]
        if missing:
            raise FatalError(f"{self.name}: the venue has no market {', '.join(missing)}", venue=self.name)
        for symbol in self.settings.markets:
            raw = markets[symbol]
            try:
                self._instruments[symbol] = parse.instrument(self.name, raw)
                self._contract_sizes[symbol] = parse.dec(raw.get("contractSize"), f"{symbol}.contractSize", default=ONE)
            except BadPayloadError as exc:
                raise self._refused(exc, symbol) from None
        if self.spec.one_way_check:
            await self._check_one_way()
        if self.settings.options.get("margin_tiers") is True:
            await self.load_margin_tiers()
        self._started = True

    async def _check_one_way(self) -> None:
        """Refuse an account in hedge (long/short) mode: our orders carry no position side and would all be refused."""
        mode = await self._call(self.client.fetch_position_mode)
        if isinstance(mode, Mapping) and mode.get("hedged") is True:
            raise FatalError(
                f"{self.name}: the account is in hedge (long/short) position mode; alpha trades one-way (net) positions:"
                " switch the account's position mode to one-way/net (nothing was sent)",
                venue=self.name,
            )

    async def _check_signer(self) -> None:
        """Refuse a wallet key that does not sign for ``wallet_address`` (nor is its API wallet), before any order.

        Otherwise the first order of a hedge would fail at the venue and force the other leg to unwind.
        """
        s = self.settings
        if s.signer is None or s.wallet_address is None or s.signer.lower() == s.wallet_address.lower():
            return
        if self.spec.api_wallet_role:
            role = await self._call(self.client.publicPostInfo, {"type": "userRole", "user": s.signer.lower()})
            data = role.get("data") if isinstance(role, dict) else None
            user = str(data.get("user", "")) if isinstance(data, dict) else ""
            if isinstance(role, dict) and role.get("role") == "agent" and user.lower() == s.wallet_address.lower():
                return
        also = ", and the venue does not list it as an API wallet of that address" if self.spec.api_wallet_role else ""
        raise FatalError(
            f"{self.name}: credentials.wallet_key signs as {s.signer}, not as the configured wallet_address"
            f" {s.wallet_address}{also}; fix the key or the address (nothing was sent)",
            venue=self.name,
        )

    async def load_margin_tiers(self) -> None:
        """Attach the venue's leverage brackets to its perp instruments (``Instrument.margin_tiers``).

        Opt-in per fuse (``options: {margin_tiers: true}``): the brackets are a signed endpoint
        on most venues. A venue without them keeps margin = notional / leverage.
        """
        perps = [m for m, i in self._instruments.items() if i.kind.is_perp]
        if not perps or not self.client.has.get("fetchLeverageTiers"):
            return
        raw = await self._call(self.client.fetch_leverage_tiers, perps)
        for symbol in perps:
            try:
                rows = raw.get(symbol) if isinstance(raw, Mapping) else None
                if rows is not None and not isinstance(rows, list):
                    raise parse.refuse(f"{symbol}.tiers", rows, "not_a_number", "are not a list of tiers")
                tiers = parse.margin_tiers(rows or [], symbol)
            except BadPayloadError as exc:
                raise self._refused(exc, symbol) from None
            if tiers is not None:
                self._instruments[symbol] = replace(self._instruments[symbol], margin_tiers=tiers)

    async def close(self) -> None:
        """Close the client's HTTP session and streams; idempotent."""
        await self.client.close()

    # -- market data ------------------------------------------------------------------------------

    async def instruments(self) -> Sequence[Instrument]:
        return tuple(self._instruments.values())

    async def _interval_table(self, now: datetime) -> dict[str, timedelta]:
        if self._intervals_fetched is not None and now - self._intervals_fetched < self.spec.interval_refresh:
            return {m: i for m in self._instruments if (i := self.intervals.get(m)) is not None}
        raw = await self._call(self.client.fetch_funding_intervals)
        self._intervals_fetched = now
        found = {}
        for symbol, entry in (raw.items() if isinstance(raw, Mapping) else ()):
            interval = parse.interval_of(entry.get("interval")) if isinstance(entry, Mapping) else None
            if interval is not None and symbol in self._instruments:
                found[symbol] = interval
        return found

    async def refresh_intervals(self) -> None:
        """Re-read the venue's funding intervals once ``interval_refresh`` has passed (streams carry rates, not intervals)."""
        if self.spec.interval_source is not IntervalSource.INTERVALS:
            return
        now = self.clock.now()
        for symbol, interval in (await self._interval_table(now)).items():
            self.intervals.observe(symbol, interval, now)

    async def _reload_listing(self, now: datetime) -> None:
        """Reload the market listing every ``interval_refresh`` where the client reads intervals from it."""
        if not self.spec.intervals_in_markets:
            return
        if self._intervals_fetched is not None and now - self._intervals_fetched < self.spec.interval_refresh:
            return
        if self._intervals_fetched is not None:  # start() has just loaded it
            await self._call(self.client.load_markets, True)
        self._intervals_fetched = now

    def _interval(self, symbol: str, raw: Mapping[str, Any], table: dict[str, timedelta]) -> timedelta:
        source = self.spec.interval_source
        if source is IntervalSource.RATE:
            found = parse.interval_of(raw.get("interval"))
            if found is not None:
                return found
        elif source is IntervalSource.INTERVALS and symbol in table:
            return table[symbol]
        elif source is IntervalSource.SETTLEMENTS:
            this = parse.opt_ms(raw.get("fundingTimestamp"), f"{symbol}.fundingTimestamp")
            nxt = parse.opt_ms(raw.get("nextFundingTimestamp"), f"{symbol}.nextFundingTimestamp")
            if this and nxt and nxt > this:
                return nxt - this
        return self.capabilities.funding_interval_default

    async def _raw_funding(self, perps: list[str]) -> dict[str, dict[str, Any]]:
        await self._reload_listing(self.clock.now())  # before the rates: ccxt parses their interval from the listing
        if self.capabilities.bulk_funding:
            raw: Any = await self._call(self.client.fetch_funding_rates, perps)
            if not isinstance(raw, Mapping):
                raise self._refused(parse.refuse("funding rates", raw, "not_a_number", "is not a table of markets"))
            return {s: raw[s] for s in perps if s in raw}
        return {s: await self._call(self.client.fetch_funding_rate, s) for s in perps}

    async def funding_rates(self, markets: Sequence[str] | None = None) -> dict[str, FundingRate]:
        """Return funding per perp; one bulk request where the venue allows, intervals from the venue.

        A market whose entry is refused is left out (logged and counted): its data ages.
        """
        perps = self._perps(markets)
        if not perps:
            return {}
        return await self._funding_from(perps, await self._raw_funding(perps), set())

    async def funding_and_marks(self, markets: Sequence[str] | None = None) -> tuple[dict[str, FundingRate], dict[str, Decimal]]:
        """Return ``funding_rates`` and ``marks`` together: where the bulk funding answer carries the
        marks (``bulk_funding``), perps cost one request instead of two (the market data poll's pair).

        A market whose funding or mark is refused is left out of both: nothing of a refused entry is used."""
        chosen = list(markets) if markets is not None else list(self._instruments)
        perps = self._perps(chosen)
        if not (perps and self.capabilities.bulk_funding):
            return await self.funding_rates(chosen), await self.marks(chosen)
        raw = await self._raw_funding(perps)
        refused: set[str] = set()
        funding = await self._funding_from(perps, raw, refused)
        marks = await self._marks_from(chosen, raw, refused)
        return {m: r for m, r in funding.items() if m not in refused}, marks

    async def _funding_from(self, perps: list[str], raw: dict[str, dict[str, Any]], refused: set[str]) -> dict[str, FundingRate]:
        now = self.clock.now()
        table = await self._interval_table(now) if self.spec.interval_source is IntervalSource.INTERVALS else {}
        fresh = parse.Freshness(now, self.max_data_age, self.clock_skew)
        out = {}
        for symbol, entry in raw.items():
            try:
                if not isinstance(entry, Mapping):
                    raise parse.refuse(f"{symbol} funding", entry, "not_a_number", "is not a funding entry")
                interval = self._interval(symbol, entry, table)
                rate = parse.funding_rate(entry, interval, now, cap=self.spec.funding_rate_cap, fresh=fresh)
            except BadPayloadError as exc:
                self._refused(exc, symbol)
                refused.add(symbol)
                continue
            self.intervals.observe(symbol, interval, now)
            out[symbol] = rate
            if self.metrics is not None:
                labels = {"fuse": self.name, "market": symbol}
                self.metrics.funding_rate.labels(**labels).set(float(rate.rate))
                self.metrics.funding_interval.labels(**labels).set(interval.total_seconds())
                self.metrics.funding_next.labels(**labels).set(rate.next_settlement.timestamp())
        return out

    async def marks(self, markets: Sequence[str] | None = None) -> dict[str, Decimal]:
        """Return mark prices: from the bulk funding answer for perps, tickers for spot (refused ones left out)."""
        chosen = list(markets) if markets is not None else list(self._instruments)
        perps = self._perps(chosen)
        raw = await self._raw_funding(perps) if perps and self.capabilities.bulk_funding else {}
        return await self._marks_from(chosen, raw, set())

    async def _marks_from(self, chosen: list[str], raw: dict[str, dict[str, Any]], refused: set[str]) -> dict[str, Decimal]:
        out: dict[str, Decimal] = {}
        for symbol, entry in raw.items():
            try:
                if not isinstance(entry, Mapping):
                    raise parse.refuse(f"{symbol} funding", entry, "not_a_number", "is not a funding entry")
                mark = parse.price(entry.get("markPrice"), f"{symbol}.markPrice")
                index = parse.opt_price(entry.get("indexPrice"), f"{symbol}.indexPrice")
            except BadPayloadError as exc:
                self._refused(exc, symbol)
                refused.add(symbol)
                self._indexes.pop(symbol, None)
                continue
            if symbol in refused:
                self._indexes.pop(symbol, None)
                continue
            out[symbol] = mark
            if index is not None:
                self._indexes[symbol] = index
            else:
                self._indexes.pop(symbol, None)  # never an older answer's index beside this mark
        rest = [m for m in chosen if m not in raw]
        if rest:
            tickers = await self._call(self.client.fetch_tickers, rest)
            for symbol in rest:
                t = tickers.get(symbol) if isinstance(tickers, Mapping) else None
                t = t if isinstance(t, Mapping) else {}
                try:
                    out[symbol] = parse.price(t.get("markPrice") or t.get("last") or t.get("close"), f"{symbol}.mark")
                except BadPayloadError as exc:
                    self._refused(exc, symbol)
                    refused.add(symbol)
        return out

    def indexes(self) -> dict[str, Decimal]:
        """Return each perp's index price from the last funding answer that carried one (the price guard compares marks with it)."""
        return dict(self._indexes)

    async def order_book(self, market: str, depth: int = 20) -> OrderBook:
        """Return the visible book; an empty, one-sided, crossed, unordered or stale one is refused (``BadPayloadError``)."""
        self._instrument(market)
        raw = await self._call(self.client.fetch_order_book, market, depth)
        try:
            return parse.book(raw, self._contract_sizes.get(market, ONE), fresh=self._fresh(), market=f"{market} book")
        except BadPayloadError as exc:
            raise self._refused(exc, market) from None

    # -- account ----------------------------------------------------------------------------------

    async def account(self) -> AccountSnapshot:
        """Return balances, perp positions and margin health (margin ratio = maintenance / equity).

        A refused balance or position (not a number, a position of unknown side) refuses the
        whole snapshot: a book read half right is not traded on. Positions in markets this fuse
        does not trade are left out and reported (``foreign_positions``); with ``halt_on_foreign``
        (``risk.foreign_positions: halt``) the whole snapshot is refused while one is held.
        """
        balance = await self._call(self.client.fetch_balance, self.spec.balance_params)
        perps = [m for m, i in self._instruments.items() if i.kind.is_perp]
        raw_positions: Any = []
        if perps:
            # every market's positions, not only ours: one in a market we do not trade is flagged, never ignored silently
            raw_positions = await self._call(self.client.fetch_positions)
        settle = next((i.settle for i in self._instruments.values() if i.kind.is_perp), None)
        try:
            maintenance = None
            if not isinstance(balance, Mapping):
                raise parse.refuse("balance", balance, "not_a_number", "is not a balance")
            if self.spec.maintenance_margin_path:
                found = parse.dig(balance.get("info"), self.spec.maintenance_margin_path)
                maintenance = parse.dec(found, "maintenance margin") if found is not None else None
            snap = parse.snapshot(
                self.name, self.clock.now(), balance, raw_positions, self._contract_sizes, settle, maintenance,
                total_includes_upnl=self.spec.balance_total_includes_upnl,
            )
        except BadPayloadError as exc:
            raise self._refused(exc) from None
        self._note_foreign(parse.foreign_positions(raw_positions, self._contract_sizes))
        if self.halt_on_foreign and self.foreign_positions:
            held = ", ".join(f"{p.market} {p.side} {p.contracts}" for p in self.foreign_positions)
            raise self._refused(
                parse.refuse("positions", held, "foreign_position", "a position in a market this fuse does not trade (risk.foreign_positions: halt)")
            )
        return snap

    def _note_foreign(self, found: tuple[parse.ForeignPosition, ...]) -> None:
        """Keep the positions in markets we do not trade; warn when they change (never traded, never counted as ours)."""
        if found != self.foreign_positions and found:
            log.warning(
                "positions on our account in markets this fuse does not trade; they are never traded by alpha",
                extra={"fuse": self.name, "positions": [f"{p.market} {p.side} {p.contracts}" for p in found]},
            )
        self.foreign_positions = found

    async def funding_payments(self, since: datetime) -> list[FundingPayment]:
        """Return our funding payments settled at or after ``since`` (ccxt fetch_funding_history), oldest first.

        Amounts, rates and sizes are read exactly from the raw entry where the venue table says
        where they are. The venue id is the venue's own (Binance ``tranId``); a venue that gives
        none (Hyperliquid's zero hash) gets ``market@timestamp``, unique per market and settlement.
        """
        perps = [m for m, i in self._instruments.items() if i.kind.is_perp]
        if not perps:
            return []
        found: dict[str, FundingPayment] = {}
        for symbol in perps if self.spec.funding_history_per_market else [None]:
            start = int(since.timestamp() * 1000)
            for _ in range(FUNDING_PAGES):
                batch = await self._call(self.client.fetch_funding_history, symbol, start, self.spec.funding_history_limit)
                fresh = 0
                for entry in batch:
                    try:
                        payment = self._funding_payment(entry) if isinstance(entry, Mapping) else None
                    except BadPayloadError as exc:
                        raise self._refused(exc, str(symbol or "")) from None
                    if payment is not None and payment.venue_id not in found and payment.ts >= since:
                        found[payment.venue_id] = payment
                        fresh += 1
                page = self.spec.funding_history_limit
                if not fresh or page is None or len(batch) < page:
                    break
                start = max(
                    (parse.integer(e.get("timestamp") or start, "funding history timestamp") for e in batch if isinstance(e, Mapping)),
                    default=start,
                )
        return sorted(found.values(), key=lambda p: (p.ts, p.market, p.venue_id))

    def _funding_payment(self, entry: Mapping[str, Any]) -> FundingPayment | None:
        symbol = entry.get("symbol")
        if symbol not in self._instruments:
            return None  # a market this fuse does not trade
        info = entry.get("info") or {}
        fields = self.spec.funding_income_fields

        def exact(name: str, fallback: Any) -> Any:
            path = fields.get(name)
            found = parse.dig(info, path) if path else None
            return fallback if found is None else found

        ts = parse.ms_to_dt(entry.get("timestamp"), f"{symbol} funding time")
        venue_id = str(entry.get("id") or "")
        if not venue_id.lower().removeprefix("0x").strip("0"):
            venue_id = f"{symbol}@{int(ts.timestamp() * 1000)}"
        size = parse.opt_dec(exact("size", None), f"{symbol} funding size")
        return FundingPayment(
            fuse=self.name,
            market=str(symbol),
            asset=str(entry.get("code") or self._instruments[symbol].settle),
            amount=parse.dec(exact("amount", entry.get("amount")), f"{symbol} funding amount") * (-1 if self.spec.funding_paid_positive else 1),
            rate=parse.opt_dec(exact("rate", entry.get("rate")), f"{symbol} funding rate"),
            size=None if size is None else size * self._contract_sizes.get(symbol, ONE),
            ts=ts,
            venue_id=venue_id,
        )

    # -- orders -----------------------------------------------------------------------------------

    async def _order_price(self, request: OrderRequest) -> Decimal:
        if request.price is not None:
            return request.price
        book = await self.order_book(request.market, 5)
        top = book.asks if request.side is Side.BUY else book.bids
        if not top:
            raise RejectedError(f"{self.name}: {request.market} has no {request.side.value} liquidity", venue=self.name)
        return top[0].price

    async def submit(self, request: OrderRequest) -> Order:
        """Validate and send an order with our client id; a timeout after sending is an unknown outcome."""
        instrument = self._instrument(request.market)
        if request.type is OrderType.LIMIT and request.price is None:
            raise RejectedError(f"{self.name}: limit order {request.client_id} has no price", venue=self.name)
        if request.reduce_only and not self.capabilities.reduce_only:
            raise RejectedError(f"{self.name}: the venue has no reduce-only orders", venue=self.name)
        reference = await self._order_price(request)
        # a reduce-only order may close a remainder below the venue's minimums
        checked = replace(instrument, min_quantity=ZERO, min_notional=ZERO) if request.reduce_only else instrument
        problems = checked.order_problems(request.quantity, reference)
        digits = self.spec.price_significant_digits
        price_in = request.price
        if (
            price_in is not None and digits is not None and price_in != price_in.to_integral_value()
            and len(price_in.normalize().as_tuple().digits) > digits
        ):
            problems.append(f"price {request.price} has more than the venue's {digits} significant digits")
        if problems:
            raise RejectedError(f"{self.name}: order {request.client_id} refused before sending: {'; '.join(problems)}", venue=self.name)
        contract = self._contract_sizes.get(request.market, ONE)
        amount = request.quantity / contract
        params: dict[str, Any] = {"clientOrderId": self._venue_client_id(request.client_id)}
        if request.reduce_only:
            params["reduceOnly"] = True
        price: Decimal | None = request.price
        if request.type is OrderType.LIMIT:
            params["timeInForce"] = TIME_IN_FORCE[request.time_in_force]
            if request.time_in_force is TimeInForce.POST_ONLY:
                params["postOnly"] = True
        elif self.spec.market_order_slippage is not None:
            slip = Decimal(self.spec.market_order_slippage)
            price = instrument.round_price(reference * (ONE + slip * request.side.sign))
        raw = await self._call(
            self.client.create_order,
            request.market,
            request.type.value,
            request.side.value,
            float(amount),
            float(price) if price is not None else None,
            params,
            sends_state=True,
            client_id=request.client_id,
        )
        # Some venues answer an order with only its fill (Hyperliquid): what we sent fills the rest.
        sent = {"symbol": request.market, "side": request.side.value, "amount": str(amount), "type": request.type.value,
                "price": str(price) if price is not None else None, "reduceOnly": request.reduce_only}
        answer = raw if isinstance(raw, Mapping) else {}
        merged = {**sent, **{k: v for k, v in answer.items() if v is not None}, "clientOrderId": request.client_id}
        merged["amount"] = str(amount)  # an answer's amount may be only what filled
        try:
            order = parse.order(merged, request.client_id, contract)
        except BadPayloadError as exc:
            # sent and answered, but the answer cannot be believed: what the venue booked is unknown
            self._refused(exc, request.market)
            unknown = UnknownOutcomeError(
                f"{self.name}: order {request.client_id} was sent; its answer is refused ({exc}); ask by client id",
                venue=self.name, client_id=request.client_id,
            )
            self._count(unknown)
            raise unknown from None
        if self.spec.order_ack_only:
            order = await self._after_ack(order)
        self._count_order(order)
        return order

    async def _after_ack(self, acked: Order) -> Order:
        """Ask for an order the venue only acknowledged; the acknowledgement stands if the query fails.

        The order is placed: a failed query must not turn into an error that would have the caller
        resend it. It then shows as NEW, and the caller's status polling finds its fills.
        """
        try:
            found = await self.order_status(acked.market, acked.client_id)
        except FuseError as exc:
            log.warning("order acknowledged, status unknown", extra={"fuse": self.name, "client_id": acked.client_id, "error": str(exc)})
            return acked
        return replace(found, venue_order_id=found.venue_order_id or acked.venue_order_id)

    def _venue_client_id(self, client_id: str) -> str:
        return CLIENT_ID_FORMATS[self.spec.client_id_format](client_id)

    def _count_order(self, order: Order) -> None:
        if self.metrics is not None:
            self.metrics.orders.labels(fuse=self.name, outcome=order.status.value).inc()

    async def cancel(self, market: str, client_id: str) -> Order:
        self._instrument(market)
        await self._call(self.client.cancel_order, None, market, {self.spec.client_id_param: self._venue_client_id(client_id)})
        return await self.order_status(market, client_id)

    async def order_status(self, market: str, client_id: str) -> Order:
        """Ask the venue for our order by client id (``OrderNotFoundError`` if it never arrived)."""
        self._instrument(market)
        params = {self.spec.client_id_param: self._venue_client_id(client_id)}
        if self.spec.order_lookup == "order_lists":
            raw = await self._listed_order(market, client_id, params)
        else:
            raw = await self._call(self.client.fetch_order, None, market, params)
        try:
            if not isinstance(raw, Mapping):
                raise parse.refuse(f"order {client_id}", raw, "not_a_number", "is not an order")
            raw = {**raw, "symbol": raw.get("symbol") or market, "clientOrderId": client_id}
            return parse.order(raw, client_id, self._contract_sizes.get(market, ONE))
        except BadPayloadError as exc:
            raise self._refused(exc, market) from None

    async def _listed_order(self, market: str, client_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """Find an order by client id in the venue's open (and recent) orders, then in its closed ones."""
        venue_id = self._venue_client_id(client_id)
        for fetch in (self.client.fetch_open_orders, self.client.fetch_canceled_and_closed_orders):
            found = [o for o in await self._call(fetch, market, None, None, dict(params)) if o.get("clientOrderId") == venue_id]
            if found:
                return dict(found[0])
        raise OrderNotFoundError(f"{self.name}: no order {client_id!r} on {market}", venue=self.name, code="unknown_order")

    async def open_orders(self) -> list[Order]:
        """Every open order in the fuse's markets, whoever sent it; client ids as the venue holds them."""
        found: list[Order] = []
        for symbol in self._instruments:
            for raw in await self._call(self.client.fetch_open_orders, symbol):
                try:
                    if not isinstance(raw, Mapping):
                        raise parse.refuse(f"{symbol} open order", raw, "not_a_number", "is not an order")
                    cid = raw.get("clientOrderId") or f"venue-order-{raw.get('id')}"
                    found.append(parse.order({**raw, "symbol": raw.get("symbol") or symbol}, cid, self._contract_sizes.get(symbol, ONE)))
                except BadPayloadError as exc:
                    raise self._refused(exc, symbol) from None
        return found

    def is_ours(self, venue_client_id: str, instance: str, known: Collection[str]) -> bool:
        """Say whether ``venue_client_id`` carries ``instance``'s marker or is the venue form of one of ``known``."""
        if venue_client_id.startswith(CLIENT_ID_MARKERS[self.spec.client_id_format](instance)):
            return True
        return venue_client_id in {self._venue_client_id(cid) for cid in known}

    async def resolve(self, market: str, client_id: str) -> Order | None:
        """Resolve an unknown outcome: the order if the venue has it, None if it never arrived."""
        try:
            return await self.order_status(market, client_id)
        except OrderNotFoundError:
            return None

    # -- set-up and wallets -------------------------------------------------------------------------

    async def set_leverage(self, market: str, leverage: Decimal) -> None:
        """Set the venue table's margin mode, then ``leverage`` (never above the fuse's maximum)."""
        instrument = self._instrument(market)
        if not instrument.kind.is_perp:
            raise RejectedError(f"{self.name}: {market} is not a perp; leverage does not apply", venue=self.name)
        if leverage <= 0 or leverage > self.settings.max_leverage or leverage != leverage.to_integral_value():
            raise RejectedError(
                f"{self.name}: leverage {leverage} must be a whole number in 1..{self.settings.max_leverage}", venue=self.name
            )
        if self.spec.margin_mode_call:
            with contextlib.suppress(NoChange):
                await self._call(self.client.set_margin_mode, self.spec.margin_mode, market)
        with contextlib.suppress(NoChange):
            params = {} if self.spec.margin_mode_call else {"marginMode": self.spec.margin_mode}
            await self._call(self.client.set_leverage, int(leverage), market, params)

    async def _wallet_asset(self, asset: str) -> None:
        """Make ccxt know ``asset`` for a wallet call: a fuse knows only its markets' currencies (a USDT-margined
        Binance fuse moving USDC), so the venue's currency list is read once, the first time another is asked for.

        Binance's list is a signed call ccxt skips at ``load_markets`` (``fetchCurrencies`` off in the venue
        table): it is switched on for this one read only.
        """
        if asset in (self.client.currencies or {}):
            return
        options = self.client.options
        before = options.get("fetchCurrencies")
        options["fetchCurrencies"] = True
        try:
            found = await self._call(self.client.fetch_currencies)
        finally:
            options["fetchCurrencies"] = before
        if found:
            self.client.set_markets(self.client.markets, found)

    async def withdraw(
        self, asset: str, amount: Decimal, address: str, network: str, *, client_id: str, tag: str | None = None,
        venue_id: str | None = None,
    ) -> str:
        """Ask the venue to send ``amount`` of ``asset`` to ``address`` on ``network`` (ccxt's name); return its withdrawal id.

        ``client_id`` goes with the request (Binance's ``withdrawOrderId``): a withdrawal whose
        answer is lost is found again by it (``withdrawal``), never sent twice. ``venue_id``
        (Hyperliquid): the nonce chosen beforehand (``plan_withdrawal``) and journalled, so the
        request can be sent again with it after a crash and the venue pays it once.
        """
        if amount <= 0:
            raise RejectedError(f"{self.name}: withdrawal amount {amount} must be positive", venue=self.name)
        if self.spec.withdrawal_id == "nonce_tag":
            if network.upper() not in HYPERLIQUID_NETWORKS or tag is not None:
                raise RejectedError(
                    f"{self.name}: Hyperliquid withdraws USDC to Arbitrum only, without a memo; "
                    f"network {network!r}{' with a memo' if tag is not None else ''} is refused",
                    venue=self.name,
                )
            nonce = int(venue_id) if venue_id is not None else None
            return await self._call(self._withdraw3, asset, amount, address, client_id, nonce, sends_state=True, client_id=client_id)
        params: dict[str, Any] = {"network": network, "withdrawOrderId": client_id}
        await self._wallet_asset(asset)
        sent = self.client.currency_to_precision(asset, str(amount), network)  # what ccxt would send: the venue's step
        if sent is not None and Decimal(str(sent)) != amount:
            raise RejectedError(
                f"{self.name}: withdrawal amount {amount} {asset} is not a multiple of the venue's step on {network} (ccxt would send {sent})",
                venue=self.name,
            )
        if tag is not None:
            params["tag"] = tag
        answer = await self._call(self.client.withdraw, asset, str(amount), address, params, sends_state=True, client_id=client_id)
        return str(answer["id"])

    def plan_withdrawal(self, client_id: str) -> str | None:
        """Hyperliquid: the nonce ``client_id``'s withdraw3 will be signed with, chosen now to be journalled first; None elsewhere.

        The first number with ``client_id``'s tag above both the clock (and a second's margin)
        and the client's last nonce: above every nonce the signer used, at most one bucket ahead.
        """
        if self.spec.withdrawal_id != "nonce_tag":
            return None
        last = int(self.client.safe_integer(self.client.options, "lastNonce", 0))
        now_ms = max(int(self.clock.now().timestamp() * 1000), int(self.client.nonce()))
        return str(withdraw3_nonce(client_id, max(now_ms + 1000, last)))

    async def _withdraw3(self, asset: str, amount: Decimal, address: str, client_id: str, nonce: int | None = None) -> str:
        """Hyperliquid: send ccxt's withdraw3 signed with the nonce that carries ``client_id``; return that nonce.

        ccxt takes the nonce from ``incrementing_nonce``; for this one request it answers ours (a
        one-shot replacement, removed when ccxt reads it, with no await in between), which may be
        below the clock when the request is sent again after a crash.
        """
        if self.client.markets is None:
            await self.client.load_markets()
        chosen = nonce if nonce is not None else int(self.plan_withdrawal(client_id) or 0)
        last = int(self.client.safe_integer(self.client.options, "lastNonce", 0))
        client = self.client

        def ours() -> int:
            del client.incrementing_nonce  # back to ccxt's own for every other request
            client.options["lastNonce"] = max(last, chosen)
            return chosen

        client.incrementing_nonce = ours
        try:
            await client.withdraw(asset, str(amount), address)
        finally:
            if "incrementing_nonce" in vars(client):
                del client.incrementing_nonce
        return str(chosen)

    async def withdrawal(self, asset: str, client_id: str) -> VenueWithdrawal | None:
        """The withdrawal the venue holds under ``client_id``, or None when it has none."""
        if self.spec.withdrawal_id == "nonce_tag":
            rows = await self._call(self.client.fetch_withdrawals, asset, 0, None)
            return await self._paid_out(ledger_withdrawal(rows, client_id))
        await self._wallet_asset(asset)
        found = await self._call(self.client.fetch_withdrawals, asset, None, None, {"withdrawOrderId": client_id})
        mine = [w for w in found if (w.get("info") or {}).get("withdrawOrderId") == client_id]
        return parse_withdrawal(mine[0], client_id) if mine else None

    async def _paid_out(self, found: VenueWithdrawal | None) -> VenueWithdrawal | None:
        """Hyperliquid with its bridge configured (``options``: ``bridge_address``, ``bridge_rpc_url``): completed only once paid on chain.

        The ledger lists a withdrawal under the venue's own hash as soon as it is debited; the
        payout is the bridge's ``FinalizedWithdrawal`` for the signer and nonce (``release_on``),
        whose transaction is then the withdrawal's ``tx_id``. Without the bridge configured, the
        ledger's row is all that is known (``tx_id`` the venue's hash).
        """
        bridge, rpc_url = self.settings.options.get("bridge_address"), self.settings.options.get("bridge_rpc_url")
        if found is None or not bridge or not rpc_url:
            return found
        from web3 import AsyncHTTPProvider, AsyncWeb3

        from fuses.evm.bridge import release_on

        user = self.settings.wallet_address or self.settings.signer or ""
        w3 = AsyncWeb3(AsyncHTTPProvider(str(rpc_url)))
        try:
            paid = await release_on(w3, str(bridge), user, int(found.id))
        except Exception as exc:  # the chain's node down or answering nonsense: not known yet
            raise TransientError(f"{self.name}: the bridge's payouts could not be read ({type(exc).__name__})", venue=self.name) from exc
        finally:
            await w3.provider.disconnect()
        if paid is None:
            return replace(found, status="processing", tx_id=None)
        return replace(found, tx_id=paid)

    async def deposit(self, asset: str, tx_id: str) -> VenueDeposit | None:
        """The deposit of ``asset`` the venue shows for on-chain transaction ``tx_id``, or None when it has not seen it.

        Hyperliquid: from the ledger (``userNonFundingLedgerUpdates``), which lists a deposit once
        credited. Elsewhere asked by the transaction (Binance's ``txId`` filter) and matched on it
        again here, as a venue that ignores the filter answers its whole recent history.
        """
        if self.spec.withdrawal_id == "nonce_tag":
            rows = await self._call(self.client.fetch_deposits, asset, 0, None)
            return ledger_deposit(rows, tx_id, network="ARBITRUM")
        await self._wallet_asset(asset)
        found = await self._call(self.client.fetch_deposits, asset, None, None, {"txId": tx_id})
        mine = [d for d in found if same_tx(d.get("txid"), tx_id)]
        return parse_deposit(mine[0], asset) if mine else None

    async def deposit_address(self, asset: str, network: str) -> tuple[str, str | None]:
        """This account's deposit address (and memo) for ``asset`` on ``network`` (ccxt's name), as the venue gives it."""
        await self._wallet_asset(asset)
        found = await self._call(self.client.fetch_deposit_address, asset, {"network": network})
        return str(found["address"]), found.get("tag") or None

    async def withdrawal_terms(self, asset: str, network: str) -> WithdrawalTerms:
        """The venue's fee and minimum for ``asset`` on ``network`` (ccxt's name)."""
        await self._wallet_asset(asset)
        fees = await self._call(self.client.fetch_deposit_withdraw_fees, [asset])
        return terms_of(fees, asset, self.client.network_code_to_id(network, asset))

    async def transfer(self, asset: str, amount: Decimal, source: str, destination: str) -> None:
        """Move ``amount`` between this venue's wallets (names from the venue table)."""
        if amount <= 0:
            raise RejectedError(f"{self.name}: transfer amount {amount} must be positive", venue=self.name)
        if not self.capabilities.wallet_transfers:
            raise RejectedError(f"{self.name}: the venue has no wallet transfers", venue=self.name)
        wallets = self.spec.wallets
        if source not in wallets or destination not in wallets:
            raise RejectedError(
                f"{self.name}: transfers go between {', '.join(sorted(wallets))}; "
                f"'{source}' -> '{destination}' needs a withdrawal to a whitelisted address",
                venue=self.name,
            )
        await self._call(
            self.client.transfer, asset, float(amount), wallets[source], wallets[destination], sends_state=True
        )
