"""Independent baselines: what simple rules earn on the same tapes, computed without ``decide()``.

Each baseline holds, per asset, one cash-and-carry of a fixed quantity: long the asset's spot
market and short one perp venue (or nothing: flat). It trades at the recorded marks with the
simulated venues' own cost model (``fuses.sim.book`` walks the same depth model and
``fuses.sim.accounts.fill_costs`` charges the same fee and slippage per execution) and is paid
funding at the recorded settlements with the venues' arithmetic (``funding_amount``: size x
mark x rate at the last mark at or before the settlement). Net PnL is funding minus fees and
slippage plus the mark-to-market of the held legs (the basis); every baseline closes what it
holds at the end, so its exit is charged.

The quantity is the notional the configuration allows for one carry per asset at the first
bar (``carry_notional``) divided by the spot mark there, held constant (but for ``held within
caps``). Baselines:

* ``passive <fuse>``: enter at the first bar, hold to the end (one entry, one exit);
* ``held within caps <fuse>``: the passive carry cut back to its entry notional whenever a
  move takes it over what the caps allow (paying the cut's costs), never topped up: what a
  holder bound by the strategy's caps earns (``passive`` keeps its quantity through any rally,
  its notional and margin need growing past every cap);
* ``best venue (hindsight)``: the passive venue that earned the most;
* ``trailing <N>d``: hold the venue with the highest funding over the trailing N days
  (settled rates only, at or before the decision), switching only when the trailing spread
  over N days pays for the switch; ``trailing <N>d, flat if negative`` also goes flat when the
  best trailing funding is negative and re-enters when it pays the round trip in N days;
* ``perfect foresight``: the path over {flat, each venue} that earns the most funding net of
  every cost, knowing every future rate (dynamic programming over the decision grid): an
  upper bound on the carry, not a strategy (the basis is not foreseen, only accounted).

Decisions are taken on the grid of the asset's settlement times (plus the start and the end).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

from alpha.backtest.source import MarketTape
from alpha.config.schema import StrategyConfig
from alpha.domain.funding import SECONDS_PER_YEAR
from alpha.domain.instruments import Instrument, Side
from alpha.domain.money import ZERO
from fuses.sim.accounts import fill_costs, funding_amount
from fuses.sim.book import DepthModel, build_book, walk
from fuses.sim.markets import make_instrument

FLAT = ""  # the position "no perp held" (and no spot)
DEFAULT_TRAILING = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class CostModel:
    """How one simulated market charges a market order: its instrument (taker fee) and book depth."""

    instrument: Instrument
    depth: DepthModel

    def costs(self, side: Side, quantity: Decimal, mark: Decimal) -> tuple[Decimal, Decimal]:
        """Return ``(fee, slippage)`` of taking ``quantity`` at ``mark``, as the simulated venue charges it."""
        book = build_book(mark, self.instrument, self.depth)
        mid = book.mid or mark
        fee = slippage = ZERO
        for price, qty in walk(book, side, quantity):
            f, s = fill_costs(price, qty, side, mid, self.instrument.taker_fee)
            fee += f
            slippage += s
        return fee, slippage


def cost_model(config: StrategyConfig, tape: MarketTape, reference_price: Decimal) -> CostModel:
    """The cost model of ``tape``'s market on its simulated fuse (the same defaults as ``SimWorld``)."""
    params = config.fuse(tape.fuse).sim
    inst = make_instrument(
        tape.fuse,
        tape.market,
        reference_price,
        maker_fee=params.maker_fee if params else Decimal("0.0002"),
        taker_fee=params.taker_fee if params else Decimal("0.0005"),
    )
    depth = DepthModel(params.spread_bps, params.depth_notional, params.depth_bps, params.levels) if params else DepthModel()
    return CostModel(inst, depth)


