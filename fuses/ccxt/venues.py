"""What differs between venues, as data: capabilities, ccxt options, request weights and budgets,
error codes, where the funding interval comes from, wallet names and stream support.

The generic ccxt fuse reads one ``VenueSpec`` and never branches on a venue's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

import ccxt.async_support as ccxt

from fuses.base import Capabilities


class ErrorKind(StrEnum):
    """What a venue error code means for us (see ``fuses.base``)."""

    TRANSIENT = "transient"
    RATE_LIMITED = "rate_limited"
    REJECTED = "rejected"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    ORDER_NOT_FOUND = "order_not_found"
    UNKNOWN_OUTCOME = "unknown_outcome"
    FATAL = "fatal"
    NO_CHANGE = "no_change"  # "already set": success for idempotent set-ups


class IntervalSource(StrEnum):
    """Where a venue tells a market's funding interval."""

    RATE = "rate"  # in the funding-rate answer itself (ccxt's ``interval``: Bybit)
    INTERVALS = "intervals"  # a separate bulk endpoint (ccxt fetch_funding_intervals: Binance fundingInfo)
    SETTLEMENTS = "settlements"  # difference of this and the next settlement time (OKX)
    FIXED = "fixed"  # the venue's one interval (Hyperliquid: hourly)


@dataclass(frozen=True, slots=True)
class WeightRule:
    """Request weight of one endpoint: ``weight``, or ``without_symbol`` when no symbol is given,
    or by the ``limit`` query parameter (first bound not below it), or by the value of a request
    field (``by_field``: Hyperliquid's ``/info`` weighs by its ``type``; others weigh ``weight``)."""

    weight: int = 1
    without_symbol: int | None = None
    by_limit: tuple[tuple[int, int], ...] = ()
    by_field: str | None = None
    field_weights: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class VenueSpec:
    """One venue as the generic fuse sees it."""

    ccxt_id: str
    kind: str  # "cex" or "perp_dex"
    capabilities: Capabilities
    ccxt_options: dict[str, Any] = field(default_factory=dict)
    # rate limits: the venue's budget of request weight per window, and each endpoint's weight
    weight_limit: int = 1200
    weight_window: float = 60.0
    weights: dict[tuple[str, str], WeightRule] = field(default_factory=dict)  # (METHOD, url path) -> rule
    default_weight: int = 1
    used_weight_header: str | None = None
    # errors: where the venue puts its code in an error body, and what each code means
    error_code_paths: tuple[tuple[str | int, ...], ...] = (("code",),)
    error_codes: dict[str, ErrorKind] = field(default_factory=dict)
    # funding
    interval_source: IntervalSource = IntervalSource.INTERVALS
    interval_refresh: timedelta = timedelta(minutes=15)
    # the client takes a RATE-source interval from its loaded market listing (ccxt bybit: instruments-info
    # fundingInterval), so the listing is reloaded every interval_refresh to see a venue change an interval
    intervals_in_markets: bool = False
    # account and orders
    wallets: dict[str, str] = field(default_factory=dict)  # our wallet name -> ccxt account name
    margin_mode: str = "cross"
    market_order_slippage: str | None = None  # market orders sent as IOC limits this far through mid
    price_significant_digits: int | None = None  # limit prices beyond this many significant digits are refused (unless whole)
    client_id_format: str = "plain"  # how our client id travels: a key of fuses.ccxt.fuse.CLIENT_ID_FORMATS
    margin_mode_call: bool = True  # margin mode is its own request (else: a marginMode param of the leverage call)
    api_wallet_role: bool = False  # a wallet key may be an API wallet of wallet_address (POST /info userRole says)
    # the account's position mode is read at start (ccxt fetch_position_mode): our orders carry no
    # position side, so an account in hedge (long/short) mode is refused before any order
    one_way_check: bool = False
    balance_params: dict[str, Any] = field(default_factory=dict)
    # how our client id is named in cancel and lookup params (ccxt maps ``clientOrderId`` itself on
    # most venues; Bybit's cancel and queries need its own ``orderLinkId``)
    client_id_param: str = "clientOrderId"
    # how an order is looked up by client id: ``fetch_order`` (id None, client id in params) or
    # ``order_lists`` (the open-orders query, then the closed-orders one, filtered by client id:
    # ccxt's Bybit fetch_order sends the missing id as orderId=None)
    order_lookup: str = "fetch_order"
    order_ack_only: bool = False  # the create answer holds only the ids: the order is queried after it
    # how a withdrawal carries our id: ``withdraw_order_id`` (Binance's param, listed in its history)
    # or ``nonce_tag`` (Hyperliquid's withdraw3: in the nonce, found in the ledger; withdrawals.py)
    withdrawal_id: str = "withdraw_order_id"
    funding_paid_positive: bool = False  # the raw funding amount is what was paid (Bybit execFee): negate it
    maintenance_margin_path: tuple[str | int, ...] = ()  # in the raw balance, for venues that report it per account
    balance_total_includes_upnl: bool = False  # ccxt's balance total is the margin balance (wallet + unrealised PnL)
    # errors ccxt itself must raise as a given class, deep-merged into the client's ``exceptions``
    # table (for venues without error codes, whose ccxt table maps texts to classes)
    ccxt_exceptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    # streams (ccxt.pro): the method that streams marks with funding, if any, and which raw
    # fields of its messages hold the mark, index, funding rate and next funding time
    mark_stream: str | None = None
    mark_stream_fields: dict[str, str] = field(default_factory=dict)
    mark_stream_per_market: bool = False  # the method takes one market (watched for each), not a list
    book_stream: str | None = None  # the ccxt.pro order book method, where the venue (and its emulator) has one
    # our own orders and positions (ccxt.pro, signed: run only for a fuse with credentials)
    order_stream: str | None = None
    position_stream: str | None = None
    fill_stream: str | None = None  # our fills (ccxt.pro watch_my_trades), where the venue resends recent ones on subscribe
    user_stream_auth: str | None = None  # the ccxt options bucket holding the user stream's listen key
    # funding payments (ccxt fetch_funding_history): paths in each raw entry (ccxt's ``info``) to
    # the exact ``amount``, ``rate`` and ``size`` (ccxt's parsed numbers are floats), the page
    # size to ask for, and whether the venue answers only one market per request
    funding_income_fields: dict[str, tuple[str | int, ...]] = field(default_factory=dict)
    funding_history_limit: int | None = None
    funding_history_per_market: bool = False
    # the largest |funding rate| per interval the venue can publish (its own clamp); a rate beyond
    # it is a corrupt answer and refused at the edge (``parse.funding_rate``); None: no cap known
    funding_rate_cap: Decimal | None = None

    def __post_init__(self) -> None:
        streams = self.mark_stream is not None or self.book_stream is not None
        if self.capabilities.streams != streams:
            raise ValueError(
                f"venue {self.ccxt_id}: capabilities.streams is {self.capabilities.streams}, "
                f"but the table names {'a' if streams else 'no'} mark or book stream"
            )


