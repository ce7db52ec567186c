"""A Pendle Boros emulator: the core API and the send-txs-bot agent relay over a small rate-swap engine.

It speaks the shape of the public API documented in pendle-finance/sdk-boros-public
(documentation/API.docs.md and the SDK's generated ``BorosCoreSDK``), under the same two base
paths as the production hosts:

* ``GET /core/v1/markets`` (``results`` of full market answers: ``imData`` with ``maturity``,
  ``tickStep`` and ``iTickThresh``, ``config`` with ``takerFee``, ``kIM``, ``kMM`` as 1e18
  strings, ``extConfig.paymentPeriod`` in seconds, ``metadata``, ``data`` with ``markApr`` and
  ``nextSettlementTime``), ``GET /core/v1/markets/{marketId}``, ``GET /core/v1/assets/all``;
* ``GET /core/v1/order-books/{marketId}?tickSize=`` (``long``/``short`` of ``ia``, the implied APR
  as a whole number of ``tickSize``, and ``sz`` in wei strings; long levels rounded down, short
  ones up, so an aggregated level never promises a better rate than its orders);
* ``GET /core/v1/collaterals/summary`` (the cross account of each token: ``netBalance`` = cash +
  the positions' value at mark, ``initialMargin``, ``maintMargin``, ``availableBalance`` and its
  ``marketPositions``), ``GET /core/v1/pnl/transactions`` (every trade: ``id`` is the relay's
  ``txHash``), ``GET /core/v1/pnl/limit-orders`` (resting and past orders),
  ``GET /core/v1/settlement/settlements`` (each payment of the floating leg);
* ``POST /send-txs-bot/v2/agent/bulk-direct-call`` (``{"datas": [AgentExecuteDto, ...]}``, what the
  SDK's ``Exchange`` posts; each call tried on its own, answered by a list of ``TxResponse``, a
  refused one as ``{"error": code}``) and ``POST /send-txs-bot/v2/agent/direct-call``: an ``AgentExecuteDto`` (``agent``, ``message``
  {``account``, ``connectionId``, ``nonce``}, ``signature``, ``calldata``). The venue checks it
  as the router's ``agentExecute`` does: the EIP-712 ``PendleSignTx`` signature in the domain
  ``Pendle Boros Router`` 1.0 (chain 42161, the router address) recovers to ``agent``; the agent
  is approved, unexpired, for ``message.account`` (root address and account id, 21 bytes);
  ``connectionId`` is the keccak-256 of ``calldata`` (a tampered order is refused); the nonce is
  above the signer's last one. The calldata is the router's ``placeSingleOrder`` or
  ``bulkCancels``, ABI-decoded here (nothing of the client's intent is trusted but the bytes).

Amounts are 18-decimal fixed point (wei strings on the wire); APRs are JSON numbers written
with their exact decimal digits. Every cash booking is rounded to the wei toward minus infinity
(a credit rounds down, a debit up), as the chain's fixed-point arithmetic does.

The engine follows the lite paper with the arithmetic of ``alpha.domain.rates``: the fixed leg
is realised upfront at the trade (``upfront``), the taker fee is ``|size| x years_left x
takerFee``, the floating leg is paid every ``paymentPeriod`` (settlement times counted back
from the maturity) from a scripted funding path (``BorosMarket.funding``: rate per period by
settlement time, ``default_rate`` otherwise), initial margin ``|size| x years_left x max(kIM x
|mark|, kIM x threshold)`` (the threshold is the rate at tick ``iTickThresh``) must stay
covered by equity after an order, and at the maturity the last payment is made and the
positions close worth nothing more. The mark is the market's ``mid_apr`` (the real mark is a
TWAP of trades); a synthetic market maker quotes ``levels`` ticks each side of it, ``depth`` per
level, replenished after every order.

Refusals answer HTTP 400 ``{"error": {"code", "message", "details"}}``: the router's error
names (``AuthInvalidMessage`` wrong signer or unapproved agent, ``AuthAgentExpired``,
``AuthInvalidConnectionId`` calldata not the signed one, ``AuthInvalidNonce``,
``MMInsufficientIM``, ``MarketMatured``, ``MarketOrderFOKNotFilled``, ``MarketOrderNotFound``)
or ``REQUEST_VALIDATION_ERROR`` / ``MARKET_NOT_FOUND``.

Faults (``common.Faults``): latency, maintenance (503), ``fail_next`` 5xx, and
``order_timeouts``: a relayed call is executed and its answer held back ``hang_seconds``.

Not emulated: agent approval over the API (``/v1/agent/approve``: approve with
``BorosVenue.approve_agent``), deposits and withdrawals (fund with ``BorosVenue.fund``),
``/v3/agent/bulk-direct-call`` (with an agent session), the calldata endpoints, isolated accounts, AMMs, liquidations,
the settlement fee (``settleFeeRate`` is published as 0), other users' flow against resting orders.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext
from typing import Any

from aiohttp import web
from eth_abi.abi import decode as abi_decode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_hash.auto import keccak

from alpha.domain.clock import Clock, LiveClock
from alpha.domain.money import ZERO
from alpha.domain.rates import payment, unrealised, upfront, years_between
from fuses.emulators.common import Faults

WEI = Decimal("1e-18")
ONE_E18 = Decimal(10) ** 18
CHAIN_ID = 42161
ROUTER = "0x8080808080daB95eFED788a9214e400ba552DEf6"
CROSS_MARKET_ID = 0xFFFFFF
LONG, SHORT = 0, 1
GTC, IOC, FOK, POST_ONLY = 0, 1, 2, 3
PLACE_SINGLE_ORDER = "placeSingleOrder(((bool,uint24,uint24,uint8,uint8,uint256,int16),bool,uint64,bool,uint256,bool,int128))"
BULK_CANCELS = "bulkCancels((bool,uint24,bool,uint64[]))"
DOMAIN: dict[str, Any] = {"name": "Pendle Boros Router", "version": "1.0", "chainId": CHAIN_ID, "verifyingContract": ROUTER}
DOMAIN_TYPES = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
SIGN_TX_TYPES = [
    {"name": "account", "type": "bytes21"},
    {"name": "connectionId", "type": "bytes32"},
    {"name": "nonce", "type": "uint64"},
]
BOOK_TICK_SIZES = ("0.00001", "0.0001", "0.001", "0.01", "0.1")


def selector(signature: str) -> bytes:
    return keccak(signature.encode())[:4]


def floor_wei(value: Decimal) -> Decimal:
    """``value`` rounded to the wei toward minus infinity (how the chain books cash)."""
    return value.quantize(WEI, rounding=ROUND_FLOOR)


def rate_at_tick(tick: int, tick_step: int) -> Decimal:
    """The implied APR of book tick ``tick``: ``1.00005^(tickStep x tick) - 1``, mirrored below zero, to the wei."""
    with localcontext() as ctx:
        ctx.prec = 60
        rate = Decimal("1.00005") ** (tick_step * abs(tick)) - 1
    rate = rate.quantize(WEI, rounding=ROUND_FLOOR)
    return rate if tick >= 0 else -rate


def tick_for_rate(rate: Decimal, tick_step: int, *, round_down: bool) -> int:
    """The tick whose rate is the largest at or below ``rate`` (``round_down``) or the smallest at or above it."""
    magnitude = 1 + abs(float(rate))
    guess = round(math.log(magnitude) / math.log(1.00005) / tick_step) * (1 if rate >= 0 else -1)
    tick = guess
    while rate_at_tick(tick, tick_step) > rate:
        tick -= 1
    while rate_at_tick(tick + 1, tick_step) <= rate:
        tick += 1
    if not round_down and rate_at_tick(tick, tick_step) < rate:
        tick += 1
    return tick


def wei(amount: Decimal) -> str:
    """An 18-decimal amount as the venue's bigint string."""
    return str(int((amount * ONE_E18).to_integral_value()))


