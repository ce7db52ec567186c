"""``BorosFuse``: ``alpha.domain.rates.RateVenue`` over the Pendle Boros API (core API and agent relay).

Reads come from the core API (``/core/v1/markets``, ``/order-books``, ``/collaterals/summary``,
``/pnl/transactions``, ``/pnl/limit-orders``); writes are router calls signed by an approved
agent and posted to the relay (``/send-txs-bot/v2/agent/direct-call``), as the SDK's ``Exchange``
does, except that the calldata is encoded here rather than asked of the API's calldata
endpoints (what we sign is what we meant). A swap is a fill-or-kill ``placeSingleOrder`` at the
limit's tick; the relay answers only a ``txHash``, and the fill is read back from the account's
transactions, whose ``id`` is that hash.

Idempotency by client id. Boros orders carry no client tag (the order id is the venue's: side,
tick and place index). Within a process the fuse keeps, per client id, the signed call it sent
and the fill it got: a repeated id returns the first fill and sends nothing. After an unknown
outcome (timeout, disconnect, 5xx on the relay) the retry posts the **same signed call**
(same nonce): the router refuses a nonce at or below the signer's last one (``AuthInvalidNonce``),
so that call can never trade twice. If the relay answers success, it traded now; if it refuses
the nonce, the fuse looks for the trade in the account's transactions (same market, the signed
size, at or after the call's nonce time, not claimed by another fill): found, that is the
fill; absent, the first call never executed and the order is signed afresh. A new process
keeps no such memory: a retry after a restart must be reconciled from ``rate_account``.

Nonces are the injected clock's milliseconds, strictly increasing per fuse: one agent key per
process (two processes signing with one agent could refuse each other's calls). The order's
``desiredMatchRate`` is set to the limit rate; what the real router does with it beyond the tick
limit is not documented.

Deposits and withdrawals are on-chain transactions of the root wallet (the SDK's
``deposit``/``requestVaultWithdrawal``), not agent calls: this fuse refuses them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import aiohttp

from alpha.domain.clock import Clock, LiveClock
from alpha.domain.instruments import Side
from alpha.domain.rates import RateAccount, RateFill, RateMarket, RateQuote, RateVenue
from fuses.base import (
    FatalError,
    InsufficientFundsError,
    OrderNotFoundError,
    RateLimitedError,
    RejectedError,
    TransientError,
    UnknownOutcomeError,
)
from fuses.boros import parse
from fuses.boros.signing import (
    FOK,
    GTC,
    LONG,
    SHORT,
    AgentSigner,
    SignedCall,
    cancel_calldata,
    place_order_calldata,
    tick_for_rate,
    to_wei,
)
from fuses.ccxt.parse import refuse

BOOK_TICK = Decimal("0.00001")  # the finest aggregation the order-book endpoint serves
AUTH_ERRORS = {"AuthInvalidMessage", "AuthAgentExpired", "AuthInvalidConnectionId", "INVALID_AGENT", "INVALID_SIGNATURE", "AGENT_EXPIRED"}
MARGIN_ERRORS = {"MMInsufficientIM", "INSUFFICIENT_MARGIN", "INITIAL_MARGIN_EXCEEDS_BALANCE", "INSUFFICIENT_BALANCE"}
TRADES_LOOKUP = 200  # newest transactions read to find a fill


class BorosFuse:
    """A rate-swap fuse for one Boros account (``root`` wallet, ``account_id``; cross margin) traded by an agent key."""

    def __init__(
        self,
        api_url: str,
        root: str,
        agent_key: str,
        *,
        account_id: int = 0,
        name: str = "boros",
        clock: Clock | None = None,
        timeout: float = 10.0,
        chain_id: int | None = None,
        router: str | None = None,
    ) -> None:
        self.name = name
        self._url = api_url.rstrip("/")
        self._root = root.lower()
        self._account_id = account_id
        signer_args: dict[str, Any] = {}
        if chain_id is not None:
            signer_args["chain_id"] = chain_id
        if router is not None:
            signer_args["router"] = router
        self._signer = AgentSigner(agent_key, root, account_id, **signer_args)
        self._clock = clock or LiveClock()
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._markets: dict[str, parse.MarketInfo] = {}
        self._by_id: dict[int, parse.MarketInfo] = {}
        self._assets: dict[int, str] = {}
        self._sent: dict[str, tuple[SignedCall, str, Decimal]] = {}  # client id -> (call, market, signed size)
        self._fills: dict[str, RateFill] = {}
        self._claimed: set[str] = set()

    # ---- plumbing ------------------------------------------------------------------------

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def _request(self, method: str, path: str, *, params: Mapping[str, str] | None = None, body: Any = None) -> tuple[int, Any]:
        await self.start()
        assert self._session is not None
        async with self._session.request(method, self._url + path, params=params, json=body) as resp:
            raw = await resp.read()
            try:
                payload = json.loads(raw, parse_float=Decimal) if raw else None
            except ValueError:
                payload = None
            return resp.status, payload

    async def _get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        try:
            status, payload = await self._request("GET", path, params=params)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientError(f"Boros {path}: {type(exc).__name__}", venue=self.name) from exc
        if status == 200 and payload is not None:
            return payload
        raise self._error(status, payload, path)

    def _error(self, status: int, payload: Any, path: str) -> Exception:
        err = parse.error_of(payload)
        code, message = err if err is not None else ("", "")
        text = f"Boros {path}: HTTP {status} {code} {message}".strip()
        if status == 429:
            return RateLimitedError(text, venue=self.name, code=code or "429")
        if status >= 500 or (status == 200 and payload is None):
            return TransientError(text, venue=self.name, code=code or str(status))
        if code in AUTH_ERRORS:
            return FatalError(text, venue=self.name, code=code)
        if code in MARGIN_ERRORS:
            return InsufficientFundsError(text, venue=self.name, code=code)
        if code == "MarketOrderNotFound":
            return OrderNotFoundError(text, venue=self.name, code=code)
        if err is None:
            return refuse(path, payload, "shape", f"HTTP {status} without the venue's error shape")
        return RejectedError(text, venue=self.name, code=code)

    # ---- reads ---------------------------------------------------------------------------

    async def rate_markets(self) -> list[RateMarket]:
        """Every listed market open to trading (state Normal or Capped) and not matured, with the venue's exact parameters."""
        self._assets = parse.tokens(await self._get("/core/v1/assets/all"))
        rows: list[Any] = []
        while True:
            page = await self._get("/core/v1/markets", {"skip": str(len(rows)), "limit": "100", "isWhitelisted": "true"})
            results = parse.field_of(page, "results", "markets")
            if not isinstance(results, list):
                raise refuse("markets.results", results, "type", "not a list")
            rows.extend(results)
            total = parse.integer(parse.field_of(page, "total", "markets"), "markets.total", low=0)
            if not results or len(rows) >= total:
                break
        now = self._clock.now()
        infos = [parse.market(row, self._assets, fuse=self.name, tick_apr=BOOK_TICK, where=f"markets[{i}]") for i, row in enumerate(rows)]
        self._markets = {i.rate.market: i for i in infos}
        self._by_id = {i.market_id: i for i in infos}
        return [i.rate for i in infos if i.tradeable and not i.rate.matured(now)]

    async def _market(self, market: str) -> parse.MarketInfo:
        if market not in self._markets:
            await self.rate_markets()
        if market not in self._markets:
            raise RejectedError(f"Boros has no market {market}", venue=self.name, code="MARKET_NOT_FOUND")
        return self._markets[market]

    async def rate_quote(self, market: str) -> RateQuote:
        info = await self._market(market)
        detail = await self._get(f"/core/v1/markets/{info.market_id}")
        mark = parse.mark_apr(detail)
        raw = await self._get(f"/core/v1/order-books/{info.market_id}", {"tickSize": format(BOOK_TICK, "f")})
        return parse.book(raw, market, BOOK_TICK, mark, self._clock.now())

    def _user(self) -> dict[str, str]:
        return {"userAddress": self._root, "accountId": str(self._account_id)}

    async def rate_account(self, asset: str) -> RateAccount:
        if not self._markets:
            await self.rate_markets()
        tokens = [t for t, s in self._assets.items() if s == asset]
        if not tokens:
            raise RejectedError(f"Boros has no collateral {asset}", venue=self.name, code="ASSET_NOT_FOUND")
        raw = await self._get("/core/v1/collaterals/summary", self._user())
        return parse.account(raw, fuse=self.name, asset=asset, token_id=tokens[0], markets=self._by_id)

    async def trades(self, market: str) -> list[parse.Trade]:
        info = await self._market(market)
        return parse.trades(await self._get("/core/v1/pnl/transactions", {**self._user(), "marketId": str(info.market_id), "limit": str(TRADES_LOOKUP)}))

    async def settlements(self, market: str) -> list[parse.Settlement]:
        """Every payment of ``market``'s floating leg to this account, oldest first (pages of 100, the venue's cap)."""
        info = await self._market(market)
        rows: list[parse.Settlement] = []
        while True:
            params = {**self._user(), "marketId": str(info.market_id), "limit": "100", "skip": str(len(rows))}
            page = await self._get("/core/v1/settlement/settlements", params)
            got = parse.settlements(page)
            rows.extend(got)
            total = parse.integer(parse.field_of(page, "total", "settlements"), "settlements.total", low=0)
            if not got or len(rows) >= total:
                break
        return sorted(rows, key=lambda r: r.time)

    async def open_orders(self, market: str) -> list[parse.LimitOrder]:
        info = await self._market(market)
        rows = parse.limit_orders(await self._get("/core/v1/pnl/limit-orders", {**self._user(), "marketId": str(info.market_id), "limit": "100"}))
        return [o for o in rows if o.status == 0]

    # ---- writes --------------------------------------------------------------------------

    async def _relay(self, call: SignedCall, client_id: str | None) -> str:
        """Post a signed call; its ``txHash``. A send whose outcome is unknown raises ``UnknownOutcomeError``."""
        path = "/send-txs-bot/v2/agent/direct-call"
        try:
            status, payload = await self._request("POST", path, body=call.body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UnknownOutcomeError(f"Boros relay: {type(exc).__name__} after sending", venue=self.name, client_id=client_id) from exc
        if status >= 500:
            raise UnknownOutcomeError(f"Boros relay: HTTP {status}", venue=self.name, client_id=client_id)
        if status != 200:
            raise self._error(status, payload, path)
        err = parse.error_of(payload)
        if err is not None:
            raise RejectedError(f"Boros relay: {err[0]} {err[1]}", venue=self.name, code=err[0])
        return parse.text(parse.field_of(payload, "txHash", "relay"), "relay.txHash")

    def _sign(self, calldata: bytes) -> SignedCall:
        nonce = self._signer.next_nonce(int(self._clock.now().timestamp() * 1000))
        return self._signer.sign(calldata, nonce)

    async def swap(self, market: str, side: Side, size: Decimal, limit_apr: Decimal, *, client_id: str) -> RateFill:
        """A fill-or-kill market order of ``size`` YU (SELL: short, fills only at or above ``limit_apr``), idempotent by ``client_id``."""
        if client_id in self._fills:
            return self._fills[client_id]
        info = await self._market(market)
        if not size.is_finite() or size <= 0 or not limit_apr.is_finite():
            raise RejectedError(f"swap needs a positive size and a finite limit (got {size}, {limit_apr})", venue=self.name)
        signed = size if side is Side.BUY else -size
        if client_id in self._sent:
            call, _, _ = self._sent[client_id]
            try:
                tx = await self._relay(call, client_id)
            except RejectedError as exc:
                if exc.code != "AuthInvalidNonce":
                    raise
                found = await self._find_trade(info, call, signed)
                if found is not None:
                    return self._book(client_id, market, found)
                del self._sent[client_id]  # the first call never executed and now never can: sign afresh
                return await self.swap(market, side, size, limit_apr, client_id=client_id)
            return await self._filled(client_id, market, info, tx)
        try:
            size_wei = to_wei(size)
            tick = tick_for_rate(limit_apr, info.tick_step, round_down=side is Side.BUY)
        except ValueError as exc:
            raise RejectedError(f"swap on {market}: {exc}", venue=self.name) from exc
        calldata = place_order_calldata(info.market_id, LONG if side is Side.BUY else SHORT, size_wei, tick, FOK, limit_apr)
        call = self._sign(calldata)
        self._sent[client_id] = (call, market, signed)
        try:
            tx = await self._relay(call, client_id)
        except UnknownOutcomeError:
            raise
        except Exception:
            del self._sent[client_id]  # refused: nothing traded, a retry may sign again
            raise
        return await self._filled(client_id, market, info, tx)

    async def _filled(self, client_id: str, market: str, info: parse.MarketInfo, tx: str) -> RateFill:
        for trade in await self.trades(market):
            if trade.id == tx:
                return self._book(client_id, market, trade)
        raise UnknownOutcomeError(f"Boros relay accepted {tx} but the account shows no such trade yet", venue=self.name, client_id=client_id)

    async def _find_trade(self, info: parse.MarketInfo, call: SignedCall, signed: Decimal) -> parse.Trade | None:
        sent_at = datetime.fromtimestamp(call.nonce // 1000, self._clock.now().tzinfo)
        for trade in await self.trades(info.rate.market):
            if trade.id not in self._claimed and trade.size == signed and trade.time >= sent_at:
                return trade
        return None

    def _book(self, client_id: str, market: str, trade: parse.Trade) -> RateFill:
        fill = RateFill(market, trade.size, trade.fixed_apr, trade.fee, client_id)
        self._claimed.add(trade.id)
        self._fills[client_id] = fill
        self._sent.pop(client_id, None)
        return fill

    async def rest(self, market: str, side: Side, size: Decimal, apr: Decimal) -> int:
        """Place a good-till-cancelled limit order at the tick of ``apr`` (rounded to the maker's side); its order id."""
        info = await self._market(market)
        if not size.is_finite() or size <= 0 or not apr.is_finite():
            raise RejectedError(f"limit order needs a positive size and a finite rate (got {size}, {apr})", venue=self.name)
        try:
            tick = tick_for_rate(apr, info.tick_step, round_down=side is Side.BUY)
            size_wei = to_wei(size)
        except ValueError as exc:
            raise RejectedError(f"limit order on {market}: {exc}", venue=self.name) from exc
        venue_side = LONG if side is Side.BUY else SHORT
        before = {o.order_id for o in await self.open_orders(market)}
        await self._relay(self._sign(place_order_calldata(info.market_id, venue_side, size_wei, tick, GTC, apr)), None)
        placed = [o for o in await self.open_orders(market) if o.order_id not in before and o.side == venue_side and o.tick == tick]
        if len(placed) != 1:
            raise UnknownOutcomeError(f"Boros accepted the limit order on {market} but lists {len(placed)} new ones", venue=self.name)
        return placed[0].order_id

    async def cancel(self, market: str, order_id: int) -> None:
        info = await self._market(market)
        await self._relay(self._sign(cancel_calldata(info.market_id, [order_id])), None)

    async def deposit(self, asset: str, amount: Decimal) -> None:
        raise RejectedError("Boros deposits are on-chain transactions of the root wallet, not agent calls", venue=self.name)

    async def withdraw(self, asset: str, amount: Decimal) -> None:
        raise RejectedError("Boros withdrawals are on-chain transactions of the root wallet, not agent calls", venue=self.name)


def as_rate_venue(fuse: BorosFuse) -> RateVenue:
    """``BorosFuse`` is a ``RateVenue`` (checked by mypy here, where the protocol is structural)."""
    return fuse
