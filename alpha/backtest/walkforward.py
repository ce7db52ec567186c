"""Walk-forward evaluation: fit the strategy's parameters on a past window, test them on the next.

The history is cut into rolling windows: ``train`` then ``test`` (defaults 180 and 90 days),
moved forward by ``test`` until the data ends, so every test window is out of sample and the
test windows tile the history after the first training window. In each window every point of
a parameter grid (dotted strategy-config paths, e.g. ``thresholds.entry_min_net_apr``) is
replayed on the training window through the ordinary backtest runner (``replay``: the daemon's
steps); the point with the best net PnL there is chosen (ties: fewer rebalances, then the
earlier grid point, i.e. the more conservative), and replayed alone on the test window, from
a flat book with the configured NAV. Each test window also gets the independent baselines
(``alpha.backtest.baselines``) on the same tapes.

What is compared, per window: on the whole vault, the strategy's NAV change against each
baseline's net PnL (funding - fees - slippage + basis), both as APR on the vault's NAV, and
the same on the carry alone (funding - fees - slippage: recorded closes of different venues
are not synchronous, so the basis of a multi-venue book is partly noise); per
asset, the carry (funding - fees - slippage on the asset's markets) of each, as APR on the
asset's share of the NAV; per venue, the funding the strategy and the passive carry earned
there. Each replay also keeps its daily NAV (``RunFigures.daily_nav``): the test windows' NAV,
chained end to end (``WalkForward.joined_nav``), gives the report its out-of-sample volatility,
Sortino, drawdowns and monthly returns.

Every (window, grid point) training replay, every test replay and every window's baselines is
a job (``Job``: the configuration and span by value, the data directory by path) run by
``alpha.backtest.sweep``: in local worker processes by default (one per CPU), in this process
with ``workers=1``, or on a Dask cluster given its scheduler's address. The jobs are pure
functions of their arguments and are collected by position, so every engine gives the same
figures, to the last Decimal digit.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from alpha.backtest.baselines import BaselineResult, baselines
from alpha.backtest.runner import replay
from alpha.backtest.source import MarketTape, data_location, load_tapes
from alpha.backtest.sweep import collect, executor, run_job
from alpha.config.schema import StrategyConfig
from alpha.config.types import format_duration, parse_duration
from alpha.data.canonical import funding_path, price_path
from alpha.domain.funding import SECONDS_PER_YEAR
from alpha.domain.money import ZERO
from fuses.sim.markets import parse_symbol

DEFAULT_TRAIN = timedelta(days=180)
DEFAULT_TEST = timedelta(days=90)
# Entry hurdle (net of the amortised round trip) and prior holding (the expected holding before the history shows how persistent
# funding is; also the horizon a venue switch must pay within), conservative first; points a
# configuration does not have are dropped.
DEFAULT_GRID: dict[str, tuple[str, ...]] = {
    "thresholds.entry_min_net_apr": ("0.02", "0.00"),
    "thresholds.holding_period": ("14d", "30d"),
}


class GridError(ValueError):
    """A ``--grid`` item or override that cannot be applied (the message says which and why)."""


def parse_grid(items: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Read ``KEY=V1,V2,...`` items into an ordered grid."""
    grid: dict[str, tuple[str, ...]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        parts = tuple(v.strip() for v in values.split(",") if v.strip())
        if not sep or not key.strip() or not parts:
            raise GridError(f"--grid {item!r}: expected KEY=V1,V2,... (e.g. thresholds.entry_min_net_apr=0.02,0.05)")
        grid[key.strip()] = parts
    return grid


def _has_path(data: Any, path: str) -> bool:
    for part in path.split("."):
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list | tuple):
            data = next((x for x in data if isinstance(x, dict) and x.get("name") == part), None)
            if data is None:
                return False
        else:
            return False
    return True