_BINANCE_ERRORS: dict[str, ErrorKind] = {
    "-1000": ErrorKind.TRANSIENT,  # unknown error
    "-1001": ErrorKind.TRANSIENT,  # internal error / disconnected
    "-1003": ErrorKind.RATE_LIMITED,  # too many requests
    "-1006": ErrorKind.UNKNOWN_OUTCOME,  # unexpected response; execution status unknown
    "-1007": ErrorKind.UNKNOWN_OUTCOME,  # timeout waiting for backend; execution status unknown
    "-1008": ErrorKind.TRANSIENT,  # server overloaded
    "-1015": ErrorKind.RATE_LIMITED,  # too many new orders
    "-1021": ErrorKind.TRANSIENT,  # timestamp outside recvWindow: clock drift, retry
    "-1022": ErrorKind.FATAL,  # bad signature: wrong secret
    "-2014": ErrorKind.FATAL,  # API key format invalid
    "-2015": ErrorKind.FATAL,  # invalid API key, IP or permissions
    "-1013": ErrorKind.REJECTED,  # filter failure
    "-1102": ErrorKind.REJECTED,  # mandatory parameter missing/malformed
    "-1111": ErrorKind.REJECTED,  # precision over the maximum
    "-1121": ErrorKind.REJECTED,  # invalid symbol
    "-1130": ErrorKind.REJECTED,  # invalid parameter value
    "-2010": ErrorKind.REJECTED,  # new order rejected
    "-2018": ErrorKind.INSUFFICIENT_FUNDS,  # balance insufficient
    "-2019": ErrorKind.INSUFFICIENT_FUNDS,  # margin insufficient
    "-2011": ErrorKind.ORDER_NOT_FOUND,  # unknown order (cancel)
    "-2013": ErrorKind.ORDER_NOT_FOUND,  # order does not exist (query)
    "-2022": ErrorKind.REJECTED,  # reduce-only order rejected
    "-4003": ErrorKind.REJECTED,  # quantity <= 0
    "-4116": ErrorKind.REJECTED,  # duplicated client order id
    "-4164": ErrorKind.REJECTED,  # notional below minimum
    "-4046": ErrorKind.NO_CHANGE,  # no need to change margin type
    "-4059": ErrorKind.NO_CHANGE,  # no need to change position side
}

