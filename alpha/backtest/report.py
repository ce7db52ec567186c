"""Backtest summary, JSON, PNG plots and a self-contained HTML report.

Amounts stay ``Decimal`` in the summary; the return statistics (Sharpe, share of negative
days) are computed from daily NAV in float, and the plots are floats: both are edges.
"""

from __future__ import annotations

import base64
import html
import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from alpha.backtest.baselines import BaselineResult, baseline_lines
from alpha.backtest.runner import RunResult
from alpha.domain.funding import SECONDS_PER_YEAR
from alpha.domain.money import ZERO


@dataclass(frozen=True, slots=True)
class Summary:
    """The figures of one replay."""

    label: str
    start: datetime
    end: datetime
    initial_nav: Decimal
    final_nav: Decimal
    net_apr: Decimal
    funding_income: Decimal
    fees: Decimal
    slippage: Decimal
    lending_income: Decimal
    max_drawdown: Decimal
    sharpe: float | None
    negative_day_share: float | None
    rebalances: int
    liquidations: int
    margin_actions: int
    events: int
    events_per_second: float
    max_net_delta_share: Decimal = ZERO  # largest |net delta| / NAV seen
    unhedged_share: float | None = None  # share of samples with |net delta| > tolerance x gross
    rejected_orders: int = 0  # orders the simulated venues refused
    failed_actions: int = 0  # approved actions the executor could not complete

    def as_json(self) -> dict[str, Any]:
        """Amounts as decimal strings, ratios as numbers, times in ISO-8601."""
        out: dict[str, Any] = {}
        for key in self.__dataclass_fields__:
            value = getattr(self, key)
            if isinstance(value, Decimal):
                out[key] = str(
                    value.quantize(Decimal("0.01"))
                    if key not in ("net_apr", "max_drawdown", "max_net_delta_share")
                    else value.quantize(Decimal("0.000001"))
                )
            elif isinstance(value, datetime):
                out[key] = value.isoformat().replace("+00:00", "Z")
            else:
                out[key] = value
        return out


def daily_nav(result: RunResult) -> list[tuple[datetime, Decimal]]:
    """The last sampled NAV of each UTC day."""
    days: dict[Any, tuple[datetime, Decimal]] = {}
    for s in result.samples:
        days[s.ts.date()] = (s.ts, s.nav)
    return [days[d] for d in sorted(days)]


def max_drawdown(navs: Sequence[Decimal]) -> Decimal:
    """Largest fall from a running peak, as a share of the peak."""
    peak = ZERO
    worst = ZERO
    for nav in navs:
        peak = max(peak, nav)
        if peak > 0:
            worst = max(worst, (peak - nav) / peak)
    return worst


def hedge_quality(result: RunResult, delta_tolerance: Decimal) -> tuple[Decimal, float | None]:
    """Return the largest |net delta| / NAV and the share of samples outside the delta tolerance.

    A run whose hedge broke (a liquidated leg leaves the other one naked) earns or loses on
    price, not on funding; these two figures say so beside its return.
    """
    worst = ZERO
    outside = 0
    for s in result.samples:
        if s.nav > 0:
            worst = max(worst, abs(s.net_delta) / s.nav)
        if abs(s.net_delta) > delta_tolerance * s.gross and abs(s.net_delta) > 0:
            outside += 1
    share = outside / len(result.samples) if result.samples else None
    return worst, share


