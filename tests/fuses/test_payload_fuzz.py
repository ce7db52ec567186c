"""Payload fuzz: the real ccxt client against both venue emulators, their answers rewritten by the
chaos API's ``corrupt`` fault (``fuses/emulators/README.md``), one fault mode per malformed field.

For every mode and every generated value (Hypothesis, derandomized under the ``ci`` profile):

* nothing but a typed ``fuses.base.FuseError`` leaves the fuse;
* whatever the fuse does return is a value that can be true (prices finite, positive and below
  ``parse.MAX_PRICE``, books neither empty nor crossed, funding finite and within the venue's cap,
  sizes and balances finite);
* no order reaches the venue from a read (the emulator's order log), and none is sent on a
  refused book;
* no credential appears in any error text or log record.

The named-refusal tests post one surely-bad value per mode and check that the refusal names the
venue and field, carries its check, is logged and counted, and that nothing was traded on it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alpha.domain.account import AccountSnapshot, OrderRequest
from alpha.domain.instruments import Side
from alpha.domain.market import OrderBook
from alpha.observability.metrics import Metrics
from fuses.base import BadPayloadError, FuseError, UnknownOutcomeError
from fuses.ccxt import parse
from fuses.ccxt.fuse import CcxtFuse
from fuses.ccxt.ratelimit import WeightLimiter
from tests.budgets import examples
from tests.fuses.conftest import KEY, SECRET, binance_rig, hyperliquid_rig

BTC = {"binance": "BTC/USDT:USDT", "hyperliquid": "BTC/USDC:USDC"}
QTY = Decimal("0.01")
BUDGET = 10_000_000  # request weight per minute, at the emulators and in the fuses' limiters


@dataclass(frozen=True)
class Mode:
    """One malformed field: where the emulator's answer is rewritten and which fuse read meets it."""

    venue: str
    name: str
    endpoint: str
    path: tuple[str | int, ...]
    read: str  # "market" (funding and marks), "book", "account" or "order" (a submit's answer)
    bad: Any  # a value that is surely wrong there
    check: str  # the check the surely-wrong value fails
    info_type: str | None = None

    @property
    def id(self) -> str:
        return f"{self.venue}-{self.name}"


def _ms(delta: timedelta) -> int:
    return int((datetime.now().astimezone() + delta).timestamp() * 1000)


HOUR_AGO, HOUR_AHEAD = object(), object()  # stand-ins for timestamps, made when the fault is posted

MODES = (
    Mode("binance", "mark", "/fapi/v1/premiumIndex", ("*", "markPrice"), "market", "NaN", "not_finite"),
    Mode("binance", "mark-absurd", "/fapi/v1/premiumIndex", ("*", "markPrice"), "market", "1e30", "range"),
    Mode("binance", "index", "/fapi/v1/premiumIndex", ("*", "indexPrice"), "market", "-5", "range"),
    Mode("binance", "funding", "/fapi/v1/premiumIndex", ("*", "lastFundingRate"), "market", "0.5", "range"),
    Mode("binance", "funding-time", "/fapi/v1/premiumIndex", ("*", "time"), "market", HOUR_AGO, "stale"),
    Mode("binance", "bid-price", "/fapi/v1/depth", ("bids", 0, 0), "book", "Infinity", "not_finite"),
    Mode("binance", "bid-size", "/fapi/v1/depth", ("bids", 0, 1), "book", "-3", "range"),
    Mode("binance", "crossed", "/fapi/v1/depth", ("bids", 0, 0), "book", "1000000", "crossed"),
    Mode("binance", "empty", "/fapi/v1/depth", ("asks",), "book", [], "empty"),
    Mode("binance", "book-time", "/fapi/v1/depth", ("T",), "book", HOUR_AHEAD, "future"),
    # ccxt reads an unreadable margin balance as None: listed, but not read
    Mode("binance", "balance", "/fapi/v3/account", ("assets", "*", "marginBalance"), "account", "abc", "missing"),
    Mode("binance", "free", "/fapi/v3/account", ("assets", "*", "availableBalance"), "account", "NaN", "not_finite"),
    # ccxt itself fails on a NaN size (int('NaN') in its Precise): unreadable
    Mode("binance", "position", "/fapi/v3/positionRisk", ("*", "positionAmt"), "account", "NaN", "unreadable"),
    Mode("binance", "position-mark", "/fapi/v3/positionRisk", ("*", "markPrice"), "account", "-1", "range"),
    Mode("binance", "fill", "/fapi/v1/order", ("executedQty",), "order", "NaN", "not_finite"),
    Mode("hyperliquid", "mark", "/info", (1, "*", "markPx"), "market", "NaN", "not_finite", "metaAndAssetCtxs"),
    Mode("hyperliquid", "index", "/info", (1, "*", "oraclePx"), "market", "0", "range", "metaAndAssetCtxs"),
    Mode("hyperliquid", "funding", "/info", (1, "*", "funding"), "market", "-0.2", "range", "metaAndAssetCtxs"),
    Mode("hyperliquid", "bid-price", "/info", ("levels", 0, 0, "px"), "book", "-1", "range", "l2Book"),
    Mode("hyperliquid", "crossed", "/info", ("levels", 0, 0, "px"), "book", "999999", "crossed", "l2Book"),
    Mode("hyperliquid", "empty", "/info", ("levels", 1), "book", [], "empty", "l2Book"),
    Mode("hyperliquid", "book-time", "/info", ("time",), "book", HOUR_AGO, "stale", "l2Book"),
    # ccxt's Precise fails on NaN and Infinity sizes and balances itself: unreadable
    Mode("hyperliquid", "equity", "/info", ("marginSummary", "accountValue"), "account", "NaN", "unreadable", "clearinghouseState"),
    Mode("hyperliquid", "position", "/info", ("assetPositions", "*", "position", "szi"), "account", "Infinity", "unreadable",
         "clearinghouseState"),
    Mode("hyperliquid", "entry", "/info", ("assetPositions", "*", "position", "entryPx"), "account", "-5", "range",
         "clearinghouseState"),
    Mode("hyperliquid", "fill", "/exchange", ("response", "data", "statuses", 0, "filled", "totalSz"), "order", "NaN", "not_finite"),
)