_BINANCE_FUTURES_WEIGHTS: dict[tuple[str, str], WeightRule] = {
    ("GET", "/fapi/v1/exchangeInfo"): WeightRule(1),
    ("GET", "/fapi/v1/premiumIndex"): WeightRule(1, without_symbol=10),
    ("GET", "/fapi/v1/fundingInfo"): WeightRule(1),
    ("GET", "/fapi/v1/fundingRate"): WeightRule(1),
    ("GET", "/fapi/v1/ticker/24hr"): WeightRule(1, without_symbol=40),
    ("GET", "/fapi/v1/depth"): WeightRule(by_limit=((50, 2), (100, 5), (500, 10), (1000, 20))),
    ("GET", "/fapi/v1/klines"): WeightRule(by_limit=((99, 1), (499, 2), (1000, 5), (1500, 10))),
    ("GET", "/fapi/v2/account"): WeightRule(5),
    ("GET", "/fapi/v3/account"): WeightRule(5),
    ("GET", "/fapi/v2/balance"): WeightRule(5),
    ("GET", "/fapi/v3/balance"): WeightRule(5),
    ("GET", "/fapi/v2/positionRisk"): WeightRule(5),
    ("GET", "/fapi/v3/positionRisk"): WeightRule(5),
    ("GET", "/fapi/v1/openOrders"): WeightRule(1, without_symbol=40),
    ("GET", "/fapi/v1/income"): WeightRule(30),
    ("POST", "/sapi/v1/asset/transfer"): WeightRule(900),
}

_BINANCE_OPTIONS: dict[str, Any] = {
    "fetchCurrencies": False,  # no signed currency/margin endpoints at load_markets
    "fetchMargins": False,
    "adjustForTimeDifference": False,
    "warnOnFetchOpenOrdersWithoutSymbol": False,
}

_BYBIT_ERRORS: dict[str, ErrorKind] = {
    "10000": ErrorKind.TRANSIENT,  # server timeout
    "10016": ErrorKind.TRANSIENT,  # server error
    "10006": ErrorKind.RATE_LIMITED,
    "10018": ErrorKind.RATE_LIMITED,
    "10002": ErrorKind.TRANSIENT,  # timestamp / recv_window
    "10003": ErrorKind.FATAL,  # API key invalid
    "10004": ErrorKind.FATAL,  # signature error
    "10005": ErrorKind.FATAL,  # permission denied
    "10001": ErrorKind.REJECTED,  # parameter error
    "110007": ErrorKind.INSUFFICIENT_FUNDS,
    "110012": ErrorKind.INSUFFICIENT_FUNDS,
    "110001": ErrorKind.ORDER_NOT_FOUND,
    "110017": ErrorKind.REJECTED,  # reduce-only would increase position
    "110043": ErrorKind.NO_CHANGE,  # leverage not modified
    "110026": ErrorKind.NO_CHANGE,  # margin mode unchanged
}