class VenueRefusal(Exception):
    """A request the venue refuses: ``code`` is the router's error name or the API's code."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass
class BorosMarket:
    """One emulated market: its published parameters, its maker quotes and its funding path."""

    market_id: int
    token_id: int
    symbol: str  # e.g. BINANCE-BTCUSDT-26DEC2026
    platform: str  # e.g. Binance
    funding_symbol: str  # e.g. BTCUSDT
    maturity: datetime
    mid_apr: Decimal
    payment_period: timedelta = timedelta(hours=8)
    tick_step: int = 2
    i_tick_thresh: int = 583
    taker_fee: Decimal = Decimal("0.001")
    k_im: Decimal = Decimal("0.5")
    k_mm: Decimal = Decimal("0.25")
    max_leverage: int = 20
    levels: int = 5
    depth: Decimal = Decimal("20")
    spread_ticks: int = 2
    default_rate: Decimal = Decimal("0.0001")  # per payment period
    funding: dict[datetime, Decimal] = field(default_factory=dict)
    last_settled: datetime | None = None
    last_rate: Decimal | None = None

    def threshold(self) -> Decimal:
        return rate_at_tick(self.i_tick_thresh, self.tick_step)

    def rate_for(self, when: datetime) -> Decimal:
        return self.funding.get(when, self.default_rate)

    def settlement_times(self, after: datetime, until: datetime) -> list[datetime]:
        """Payment times in (after, until], counted back from the maturity every payment period."""
        end = min(until, self.maturity)
        if end <= after:
            return []
        periods_after = int((self.maturity - after) / self.payment_period)  # whole periods from ``after`` to maturity
        out = []
        for k in range(periods_after, -1, -1):
            t = self.maturity - k * self.payment_period
            if after < t <= end:
                out.append(t)
        return out

    def next_settlement(self, now: datetime) -> datetime:
        times = self.settlement_times(now, self.maturity)
        return times[0] if times else self.maturity

    def im_rate(self, mark: Decimal) -> Decimal:
        """Initial margin per unit of size and year: ``max(kIM x |mark|, kIM x threshold)`` (lite paper)."""
        return max(self.k_im * abs(mark), self.k_im * self.threshold())

    def mm_rate(self, mark: Decimal) -> Decimal:
        return max(self.k_mm * abs(mark), self.k_mm * self.threshold())

    def maker_ticks(self) -> tuple[list[int], list[int]]:
        """Ticks of the maker's long orders (best first, descending) and short orders (ascending)."""
        bid = tick_for_rate(self.mid_apr, self.tick_step, round_down=True) - self.spread_ticks // 2
        ask = tick_for_rate(self.mid_apr, self.tick_step, round_down=False) + self.spread_ticks // 2
        if ask <= bid:
            ask = bid + 1
        return [bid - i for i in range(self.levels)], [ask + i for i in range(self.levels)]