def carry_notional(config: StrategyConfig, spot: MarketTape, perps: Sequence[MarketTape]) -> Decimal:
    """Per-leg notional of one carry of ``spot``'s asset the configuration allows (the smallest over its venues).

    The caps ``decide`` sizes a hedge under, with the same headroom: the NAV is split equally
    between the configured assets; of an asset's share, the spot leg takes ``N`` (within the
    spot fuse's ``max_share``) and the perp leg's margin ``N / max_leverage x (1 +
    margin.initial_cushion)`` (within the perp fuse's ``max_share``), together within the share
    less ``idle_buffer``; each venue's gross exposure within ``risk.max_venue_exposure`` of the
    share (both legs count where spot and perp share a venue) and the hedged notional within
    ``risk.max_asset_share`` of the NAV. Like ``decide``, it is sized ``pnl.drift_tolerance``
    below the tightest of these, so that a price move within the tolerance keeps within them.
    """
    nav = config.vault.nav / max(len(config.assets), 1)
    budget = nav * (1 - config.idle_buffer)
    limits = [nav * config.fuse(spot.fuse).max_share, config.risk.max_asset_share * config.vault.nav]
    spot_venue = config.fuse(spot.fuse).venue
    for p in perps:
        fuse = config.fuse(p.fuse)
        per_unit = (1 + config.margin.initial_cushion) / fuse.max_leverage
        legs_on_venue = 2 if fuse.venue == spot_venue else 1
        limits += [nav * fuse.max_share / per_unit, budget / (1 + per_unit), config.risk.max_venue_exposure * nav / legs_on_venue]
    return min(limits) / (1 + config.pnl.drift_tolerance)


@dataclass
class BaselineResult:
    """What one baseline earned on one asset."""

    name: str
    asset: str
    start: datetime
    end: datetime
    nav: Decimal  # the NAV the APR on NAV is measured on (the asset's share of the vault)
    notional: Decimal  # per-leg notional at entry
    quantity: Decimal
    funding: Decimal = ZERO
    fees: Decimal = ZERO
    slippage: Decimal = ZERO
    basis: Decimal = ZERO  # mark-to-market of the legs while held
    exposure: Decimal = ZERO  # notional held x time: the spot leg's value at each interval's start x its length, in years
    switches: int = 0  # trades after the first entry (venue switches, exits, re-entries; the final exit excluded)
    venue: str = ""  # the venue held throughout (passive and hindsight)
    path: list[tuple[datetime, str]] = field(default_factory=list)  # (time, position) at each change

    @property
    def net(self) -> Decimal:
        return self.funding - self.fees - self.slippage + self.basis

    @property
    def years(self) -> Decimal:
        return Decimal(max(int((self.end - self.start).total_seconds()), 1)) / SECONDS_PER_YEAR

    @property
    def apr_on_nav(self) -> Decimal:
        return self.net / self.nav / self.years

    @property
    def mean_notional(self) -> Decimal:
        """The notional held, averaged over the whole period (flat time counts as zero), like the strategy's."""
        return self.exposure / self.years

    @property
    def apr_on_notional(self) -> Decimal:
        """Net PnL per dollar of notional held per year (the time-average notional, as the strategy's is measured)."""
        return self.net / self.exposure if self.exposure > 0 else ZERO

    def as_json(self) -> dict[str, Any]:
        """Amounts to the cent, APRs to 1e-6, times in ISO-8601."""
        cents, ratio = Decimal("0.01"), Decimal("0.000001")
        return {
            "name": self.name,
            "asset": self.asset,
            "venue": self.venue or None,
            "start": self.start.isoformat().replace("+00:00", "Z"),
            "end": self.end.isoformat().replace("+00:00", "Z"),
            "nav": str(self.nav.quantize(cents)),
            "notional": str(self.notional.quantize(cents)),
            "mean_notional": str(self.mean_notional.quantize(cents)),
            "net_pnl": str(self.net.quantize(cents)),
            "funding": str(self.funding.quantize(cents)),
            "fees": str(self.fees.quantize(cents)),
            "slippage": str(self.slippage.quantize(cents)),
            "basis": str(self.basis.quantize(cents)),
            "apr_on_nav": str(self.apr_on_nav.quantize(ratio)),
            "apr_on_notional": str(self.apr_on_notional.quantize(ratio)),
            "switches": self.switches,
        }