_OKX_ERRORS: dict[str, ErrorKind] = {
    "50001": ErrorKind.TRANSIENT,  # service temporarily unavailable (matching engine upgrading)
    "50004": ErrorKind.UNKNOWN_OUTCOME,  # endpoint request timeout: an order's fate is unknown
    "50013": ErrorKind.TRANSIENT,  # system busy
    "50026": ErrorKind.TRANSIENT,  # system error
    "50011": ErrorKind.RATE_LIMITED,
    "50061": ErrorKind.RATE_LIMITED,
    "50102": ErrorKind.TRANSIENT,  # timestamp expired
    "50103": ErrorKind.FATAL,  # OK-ACCESS-KEY missing
    "50104": ErrorKind.FATAL,  # OK-ACCESS-PASSPHRASE missing
    "50105": ErrorKind.FATAL,  # OK-ACCESS-PASSPHRASE incorrect
    "50111": ErrorKind.FATAL,  # invalid API key
    "50113": ErrorKind.FATAL,  # invalid signature
    "50000": ErrorKind.REJECTED,  # body empty
    "50014": ErrorKind.REJECTED,  # parameter missing
    "51000": ErrorKind.REJECTED,  # parameter error
    "51001": ErrorKind.REJECTED,  # instrument does not exist
    "51008": ErrorKind.INSUFFICIENT_FUNDS,
    "51119": ErrorKind.INSUFFICIENT_FUNDS,
    "51016": ErrorKind.REJECTED,  # duplicated clOrdId
    "51020": ErrorKind.REJECTED,  # below the minimum size
    "51121": ErrorKind.REJECTED,  # not a multiple of the lot size
    "51169": ErrorKind.REJECTED,  # reduce-only without position
    "51400": ErrorKind.ORDER_NOT_FOUND,  # cancel: filled, canceled or unknown
    "51603": ErrorKind.ORDER_NOT_FOUND,
    "59102": ErrorKind.REJECTED,  # leverage above the market's maximum
    "59000": ErrorKind.NO_CHANGE,  # settings unchanged
}

# /info weights by request type (Hyperliquid's published table); other types weigh 20.
_HYPERLIQUID_INFO_WEIGHTS: tuple[tuple[str, int], ...] = (
    ("l2Book", 2), ("allMids", 2), ("clearinghouseState", 2), ("orderStatus", 2),
    ("spotClearinghouseState", 2), ("exchangeStatus", 2), ("userRole", 60),
)

# ccxt's own Hyperliquid table raises InvalidOrder for an unknown signer (a bad signature
# recovers some other address) and a plain ExchangeError for nonce refusals; these rows make
# it raise the classes that say what they mean: fatal credentials, transient nonce clash.
_HYPERLIQUID_EXCEPTIONS: dict[str, type[BaseException]] = {
    "User or API Wallet ": ccxt.AuthenticationError,
    "Invalid nonce": ccxt.InvalidNonce,
}