def apply_overrides(config: StrategyConfig, overrides: Mapping[str, str]) -> StrategyConfig:
    """Return ``config`` with each dotted path set to its value, validated again (fuses by name: ``fuses.perp.max_leverage``)."""
    data: dict[str, Any] = config.model_dump()
    for path, value in overrides.items():
        node: Any = data
        parts = path.split(".")
        for i, part in enumerate(parts[:-1]):
            if isinstance(node, list | tuple):
                found = next((x for x in node if isinstance(x, dict) and x.get("name") == part), None)
                if found is None:
                    raise GridError(f"{path}: no fuse named {part!r}")
                node = found
            elif isinstance(node, dict) and isinstance(node.get(part), dict | list | tuple):
                node = node[part]
            elif isinstance(node, dict) and node.get(part) is None and part in node:
                node[part] = {}
                node = node[part]
            else:
                raise GridError(f"{path}: the strategy file has no section {'.'.join(parts[: i + 1])!r}")
        if not isinstance(node, dict) or parts[-1] not in node:
            raise GridError(f"{path}: the strategy file has no field {path!r}")
        node[parts[-1]] = value
    try:
        return StrategyConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise GridError(f"{dict(overrides)}: {where}: {first['msg']}") from None


@dataclass(frozen=True, slots=True)
class GridPoint:
    """One combination of grid values and the configuration it gives."""

    values: dict[str, str]
    config: StrategyConfig

    def label(self) -> str:
        return " ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in self.values.items()) or "(as configured)"


def grid_points(config: StrategyConfig, grid: Mapping[str, Sequence[str]] | None) -> tuple[list[GridPoint], list[str]]:
    """Every valid combination of ``grid`` (default ``DEFAULT_GRID``), in order; and why each other one was dropped."""
    if grid is None:
        data = config.model_dump()
        grid = {k: v for k, v in DEFAULT_GRID.items() if _has_path(data, k)}
    else:
        data = config.model_dump()
        missing = [k for k in grid if not _has_path(data, k)]
        if missing:
            raise GridError(f"--grid {missing[0]}: the strategy file has no field {missing[0]!r}")
    combos: list[dict[str, str]] = [{}]
    for key, values in grid.items():
        combos = [{**c, key: v} for c in combos for v in values]
    points: list[GridPoint] = []
    dropped: list[str] = []
    for combo in combos:
        try:
            points.append(GridPoint(combo, apply_overrides(config, combo)))
        except GridError as exc:
            dropped.append(str(exc))
    if not points:
        raise GridError("no grid point is a valid configuration: " + "; ".join(dropped[:3]))
    return points, dropped


@dataclass(frozen=True, slots=True)
class Window:
    """A training window ``[train_start, test_start)`` and the test window after it, ``[test_start, test_end]``."""

    train_start: datetime
    test_start: datetime
    test_end: datetime


def rolling_windows(start: datetime, end: datetime, train: timedelta, test: timedelta) -> list[Window]:
    """Windows of ``train`` then ``test``, moved by ``test``; the last test window may be shorter (at least half)."""
    out: list[Window] = []
    t = start
    while t + train + test / 2 <= end:
        out.append(Window(t, t + train, min(t + train + test, end)))
        t += test
    return out


@dataclass(frozen=True, slots=True)
class RunFigures:
    """What one replay of the strategy earned (amounts in the base asset)."""

    net_pnl: Decimal
    funding: Decimal
    fees: Decimal
    slippage: Decimal
    rebalances: int
    by_market: dict[tuple[str, str], tuple[Decimal, Decimal, Decimal]]
    mean_notional: Decimal = ZERO  # time-average gross (long-side) exposure: the notional deployed
    # (ISO instant, NAV): the start with the initial NAV, then the last sample of each UTC day
    # (small and picklable: it travels back from the workers with the rest).
    daily_nav: tuple[tuple[str, Decimal], ...] = ()


# Tapes read in this process, by data directory, the markets read and the files' sizes and
# modification times (a long-lived Dask worker rereads a file that changed); the last few.
_TapesKey = tuple[str, tuple[tuple[str, str], ...], tuple[tuple[str, int, int] | None, ...]]
_TAPES: dict[_TapesKey, list[MarketTape]] = {}
_TAPES_MAX = 4
# One job at a time per process (a Dask worker may run several threads): the jobs are CPU-bound
# Python, so threads would only contend for the GIL, and the decision's caches are per process.
_JOB_LOCK = threading.Lock()


