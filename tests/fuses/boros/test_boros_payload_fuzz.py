"""Payload fuzz of the Boros answers: one field of a true answer replaced by any JSON value.

Nothing but ``BadPayload`` (a ``fuses.base.BadPayloadError``) leaves the parser, and whatever it
does return can be true: books sorted best first, uncrossed, sizes positive; markets with a
maturity, a positive payment period and margin factors in [0, 1]; accounts whose positions agree
with their sides.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuses.boros import parse
from fuses.boros.fuse import BOOK_TICK
from fuses.ccxt.parse import BadPayload
from fuses.emulators.boros import BorosMarket, BorosVenue, YuHolding, collateral_json, encode_json, market_json

START = datetime(2026, 10, 1, tzinfo=UTC)
MATURITY = START + timedelta(days=73)
ROOT = "0x1eca053af93a7afaefcd2133a352f422c3c04903"


def _read(value: Any) -> Any:
    return json.loads(encode_json(value), parse_float=Decimal)


def _answers() -> tuple[Any, Any, Any]:
    """A true market answer, book and collateral summary (with one short position) from the emulator's own encoders."""
    venue = BorosVenue(tokens={1: "BTC"})
    market = venue.add_market(BorosMarket(2, 1, "BINANCE-BTCUSDT-13DEC2026", "Binance", "BTCUSDT", MATURITY, Decimal("0.08")), START)
    venue.fund(ROOT, 1, Decimal(10))
    acc = venue.account(ROOT)
    acc.holdings[2] = YuHolding(Decimal(-5), Decimal("-0.4"))
    book = {"long": {"ia": [7950, 7930], "sz": ["20000000000000000000", "1"]}, "short": {"ia": [8050], "sz": ["3"]}}
    return _read(market_json(venue, market, START)), book, _read({"collaterals": [collateral_json(venue, acc, 1, START)]})


MARKET, BOOK, COLLATERALS = _answers()
MARKET_PATHS = [
    ("marketId",), ("tokenId",), ("imData",), ("imData", "maturity"), ("imData", "tickStep"), ("imData", "iTickThresh"),
    ("imData", "symbol"), ("config", "kIM"), ("config", "kMM"), ("config", "takerFee"), ("extConfig", "paymentPeriod"),
    ("metadata", "maxLeverage"), ("metadata", "platformName"), ("metadata",), ("state",), ("data", "markApr"),
]
BOOK_PATHS = [("long",), ("long", "ia"), ("long", "ia", 0), ("long", "sz", 1), ("short", "ia", 0), ("short", "sz"), ("short", "sz", 0)]
ACCOUNT_PATHS = [
    ("collaterals",), ("collaterals", 0, "crossPosition", "marketAcc"), ("collaterals", 0, "crossPosition", "netBalance"),
    ("collaterals", 0, "crossPosition", "initialMargin"), ("collaterals", 0, "crossPosition", "marketPositions"),
    ("collaterals", 0, "crossPosition", "marketPositions", 0, "notionalSize"),
    ("collaterals", 0, "crossPosition", "marketPositions", 0, "side"),
    ("collaterals", 0, "crossPosition", "marketPositions", 0, "fixedApr"),
    ("collaterals", 0, "crossPosition", "marketPositions", 0, "marketId"),
    ("collaterals", 0, "crossPosition", "marketPositions", 0, "positionValue"),
]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["", "-", "1e18", "0x", "-0", "999999999999999999999999999999", "NaN", "0xffffffffffffffffffffffffffffffffffffffffffffffffff"]),
    st.decimals(allow_nan=True, allow_infinity=True, places=None),
    st.sampled_from([Decimal("sNaN"), Decimal("NaN"), Decimal("-Infinity"), Decimal("1e999999"), Decimal("-0"), Decimal("0.5")]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=6)


def _replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    doc = copy.deepcopy(doc)
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


FUZZ = settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(path=st.sampled_from(MARKET_PATHS), value=values)
def test_a_market_answer_is_read_true_or_refused(path: tuple[Any, ...], value: Any) -> None:
    raw = _replace(MARKET, path, value)
    try:
        info = parse.market(raw, {1: "BTC"}, fuse="boros", tick_apr=BOOK_TICK)
        mark = parse.mark_apr(raw)
    except BadPayload:
        return
    rate = info.rate
    assert rate.payment_period.total_seconds() > 0 and rate.maturity.tzinfo is not None
    assert all(0 <= x <= 1 for x in (rate.im_factor, rate.mm_factor, rate.taker_fee_apr)) and rate.max_leverage > 0
    assert mark.is_finite()


@FUZZ
@given(path=st.sampled_from(BOOK_PATHS), value=values)
def test_a_book_is_read_true_or_refused(path: tuple[Any, ...], value: Any) -> None:
    try:
        quote = parse.book(_replace(BOOK, path, value), "m", BOOK_TICK, Decimal("0.08"), START)
    except BadPayload:
        return
    assert all(level.size > 0 and level.apr.is_finite() for level in quote.bids + quote.asks)
    assert [b.apr for b in quote.bids] == sorted((b.apr for b in quote.bids), reverse=True)
    assert [a.apr for a in quote.asks] == sorted(a.apr for a in quote.asks)
    assert not (quote.bids and quote.asks) or quote.bids[0].apr < quote.asks[0].apr


@FUZZ
@given(path=st.sampled_from(ACCOUNT_PATHS), value=values)
def test_an_account_is_read_true_or_refused(path: tuple[Any, ...], value: Any) -> None:
    markets = {2: parse.market(MARKET, {1: "BTC"}, fuse="boros", tick_apr=BOOK_TICK)}
    try:
        account = parse.account(_replace(COLLATERALS, path, value), fuse="boros", asset="BTC", token_id=1, markets=markets)
    except BadPayload:
        return
    assert account.initial_margin >= 0 and account.maintenance_margin >= 0 and account.collateral.is_finite()
    assert all(p.size.is_finite() and p.fixed_apr.is_finite() for p in account.positions)


def test_the_true_answers_read_back() -> None:
    info = parse.market(MARKET, {1: "BTC"}, fuse="boros", tick_apr=BOOK_TICK)
    account = parse.account(COLLATERALS, fuse="boros", asset="BTC", token_id=1, markets={2: info})
    assert account.positions[0].size == Decimal(-5) and account.collateral == Decimal(10)
    assert parse.book(BOOK, "m", BOOK_TICK, Decimal("0.08"), START).bids[0].apr == Decimal("0.0795")
