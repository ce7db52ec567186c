"""Price sanity: refuse marks that no real market makes (pure).

``PriceGuard.screen`` judges every market snapshot of a view and names each outlier with the
check it failed (``PriceCheck``, the ``check`` label of ``alpha_risk_price_outliers_total``):

* ``value``: a mark or index that is missing, not finite, not positive, or outside
  ``[ABSURD_LOW, ABSURD_HIGH]`` (no asset alpha trades is priced there);
* ``book``: an order book that is empty or one-sided (where the view carries books; a margin
  check's view may carry a book older than its mark, so the book's prices are not compared);
* ``funding``: a funding rate above ``risk.max_funding_rate`` per hour (normalised by the
  rate's own interval);
* ``index``: a mark further than ``risk.max_mark_index_gap`` from the venue's own index;
* ``jump``: a mark that moved more than ``risk.max_price_jump`` per hour of elapsed time
  (never less than one hour's allowance, ``JUMP_FLOOR``) from the last good value of its
  market, unless at least half of the other venues quoting the asset moved the same way (by
  at least half as much): a move every venue makes is the market, not a bad print;
* ``venues``: a mark further than ``risk.max_venue_gap`` from the median of the other venues'
  marks for the same base asset. Only venues that passed the checks above count in the
  median, so one venue printing 1e30 does not make the sane one look wrong; with two venues
  and no other evidence, both are refused (nothing says which one lies).

Gaps to the index and jumps are relative to the reference (``|mark - reference| / reference``);
the gap between venues is symmetric (``max / min - 1``), and the worst venue is refused first,
so with three venues the two that agree are not blamed for the third. The guard keeps the
last good (accepted) mark of each market; a refused mark never becomes the reference, so a
bad print cannot walk the reference away. The screen returns the guard to keep next.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from statistics import median

from alpha.config.schema import RiskLimits
from alpha.domain.market import MarketSnapshot
from alpha.domain.money import ONE
from alpha.domain.portfolio import PortfolioView

ABSURD_LOW = Decimal("1e-12")
ABSURD_HIGH = Decimal("1e12")
JUMP_FLOOR = timedelta(hours=1)  # a jump is allowed at least one hour's max_price_jump, however short the interval
HOUR = Decimal(3600)
USD = "USD"  # inverse perps and USD-quoted markets compare with stablecoin-quoted ones


class PriceCheck(StrEnum):
    """Which sanity check a market's price failed (the outlier metric's ``check`` label)."""

    VALUE = "value"
    BOOK = "book"
    FUNDING = "funding"
    INDEX = "index"
    JUMP = "jump"
    VENUES = "venues"


@dataclass(frozen=True, slots=True)
class PriceOutlier:
    """A market whose data is refused: which check it failed and the numbers, for a person."""

    fuse: str
    market: str
    check: PriceCheck
    detail: str

    @property
    def key(self) -> str:
        return f"{self.fuse}:{self.market}"

    def __str__(self) -> str:
        return f"{self.key}: {self.check.value}: {self.detail}"


@dataclass(frozen=True, slots=True)
class GoodPrice:
    """The last accepted mark of a market and when it was observed."""

    ts: datetime
    mark: Decimal


@dataclass(frozen=True, slots=True)
class PriceScreen:
    """What one screen found: the outliers, and the guard to keep (last good values updated from accepted marks)."""

    outliers: tuple[PriceOutlier, ...]
    guard: PriceGuard

    @property
    def markets(self) -> frozenset[str]:
        """Keys of the refused markets."""
        return frozenset(o.key for o in self.outliers)


@dataclass(frozen=True, slots=True)
class PriceGuard:
    """The last good mark of each market (key ``fuse:market``); immutable, ``screen`` returns the next one."""

    last_good: Mapping[str, GoodPrice] = field(default_factory=dict)

    def screen(self, markets: Mapping[str, MarketSnapshot], limits: RiskLimits, *, quotes: Iterable[str] = ()) -> PriceScreen:
        """Judge every snapshot in ``markets``; ``quotes``: the coins (with USD) whose marks compare across venues."""
        comparable = frozenset((*quotes, USD))
        found: dict[str, PriceOutlier] = {}
        for key, snap in markets.items():
            bad = _own_checks(snap, limits)
            if bad is not None:
                found[key] = bad
        moves = {key: self._move(key, snap) for key, snap in markets.items() if key not in found}
        for key, snap in markets.items():
            move = moves.get(key)
            if move is None:
                continue
            elapsed, change = move
            allowed = limits.max_price_jump * Decimal(int(max(elapsed, JUMP_FLOOR).total_seconds())) / HOUR
            if abs(change) > allowed and not _corroborated(key, snap, change, markets, moves):
                hours = Decimal(int(elapsed.total_seconds())) / HOUR
                found[key] = _outlier(
                    snap, PriceCheck.JUMP,
                    f"mark {snap.mark} moved {change:+.2%} from the last good {self.last_good[key].mark} in {hours:.2f}h "
                    f"(limit {allowed:.2%}) and the other venues did not follow",
                )
        found.update(_venue_outliers({k: s for k, s in markets.items() if k not in found and s.instrument.quote in comparable}, limits))
        last = dict(self.last_good)
        for key, snap in markets.items():
            if key not in found:
                last[key] = GoodPrice(snap.ts, snap.mark)
        outliers = tuple(found[k] for k in markets if k in found)
        return PriceScreen(outliers, replace(self, last_good=last))

    def screen_view(self, view: PortfolioView, limits: RiskLimits) -> PriceScreen:
        """``screen`` every market of ``view``, comparing marks quoted in the view's cash coins."""
        return self.screen(view.markets, limits, quotes=view.cash)

    def _move(self, key: str, snap: MarketSnapshot) -> tuple[timedelta, Decimal] | None:
        """Elapsed time and relative change of the mark since the market's last good value (None: no history)."""
        last = self.last_good.get(key)
        if last is None or last.mark <= 0:
            return None
        return snap.ts - last.ts, snap.mark / last.mark - ONE