def _stat(path: Path) -> tuple[str, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return str(path), st.st_mtime_ns, st.st_size


def _tapes_for(config: StrategyConfig, data_dir: Path) -> list[MarketTape]:
    """The tapes of ``config`` from ``data_dir``, read once per process while the files are unchanged."""
    places = tuple(data_location(config, f.name, m) for f in config.enabled_fuses for m in f.markets)
    files = tuple(_stat(p) for v, s in places for p in (funding_path(data_dir, v, s), price_path(data_dir, v, s)))
    key = (str(data_dir), places, files)
    tapes = _TAPES.pop(key, None)
    if tapes is None:
        tapes = load_tapes(config, data_dir)
        while len(_TAPES) >= _TAPES_MAX:
            del _TAPES[next(iter(_TAPES))]
    _TAPES[key] = tapes  # most recently used last
    return tapes


def run_strategy(config: StrategyConfig, tapes: list[MarketTape], start: datetime, end: datetime) -> RunFigures:
    """Replay the strategy over ``[start, end]`` and keep its figures."""
    r = asyncio.run(replay(config, tapes, start, end))
    mean = sum((x.gross for x in r.samples), ZERO) / len(r.samples) if r.samples else ZERO
    closes = {s.ts.date(): (s.ts, s.nav) for s in r.samples}  # the last sample of each day wins
    daily = ((_iso(start), r.initial_nav), *((_iso(t), nav) for t, nav in closes.values()))
    return RunFigures(r.final_nav - r.initial_nav, r.funding, r.fees, r.slippage, r.rebalances, dict(r.by_market), mean, daily)


@dataclass(frozen=True, slots=True)
class Job:
    """One replay (or one window's baselines): the configuration and span by value, the data by path.

    ``data_dir`` is absolute and must name the same files on every worker that runs the job.
    """

    config: StrategyConfig
    data_dir: str
    start: datetime
    end: datetime


def replay_job(job: Job) -> RunFigures:
    """The strategy's figures over the job's span (runs on a worker)."""
    with _JOB_LOCK:
        return run_strategy(job.config, _tapes_for(job.config, Path(job.data_dir)), job.start, job.end)


def baselines_job(job: Job) -> list[BaselineResult]:
    """The independent baselines over the job's span (runs on a worker)."""
    with _JOB_LOCK:
        return baselines(job.config, _tapes_for(job.config, Path(job.data_dir)), job.start, job.end)


@dataclass
class WindowResult:
    """One window: the fit on its training part, the test of the chosen point and the baselines."""

    window: Window
    train: list[RunFigures]  # one per grid point, in grid order
    chosen: int
    test: RunFigures
    baselines: list[BaselineResult] = field(default_factory=list)


def _years(start: datetime, end: datetime) -> Decimal:
    return Decimal(max(int((end - start).total_seconds()), 1)) / SECONDS_PER_YEAR


def choose(figures: Sequence[RunFigures]) -> int:
    """The grid point with the best training net PnL (to the cent); ties: fewer rebalances, then the earlier point."""
    cents = Decimal("0.01")
    return min(range(len(figures)), key=lambda i: (-figures[i].net_pnl.quantize(cents), figures[i].rebalances, i))


@dataclass
class WalkForward:
    """A walk-forward evaluation of one strategy file over one data directory."""

    config: StrategyConfig
    data_dir: Path
    points: list[GridPoint]
    train: timedelta = DEFAULT_TRAIN
    test: timedelta = DEFAULT_TEST
    workers: int | None = None  # local processes; None: one per CPU; 1: in this process, in order
    scheduler: str | None = None  # a Dask scheduler's address (tcp://host:port): run the jobs there
    results: list[WindowResult] = field(default_factory=list)

    def run(self, start: datetime, end: datetime) -> list[WindowResult]:
        """Fit and test on every window of ``[start, end]``; ``SweepError`` if a job fails or cannot be run."""
        windows = rolling_windows(start, end, self.train, self.test)
        if not windows:
            return self.results
        data = str(Path(self.data_dir).resolve())
        jobs = len(windows) * (len(self.points) + 2)
        with executor(jobs, self.workers, self.scheduler) as ex:

            def submit(fn: Callable[[Job], Any], config: StrategyConfig, a: datetime, b: datetime, what: str) -> tuple[Future[Any], str]:
                return ex.submit(run_job, fn, Job(config, data, a, b), what), what

            # Every training replay and every window's baselines first, then each window's test
            # as soon as its fit is known; collected by position, never in completion order.
            train = [
                [submit(replay_job, p.config, w.train_start, w.test_start, f"training {_span(w.train_start, w.test_start)}, {p.label()}") for p in self.points]
                for w in windows
            ]
            bases = [submit(baselines_job, self.config, w.test_start, w.test_end, f"baselines {_span(w.test_start, w.test_end)}") for w in windows]
            fits: list[tuple[list[RunFigures], int, tuple[Future[Any], str]]] = []
            for w, futures in zip(windows, train, strict=True):
                figures: list[RunFigures] = [collect(f, what) for f, what in futures]
                best = choose(figures)
                label = f"test {_span(w.test_start, w.test_end)}, {self.points[best].label()}"
                fits.append((figures, best, submit(replay_job, self.points[best].config, w.test_start, w.test_end, label)))
            for w, (figures, best, (test, what)), (base, base_what) in zip(windows, fits, bases, strict=True):
                self.results.append(WindowResult(w, figures, best, collect(test, what), collect(base, base_what)))
        return self.results

    # ------------------------------------------------------------------ figures

    @property
    def nav(self) -> Decimal:
        return self.config.vault.nav

    def _asset_share(self) -> Decimal:
        return self.nav / max(len(self.config.assets), 1)

    def baseline_names(self) -> list[str]:
        """The portfolio baselines compared, in report order."""
        seen: dict[str, None] = {}
        for r in self.results:
            for b in r.baselines:
                seen.setdefault(b.name, None)
        return list(seen)

    def joined_nav(self) -> list[tuple[datetime, Decimal]]:
        """The strategy's NAV over the test windows only, end to end: each window's returns chained onto the last.

        Starts at the configured NAV on the first test window's start; each window's daily NAV
        (``RunFigures.daily_nav``) is scaled by the joined NAV it starts from over its own
        initial NAV. Empty if a window kept no daily NAV.
        """
        if not self.results or any(not r.test.daily_nav for r in self.results):
            return []
        points = [(self.results[0].window.test_start, self.nav)]
        for r in self.results:
            (_, initial), *days = r.test.daily_nav
            base = points[-1][1]
            points += [(datetime.fromisoformat(t), base * nav / initial if initial > 0 else ZERO) for t, nav in days]
        return points

    def window_figures(self, r: WindowResult) -> dict[str, Any]:
        """One window as JSON: the chosen point, the strategy's and every baseline's APR, per asset and venue."""
        w = r.window
        years = _years(w.test_start, w.test_end)
        share = self._asset_share()
        portfolio: dict[str, Decimal] = {}
        for b in r.baselines:
            portfolio[b.name] = portfolio.get(b.name, ZERO) + b.net
        assets = []
        for asset in sorted({b.asset for b in r.baselines}):
            carry = ZERO
            venues = []
            for (_fuse, market), (funding, fees, slip) in r.test.by_market.items():
                if parse_symbol(market).base == asset:
                    carry += funding - fees - slip
            mine = [b for b in r.baselines if b.asset == asset]
            for b in mine:
                if b.name.startswith("passive "):
                    funding = sum((v[0] for k, v in r.test.by_market.items() if k[0] == b.venue and parse_symbol(k[1]).base == asset), ZERO)
                    venues.append(
                        {
                            "venue": b.venue,
                            "strategy_funding": _money(funding),
                            "passive_funding": _money(b.funding),
                            "passive_apr": _ratio((b.net - b.basis) / share / years),
                        }
                    )
            assets.append(
                {
                    "asset": asset,
                    "strategy_apr": _ratio(carry / share / years),
                    "baselines_apr": {b.name: _ratio((b.net - b.basis) / share / years) for b in mine},
                    "venues": venues,
                }
            )
        return {
            "train_start": _iso(w.train_start),
            "test_start": _iso(w.test_start),
            "test_end": _iso(w.test_end),
            "chosen": self.points[r.chosen].values,
            "train_net_pnl": [_money(f.net_pnl) for f in r.train],
            "strategy": {
                "net_pnl": _money(r.test.net_pnl),
                "net_apr": _ratio(r.test.net_pnl / self.nav / years),
                "mean_notional": _money(r.test.mean_notional),
                "net_apr_on_notional": _ratio(r.test.net_pnl / r.test.mean_notional / years) if r.test.mean_notional > 0 else None,
                "funding": _money(r.test.funding),
                "fees": _money(r.test.fees),
                "slippage": _money(r.test.slippage),
                "rebalances": r.test.rebalances,
            },
            "baselines_apr": {k: _ratio(v / self.nav / years) for k, v in portfolio.items()},
            "baselines_apr_on_notional": {k: _ratio(v / e) if (e := sum((b.exposure for b in r.baselines if b.name == k), ZERO)) > 0 else None for k, v in portfolio.items()},
            "baselines_switches": {b.name + " " + b.asset: b.switches for b in r.baselines if not b.name.startswith("passive")},
            "assets": assets,
        }

    def aggregate(self) -> dict[str, Any]:
        """Over every test window: APRs on NAV and the share of windows where the strategy is at least each baseline."""
        if not self.results:
            return {"windows": 0}
        years = sum((_years(r.window.test_start, r.window.test_end) for r in self.results), ZERO)
        strategy = sum((r.test.net_pnl for r in self.results), ZERO)
        names = self.baseline_names()
        totals = {n: ZERO for n in names}
        deployed = {n: ZERO for n in names}  # notional x years
        at_least = {n: 0 for n in names}
        for r in self.results:
            per: dict[str, Decimal] = {}
            for b in r.baselines:
                per[b.name] = per.get(b.name, ZERO) + b.net
                deployed[b.name] += b.exposure
            for n in names:
                totals[n] += per.get(n, ZERO)
                at_least[n] += 1 if r.test.net_pnl >= per.get(n, ZERO) else 0
        carry = {n: ZERO for n in names}
        carry_at_least = {n: 0 for n in names}
        mine = ZERO
        for r in self.results:
            own = r.test.funding - r.test.fees - r.test.slippage
            mine += own
            theirs: dict[str, Decimal] = {}
            for b in r.baselines:
                theirs[b.name] = theirs.get(b.name, ZERO) + b.net - b.basis
            for n in names:
                carry[n] += theirs.get(n, ZERO)
                carry_at_least[n] += 1 if own >= theirs.get(n, ZERO) else 0
        used = sum((r.test.mean_notional * _years(r.window.test_start, r.window.test_end) for r in self.results), ZERO)
        return {
            "windows": len(self.results),
            "test_years": _ratio(years),
            "strategy_apr": _ratio(strategy / self.nav / years),
            "baselines_apr": {n: _ratio(totals[n] / self.nav / years) for n in names},
            "strategy_apr_on_notional": _ratio(strategy / used) if used > 0 else None,
            "baselines_apr_on_notional": {n: _ratio(totals[n] / deployed[n]) if deployed[n] > 0 else None for n in names},
            "strategy_at_least": {n: at_least[n] / len(self.results) for n in names},
            # The same without the basis (funding - fees - slippage): what the carry itself earned.
            "strategy_carry_apr": _ratio(mine / self.nav / years),
            "baselines_carry_apr": {n: _ratio(carry[n] / self.nav / years) for n in names},
            "strategy_carry_at_least": {n: carry_at_least[n] / len(self.results) for n in names},
        }

    def as_json(self) -> dict[str, Any]:
        """The whole evaluation as JSON."""
        return {
            "vault": self.config.vault.name,
            "nav": _money(self.nav),
            "train": format_duration(self.train),
            "test": format_duration(self.test),
            "grid": [p.values for p in self.points],
            "windows": [self.window_figures(r) for r in self.results],
            "aggregate": self.aggregate(),
        }

    def lines(self) -> list[str]:
        """The evaluation as a text table: one row per test window, then per asset, then the aggregate."""
        names = self.baseline_names()
        short = {n: n.replace("held within caps ", "C:").replace("passive ", "P:").replace("trailing ", "T").replace(", flat if negative", "/flat").replace("perfect foresight", "PF").replace("best venue (hindsight)", "best(hindsight)") for n in names}
        head = f"{'test window':23} {'chosen':44} {'strategy':>9}" + "".join(f" {short[n]:>14}" for n in names)
        out = [
            f"walk-forward: {self.config.vault.name}, train {format_duration(self.train)}, test {format_duration(self.test)},"
            f" {len(self.points)} grid point(s); net APR on NAV ({_money(self.nav)})",
            head,
        ]
        for r in self.results:
            f = self.window_figures(r)
            label = " ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in f["chosen"].items()) or "(as configured)"
            row = f"{r.window.test_start:%Y-%m-%d}..{r.window.test_end:%Y-%m-%d} {label[:44]:44} {_pct(f['strategy']['net_apr']):>9}"
            out.append(row + "".join(f" {_pct(f['baselines_apr'].get(n)):>14}" for n in names))
            for a in f["assets"]:
                line = f"  {a['asset']:21} {'(carry: funding - costs)':44} {_pct(a['strategy_apr']):>9}"
                out.append(line + "".join(f" {_pct(a['baselines_apr'].get(n)):>14}" for n in names))
        agg = self.aggregate()
        if self.results:
            span = f"{agg['windows']} windows, {float(agg['test_years']):.2f} years"
            out.append(f"{'aggregate':23} {span:44} {_pct(agg['strategy_apr']):>9}" + "".join(f" {_pct(agg['baselines_apr'][n]):>14}" for n in names))
            per_dollar = f"{_pct(agg['strategy_apr_on_notional']):>9}" + "".join(f" {_pct(agg['baselines_apr_on_notional'][n]):>14}" for n in names)
            out.append(f"{'  per $ of notional':23} {'(time-average notional held)':44} " + per_dollar)
            carry = f"{_pct(agg['strategy_carry_apr']):>9}" + "".join(f" {_pct(agg['baselines_carry_apr'][n]):>14}" for n in names)
            out.append(f"{'  carry only':23} {'(funding - fees - slippage)':44} " + carry)
            shares = "".join(f" {agg['strategy_at_least'][n] * 100:>13.0f}%" for n in names)
            out.append(f"{'strategy >= baseline':23} {'share of test windows':44} {'':>9}" + shares)
            shares = "".join(f" {agg['strategy_carry_at_least'][n] * 100:>13.0f}%" for n in names)
            out.append(f"{'  on carry only':23} {'share of test windows':44} {'':>9}" + shares)
        out.append("P: passive carry on that venue (its quantity held through every move, past the caps); C: the same carry cut back to the caps when a move takes it over them, never topped up; best(hindsight): the passive venue that earned most; T7d: trailing-7d best-venue rule (/flat: flat when negative); PF: perfect foresight (a bound at the baselines' notional: a strategy holding more can exceed it)")
        return out


def _span(start: datetime, end: datetime) -> str:
    return f"{start:%Y-%m-%d}..{end:%Y-%m-%d}"


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _money(x: Decimal) -> str:
    return str(x.quantize(Decimal("0.01")))


def _ratio(x: Decimal) -> str:
    return str(x.quantize(Decimal("0.000001")))


def _pct(x: str | None) -> str:
    return "n/a" if x is None else f"{float(x) * 100:.2f}%"


def parse_span(text: str) -> timedelta:
    """Read a window length such as ``180d`` (``alpha.config.types.parse_duration``), refusing non-positive ones."""
    span = parse_duration(text)
    if span <= timedelta(0):
        raise ValueError(f"{text!r} is not a positive duration")
    return span