def summarise(result: RunResult, delta_tolerance: Decimal = Decimal("0.02")) -> Summary:
    """Compute the summary of one replay (``delta_tolerance`` as in the strategy file)."""
    navs = [s.nav for s in result.samples] or [result.initial_nav]
    worst_delta, unhedged = hedge_quality(result, delta_tolerance)
    seconds = Decimal(max((result.end - result.start).total_seconds(), 1.0))
    years = seconds / SECONDS_PER_YEAR
    net = (result.final_nav - result.initial_nav) / result.initial_nav
    daily = daily_nav(result)
    returns = [float(b / a - 1) for (_, a), (_, b) in itertools.pairwise(daily) if a > 0]
    sharpe: float | None = None
    negative: float | None = None
    if len(returns) >= 2:
        mean = sum(returns) / len(returns)
        sd = math.sqrt(sum((r - mean) ** 2 for r in returns) / (len(returns) - 1))
        sharpe = mean / sd * math.sqrt(365) if sd > 0 else None
        negative = sum(1 for r in returns if r < 0) / len(returns)
    return Summary(
        label=result.label,
        start=result.start,
        end=result.end,
        initial_nav=result.initial_nav,
        final_nav=result.final_nav,
        net_apr=net / years,
        funding_income=result.funding,
        fees=result.fees,
        slippage=result.slippage,
        lending_income=result.lending_income,
        max_drawdown=max_drawdown(navs),
        sharpe=sharpe,
        negative_day_share=negative,
        rebalances=result.rebalances,
        liquidations=result.liquidations,
        margin_actions=result.margin_actions,
        events=result.events,
        events_per_second=result.events / result.wall_seconds if result.wall_seconds > 0 else 0.0,
        max_net_delta_share=worst_delta,
        unhedged_share=unhedged,
        rejected_orders=result.rejected_orders,
        failed_actions=result.failed_actions,
    )


def summary_lines(strategy: Summary, baseline: Summary) -> list[str]:
    """A side-by-side text table of the strategy and the passive baseline."""

    def pct(x: Decimal | float | None) -> str:
        return "n/a" if x is None else f"{float(x) * 100:.2f}%"

    def num(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.2f}"

    rows = [
        ("period", f"{strategy.start:%Y-%m-%d %H:%M} .. {strategy.end:%Y-%m-%d %H:%M} UTC", ""),
        ("NAV start -> end", f"{strategy.initial_nav:,.2f} -> {strategy.final_nav:,.2f}", f"{baseline.final_nav:,.2f}"),
        ("net APR", pct(strategy.net_apr), pct(baseline.net_apr)),
        ("funding income", f"{strategy.funding_income:,.2f}", f"{baseline.funding_income:,.2f}"),
        ("fees", f"{strategy.fees:,.2f}", f"{baseline.fees:,.2f}"),
        ("slippage", f"{strategy.slippage:,.2f}", f"{baseline.slippage:,.2f}"),
        ("lending income", f"{strategy.lending_income:,.2f}", f"{baseline.lending_income:,.2f}"),
        ("max drawdown", pct(strategy.max_drawdown), pct(baseline.max_drawdown)),
        ("Sharpe (daily, annualised)", num(strategy.sharpe), num(baseline.sharpe)),
        ("share of days negative", pct(strategy.negative_day_share), pct(baseline.negative_day_share)),
        ("rebalances", str(strategy.rebalances), str(baseline.rebalances)),
        ("liquidations", str(strategy.liquidations), str(baseline.liquidations)),
        ("margin actions", str(strategy.margin_actions), str(baseline.margin_actions)),
        ("orders refused by venues", str(strategy.rejected_orders), str(baseline.rejected_orders)),
        ("actions failed", str(strategy.failed_actions), str(baseline.failed_actions)),
        ("max |net delta| / NAV", pct(strategy.max_net_delta_share), pct(baseline.max_net_delta_share)),
        ("time outside delta tolerance", pct(strategy.unhedged_share), pct(baseline.unhedged_share)),
    ]
    out = [f"{'':28} {'strategy':>32} {'passive baseline':>20}"]
    out += [f"{name:28} {a:>32} {b:>20}" for name, a, b in rows]
    for label, s in (("strategy", strategy), ("passive baseline", baseline)):
        if s.liquidations or (s.unhedged_share or 0) > 0.05:
            out.append(
                f"note: the {label} was not delta-neutral for {pct(s.unhedged_share)} of the time"
                f" (largest net delta {pct(s.max_net_delta_share)} of NAV); its return includes price exposure,"
                " not only funding."
            )
    return out


def summary_json(strategy: Summary, baseline: Summary, baselines: Sequence[BaselineResult] = ()) -> dict[str, Any]:
    """Both summaries and the independent baselines as one JSON document."""
    return {"strategy": strategy.as_json(), "baseline": baseline.as_json(), "baselines": [b.as_json() for b in baselines]}