# Values a venue (or a broken proxy) might send where a number belongs; JSON carries NaN and
# Infinity as literals, which ccxt reads back as floats.
SPECIAL: tuple[Any, ...] = (
    None, "", "NaN", math.nan, math.inf, -math.inf, "Infinity", "-1", -1, 0, "0", "-0", "abc", True, [], {}, [1, 2],
    "1e400", "1e30", 1e308, "0x10", " 7 ", "1_000", 2**70, -(2**70), "60000", "0.0001", HOUR_AGO, HOUR_AHEAD,
)
VALUES = st.one_of(
    st.sampled_from(SPECIAL),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.text(max_size=6),
    st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-10**7, max_value=10**7).map(str),
)


class Records(logging.Handler):
    """Every log record's text and extras, to look for secrets in."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(f"{record.getMessage()} {record.__dict__!r}")


@dataclass
class Rig:
    venue: str
    rig: Any
    fuse: CcxtFuse
    secrets: tuple[str, ...]
    metrics: Metrics

    @property
    def chaos(self) -> Any:
        return self.rig.server.state.chaos

    @property
    def market(self) -> str:
        return BTC[self.venue]


class Harness:
    """Both emulators and their fuses, on one event loop of their own for the whole module."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.rigs: dict[str, Rig] = {}
        self._managers: list[AbstractAsyncContextManager[Any]] = []
        self.records = Records()
        self.sequence = 0

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def start(self) -> None:
        # Budgets far above the fuzz's few thousand requests: the venues' rate limits are not under test here.
        for venue, manager in (
            ("binance", binance_rig(timeout_ms=5000, weight_limit=BUDGET)),
            ("hyperliquid", hyperliquid_rig(timeout_ms=5000, weight_per_minute=BUDGET)),
        ):
            rig = self.run(manager.__aenter__())
            rig.fuse.client.alpha_limiter = WeightLimiter(venue, BUDGET, 60.0)
            self._managers.append(manager)
            metrics = Metrics()
            rig.fuse.metrics = metrics
            secrets = (KEY, SECRET) if venue == "binance" else (rig.fuse.settings.wallet_key.reveal(),)
            self.rigs[venue] = Rig(venue, rig, rig.fuse, secrets, metrics)
            # a position to read back: account faults rewrite its fields
            self.run(rig.fuse.submit(OrderRequest(self.client_id(), BTC[venue], Side.BUY, QTY)))
        logging.getLogger().addHandler(self.records)

    def stop(self) -> None:
        logging.getLogger().removeHandler(self.records)
        for manager in reversed(self._managers):
            self.run(manager.__aexit__(None, None, None))
        self.loop.close()

    def client_id(self) -> str:
        self.sequence += 1
        return f"fuzz{self.sequence:04d}-payload"


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    h = Harness()
    try:
        h.start()
        yield h
    finally:
        h.stop()


def _value(bad: Any) -> Any:
    if bad is HOUR_AGO:
        return _ms(-timedelta(hours=1))
    if bad is HOUR_AHEAD:
        return _ms(timedelta(hours=1))
    return bad