@dataclass
class YuHolding:
    size: Decimal = ZERO
    cost: Decimal = ZERO  # sum of signed size x fixed apr of the trades that built it (for the average)
    settled: Decimal = ZERO  # floating payments received so far


@dataclass
class RestingOrder:
    order_id: int
    account: str  # 21-byte account hex
    market_id: int
    side: int
    tick: int
    placed: Decimal
    left: Decimal
    placed_at: datetime
    tif: int
    status: int = 0  # Filling 0, Cancelled 1, FullyFilled 2, Expired 3


@dataclass
class BorosAccount:
    root: str
    account_id: int
    cash: dict[int, Decimal] = field(default_factory=dict)
    holdings: dict[int, YuHolding] = field(default_factory=dict)
    transactions: list[dict[str, Any]] = field(default_factory=list)
    settlements: list[dict[str, Any]] = field(default_factory=list)

    @property
    def key(self) -> str:
        return account_hex(self.root, self.account_id)


def account_hex(root: str, account_id: int) -> str:
    """The router's ``Account``: root address (20 bytes) then the account id (1 byte), as lowercase hex."""
    return "0x" + root.lower().removeprefix("0x") + f"{account_id:02x}"


def market_acc(root: str, account_id: int, token_id: int, market_id: int) -> str:
    """The API's ``marketAcc``: account (21 bytes), token id (2), market id (3)."""
    return account_hex(root, account_id) + f"{token_id:04x}{market_id:06x}"