def _own_checks(snap: MarketSnapshot, limits: RiskLimits) -> PriceOutlier | None:
    """The first check ``snap`` fails on its own (value, book, funding, index), or None."""
    for name, value in (("mark", snap.mark), ("index", snap.index)):
        if value is None:
            if name == "mark":
                return _outlier(snap, PriceCheck.VALUE, "mark price is missing")
            continue
        if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
            return _outlier(snap, PriceCheck.VALUE, f"{name} price {value!r} is not a positive finite number")
        if not ABSURD_LOW <= value <= ABSURD_HIGH:
            return _outlier(snap, PriceCheck.VALUE, f"{name} price {value} is absurd (outside {ABSURD_LOW} .. {ABSURD_HIGH})")
    book = snap.book
    if book is not None and (not book.bids or not book.asks):
        side = "empty" if not book.bids and not book.asks else ("without bids" if not book.bids else "without asks")
        return _outlier(snap, PriceCheck.BOOK, f"order book is {side}")
    if snap.funding is not None:
        per_hour = abs(snap.funding.rate) / snap.funding.interval_hours
        if per_hour > limits.max_funding_rate:
            return _outlier(
                snap, PriceCheck.FUNDING,
                f"funding {snap.funding.rate} per {snap.funding.interval_hours}h is {per_hour:.4%} per hour (limit {limits.max_funding_rate:.4%})",
            )
    if snap.index is not None:
        gap = abs(snap.mark - snap.index) / snap.index
        if gap > limits.max_mark_index_gap:
            return _outlier(snap, PriceCheck.INDEX, f"mark {snap.mark} is {gap:.2%} from the index {snap.index} (limit {limits.max_mark_index_gap:.2%})")
    return None