def corrupt(rig: Rig, mode: Mode, value: Any, count: int = 20) -> None:
    rig.chaos.clear()
    body: dict[str, Any] = {"kind": "corrupt", "duration_s": 60, "endpoint": mode.endpoint, "count": count,
                            "edits": [{"path": list(mode.path), "value": _value(value)}]}
    if mode.info_type is not None:
        body["info_type"] = mode.info_type
    rig.chaos.add(body)


async def read(rig: Rig, mode: Mode) -> Any:
    """The fuse read that meets ``mode``'s corrupted answer."""
    if mode.read == "market":
        return await rig.fuse.funding_and_marks()
    if mode.read == "book":
        return await rig.fuse.order_book(rig.market, 5)
    return await rig.fuse.account()


def assert_true_values(rig: Rig, result: Any) -> None:
    """Whatever came back from a read could be true."""
    if isinstance(result, OrderBook):
        assert result.bids and result.asks and result.bids[0].price < result.asks[0].price
        for level in (*result.bids, *result.asks):
            assert 0 < level.price <= parse.MAX_PRICE and level.quantity > 0
    elif isinstance(result, AccountSnapshot):
        for b in result.balances:
            assert b.total.is_finite() and b.free.is_finite()
        for p in result.positions:
            assert p.size.is_finite() and p.size != 0 and p.market in rig.fuse.settings.markets
            assert p.entry_price >= 0 and p.mark_price >= 0
        if result.margin is not None:
            assert result.margin.equity.is_finite() and result.margin.maintenance_margin >= 0
    else:
        funding, marks = result
        cap = rig.fuse.spec.funding_rate_cap
        assert set(funding) <= set(marks)  # a market is refused as a whole
        for rate in funding.values():
            assert rate.rate.is_finite() and (cap is None or abs(rate.rate) <= cap)
        for mark in marks.values():
            assert 0 < mark <= parse.MAX_PRICE
        for index in rig.fuse.indexes().values():
            assert 0 < index <= parse.MAX_PRICE


def assert_no_secret(harness: Harness, rig: Rig, *texts: str) -> None:
    for secret in rig.secrets:
        for text in (*texts, *harness.records.texts):
            assert secret not in text and secret.removeprefix("0x") not in text
    harness.records.texts.clear()


READS = [m for m in MODES if m.read != "order"]


@pytest.mark.hypothesis  # the @given case is inner (it runs on the module's loop): mark the test for make test-long
@pytest.mark.parametrize("mode", READS, ids=[m.id for m in READS])
def test_corrupted_reads_end_in_true_values_or_typed_refusals(harness: Harness, mode: Mode) -> None:
    rig = harness.rigs[mode.venue]

    @settings(max_examples=examples(25), suppress_health_check=[HealthCheck.too_slow])
    @given(value=VALUES)
    def case(value: Any) -> None:
        corrupt(rig, mode, value)
        orders = len(rig.chaos.orders)
        text = ""
        try:
            result = harness.run(read(rig, mode))
        except FuseError as exc:  # typed: the only kind allowed out
            text = str(exc)
        else:
            assert_true_values(rig, result)
        finally:
            rig.chaos.clear()
        assert len(rig.chaos.orders) == orders  # a read never sends
        assert_no_secret(harness, rig, text)

    case()


def _refusal_counted(rig: Rig, market: str, check: str) -> float:
    value = rig.metrics.registry.get_sample_value(
        "alpha_venue_payload_refusals_total", {"fuse": rig.fuse.name, "market": market, "check": check}
    )
    return value or 0.0


@pytest.mark.parametrize("mode", READS, ids=[m.id for m in READS])
def test_each_surely_bad_field_is_refused_by_name(harness: Harness, mode: Mode) -> None:
    rig = harness.rigs[mode.venue]
    market = rig.market if mode.read != "account" else "-"
    before = _refusal_counted(rig, market, mode.check)
    corrupt(rig, mode, mode.bad)
    try:
        if mode.read == "market":
            funding, marks = harness.run(read(rig, mode))
            assert rig.market not in marks and rig.market not in funding  # the market is left out, so it ages
            assert rig.market not in rig.fuse.indexes()
            refusal = next(r for r in reversed(rig.fuse.refusals) if rig.market in r.field)
        else:
            with pytest.raises(BadPayloadError) as caught:
                harness.run(read(rig, mode))
            refusal = caught.value
    finally:
        rig.chaos.clear()
    assert refusal.check == mode.check, str(refusal)
    assert refusal.venue == rig.fuse.name and str(refusal).startswith(f"{rig.fuse.name}: venue answer ")
    if mode.read != "account":
        assert rig.market in refusal.field, refusal.field
    assert _refusal_counted(rig, market, mode.check) == before + 1
    assert any("venue payload refused" in t and refusal.field in t for t in harness.records.texts)
    assert_no_secret(harness, rig, str(refusal))
    # the next answer is clean: the market reads again
    assert_true_values(rig, harness.run(read(rig, mode)))