@dataclass
class BorosVenue:
    """The emulated venue: markets, accounts, approved agents, nonces, orders; every call takes ``now``."""

    markets: dict[int, BorosMarket] = field(default_factory=dict)
    tokens: dict[int, str] = field(default_factory=dict)  # token id -> symbol
    accounts: dict[str, BorosAccount] = field(default_factory=dict)  # account hex -> account
    agents: dict[str, dict[str, datetime]] = field(default_factory=dict)  # account hex -> agent address -> expiry
    nonces: dict[str, int] = field(default_factory=dict)  # signer -> last nonce
    orders: dict[int, RestingOrder] = field(default_factory=dict)
    order_index: int = 0
    tx_count: int = 0
    calls: list[dict[str, Any]] = field(default_factory=list)  # every relayed call and how it ended

    def add_market(self, market: BorosMarket, now: datetime) -> BorosMarket:
        if market.last_settled is None:
            back = int((market.maturity - now) / market.payment_period) + 1
            market.last_settled = market.maturity - back * market.payment_period
        self.markets[market.market_id] = market
        return market

    def account(self, root: str, account_id: int = 0) -> BorosAccount:
        key = account_hex(root, account_id)
        if key not in self.accounts:
            self.accounts[key] = BorosAccount(root.lower(), account_id)
        return self.accounts[key]

    def fund(self, root: str, token_id: int, amount: Decimal, account_id: int = 0) -> None:
        acc = self.account(root, account_id)
        acc.cash[token_id] = acc.cash.get(token_id, ZERO) + amount

    def approve_agent(self, root: str, agent: str, expiry: datetime, account_id: int = 0) -> None:
        self.account(root, account_id)
        self.agents.setdefault(account_hex(root, account_id), {})[agent.lower()] = expiry

    def market(self, market_id: int) -> BorosMarket:
        if market_id not in self.markets:
            raise VenueRefusal("MARKET_NOT_FOUND", f"market {market_id} does not exist", 404)
        return self.markets[market_id]

    # ---- time: settlements and maturity -------------------------------------------------

    def step(self, now: datetime) -> None:
        for market in self.markets.values():
            assert market.last_settled is not None
            for t in market.settlement_times(market.last_settled, now):
                self._settle(market, t)
                market.last_settled = t
            if now >= market.maturity:
                self._mature(market)

    def _settle(self, market: BorosMarket, at: datetime) -> None:
        rate = market.rate_for(at)
        market.last_rate = rate
        for acc in self.accounts.values():
            held = acc.holdings.get(market.market_id)
            if held is None or held.size == 0:
                continue
            paid = floor_wei(payment(held.size, rate))
            acc.cash[market.token_id] = acc.cash.get(market.token_id, ZERO) + paid
            held.settled += paid
            acc.settlements.append({
                "id": f"{market.market_id}-{int(at.timestamp())}-{acc.key}",
                "timestamp": int(at.timestamp()),
                "marketAcc": market_acc(acc.root, acc.account_id, market.token_id, CROSS_MARKET_ID),
                "marketId": market.market_id,
                "side": LONG if held.size > 0 else SHORT,
                "positionSize": wei(held.size),
                "positionValue": wei(floor_wei(unrealised(held.size, market.mid_apr, years_between(at, market.maturity)))),
                "yieldPaid": wei(-paid if paid < 0 else ZERO),
                "yieldReceived": wei(paid if paid > 0 else ZERO),
                "settlement": wei(paid),
                "settlementRate": rate,
            })

    def _mature(self, market: BorosMarket) -> None:
        for acc in self.accounts.values():
            held = acc.holdings.get(market.market_id)
            if held is not None and held.size != 0:
                held.size, held.cost = ZERO, ZERO
        for order in self.orders.values():
            if order.market_id == market.market_id and order.status == 0:
                order.status = 3

    # ---- margin ------------------------------------------------------------------------

    def margins(self, acc: BorosAccount, token_id: int, now: datetime, sizes: Mapping[int, Decimal] | None = None) -> tuple[Decimal, Decimal, Decimal]:
        """(value of the positions at mark, initial margin with resting orders, maintenance margin) of ``acc``'s ``token_id`` zone."""
        value = im = mm = ZERO
        for market in self.markets.values():
            if market.token_id != token_id:
                continue
            held = acc.holdings.get(market.market_id)
            size = sizes[market.market_id] if sizes is not None and market.market_id in sizes else (held.size if held else ZERO)
            years = years_between(now, market.maturity)
            value += unrealised(size, market.mid_apr, years)
            im += abs(size) * years * market.im_rate(market.mid_apr)
            mm += abs(size) * years * market.mm_rate(market.mid_apr)
            for order in self.orders.values():
                if order.account == acc.key and order.market_id == market.market_id and order.status == 0:
                    im += order.left * years * market.im_rate(rate_at_tick(order.tick, market.tick_step))
        return value, im, mm

    # ---- orders ------------------------------------------------------------------------

    def _book_levels(self, market: BorosMarket, side: int) -> list[tuple[int, Decimal]]:
        """Levels (tick, size) a taker of ``side`` can hit, best first: the maker's ladder (resting user orders only rest)."""
        bids, asks = market.maker_ticks()
        ticks = asks if side == LONG else bids
        return [(t, market.depth) for t in ticks]  # already best first

    def book(self, market_id: int) -> tuple[list[tuple[int, Decimal]], list[tuple[int, Decimal]]]:
        market = self.market(market_id)
        bids, asks = market.maker_ticks()
        longs = {t: market.depth for t in bids}
        shorts = {t: market.depth for t in asks}
        for order in self.orders.values():
            if order.market_id == market_id and order.status == 0:
                side = longs if order.side == LONG else shorts
                side[order.tick] = side.get(order.tick, ZERO) + order.left
        return sorted(longs.items(), reverse=True), sorted(shorts.items())

    def place(self, account: str, order: tuple[Any, ...], now: datetime, tx_hash: str) -> dict[str, Any]:
        """Run ``placeSingleOrder`` for ``account``: match, book the trade, rest the remainder; refuse past initial margin."""
        (cross, market_id, _amm, side, tif, size_raw, tick), _enter, _strict, _exit, _cash_in, _all, _rate = order
        if not cross:
            raise VenueRefusal("REQUEST_VALIDATION_ERROR", "isolated accounts are not emulated")
        market = self.market(market_id)
        if now >= market.maturity:
            raise VenueRefusal("MarketMatured", f"market {market_id} has matured")
        if side not in (LONG, SHORT) or tif not in (GTC, IOC, FOK, POST_ONLY) or size_raw <= 0:
            raise VenueRefusal("REQUEST_VALIDATION_ERROR", "bad side, time in force or size")
        acc = self.accounts[account]
        size = Decimal(size_raw) / ONE_E18
        limit = rate_at_tick(tick, market.tick_step)
        fills: list[tuple[Decimal, Decimal]] = []  # (size, rate)
        left = size
        for level_tick, level_size in self._book_levels(market, side):
            rate = rate_at_tick(level_tick, market.tick_step)
            if (side == SHORT and rate < limit) or (side == LONG and rate > limit) or left <= 0:
                break
            take = min(left, level_size)
            fills.append((take, rate))
            left -= take
        if tif == POST_ONLY and fills:
            raise VenueRefusal("REQUEST_VALIDATION_ERROR", "a post-only order would match")
        if tif == FOK and left > 0:
            raise VenueRefusal("MarketOrderFOKNotFilled", "the book cannot fill the whole order")
        years = years_between(now, market.maturity)
        sign = Decimal(1) if side == LONG else Decimal(-1)
        filled = sum((q for q, _ in fills), ZERO)
        held = acc.holdings.get(market_id, YuHolding())
        cash_delta = ZERO
        fee = ZERO
        for q, rate in fills:
            cash_delta += floor_wei(upfront(sign * q, rate, years))
            fee += -floor_wei(-abs(q) * years * market.taker_fee)
        new_size = held.size + sign * filled
        _, im_before, _ = self.margins(acc, market.token_id, now)
        value_after, im_after, _ = self.margins(acc, market.token_id, now, {market_id: new_size})
        rests = left > 0 and tif in (GTC, POST_ONLY)
        if rests:
            im_after += left * years * market.im_rate(limit)
        cash_after = acc.cash.get(market.token_id, ZERO) + cash_delta - fee
        if im_after > im_before and cash_after + value_after < im_after:
            raise VenueRefusal("MMInsufficientIM", f"initial margin {im_after:f} exceeds the account's value {cash_after + value_after:f}")
        acc.cash[market.token_id] = cash_after
        avg = sum((q * r for q, r in fills), ZERO) / filled if filled else ZERO
        if filled:
            if held.size == 0 or (held.size > 0) == (sign > 0):
                held.cost += sign * filled * avg
            else:
                held.cost = new_size * avg if (new_size > 0) != (held.size > 0) and new_size != 0 else held.cost * new_size / held.size
            held.size = new_size
            if held.size == 0:
                held.cost = ZERO
            acc.holdings[market_id] = held
            acc.transactions.append({
                "id": tx_hash, "marketId": market_id, "time": int(now.timestamp()), "side": side, "txType": "normal",
                "tradeDirection": 0, "notionalSize": wei(sign * filled), "tradeValue": wei(-cash_delta), "fixedApr": avg,
                "fee": wei(fee), "pnl": "0", "marketAcc": market_acc(acc.root, acc.account_id, market.token_id, CROSS_MARKET_ID),
                "accountId": acc.account_id, "isLimitOrderTrade": False,
            })
        order_id = None
        if rests:
            self.order_index += 1
            order_id = order_id_of(side, tick, self.order_index)
            self.orders[order_id] = RestingOrder(order_id, account, market_id, side, tick, size, left, now, tif)
        return {"filled": filled, "order_id": order_id}

    def cancel(self, account: str, req: tuple[Any, ...]) -> list[int]:
        _cross, market_id, cancel_all, ids = req
        self.market(market_id)
        mine = [o for o in self.orders.values() if o.account == account and o.market_id == market_id and o.status == 0]
        if cancel_all:
            chosen = mine
        else:
            by_id = {o.order_id: o for o in mine}
            missing = [i for i in ids if i not in by_id]
            if missing:
                raise VenueRefusal("MarketOrderNotFound", f"order {missing[0]} is not open")
            chosen = [by_id[i] for i in ids]
        for o in chosen:
            o.status = 1
        return [o.order_id for o in chosen]

    # ---- the agent relay --------------------------------------------------------------

    def execute(self, body: Any, now: datetime) -> dict[str, Any]:
        """Check and run one ``AgentExecuteDto`` as the router's ``agentExecute`` does; the relay's answer.

        Every call is logged in ``calls`` (its ``txHash`` and outcome, or the ``error`` it was refused with).
        """
        try:
            return self._execute(body, now)
        except VenueRefusal as refusal:
            self.calls.append({"txHash": None, "error": refusal.code})
            raise

    def _execute(self, body: Any, now: datetime) -> dict[str, Any]:
        agent, account, connection, nonce, signature, calldata = _agent_call(body)
        typed = encode_typed_data(full_message={
            "types": {"EIP712Domain": DOMAIN_TYPES, "PendleSignTx": SIGN_TX_TYPES},
            "primaryType": "PendleSignTx",
            "domain": DOMAIN,
            "message": {"account": account, "connectionId": connection, "nonce": nonce},
        })
        try:
            signer = Account.recover_message(typed, signature=signature).lower()
        except Exception as exc:  # eth-account raises several kinds for an unreadable signature
            raise VenueRefusal("AuthInvalidMessage", "the signature does not recover to a signer") from exc
        account_key = "0x" + account.hex()
        if signer != agent:
            raise VenueRefusal("AuthInvalidMessage", "the signature is not the agent's")
        expiry = self.agents.get(account_key, {}).get(signer)
        if expiry is None:
            raise VenueRefusal("AuthInvalidMessage", "the agent is not approved for this account")
        if expiry <= now:
            raise VenueRefusal("AuthAgentExpired", "the agent's approval has expired")
        if keccak(calldata) != connection:
            raise VenueRefusal("AuthInvalidConnectionId", "the calldata is not the one signed")
        if nonce <= self.nonces.get(signer, 0):
            raise VenueRefusal("AuthInvalidNonce", "the nonce was used or is below the signer's last one")
        self.nonces[signer] = nonce
        self.tx_count += 1
        tx_hash = "0x" + keccak(signature + calldata + self.tx_count.to_bytes(8, "big")).hex()
        head, args = calldata[:4], calldata[4:]
        try:
            if head == selector(PLACE_SINGLE_ORDER):
                (req,) = abi_decode(["((bool,uint24,uint24,uint8,uint8,uint256,int16),bool,uint64,bool,uint256,bool,int128)"], args)
                result = self.place(account_key, req, now, tx_hash)
                outcome: dict[str, Any] = {"kind": "order", **{k: str(v) for k, v in result.items()}}
            elif head == selector(BULK_CANCELS):
                (req,) = abi_decode(["(bool,uint24,bool,uint64[])"], args)
                outcome = {"kind": "cancel", "cancelled": [str(i) for i in self.cancel(account_key, req)]}
            else:
                raise VenueRefusal("REQUEST_VALIDATION_ERROR", "calldata is not a router call the venue relays")
        except VenueRefusal:
            raise
        except Exception as exc:  # eth-abi's decoding errors: the bytes are not that call
            raise VenueRefusal("REQUEST_VALIDATION_ERROR", "calldata does not decode") from exc
        self.calls.append({"nonce": nonce, "txHash": tx_hash, **outcome})
        return {"status": "success", "txHash": tx_hash, "index": 0}