def write_json(path: Path, strategy: Summary, baseline: Summary, baselines: Sequence[BaselineResult] = ()) -> Path:
    """Write both summaries (and the independent baselines) as one JSON file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary_json(strategy, baseline, baselines), indent=2))
    return path


def _times(r: RunResult) -> Any:
    # matplotlib's stubs do not take datetimes; it plots them as dates.
    return [s.ts for s in r.samples]


def plot(results: Sequence[RunResult], out: Path) -> dict[str, Path]:
    """Draw the equity curve, cumulative funding by fuse, exposure and margin ratio as PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}

    def save(name: str, fig: Any) -> None:
        path = out / f"{name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        files[name] = path

    fig, ax = plt.subplots(figsize=(10, 4))
    for r in results:
        ax.plot(_times(r), [float(s.nav) for s in r.samples], label=r.label, lw=1)
    ax.set_title("Equity (NAV)")
    ax.legend()
    ax.grid(alpha=0.3)
    save("equity", fig)

    fig, ax = plt.subplots(figsize=(10, 4))
    for r in results:
        fuses = sorted({f for s in r.samples for f in s.funding_by_fuse})
        for fuse in fuses:
            ax.plot(
                _times(r),
                [float(s.funding_by_fuse.get(fuse, ZERO)) for s in r.samples],
                label=f"{r.label}: {fuse}",
                lw=1,
            )
    ax.set_title("Cumulative funding by venue")
    ax.legend()
    ax.grid(alpha=0.3)
    save("funding", fig)

    fig, ax = plt.subplots(figsize=(10, 4))
    for r in results:
        ax.plot(_times(r), [float(s.gross) for s in r.samples], label=f"{r.label}: gross", lw=1)
        ax.plot(
            _times(r),
            [float(s.net_delta) for s in r.samples],
            label=f"{r.label}: net delta",
            lw=1,
            ls="--",
        )
    ax.set_title("Exposure (base-asset value)")
    ax.legend()
    ax.grid(alpha=0.3)
    save("exposure", fig)

    fig, ax = plt.subplots(figsize=(10, 4))
    for r in results:
        fuses = sorted({f for s in r.samples for f in s.margin_ratio})
        for fuse in fuses:
            ax.plot(
                _times(r),
                [min(float(s.margin_ratio.get(fuse, ZERO)), 1.5) for s in r.samples],
                label=f"{r.label}: {fuse}",
                lw=1,
            )
    ax.set_title("Margin ratio (maintenance / equity; 1 = liquidation)")
    ax.axhline(1.0, color="red", lw=0.5)
    ax.legend()
    ax.grid(alpha=0.3)
    save("margin_ratio", fig)
    return files


def html_rows(lines: Sequence[str]) -> str:
    """Text table lines as rows of a monospace HTML table."""
    return "\n".join(f"<tr><td>{html.escape(line)}</td></tr>" for line in lines)


def write_html(
    path: Path,
    strategy: Summary,
    baseline: Summary,
    images: dict[str, Path],
    title: str,
    baselines: Sequence[BaselineResult] = (),
) -> Path:
    """Write a self-contained HTML report: the summary table, the baselines and every plot inlined as base64."""
    rows = html_rows(summary_lines(strategy, baseline))
    if baselines:
        rows += "<tr><td></td></tr><tr><td><b>independent baselines (not decide(); same costs)</b></td></tr>"
        rows += html_rows(baseline_lines(baselines))
    figures = "\n".join(
        f'<h2>{html.escape(name.replace("_", " "))}</h2><img alt="{html.escape(name)}" '
        f'src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
        for name, p in images.items()
    )
    return write_page(path, title, rows, figures)


def write_page(path: Path, title: str, rows: str, figures: str = "") -> Path:
    """Write a self-contained HTML page: a title, a monospace table of ``rows`` and inlined ``figures``."""
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1280px;margin:2em auto}} td{{font-family:monospace;white-space:pre}} img{{max-width:100%}}</style>
</head><body><h1>{html.escape(title)}</h1><table>{rows}</table>{figures}</body></html>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page)
    return path