def _venue_outliers(pool: Mapping[str, MarketSnapshot], limits: RiskLimits) -> dict[str, PriceOutlier]:
    """Refuse, worst first, each mark too far from the median of the other venues' marks still in ``pool``.

    The gap is symmetric (``max / min - 1``), so two venues that disagree are both refused.
    """
    pool = dict(pool)
    found: dict[str, PriceOutlier] = {}
    while True:
        gaps: dict[str, tuple[Decimal, Decimal]] = {}
        by_base: dict[str, list[MarketSnapshot]] = {}  # peers are of the same base: look only there
        for snap in pool.values():
            by_base.setdefault(snap.instrument.base, []).append(snap)
        for key, snap in pool.items():
            others = [s.mark for s in by_base[snap.instrument.base] if _peer(snap, s)]
            if not others:
                continue
            reference = Decimal(median(others))
            gap = max(snap.mark, reference) / min(snap.mark, reference) - ONE
            if gap > limits.max_venue_gap:
                gaps[key] = (gap, reference)
        if not gaps:
            return found
        worst = max(gaps, key=lambda k: (gaps[k][0], k))
        snap = pool.pop(worst)
        peers = [k for k, s in pool.items() if _peer(snap, s)]
        for key in [worst, *(peers if len(peers) == 1 and peers[0] in gaps else [])]:
            gap, reference = gaps[key]
            bad = snap if key == worst else pool.pop(key)
            found[key] = _outlier(
                bad, PriceCheck.VENUES,
                f"mark {bad.mark} is {gap:.2%} away from {reference}, the median of the other venues (limit {limits.max_venue_gap:.2%})",
            )


def _peer(snap: MarketSnapshot, other: MarketSnapshot) -> bool:
    """Whether ``other`` is another venue's market of the same base asset."""
    return other.fuse != snap.fuse and other.instrument.base == snap.instrument.base


def _corroborated(
    key: str,
    snap: MarketSnapshot,
    change: Decimal,
    markets: Mapping[str, MarketSnapshot],
    moves: Mapping[str, tuple[timedelta, Decimal] | None],
) -> bool:
    """Whether at least half of the other venues with a history moved the same way, by at least half as much."""
    others = [moves[k] for k, s in markets.items() if k != key and _peer(snap, s) and moves.get(k) is not None]
    if not others:
        return False
    same = sum(1 for m in others if m is not None and m[1] * change > 0 and abs(m[1]) * 2 >= abs(change))
    return same * 2 >= len(others)


def _outlier(snap: MarketSnapshot, check: PriceCheck, detail: str) -> PriceOutlier:
    return PriceOutlier(snap.fuse, snap.market, check, detail)


def asset_prices(markets: Iterable[MarketSnapshot], base_asset: str, stablecoins: Iterable[str]) -> dict[str, Decimal]:
    """Value each asset in ``base_asset``: the median mark of its markets quoted in a stablecoin (stablecoins at 1 otherwise)."""
    coins = tuple(stablecoins)
    out = _median_marks(markets, (base_asset, *coins))
    for coin in coins:
        out.setdefault(coin, Decimal(1))
    return out


def _median_marks(markets: Iterable[MarketSnapshot], coins: Iterable[str]) -> dict[str, Decimal]:
    """The median mark of each base asset over its markets quoted in one of ``coins``."""
    quotes = frozenset(coins)
    seen: dict[str, list[Decimal]] = {}
    for snap in markets:
        if snap.instrument.quote in quotes:
            seen.setdefault(snap.instrument.base, []).append(snap.mark)
    return {asset: Decimal(median(values)) for asset, values in seen.items()}


def without_outliers(view: PortfolioView, screen: PriceScreen, stablecoins: Iterable[str]) -> PortfolioView:
    """``view`` with each asset an outlier quotes valued again without the refused marks (markets kept).

    The asset's price is the median of its accepted stablecoin-quoted marks; with none, the
    median of its refused markets' last good marks; with no history either, the view's own
    price is kept (nothing better is known, and the gate refuses new exposure there).
    """
    if not screen.outliers:
        return view
    refused = screen.markets
    coins = (view.base_asset, *stablecoins)
    touched = {view.markets[k].instrument.base for k in refused if k in view.markets}
    accepted = _median_marks((s for k, s in view.markets.items() if k not in refused), coins)
    prices = dict(view.prices)
    for asset in touched:
        if asset in accepted:
            prices[asset] = accepted[asset]
            continue
        past = [
            screen.guard.last_good[k].mark
            for k in sorted(refused)
            if k in screen.guard.last_good and view.markets[k].instrument.base == asset and view.markets[k].instrument.quote in coins
        ]
        if past:
            prices[asset] = Decimal(median(past))
    return replace(view, prices=prices)


__all__ = [
    "ABSURD_HIGH",
    "ABSURD_LOW",
    "JUMP_FLOOR",
    "GoodPrice",
    "PriceCheck",
    "PriceGuard",
    "PriceOutlier",
    "PriceScreen",
    "asset_prices",
    "without_outliers",
]