def order_id_of(side: int, tick: int, index: int) -> int:
    """The router's OrderId: marker bit, side, encoded tick (top-down for longs), order index."""
    encoded = (tick & 0xFFFF) ^ (1 << 15)
    if side == LONG:
        encoded = ~encoded & 0xFFFF
    return (1 << 63) | (side << 56) | (encoded << 40) | index


def _hex_bytes(value: Any, length: int | None, name: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise VenueRefusal("REQUEST_VALIDATION_ERROR", f"{name} must be 0x-prefixed hex")
    try:
        raw = bytes.fromhex(value[2:])
    except ValueError as exc:
        raise VenueRefusal("REQUEST_VALIDATION_ERROR", f"{name} is not hex") from exc
    if length is not None and len(raw) != length:
        raise VenueRefusal("REQUEST_VALIDATION_ERROR", f"{name} must be {length} bytes")
    return raw


def _agent_call(body: Any) -> tuple[str, bytes, bytes, int, bytes, bytes]:
    if not isinstance(body, dict) or not isinstance(body.get("message"), dict):
        raise VenueRefusal("REQUEST_VALIDATION_ERROR", "body must be an AgentExecuteDto")
    message = body["message"]
    agent = "0x" + _hex_bytes(body.get("agent"), 20, "agent").hex()
    account = _hex_bytes(message.get("account"), 21, "message.account")
    connection = _hex_bytes(message.get("connectionId"), 32, "message.connectionId")
    nonce_text = message.get("nonce")
    if not isinstance(nonce_text, str) or not nonce_text.isdigit() or int(nonce_text) >= 2**64:
        raise VenueRefusal("REQUEST_VALIDATION_ERROR", "message.nonce must be a uint64 decimal string")
    signature = _hex_bytes(body.get("signature"), 65, "signature")
    calldata = _hex_bytes(body.get("calldata"), None, "calldata")
    return agent, account, connection, int(nonce_text), signature, calldata


# ---- the wire -----------------------------------------------------------------------------


def encode_json(value: Any) -> str:
    """JSON with every ``Decimal`` written as a number of its own exact digits (the venue's APRs are JSON numbers)."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{encode_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(encode_json(v) for v in value) + "]"
    return json.dumps(value)


def answer(value: Any, status: int = 200) -> web.Response:
    return web.Response(text=encode_json(value), status=status, content_type="application/json")


def refusal(exc: VenueRefusal) -> web.Response:
    return answer({"error": {"code": exc.code, "message": exc.message, "details": {}}}, exc.status)


@dataclass
class BorosEmulator:
    """What the app serves from: the venue, its clock and its faults."""

    venue: BorosVenue
    clock: Clock
    faults: Faults

    def now(self) -> datetime:
        now = self.clock.now()
        self.venue.step(now)
        return now


EMU_KEY: web.AppKey[BorosEmulator] = web.AppKey("boros_emulator", BorosEmulator)


def emulator_of(app: web.Application) -> BorosEmulator:
    return app[EMU_KEY]


def market_json(venue: BorosVenue, market: BorosMarket, now: datetime) -> dict[str, Any]:
    maturity = int(market.maturity.timestamp())
    name = f"{market.platform} {market.funding_symbol} {market.maturity:%d %b %Y}"
    floating = market.last_rate * Decimal(31536000) / Decimal(int(market.payment_period.total_seconds())) if market.last_rate is not None else ZERO
    return {
        "marketId": market.market_id,
        "address": "0x" + keccak(market.symbol.encode())[:20].hex(),
        "tokenId": market.token_id,
        "imData": {"name": name, "symbol": market.symbol, "isIsolatedOnly": False, "maturity": maturity,
                   "tickStep": market.tick_step, "iTickThresh": market.i_tick_thresh},
        "config": {
            "maxOpenOrders": 100, "markRateOracle": "0x0000000000000000000000000000000000000001",
            "fIndexOracle": "0x" + keccak(b"f" + market.symbol.encode())[:20].hex(), "hardOICap": wei(Decimal(150)),
            "takerFee": wei(market.taker_fee), "otcFee": wei(market.taker_fee),
            "liqSettings": {"base": wei(Decimal("0.1")), "slope": "0", "feeRate": wei(Decimal("0.001"))},
            "kIM": wei(market.k_im), "kMM": wei(market.k_mm), "tThresh": market.i_tick_thresh,
            "maxRateDeviationFactorBase1e4": 1000, "closingOrderBoundBase1e4": 100, "loUpperConstBase1e4": 7500,
            "loUpperSlopeBase1e4": 2500, "loLowerConstBase1e4": 2500, "loLowerSlopeBase1e4": 7500,
            "status": 1 if now < market.maturity else 0, "useImpliedAsMarkRate": True,
        },
        "extConfig": {"settleFeeRate": "0", "paymentPeriod": int(market.payment_period.total_seconds()), "maxUpdateDelay": 300},
        "metadata": {"name": market.funding_symbol, "platformName": market.platform, "maxLeverage": market.max_leverage,
                     "defaultLeverage": min(10, market.max_leverage), "isWhitelisted": True,
                     "fundingRateSymbol": market.funding_symbol, "isDevTest": False},
        "data": {"markApr": market.mid_apr, "lastTradedApr": market.mid_apr, "midApr": market.mid_apr,
                 "floatingApr": floating, "nextSettlementTime": int(market.next_settlement(now).timestamp()),
                 "timeToMaturity": max(maturity - int(now.timestamp()), 0)},
        "state": "Normal" if now < market.maturity else "Halted",
    }


def _int_query(request: web.Request, name: str, default: int | None = None) -> int:
    raw = request.query.get(name)
    if raw is None:
        if default is None:
            raise VenueRefusal("REQUEST_VALIDATION_ERROR", f"{name} is required")
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise VenueRefusal("REQUEST_VALIDATION_ERROR", f"{name} must be an integer") from exc


def _user(request: web.Request, venue: BorosVenue) -> BorosAccount:
    user = request.query.get("userAddress", "")
    if not (user.startswith("0x") and len(user) == 42):
        raise VenueRefusal("INVALID_ADDRESS", "userAddress must be an address")
    return venue.account(user, _int_query(request, "accountId"))


def collateral_json(venue: BorosVenue, acc: BorosAccount, token_id: int, now: datetime) -> dict[str, Any]:
    cash = acc.cash.get(token_id, ZERO)
    _, im, mm = venue.margins(acc, token_id, now)
    positions: list[dict[str, Any]] = []
    values = ZERO
    for market in venue.markets.values():
        held = acc.holdings.get(market.market_id)
        if market.token_id != token_id or held is None or held.size == 0:
            continue
        years = years_between(now, market.maturity)
        remaining = floor_wei(unrealised(held.size, market.mid_apr, years))
        values += remaining
        fixed = (held.cost / held.size).quantize(WEI) if held.size else ZERO
        positions.append({
            "marketId": market.market_id, "markApr": market.mid_apr, "lastTradedApr": market.mid_apr,
            "impliedApr": market.mid_apr, "fixedApr": fixed, "side": LONG if held.size > 0 else SHORT,
            "notionalSize": wei(held.size),
            "positionValue": {"settledPosition": wei(held.settled), "remainingPosition": wei(remaining)},
            "pnl": {"rateSettlementPnl": wei(held.settled), "unrealisedPnl": wei(remaining - floor_wei(unrealised(held.size, fixed, years)))},
            "initialMargin": wei(-floor_wei(-abs(held.size) * years * market.im_rate(market.mid_apr))),
            "maintMargin": wei(-floor_wei(-abs(held.size) * years * market.mm_rate(market.mid_apr))),
        })
    net_wei = cash + values
    im_wei, mm_wei = -floor_wei(-im), -floor_wei(-mm)
    cross = {
        "marketAcc": market_acc(acc.root, acc.account_id, token_id, CROSS_MARKET_ID), "marketPositions": positions,
        "isCross": True, "netBalance": wei(net_wei), "availableBalance": wei(max(net_wei - im_wei, ZERO)),
        "initialMargin": wei(im_wei), "maintMargin": wei(mm_wei),
        "marginRatio": (mm_wei / net_wei).quantize(Decimal("1e-12")) if net_wei > 0 else ZERO,
    }
    return {"collateralAddress": "0x" + keccak(venue.tokens[token_id].encode())[:20].hex(), "isolatedPositions": [],
            "crossPosition": cross, "totalNetBalance": wei(net_wei)}


def create_app(venue: BorosVenue, *, clock: Clock | None = None, faults: Faults | None = None) -> web.Application:
    """Build the emulator app over ``venue`` (markets, funded accounts and approved agents set up by the caller)."""
    emu = BorosEmulator(venue, clock or LiveClock(), faults or Faults())

    @web.middleware
    async def guard(request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        f = emu.faults
        if f.latency > 0:
            await asyncio.sleep(f.latency)
        if f.maintenance:
            return answer({"error": {"code": "INTERNAL_SERVER_ERROR", "message": "Boros is under maintenance", "details": {}}}, 503)
        if f.take_5xx():
            return answer({"error": {"code": "INTERNAL_SERVER_ERROR", "message": "Internal server error", "details": {}}}, f.fail_status)
        try:
            response: web.StreamResponse = await handler(request)
        except VenueRefusal as exc:
            return refusal(exc)
        if request.path.startswith("/send-txs-bot/") and f.take_order_timeout():
            await asyncio.sleep(f.hang_seconds)  # executed; the answer comes after the client gave up
        return response

    app = web.Application(middlewares=[guard])
    app[EMU_KEY] = emu

    async def markets(request: web.Request) -> web.Response:
        now = emu.now()
        skip, limit = _int_query(request, "skip", 0), min(_int_query(request, "limit", 10), 100)
        rows = [market_json(venue, m, now) for m in sorted(venue.markets.values(), key=lambda m: m.market_id)]
        return answer({"results": rows[skip: skip + limit], "total": len(rows), "skip": skip})

    async def market_detail(request: web.Request) -> web.Response:
        now = emu.now()
        try:
            market_id = int(request.match_info["market_id"])
        except ValueError as exc:
            raise VenueRefusal("REQUEST_VALIDATION_ERROR", "marketId must be an integer") from exc
        return answer(market_json(venue, venue.market(market_id), now))

    async def assets(_: web.Request) -> web.Response:
        rows = [{"address": "0x" + keccak(s.encode())[:20].hex(), "tokenId": t, "name": s, "symbol": s, "decimals": 18,
                 "usdPrice": "0", "metadata": {}, "isCollateral": True} for t, s in sorted(venue.tokens.items())]
        return answer({"assets": rows})

    async def order_book(request: web.Request) -> web.Response:
        emu.now()
        try:
            market_id = int(request.match_info["market_id"])
        except ValueError as exc:
            raise VenueRefusal("REQUEST_VALIDATION_ERROR", "marketId must be an integer") from exc
        tick_text = request.query.get("tickSize", "")
        if tick_text not in BOOK_TICK_SIZES:
            raise VenueRefusal("REQUEST_VALIDATION_ERROR", f"tickSize must be one of {', '.join(BOOK_TICK_SIZES)}")
        step = Decimal(tick_text)
        market = venue.market(market_id)
        longs, shorts = venue.book(market_id)

        def aggregate(levels: list[tuple[int, Decimal]], rounding: str) -> dict[str, list[Any]]:
            out: dict[int, Decimal] = {}
            for tick, size in levels:
                ia = int((rate_at_tick(tick, market.tick_step) / step).to_integral_value(rounding=rounding))
                out[ia] = out.get(ia, ZERO) + size
            keys = list(out)  # already best first
            return {"ia": keys, "sz": [wei(out[k]) for k in keys]}

        return answer({"long": aggregate(longs, ROUND_FLOOR), "short": aggregate(shorts, ROUND_CEILING)})

    async def collaterals(request: web.Request) -> web.Response:
        now = emu.now()
        acc = _user(request, venue)
        tokens = sorted(set(acc.cash) | {m.token_id for m in venue.markets.values() if m.market_id in acc.holdings})
        return answer({"collaterals": [collateral_json(venue, acc, t, now) for t in tokens]})

    def _page(request: web.Request, rows: list[dict[str, Any]], cap: int) -> web.Response:
        market = request.query.get("marketId")
        if market is not None:
            rows = [r for r in rows if str(r["marketId"]) == market]
        rows = list(reversed(rows))  # newest first
        skip, limit = _int_query(request, "skip", 0), min(_int_query(request, "limit", 10), cap)
        return answer({"results": rows[skip: skip + limit], "total": len(rows)})

    async def transactions(request: web.Request) -> web.Response:
        emu.now()
        return _page(request, _user(request, venue).transactions, 2000)

    async def settlements(request: web.Request) -> web.Response:
        emu.now()
        return _page(request, _user(request, venue).settlements, 100)

    async def limit_orders(request: web.Request) -> web.Response:
        emu.now()
        acc = _user(request, venue)
        rows = []
        for o in venue.orders.values():
            if o.account != acc.key:
                continue
            market = venue.markets[o.market_id]
            rows.append({
                "side": o.side, "placedSize": wei(o.placed), "unfilledSize": wei(o.left),
                "impliedApr": rate_at_tick(o.tick, market.tick_step), "tick": o.tick, "marginRequired": "0",
                "orderId": str(o.order_id), "root": acc.root, "marketId": o.market_id, "accountId": acc.account_id,
                "isCross": True, "status": o.status, "orderType": 0, "blockTimestamp": int(o.placed_at.timestamp()),
                "placedEventIndex": 0, "placedTimestamp": int(o.placed_at.timestamp()),
                "marketAcc": market_acc(acc.root, acc.account_id, market.token_id, CROSS_MARKET_ID),
            })
        return _page(request, rows, 100)

    async def direct_call(request: web.Request) -> web.Response:
        now = emu.now()
        try:
            body = await request.json()
        except ValueError as exc:
            raise VenueRefusal("REQUEST_VALIDATION_ERROR", "body is not JSON") from exc
        return answer(venue.execute(body, now))

    app.router.add_get("/core/v1/markets", markets)
    app.router.add_get("/core/v1/markets/{market_id}", market_detail)
    app.router.add_get("/core/v1/assets/all", assets)
    app.router.add_get("/core/v1/order-books/{market_id}", order_book)
    app.router.add_get("/core/v1/collaterals/summary", collaterals)
    app.router.add_get("/core/v1/pnl/transactions", transactions)
    app.router.add_get("/core/v1/pnl/limit-orders", limit_orders)
    app.router.add_get("/core/v1/settlement/settlements", settlements)
    async def bulk_direct_call(request: web.Request) -> web.Response:
        now = emu.now()
        try:
            body = await request.json()
        except ValueError as exc:
            raise VenueRefusal("REQUEST_VALIDATION_ERROR", "body is not JSON") from exc
        datas = body.get("datas") if isinstance(body, dict) else None
        if not isinstance(datas, list) or not datas:
            raise VenueRefusal("BULK_ORDERS_EMPTY", "datas must be a non-empty list of AgentExecuteDto")
        answers: list[dict[str, Any]] = []
        for index, data in enumerate(datas):  # each call tried on its own, as the router's tryAggregate does
            try:
                answers.append({**venue.execute(data, now), "index": index})
            except VenueRefusal as exc:
                answers.append({"error": exc.code})
        return answer(answers)

    app.router.add_post("/send-txs-bot/v2/agent/direct-call", direct_call)
    app.router.add_post("/send-txs-bot/v2/agent/bulk-direct-call", bulk_direct_call)
    return app


def demo_venue(now: datetime, *, mid_aprs: Mapping[str, Decimal] | None = None) -> BorosVenue:
    """A venue with Binance BTCUSDT and ETHUSDT markets (token ids 1 and 2) maturing at midnight UTC 74 days after today's."""
    aprs = {"BTC": Decimal("0.08"), "ETH": Decimal("0.07"), **(mid_aprs or {})}
    venue = BorosVenue(tokens={1: "BTC", 2: "ETH"})
    base = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    maturity = base + timedelta(days=74)
    for market_id, (token_id, asset) in enumerate(((1, "BTC"), (2, "ETH")), start=2):
        symbol = f"BINANCE-{asset}USDT-{maturity:%d%b%Y}".upper()
        venue.add_market(BorosMarket(market_id, token_id, symbol, "Binance", f"{asset}USDT", maturity, aprs[asset]), now)
    return venue