@dataclass
class AssetTape:
    """One asset's markets for the baselines: its spot tape, its perp venues and the decision grid."""

    asset: str
    spot: MarketTape
    perps: dict[str, MarketTape]  # fuse name -> perp tape, in configuration order
    costs: dict[str, CostModel]  # fuse name -> cost model of its market (the spot under spot.fuse)
    grid: list[datetime]
    quantity: Decimal
    notional: Decimal
    nav: Decimal
    cap: Decimal = ZERO  # the most notional the caps allow (``notional`` is this less the drift headroom); 0: none
    _cost_cache: dict[tuple[str, Side, Decimal], tuple[Decimal, Decimal]] = field(default_factory=dict)

    def cost(self, fuse: str, side: Side, t: datetime) -> tuple[Decimal, Decimal]:
        """``(fee, slippage)`` of trading the carry's quantity on ``fuse`` at ``t``."""
        tape = self.spot if fuse == self.spot.fuse else self.perps[fuse]
        mark = tape.mark_at(t)
        assert mark is not None
        key = (fuse, side, mark)
        if key not in self._cost_cache:
            self._cost_cache[key] = self.costs[fuse].costs(side, self.quantity, mark)
        return self._cost_cache[key]

    def transition(self, old: str, new: str, t: datetime) -> tuple[Decimal, Decimal]:
        """``(fee, slippage)`` of moving the carry from position ``old`` to ``new`` at ``t``."""
        fee = slip = ZERO
        if old == new:
            return fee, slip
        legs: list[tuple[str, Side]] = []
        if old != FLAT:
            legs.append((old, Side.BUY))  # buy back the short perp
        if new != FLAT:
            legs.append((new, Side.SELL))
        if FLAT in (old, new):
            legs.append((self.spot.fuse, Side.BUY if old == FLAT else Side.SELL))
        for fuse, side in legs:
            f, s = self.cost(fuse, side, t)
            fee += f
            slip += s
        return fee, slip

    def step(self, position: str, t0: datetime, t1: datetime) -> tuple[Decimal, Decimal]:
        """``(funding, basis)`` earned holding ``position`` over ``(t0, t1]``."""
        if position == FLAT:
            return ZERO, ZERO
        perp = self.perps[position]
        funding = ZERO
        lo = bisect.bisect_right(perp.funding_times, t0)
        hi = bisect.bisect_right(perp.funding_times, t1)
        for rec in perp.funding[lo:hi]:
            mark = perp.mark_at(rec.ts)
            assert mark is not None
            funding += funding_amount(-self.quantity, mark, rec.rate)
        s0, s1, p0, p1 = self.spot.mark_at(t0), self.spot.mark_at(t1), perp.mark_at(t0), perp.mark_at(t1)
        assert s0 is not None and s1 is not None and p0 is not None and p1 is not None
        return funding, self.quantity * ((s1 - s0) - (p1 - p0))

    def trailing(self, fuse: str, t: datetime, window: timedelta) -> Decimal:
        """Sum of ``fuse``'s settled rates in ``(t - window, t]``: funding per unit of notional over the window."""
        perp = self.perps[fuse]
        lo = bisect.bisect_right(perp.funding_times, t - window)
        hi = bisect.bisect_right(perp.funding_times, t)
        return sum((r.rate for r in perp.funding[lo:hi]), ZERO)


def asset_tapes(config: StrategyConfig, tapes: Sequence[MarketTape], start: datetime, end: datetime) -> list[AssetTape]:
    """Group the tapes by asset (those with a spot market and at least one perp) and build the grid."""
    out: list[AssetTape] = []
    for asset in config.assets:
        spot = next((t for t in tapes if t.asset == asset and not t.is_perp), None)
        perps = [t for t in tapes if t.asset == asset and t.is_perp]
        if spot is None or not perps:
            continue
        first = spot.mark_at(start)
        if first is None:
            continue
        notional = carry_notional(config, spot, perps)
        lot = cost_model(config, spot, first).instrument.lot_step
        quantity = (notional / first / lot).to_integral_value(rounding=ROUND_DOWN) * lot
        costs = {spot.fuse: cost_model(config, spot, first)}
        for p in perps:
            mark = p.mark_at(start) or first
            costs[p.fuse] = cost_model(config, p, mark)
        times = {start, end}
        for p in perps:
            lo, hi = bisect.bisect_right(p.funding_times, start), bisect.bisect_right(p.funding_times, end)
            times.update(p.funding_times[lo:hi])
        nav = config.vault.nav / max(len(config.assets), 1)
        cap = notional * (1 + config.pnl.drift_tolerance)
        out.append(AssetTape(asset, spot, {p.fuse: p for p in perps}, costs, sorted(times), quantity, quantity * first, nav, cap))
    return out