VENUES: dict[str, VenueSpec] = {
    "binanceusdm": VenueSpec(
        ccxt_id="binanceusdm",
        # USD-M clamps each contract's rate to its own cap/floor (a few percent at most): 5% is above every one
        funding_rate_cap=Decimal("0.05"),
        kind="cex",
        capabilities=Capabilities(
            spot=False, linear_perp=True, reduce_only=True, ioc=True, post_only=True, wallet_transfers=True,
            bulk_funding=True, streams=True, funding_interval_default=timedelta(hours=8),
        ),
        # watchOrderBookLimit: levels of the REST snapshot a streamed book starts from (weight 5)
        ccxt_options={**_BINANCE_OPTIONS, "defaultType": "swap", "fetchMarkets": {"types": ["linear"]}, "watchOrderBookLimit": 100},
        weight_limit=2400,
        weights=_BINANCE_FUTURES_WEIGHTS,
        used_weight_header="X-MBX-USED-WEIGHT-1M",
        error_codes=_BINANCE_ERRORS,
        interval_source=IntervalSource.INTERVALS,
        wallets={"spot": "spot", "futures": "linear"},
        mark_stream="watch_mark_prices",
        mark_stream_fields={"mark": "p", "index": "i", "rate": "r", "next": "T", "time": "E"},
        book_stream="watch_order_book",
        order_stream="watch_orders",
        position_stream="watch_positions",
        user_stream_auth="linear",

        balance_total_includes_upnl=True,  # ccxt: total = marginBalance
        funding_income_fields={"amount": ("income",)},  # GET /fapi/v1/income incomeType FUNDING_FEE
        funding_history_limit=1000,
    ),
    "binance": VenueSpec(
        ccxt_id="binance",
        kind="cex",
        capabilities=Capabilities(
            spot=True, linear_perp=False, reduce_only=False, ioc=True, post_only=True, wallet_transfers=True,
            bulk_funding=False, streams=False, funding_interval_default=timedelta(hours=8),
        ),
        ccxt_options={**_BINANCE_OPTIONS, "defaultType": "spot", "fetchMarkets": {"types": ["spot"]}},
        weight_limit=6000,
        weights={
            ("GET", "/api/v3/exchangeInfo"): WeightRule(20),
            ("GET", "/api/v3/depth"): WeightRule(by_limit=((100, 5), (500, 25), (1000, 50), (5000, 250))),
            ("GET", "/api/v3/ticker/24hr"): WeightRule(2, without_symbol=80),
            ("GET", "/api/v3/account"): WeightRule(20),
            ("POST", "/api/v3/order"): WeightRule(1),
            ("GET", "/api/v3/order"): WeightRule(4),
            ("DELETE", "/api/v3/order"): WeightRule(1),
            ("POST", "/sapi/v1/asset/transfer"): WeightRule(900),
        },
        used_weight_header="X-MBX-USED-WEIGHT-1M",
        error_codes=_BINANCE_ERRORS,
        interval_source=IntervalSource.FIXED,
        wallets={"spot": "spot", "futures": "linear"},
    ),
    "bybit": VenueSpec(
        ccxt_id="bybit",
        kind="cex",
        capabilities=Capabilities(
            spot=True, linear_perp=True, reduce_only=True, ioc=True, post_only=True, wallet_transfers=True,
            bulk_funding=True, streams=False, funding_interval_default=timedelta(hours=8),
        ),
        ccxt_options={"defaultType": "swap", "fetchMarkets": {"types": ["linear"]}, "fetchCurrencies": False},
        weight_limit=600,  # 600 requests per 5 s per IP
        weight_window=5.0,
        error_code_paths=(("retCode",),),
        error_codes=_BYBIT_ERRORS,
        interval_source=IntervalSource.RATE,
        intervals_in_markets=True,
        wallets={"spot": "unified", "futures": "unified"},
        balance_params={"type": "unified"},
        client_id_param="orderLinkId",
        order_lookup="order_lists",
        order_ack_only=True,  # /v5/order/create answers {orderId, orderLinkId} only
        # GET /v5/execution/list execType=Funding: execFee is the fee paid (negative: received), feeRate the rate
        funding_income_fields={"amount": ("execFee",), "rate": ("feeRate",)},
        funding_paid_positive=True,
        funding_history_per_market=True,
    ),
    "okx": VenueSpec(
        ccxt_id="okx",
        kind="cex",
        capabilities=Capabilities(
            spot=True, linear_perp=True, reduce_only=True, ioc=True, post_only=True, wallet_transfers=True,
            bulk_funding=False, streams=False, funding_interval_default=timedelta(hours=8),
        ),
        # load_markets reads the signed currency list (GET /api/v5/asset/currencies): wrong credentials
        # (key, secret or passphrase) stop the fuse at start, before any order
        ccxt_options={"defaultType": "swap", "fetchMarkets": {"types": ["swap"]}},
        # OKX limits each endpoint per 2 s (balance, positions: 10 per account; funding-rate: 10 per
        # instrument); 20 requests per 2 s across all keeps every one of them below its limit in normal operation
        weight_limit=20,
        weight_window=2.0,
        error_code_paths=(("data", 0, "sCode"), ("code",)),
        error_codes=_OKX_ERRORS,
        # funding-rate answers fundingTime (the coming settlement) and nextFundingTime: the interval is their difference
        interval_source=IntervalSource.SETTLEMENTS,
        # a unified trading account: spot and swaps share the trading account (ccxt's "trading", type 18)
        wallets={"spot": "trading", "futures": "trading"},
        client_id_format="alnum32",  # clOrdId: at most 32 alphanumerics
        margin_mode_call=False,  # set-leverage carries mgnMode
        one_way_check=True,  # GET /account/config posMode must be net_mode: orders go without posSide
        order_ack_only=True,  # POST /trade/batch-orders answers {ordId, clOrdId, sCode} only
        balance_total_includes_upnl=True,  # ccxt: total = eq (cash balance + unrealised PnL)
        # GET /account/bills-archive type 8: balChg is what the account received, sz the position in contracts
        funding_income_fields={"amount": ("balChg",), "size": ("sz",)},
    ),
    "hyperliquid": VenueSpec(
        ccxt_id="hyperliquid",
        funding_rate_cap=Decimal("0.04"),  # "funding is capped at 4% / hour" (Hyperliquid docs, Funding)
        kind="perp_dex",
        capabilities=Capabilities(
            spot=True, linear_perp=True, reduce_only=True, ioc=True, post_only=True, wallet_transfers=True,
            bulk_funding=True, streams=True, funding_interval_default=timedelta(hours=1),
        ),
        # no builder fee approval, no referrer: ccxt would otherwise send both with a wallet key
        ccxt_options={
            "defaultType": "swap", "builderFee": False, "approvedBuilderFee": True, "refSet": True,
        },
        weight_limit=1200,  # per IP per minute
        weights={
            ("POST", "/info"): WeightRule(20, by_field="type", field_weights=_HYPERLIQUID_INFO_WEIGHTS),
            ("POST", "/exchange"): WeightRule(1),
        },
        # Hyperliquid answers errors as text without codes: translation goes by ccxt class, and
        # these rows make ccxt raise the class that says what the error means
        error_code_paths=(),
        error_codes={},
        ccxt_exceptions={"broad": _HYPERLIQUID_EXCEPTIONS},
        interval_source=IntervalSource.FIXED,
        wallets={"spot": "spot", "futures": "swap"},
        market_order_slippage="0.05",
        price_significant_digits=5,
        client_id_format="cloid",  # 128-bit hex cloid derived from our client id
        withdrawal_id="nonce_tag",  # withdraw3 has no client id field: its nonce carries ours
        margin_mode_call=False,  # updateLeverage carries isCross
        api_wallet_role=True,
        maintenance_margin_path=("crossMaintenanceMarginUsed",),
        balance_total_includes_upnl=True,  # ccxt: total = accountValue
        # websocket: activeAssetCtx per coin (ccxt.pro watch_ticker; allMids, watch_tickers, has
        # no funding), l2Book snapshots, orderUpdates and userFills of the wallet address; the
        # funding ctx carries no next time: the next hour (IntervalSource.FIXED)
        mark_stream="watch_ticker",
        mark_stream_per_market=True,
        mark_stream_fields={"mark": "markPx", "index": "oraclePx", "rate": "funding"},
        book_stream="watch_order_book",
        order_stream="watch_orders",
        fill_stream="watch_my_trades",

        # POST /info userFunding: {"time", "hash" (zeros), "delta": {"coin", "usdc", "szi", "fundingRate"}}
        funding_income_fields={"amount": ("delta", "usdc"), "rate": ("delta", "fundingRate"), "size": ("delta", "szi")},
    ),
}


def venue_spec(venue: str) -> VenueSpec:
    """Return the table row of ``venue`` or raise ``KeyError`` naming the venues known."""
    try:
        return VENUES[venue]
    except KeyError:
        raise KeyError(f"venue {venue!r} has no ccxt table; known: {', '.join(sorted(VENUES))}") from None


def request_weight(spec: VenueSpec, method: str, path: str, query: dict[str, str]) -> int:
    """Return the weight a request to ``path`` costs on ``spec``'s venue (``query``: its
    parameters, from the URL or the body)."""
    rule = spec.weights.get((method.upper(), path))
    if rule is None:
        return spec.default_weight
    if rule.by_field is not None:
        return dict(rule.field_weights).get(query.get(rule.by_field, ""), rule.weight)
    if rule.by_limit:
        limit = int(query.get("limit", "0") or 0) or rule.by_limit[-1][0]
        for bound, weight in rule.by_limit:
            if limit <= bound:
                return weight
        return rule.by_limit[-1][1]
    if rule.without_symbol is not None and not query.get("symbol"):
        return rule.without_symbol
    return rule.weight