BOOKS = [m for m in MODES if m.read == "book"]


@pytest.mark.parametrize("mode", BOOKS, ids=[m.id for m in BOOKS])
def test_no_order_is_sent_on_a_refused_book(harness: Harness, mode: Mode) -> None:
    """A market order is priced from the book: a refused book stops it before it is sent."""
    rig = harness.rigs[mode.venue]
    orders = len(rig.chaos.orders)
    corrupt(rig, mode, mode.bad)
    try:
        with pytest.raises(BadPayloadError):
            harness.run(rig.fuse.submit(OrderRequest(harness.client_id(), rig.market, Side.BUY, QTY)))
    finally:
        rig.chaos.clear()
    assert len(rig.chaos.orders) == orders


ORDERS = [m for m in MODES if m.read == "order"]


@pytest.mark.parametrize("mode", ORDERS, ids=[m.id for m in ORDERS])
def test_a_refused_order_answer_is_an_unknown_outcome_resolved_by_client_id(harness: Harness, mode: Mode) -> None:
    """Sent, then answered with a value that cannot be true: never read as rejected (nothing placed); asked again."""
    rig = harness.rigs[mode.venue]
    orders = len(rig.chaos.orders)
    cid = harness.client_id()
    corrupt(rig, mode, mode.bad, count=1)
    try:
        with pytest.raises(UnknownOutcomeError) as caught:
            harness.run(rig.fuse.submit(OrderRequest(cid, rig.market, Side.SELL, QTY, reduce_only=True)))
    finally:
        rig.chaos.clear()
    assert caught.value.client_id == cid
    assert len(rig.chaos.orders) == orders + 1  # sent once, not resent
    found = harness.run(rig.fuse.order_status(rig.market, cid))
    assert found.filled == QTY
    assert_no_secret(harness, rig, str(caught.value))
    harness.run(rig.fuse.submit(OrderRequest(harness.client_id(), rig.market, Side.BUY, QTY)))  # the position back


@pytest.mark.hypothesis
@pytest.mark.parametrize("venue", ["binance", "hyperliquid"])
def test_order_answers_fuzzed_are_typed_and_sent_once(harness: Harness, venue: str) -> None:
    rig = harness.rigs[venue]
    (mode,) = [m for m in ORDERS if m.venue == venue]

    @settings(max_examples=examples(12), suppress_health_check=[HealthCheck.too_slow])
    @given(value=VALUES)
    def case(value: Any) -> None:
        orders = len(rig.chaos.orders)
        corrupt(rig, mode, value, count=1)
        side = Side.SELL if len(rig.chaos.orders) % 2 else Side.BUY  # alternate: the position stays small
        text = ""
        try:
            order = harness.run(rig.fuse.submit(OrderRequest(harness.client_id(), rig.market, side, QTY)))
        except FuseError as exc:
            text = str(exc)
            assert isinstance(exc, UnknownOutcomeError)  # it was sent: never "rejected"
        else:
            assert order.filled.is_finite() and 0 <= order.filled <= order.quantity
        finally:
            rig.chaos.clear()
        assert len(rig.chaos.orders) == orders + 1
        assert_no_secret(harness, rig, text)

    case()


def test_the_corrupt_fault_is_refused_when_malformed_and_listed_when_posted(harness: Harness) -> None:
    chaos = harness.rigs["binance"].chaos
    for body, field in (
        ({"kind": "corrupt", "duration_s": 5, "edits": [{"path": ["x"], "value": 1}]}, "endpoint"),
        ({"kind": "corrupt", "duration_s": 5, "endpoint": "/fapi/v1/depth", "edits": []}, "edits"),
        ({"kind": "corrupt", "duration_s": 5, "endpoint": "/fapi/v1/depth", "edits": [{"path": ["x"]}]}, "edits[0]"),
        ({"kind": "latency", "duration_s": 5, "latency_ms": 5, "edits": [{"path": ["x"], "value": 1}]}, "edits"),
    ):
        with pytest.raises(ValueError, match=re.escape(field)):
            chaos.add(body)
    fault = chaos.add({"kind": "corrupt", "duration_s": 5, "endpoint": "/fapi/v1/depth", "count": 2,
                       "edits": [{"path": ["bids", 0, 0], "delete": True}]})
    (listed,) = chaos.listing()
    assert listed["id"] == fault.id and listed["count"] == 2 and listed["edits"] == [{"path": ["bids", 0, 0], "delete": True}]
    chaos.clear()