def _follow(a: AssetTape, name: str, positions: Sequence[str]) -> BaselineResult:
    """Account a path of positions (one per grid interval, then flat at the end)."""
    r = BaselineResult(name, a.asset, a.grid[0], a.grid[-1], a.nav, a.notional, a.quantity)
    held = FLAT
    entered = False
    for k in range(len(a.grid) - 1):
        t0, t1 = a.grid[k], a.grid[k + 1]
        new = positions[k]
        if new != held:
            fee, slip = a.transition(held, new, t0)
            r.fees += fee
            r.slippage += slip
            r.switches += 1 if entered else 0
            entered = True
            r.path.append((t0, new))
            held = new
        funding, basis = a.step(held, t0, t1)
        r.funding += funding
        r.basis += basis
        if held != FLAT:
            mark = a.spot.mark_at(t0)
            assert mark is not None
            r.exposure += a.quantity * mark * Decimal(int((t1 - t0).total_seconds())) / SECONDS_PER_YEAR
    fee, slip = a.transition(held, FLAT, a.grid[-1])
    r.fees += fee
    r.slippage += slip
    return r


def passive(a: AssetTape, fuse: str) -> BaselineResult:
    """Short ``fuse``'s perp against spot from the first bar to the end."""
    r = _follow(a, f"passive {fuse}", [fuse] * (len(a.grid) - 1))
    r.venue = fuse
    return r


def held_within_caps(a: AssetTape, fuse: str) -> BaselineResult:
    """The passive carry on ``fuse`` held as a user bound by the strategy's caps would hold it.

    Entered like ``passive`` (same quantity, same costs); whenever the notional (the spot leg at
    its mark) is over what the caps allow (``a.cap``), both legs are cut back to the entry
    notional, paying the costs of the cut; it is never topped up. ``passive`` keeps its quantity
    through any rally: its notional, margin and venue exposure then grow past every cap, which
    no strategy under those caps may match; this one answers "did the decisions beat holding
    still under the same mandate?".
    """
    spot, perp = a.spot, a.perps[fuse]
    lot = a.costs[spot.fuse].instrument.lot_step
    q = a.quantity
    r = BaselineResult(f"held within caps {fuse}", a.asset, a.grid[0], a.grid[-1], a.nav, a.notional, q, venue=fuse)

    def trade(qty: Decimal, spot_side: Side, t: datetime) -> None:
        for f, side in ((spot.fuse, spot_side), (fuse, Side.SELL if spot_side is Side.BUY else Side.BUY)):
            mark = (spot if f == spot.fuse else perp).mark_at(t)
            assert mark is not None
            fee, slip = a.costs[f].costs(side, qty, mark)
            r.fees += fee
            r.slippage += slip

    trade(q, Side.BUY, a.grid[0])
    r.path.append((a.grid[0], fuse))
    for k in range(len(a.grid) - 1):
        t0, t1 = a.grid[k], a.grid[k + 1]
        s0, s1, p0, p1 = spot.mark_at(t0), spot.mark_at(t1), perp.mark_at(t0), perp.mark_at(t1)
        assert s0 is not None and s1 is not None and p0 is not None and p1 is not None
        if a.cap > 0 and q * s0 > a.cap:
            kept = (a.notional / s0 / lot).to_integral_value(rounding=ROUND_DOWN) * lot
            if kept < q:
                trade(q - kept, Side.SELL, t0)
                q = kept
                r.switches += 1
        lo = bisect.bisect_right(perp.funding_times, t0)
        hi = bisect.bisect_right(perp.funding_times, t1)
        for rec in perp.funding[lo:hi]:
            mark = perp.mark_at(rec.ts)
            assert mark is not None
            r.funding += funding_amount(-q, mark, rec.rate)
        r.basis += q * ((s1 - s0) - (p1 - p0))
        r.exposure += q * s0 * Decimal(int((t1 - t0).total_seconds())) / SECONDS_PER_YEAR
    if q > 0:
        trade(q, Side.SELL, a.grid[-1])
    return r


def trailing_positions(a: AssetTape, window: timedelta = DEFAULT_TRAILING, *, flat_if_negative: bool = False) -> list[str]:
    """The trailing rule's position for each grid interval, decided from settled rates at or before its start."""
    held = FLAT
    out: list[str] = []
    for t in a.grid[:-1]:
        trail = {f: a.trailing(f, t, window) for f in a.perps}
        best = max(trail, key=lambda f: trail[f])  # ties: the first venue in configuration order
        mark = a.spot.mark_at(t)
        assert mark is not None
        value = a.quantity * mark  # the carry's notional now

        def cost(old: str, new: str, when: datetime = t) -> Decimal:
            fee, slip = a.transition(old, new, when)
            return fee + slip

        if held == FLAT:
            if not out:  # the first bar: the carry rule enters (the flat variant only on non-negative funding)
                held = best if not flat_if_negative or trail[best] >= 0 else FLAT
            elif trail[best] >= 0 and trail[best] * value > cost(FLAT, best) + cost(best, FLAT):
                held = best  # re-enter when the trailing funding pays the round trip within the window
        elif flat_if_negative and trail[best] < 0:
            held = FLAT
        elif best != held and (trail[best] - trail[held]) * value > cost(held, best):
            held = best
        out.append(held)
    return out


def trailing(a: AssetTape, window: timedelta = DEFAULT_TRAILING, *, flat_if_negative: bool = False) -> BaselineResult:
    """The trailing-``window`` best-venue rule (optionally going flat on negative trailing funding)."""
    days = int(window.total_seconds() // 86400)
    name = f"trailing {days}d" + (", flat if negative" if flat_if_negative else "")
    return _follow(a, name, trailing_positions(a, window, flat_if_negative=flat_if_negative))


def perfect_foresight(a: AssetTape) -> BaselineResult:
    """The path over {flat, each venue} that earns the most funding net of every cost (dynamic programming).

    The path is chosen on funding and costs only, then accounted like every other baseline
    (its basis included): chosen on the basis too, it would trade the noise between venues'
    recorded closes in hindsight, which says nothing about what the carry could earn.
    """
    states = [FLAT, *a.perps]
    value: dict[str, Decimal] = {s: (ZERO if s == FLAT else Decimal("-Infinity")) for s in states}
    back: list[dict[str, str]] = []
    for k in range(len(a.grid) - 1):
        t0, t1 = a.grid[k], a.grid[k + 1]
        nxt: dict[str, Decimal] = {}
        choice: dict[str, str] = {}
        for s in states:
            funding, _basis = a.step(s, t0, t1)
            best_prev, best_v = FLAT, Decimal("-Infinity")
            for p in states:
                if value[p].is_infinite():
                    continue
                fee, slip = a.transition(p, s, t0)
                v = value[p] - fee - slip
                if v > best_v or (v == best_v and p == s):  # ties: stay
                    best_prev, best_v = p, v
            nxt[s] = best_v + funding
            choice[s] = best_prev
        back.append(choice)
        value = nxt
    end = a.grid[-1]
    final = max(states, key=lambda s: value[s] - sum(a.transition(s, FLAT, end), ZERO))
    positions: list[str] = []
    s = final
    for choice in reversed(back):
        positions.append(s)
        s = choice[s]
    positions.reverse()
    return _follow(a, "perfect foresight", positions)


def baselines(
    config: StrategyConfig,
    tapes: Sequence[MarketTape],
    start: datetime,
    end: datetime,
    *,
    window: timedelta = DEFAULT_TRAILING,
) -> list[BaselineResult]:
    """Every baseline for every asset of ``config`` over ``[start, end]``."""
    out: list[BaselineResult] = []
    for a in asset_tapes(config, tapes, start, end):
        if len(a.grid) < 2 or a.quantity <= 0:
            continue
        carries = [passive(a, f) for f in a.perps]
        best = max(carries, key=lambda r: r.net)
        out += carries
        out += [held_within_caps(a, f) for f in a.perps]
        out.append(replace(best, name="best venue (hindsight)", path=list(best.path)))
        out.append(trailing(a, window))
        out.append(trailing(a, window, flat_if_negative=True))
        out.append(perfect_foresight(a))
    return out


def baseline_lines(results: Sequence[BaselineResult]) -> list[str]:
    """A text table of the baselines."""
    head = f"{'baseline':34} {'asset':5} {'net PnL':>14} {'funding':>14} {'fees+slip':>12} {'basis':>10} {'APR/NAV':>8} {'APR/notional':>12} {'switches':>8}"
    rows = [head]
    for r in results:
        name = r.name + (f" ({r.venue})" if r.venue and r.venue not in r.name else "")
        rows.append(
            f"{name:34} {r.asset:5} {r.net:>14,.2f} {r.funding:>14,.2f} {r.fees + r.slippage:>12,.2f} {r.basis:>10,.2f}"
            f" {float(r.apr_on_nav) * 100:>7.2f}% {float(r.apr_on_notional) * 100:>11.2f}% {r.switches:>8}"
        )
    return rows

