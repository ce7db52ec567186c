"""Backtest summary, JSON and the self-contained interactive HTML reports (backtest and walk-forward).

Amounts stay ``Decimal`` in the summary; the return statistics (``alpha.backtest.tearsheet``:
CAGR, volatility, Sharpe, Sortino, Calmar) are floats computed from daily NAV, and the charts
are floats: both are edges. The HTML pages (``alpha.backtest.html``) embed plotly.js inline
and open offline.
"""

from __future__ import annotations

import html
import itertools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

from alpha.backtest.baselines import BaselineResult
from alpha.backtest.runner import RunResult, Sample
from alpha.backtest.tearsheet import cost_share, drawdowns, monthly_returns, tearsheet, yearly_returns
from alpha.backtest.walkforward import WalkForward
from alpha.config.types import format_duration
from alpha.domain.actions import Action, CloseHedge, LockRate, OpenHedge, ResizeLeg, Transfer, UnlockRate
from alpha.domain.funding import SECONDS_PER_YEAR
from alpha.domain.money import ZERO
from alpha.risk.exposure import base_of

RATIOS = frozenset(
    {"net_apr", "max_drawdown", "max_net_delta_share", "total_return", "turnover", "turnover_per_year",
     "fee_share_of_funding", "cost_share_of_funding"}
)
SHARPE_NOTE = (
    "The Sharpe-like ratio is mean / standard deviation of daily NAV returns x sqrt(365), with no risk-free rate;"
    " it is not comparable to the Sharpe ratio of a price strategy. A hedged carry's daily return is funding that"
    " accrues smoothly between settlements (which drives the ratio up) plus the marking noise between its legs"
    " (recorded closes of different venues are not synchronous, which drives it down). Neither part measures the"
    " tail risks (a liquidated leg, a basis blow-out, a venue failure), which rarely show in daily returns: read"
    " the max drawdown, the time outside delta tolerance and the baselines beside it."
)


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
    total_return: Decimal = ZERO
    cagr: float | None = None
    volatility: float | None = None
    sortino: float | None = None
    calmar: float | None = None
    max_drawdown_days: float = 0.0  # the deepest drawdown, from its peak to recovery (or the end)
    longest_underwater_days: float = 0.0
    traded_notional: Decimal = ZERO  # every fill's quantity x price, base asset
    turnover: Decimal = ZERO  # traded notional / mean NAV
    turnover_per_year: Decimal | None = None
    fee_share_of_funding: Decimal | None = None  # fees / funding
    cost_share_of_funding: Decimal | None = None  # (fees + slippage) / funding

    def as_json(self) -> dict[str, Any]:
        """Amounts as decimal strings, ratios as numbers, times in ISO-8601."""
        out: dict[str, Any] = {}
        for key in self.__dataclass_fields__:
            value = getattr(self, key)
            if isinstance(value, Decimal):
                out[key] = str(value.quantize(Decimal("0.01") if key not in RATIOS else Decimal("0.000001")))
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
    points = [(s.ts, s.nav) for s in result.samples] or [(result.start, result.initial_nav)]
    traded = sum((f.fill.quantity * f.fill.price for f in result.fills), ZERO)
    sheet = tearsheet(points, funding=result.funding, fees=result.fees, slippage=result.slippage, traded_notional=traded)
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
        sharpe=sheet.sharpe,
        negative_day_share=sheet.negative_day_share,
        rebalances=result.rebalances,
        liquidations=result.liquidations,
        margin_actions=result.margin_actions,
        events=result.events,
        events_per_second=result.events / result.wall_seconds if result.wall_seconds > 0 else 0.0,
        max_net_delta_share=worst_delta,
        unhedged_share=unhedged,
        rejected_orders=result.rejected_orders,
        failed_actions=result.failed_actions,
        total_return=sheet.total_return,
        cagr=sheet.cagr,
        volatility=sheet.volatility,
        sortino=sheet.sortino,
        calmar=sheet.calmar,
        max_drawdown_days=sheet.max_drawdown_duration.total_seconds() / 86400,
        longest_underwater_days=sheet.longest_underwater.total_seconds() / 86400,
        traded_notional=traded,
        turnover=sheet.turnover,
        turnover_per_year=sheet.turnover_per_year,
        fee_share_of_funding=sheet.fee_share_of_funding,
        cost_share_of_funding=sheet.cost_share_of_funding,
    )


def _money(x: Decimal | None) -> str:
    return "n/a" if x is None else f"{x:,.2f}"


def _pct(x: Decimal | float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{float(x) * 100:.{digits}f}%"


def _num(x: Decimal | float | None) -> str:
    return "n/a" if x is None else f"{float(x):.2f}"


def _days(x: float) -> str:
    return f"{x:.1f} days"


# The metrics both summary tables show (text and HTML), in order: label, format, field.
METRICS: tuple[tuple[str, Callable[[Any], str], str], ...] = (
    ("total return", _pct, "total_return"),
    ("net APR (simple)", _pct, "net_apr"),
    ("CAGR", _pct, "cagr"),
    ("volatility (annualised)", _pct, "volatility"),
    ("Sortino", _num, "sortino"),
    ("Calmar", _num, "calmar"),
    ("max drawdown", _pct, "max_drawdown"),
    ("max drawdown duration", _days, "max_drawdown_days"),
    ("longest under water", _days, "longest_underwater_days"),
    ("share of days negative", _pct, "negative_day_share"),
    ("funding income", _money, "funding_income"),
    ("fees", _money, "fees"),
    ("slippage", _money, "slippage"),
    ("lending income", _money, "lending_income"),
    ("fees / funding", _pct, "fee_share_of_funding"),
    ("(fees + slippage) / funding", _pct, "cost_share_of_funding"),
    ("traded notional", _money, "traded_notional"),
    ("turnover (x mean NAV)", _num, "turnover"),
    ("turnover per year", _num, "turnover_per_year"),
    ("rebalances", str, "rebalances"),
    ("liquidations", str, "liquidations"),
    ("margin actions", str, "margin_actions"),
    ("orders refused by venues", str, "rejected_orders"),
    ("actions failed", str, "failed_actions"),
    ("max |net delta| / NAV", _pct, "max_net_delta_share"),
    ("time outside delta tolerance", _pct, "unhedged_share"),
    ("Sharpe-like ratio (see note)", _num, "sharpe"),
)


def metric_rows(strategy: Summary, baseline: Summary) -> list[tuple[str, str, str]]:
    """``(label, strategy, baseline)`` for every metric of ``METRICS``, formatted."""
    return [(label, fmt(getattr(strategy, key)), fmt(getattr(baseline, key))) for label, fmt, key in METRICS]


def summary_notes(strategy: Summary, baseline: Summary) -> list[str]:
    """What a reader must know beside the figures: a run that was not delta-neutral, and what the Sharpe-like ratio means."""
    out: list[str] = []
    for label, s in (("strategy", strategy), ("passive baseline", baseline)):
        if s.liquidations or (s.unhedged_share or 0) > 0.05:
            out.append(
                f"the {label} was not delta-neutral for {_pct(s.unhedged_share)} of the time"
                f" (largest net delta {_pct(s.max_net_delta_share)} of NAV); its return includes price exposure,"
                " not only funding."
            )
    return [*out, SHARPE_NOTE]


def summary_lines(strategy: Summary, baseline: Summary) -> list[str]:
    """A side-by-side text table of the strategy and the passive baseline, then the notes."""
    rows = [
        ("period", f"{strategy.start:%Y-%m-%d %H:%M} .. {strategy.end:%Y-%m-%d %H:%M} UTC", ""),
        ("NAV start -> end", f"{strategy.initial_nav:,.2f} -> {strategy.final_nav:,.2f}", f"{baseline.final_nav:,.2f}"),
        *metric_rows(strategy, baseline),
    ]
    out = [f"{'':30} {'strategy':>32} {'passive baseline':>20}"]
    out += [f"{name:30} {a:>32} {b:>20}" for name, a, b in rows]
    return out + [f"note: {n}" for n in summary_notes(strategy, baseline)]


def summary_json(strategy: Summary, baseline: Summary, baselines: Sequence[BaselineResult] = ()) -> dict[str, Any]:
    """Both summaries and the independent baselines as one JSON document."""
    return {"strategy": strategy.as_json(), "baseline": baseline.as_json(), "baselines": [b.as_json() for b in baselines]}


def write_json(path: Path, strategy: Summary, baseline: Summary, baselines: Sequence[BaselineResult] = ()) -> Path:
    """Write both summaries (and the independent baselines) as one JSON file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary_json(strategy, baseline, baselines), indent=2))
    return path


# ---------------------------------------------------------------------------------------------
# The interactive HTML pages: plotly charts (plotly.js inlined once, so the page opens offline)
# and HTML tables. Every section has an id (``SECTIONS``) the browser test looks for.

SECTIONS = (
    ("summary", "Summary"),
    ("baselines", "Strategy beside each baseline"),
    ("equity", "Equity"),
    ("drawdown", "Drawdown"),
    ("monthly", "Monthly returns"),
    ("venues", "Per venue"),
    ("assets", "Per asset"),
    ("funding", "Cumulative funding by venue"),
    ("exposure", "Exposure"),
    ("margin", "Margin ratio"),
    ("trades", "Trades and rebalances"),
    ("fills", "Fills"),
    ("definitions", "Definitions"),
)
MAX_ROWS = 2000  # rows of a trade or fill table shown; the rest are counted
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
STYLE = """
body{font-family:system-ui,sans-serif;max-width:1280px;margin:1.5em auto;padding:0 1em;color:#222}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0;font-size:.85em}
th,td{border:1px solid #ddd;padding:.2em .5em;vertical-align:top}
th{background:#f3f3f3;text-align:left} td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.pos{background:#e6f4ea} td.neg{background:#fce8e6}
p.note{font-size:.85em;color:#444;max-width:75em}
div.scroll{max-height:32em;overflow:auto}
nav a{margin-right:.8em;font-size:.9em}
"""


Cell = str | tuple[str, str]  # text, or (text, css class)


def table(head: Sequence[str], rows: Sequence[Sequence[Cell]], numeric_from: int = 1) -> str:
    """An HTML table: ``head`` then ``rows``; columns from ``numeric_from`` on are right-aligned numbers."""
    out = ["<table><thead><tr>", *(f"<th>{html.escape(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>")
        for i, cell in enumerate(row):
            text, css = cell if isinstance(cell, tuple) else (cell, "")
            classes = " ".join(c for c in ("n" if i >= numeric_from else "", css) if c)
            out.append(f'<td class="{classes}">{html.escape(text)}</td>' if classes else f"<td>{html.escape(text)}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def note(text: str) -> str:
    """A paragraph of explanation under a table or chart."""
    return f'<p class="note">{html.escape(text)}</p>'


def section(key: str, title: str, *parts: str) -> str:
    """One section of the page, with the id the table of contents links to."""
    return f'<section id="{key}"><h2>{html.escape(title)}</h2>{"".join(parts)}</section>'


class Charts:
    """Render plotly figures into one page: plotly.js goes inline with the first figure only."""

    def __init__(self) -> None:
        self.first = True

    def __call__(self, fig: Any, key: str) -> str:
        fig.update_layout(template="plotly_white", margin={"l": 60, "r": 20, "t": 50, "b": 40}, hovermode="x unified")
        out: str = fig.to_html(
            full_html=False, include_plotlyjs=self.first, div_id=f"chart-{key}",
            config={"displaylogo": False, "responsive": True},
        )
        self.first = False
        return out


def page(title: str, subtitle: str, sections: Sequence[tuple[str, str, str]]) -> str:
    """The whole page: title, a table of contents and the ``(id, title, body)`` sections."""
    toc = "".join(f'<a href="#{key}">{html.escape(name)}</a>' for key, name, _ in sections)
    body = "".join(section(key, name, content) for key, name, content in sections)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{STYLE}</style>
</head><body><h1>{html.escape(title)}</h1>{note(subtitle)}<nav>{toc}</nav>{body}</body></html>
"""


def write_text(path: Path, content: str) -> Path:
    """Write a page, making its directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    return path


def html_rows(lines: Sequence[str]) -> str:
    """Text table lines as rows of a monospace HTML table (for ``write_page``)."""
    return "\n".join(f"<tr><td>{html.escape(line)}</td></tr>" for line in lines)


def write_page(path: Path, title: str, rows: str, figures: str = "") -> Path:
    """Write a plain self-contained page: a title and a monospace table of ``rows`` (``alpha research evaluate``)."""
    return write_text(path, f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1280px;margin:2em auto}} td{{font-family:monospace;white-space:pre}}</style>
</head><body><h1>{html.escape(title)}</h1><table>{rows}</table>{figures}</body></html>
""")


def _signed(x: Decimal | None) -> Cell:
    return (_pct(x), "" if x is None or x == 0 else ("pos" if x > 0 else "neg"))


# ------------------------------------------------------------------ backtest report


def _points(r: RunResult) -> list[tuple[datetime, Decimal]]:
    return [(s.ts, s.nav) for s in r.samples] or [(r.start, r.initial_nav)]


def summary_table(strategy: Summary, baseline: Summary) -> str:
    """The headline metrics of the strategy and the passive replay, side by side."""
    pairs = [
        ("NAV start", _money(strategy.initial_nav), _money(baseline.initial_nav)),
        ("NAV end", _money(strategy.final_nav), _money(baseline.final_nav)),
        *metric_rows(strategy, baseline),
    ]
    notes = summary_notes(strategy, baseline)
    period = f"{strategy.start:%Y-%m-%d %H:%M} .. {strategy.end:%Y-%m-%d %H:%M} UTC"
    return note(f"Period {period}.") + table(("", "strategy", "passive replay"), pairs) + "".join(note(n) for n in notes)


def _asset_carry(result: RunResult, asset: str) -> tuple[Decimal, Decimal, Decimal]:
    """(funding, fees, slippage) of the strategy on ``asset``'s markets."""
    funding = fees = slip = ZERO
    for (_fuse, market), (f, c, s) in result.by_market.items():
        if base_of(market) == asset:
            funding, fees, slip = funding + f, fees + c, slip + s
    return funding, fees, slip


def _mean_gross(result: RunResult, asset: str | None = None) -> Decimal:
    if not result.samples:
        return ZERO
    total = sum((s.gross if asset is None else s.gross_by_asset.get(asset, ZERO) for s in result.samples), ZERO)
    return total / len(result.samples)


def baselines_section(
    result: RunResult, passive: RunResult, strategy: Summary, baseline: Summary, baselines: Sequence[BaselineResult], nav: Decimal
) -> str:
    """The strategy beside the passive replay and every independent baseline: for the vault, then per asset."""
    years = Decimal(max((result.end - result.start).total_seconds(), 1.0)) / SECONDS_PER_YEAR
    head = ("", "net PnL", "funding", "fees + slippage", "basis and other", "APR on NAV", "carry APR on NAV", "APR per $ notional", "trades")

    def row(name: str, net: Decimal, funding: Decimal, costs: Decimal, on: Decimal, notional_years: Decimal, trades: int) -> list[Cell]:
        carry = funding - costs
        return [
            name, _money(net), _money(funding), _money(costs), _money(net - carry), _signed(net / on / years),
            _signed(carry / on / years), _pct(net / notional_years) if notional_years > 0 else "n/a", str(trades),
        ]

    s_net = strategy.final_nav - strategy.initial_nav
    b_net = baseline.final_nav - baseline.initial_nav
    rows = [
        row("strategy (decide)", s_net, strategy.funding_income, strategy.fees + strategy.slippage, nav, _mean_gross(result) * years, strategy.rebalances),
        row("passive replay (first decision held)", b_net, baseline.funding_income, baseline.fees + baseline.slippage, nav,
            _mean_gross(passive) * years, baseline.rebalances),
    ]
    names = list(dict.fromkeys(b.name for b in baselines))
    for name in names:
        mine = [b for b in baselines if b.name == name]
        rows.append(
            row(
                name, sum((b.net for b in mine), ZERO), sum((b.funding for b in mine), ZERO),
                sum((b.fees + b.slippage for b in mine), ZERO), nav, sum((b.exposure for b in mine), ZERO),
                sum(b.switches for b in mine),
            )
        )
    parts = [
        note(f"Whole vault, APRs on the vault's NAV ({_money(nav)}). Baselines are computed from the tapes with the same"
             " costs, not by decide(); each independent baseline is summed over the assets. 'basis and other': the net PnL"
             " less the carry (funding - fees - slippage): price moves of the legs and, for the strategy, lending income."),
        table(head, rows),
    ]
    for asset in dict.fromkeys(b.asset for b in baselines):
        share = nav / max(len({b.asset for b in baselines}), 1)
        mine = [b for b in baselines if b.asset == asset]
        share = mine[0].nav if mine else share
        funding, fees, slip = _asset_carry(result, asset)
        asset_rows: list[list[Cell]] = [
            ["strategy (carry only)", "n/a", _money(funding), _money(fees + slip), "n/a", "n/a", _signed((funding - fees - slip) / share / years), "n/a", ""],
        ]
        for b in mine:
            label = b.name + (f" ({b.venue})" if b.venue and b.venue not in b.name else "")
            asset_rows.append(row(label, b.net, b.funding, b.fees + b.slippage, share, b.exposure, b.switches))
        parts.append(f"<h3>{html.escape(asset)}</h3>")
        parts.append(note(f"APRs on the asset's share of the NAV ({_money(share)}). The strategy's PnL per asset is its carry"
                          " on the asset's markets: its price PnL is not split by asset."))
        parts.append(table(head, asset_rows))
    return "".join(parts)


def _two_panels(title: str, top: str, bottom: str, series: Sequence[tuple[int, str, list[datetime], list[float]]], y_title: str) -> Any:
    """Two stacked charts sharing the time axis, each with its own y axis (``series``: (row, name, x, y))."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1, subplot_titles=(top, bottom))
    for row, name, x, y in series:
        fig.add_trace(go.Scatter(x=x, y=y, name=name, mode="lines"), row=row, col=1)
    fig.update_yaxes(title_text=y_title)
    fig.update_layout(title=title, height=600)
    return fig


def equity_chart(strategy: RunResult, baseline: RunResult) -> Any:
    """The strategy's NAV on its own axis, the passive replay's below on another."""
    return _two_panels(
        "Equity (NAV)", "strategy", "passive replay (own scale: a liquidated leg does not flatten the strategy's line)",
        [(1, "strategy NAV", [s.ts for s in strategy.samples], [float(s.nav) for s in strategy.samples]),
         (2, "passive replay NAV", [s.ts for s in baseline.samples], [float(s.nav) for s in baseline.samples])],
        "NAV",
    )


def drawdown_chart(strategy: RunResult, baseline: RunResult) -> Any:
    """Drawdown from the running peak, in percent, the strategy and the passive replay each on its own axis."""
    dd = [drawdowns(_points(r)) for r in (strategy, baseline)]
    return _two_panels(
        "Drawdown from the running peak (%)", "strategy", "passive replay",
        [(1, "strategy drawdown", [t for t, _ in dd[0]], [float(x) * 100 for _, x in dd[0]]),
         (2, "passive replay drawdown", [t for t, _ in dd[1]], [float(x) * 100 for _, x in dd[1]])],
        "%",
    )


def monthly_table(points: Sequence[tuple[datetime, Decimal]]) -> str:
    """Years down, months across, the year compounded at the end."""
    monthly = monthly_returns(points)
    yearly = yearly_returns(monthly)
    rows: list[list[Cell]] = []
    for year in sorted(yearly):
        rows.append([str(year), *(_signed(monthly[(year, m)]) if (year, m) in monthly else "" for m in range(1, 13)), _signed(yearly[year])])
    return table(("year", *MONTHS, "year"), rows)


def _time_share(result: RunResult, held: Callable[[Sample], bool]) -> Decimal | None:
    """Share of the replay's time during which ``held`` is true of the sample that starts it."""
    samples = result.samples
    if len(samples) < 2:
        return None
    total = (samples[-1].ts - samples[0].ts).total_seconds()
    if total <= 0:
        return None
    on = sum((b.ts - a.ts).total_seconds() for a, b in itertools.pairwise(samples) if held(a))
    return Decimal(repr(on / total))


def _holds_on(fuse: str, s: Sample) -> bool:
    return s.held_by_fuse.get(fuse, ZERO) > 0


def _has_hedge(asset: str, s: Sample) -> bool:
    return s.gross_by_asset.get(asset, ZERO) > 0


def _hedged_within(asset: str, tolerance: Decimal, s: Sample) -> bool:
    gross = s.gross_by_asset.get(asset, ZERO)
    return gross > 0 and abs(s.net_delta_by_asset.get(asset, ZERO)) <= tolerance * gross


def venue_rows(result: RunResult) -> list[list[Cell]]:
    """Per fuse: funding, fees, slippage, borrow and lending interest, carry PnL, time holding and liquidations."""
    fuses = sorted({f for f, _ in result.by_market} | set(result.borrow_interest) | set(result.supply_interest)
                   | {f for s in result.samples for f in s.held_by_fuse})
    liquidated: dict[str, int] = {}
    for ev in result.liquidation_events:
        liquidated[ev.venue] = liquidated.get(ev.venue, 0) + 1
    rows: list[list[Cell]] = []
    for fuse in fuses:
        funding = sum((v[0] for k, v in result.by_market.items() if k[0] == fuse), ZERO)
        fees = sum((v[1] for k, v in result.by_market.items() if k[0] == fuse), ZERO)
        slip = sum((v[2] for k, v in result.by_market.items() if k[0] == fuse), ZERO)
        borrow = result.borrow_interest.get(fuse, ZERO)
        supply = result.supply_interest.get(fuse, ZERO)
        share = _time_share(result, partial(_holds_on, fuse))
        rows.append([fuse, _money(funding), _money(fees), _money(slip), _money(-borrow), _money(supply),
                     _money(funding - fees - slip + borrow + supply), _pct(share), str(liquidated.get(fuse, 0))])
    return rows


def asset_rows(result: RunResult, delta_tolerance: Decimal) -> list[list[Cell]]:
    """Per asset: funding, fees, slippage, carry PnL, mean gross exposure, time with a hedge and time hedged within tolerance."""
    assets = sorted({base_of(m) for _, m in result.by_market} | {a for s in result.samples for a in s.gross_by_asset})
    rows: list[list[Cell]] = []
    for asset in assets:
        funding, fees, slip = _asset_carry(result, asset)
        held = _time_share(result, partial(_has_hedge, asset))
        hedged = _time_share(result, partial(_hedged_within, asset, delta_tolerance))
        rows.append([asset, _money(funding), _money(fees), _money(slip), _money(funding - fees - slip),
                     _money(_mean_gross(result, asset)), _pct(held), _pct(hedged)])
    return rows


def funding_chart(results: Sequence[RunResult]) -> Any:
    """Cumulative funding per fuse, the strategy solid and the passive replay dotted."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for r in results:
        for fuse in sorted({f for s in r.samples for f in s.funding_by_fuse}):
            fig.add_trace(go.Scatter(
                x=[s.ts for s in r.samples], y=[float(s.funding_by_fuse.get(fuse, ZERO)) for s in r.samples],
                name=f"{r.label}: {fuse}", mode="lines", line={"dash": "solid" if r.label == "strategy" else "dot"},
            ))
    fig.update_layout(title="Cumulative funding by venue", yaxis_title="funding received (base asset)", height=420)
    return fig


def exposure_chart(strategy: RunResult, baseline: RunResult) -> Any:
    """Gross exposure and net delta, the strategy and the passive replay each on its own axis."""
    series: list[tuple[int, str, list[datetime], list[float]]] = []
    for row, r in ((1, strategy), (2, baseline)):
        x = [s.ts for s in r.samples]
        series += [(row, f"{r.label}: gross", x, [float(s.gross) for s in r.samples]),
                   (row, f"{r.label}: net delta", x, [float(s.net_delta) for s in r.samples])]
    return _two_panels("Exposure (base-asset value)", "strategy", "passive replay", series, "value")


MARGIN_CAP = 1.5  # ratios above this are drawn at the cap (the hover shows the value)


def margin_chart(results: Sequence[RunResult], sample_every: str) -> Any:
    """Each margin fuse's maintenance margin / equity at every sample, with the liquidations marked where they happened."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for r in results:
        for fuse in sorted({f for s in r.samples for f in s.margin_ratio}):
            ratios = [float(s.margin_ratio.get(fuse, ZERO)) for s in r.samples]
            fig.add_trace(go.Scatter(
                x=[s.ts for s in r.samples], y=[min(x, MARGIN_CAP) for x in ratios], customdata=ratios,
                hovertemplate="%{customdata:.3f}", name=f"{r.label}: {fuse}", mode="lines",
                line={"dash": "solid" if r.label == "strategy" else "dot"},
            ))
        if r.liquidation_events:
            ratios = [float(e.maintenance_margin / e.equity) if e.equity > 0 else math.inf for e in r.liquidation_events]
            fig.add_trace(go.Scatter(
                x=[e.ts for e in r.liquidation_events], y=[min(x, MARGIN_CAP) for x in ratios],
                customdata=[[e.venue, f"{x:.3f}"] for e, x in zip(r.liquidation_events, ratios, strict=True)],
                hovertemplate="liquidated on %{customdata[0]}: ratio %{customdata[1]}", mode="markers",
                marker={"symbol": "x", "size": 12, "color": "red"}, name=f"{r.label}: liquidation",
            ))
    fig.add_hline(y=1.0, line={"color": "red", "width": 1}, annotation_text="liquidation line (ratio 1)")
    fig.update_layout(
        title=f"Margin ratio = maintenance margin / equity, sampled every {sample_every} (the venue liquidates at 1)",
        yaxis_title="maintenance / equity", yaxis_range=[0, MARGIN_CAP * 1.05], height=420,
    )
    return fig


def describe(action: Action) -> tuple[str, str, str]:
    """``(kind, where, what)`` of one action, for the trade list."""
    kind = type(action).__name__
    if isinstance(action, OpenHedge | CloseHedge):
        legs = "; ".join(f"{leg.side.value} {leg.quantity} {leg.market} on {leg.fuse}" for leg in action.legs)
        return kind, action.asset, legs
    if isinstance(action, ResizeLeg):
        leg = action.leg
        return kind, action.asset, f"{leg.side.value} {leg.quantity} {leg.market} on {leg.fuse}"
    if isinstance(action, Transfer):
        return kind, f"{action.source} -> {action.destination}", f"{action.amount} {action.asset}"
    if isinstance(action, LockRate | UnlockRate):
        side = "sell" if isinstance(action, LockRate) else "buy"
        return kind, action.fuse, f"{side} {action.size} YU {action.market} at {action.limit_apr} (locks {action.underlying})"
    return kind, action.fuse, f"{action.amount} {action.asset}"


def trade_rows(result: RunResult) -> list[list[Cell]]:
    """Every journalled step's approved and refused actions with their reasons, and the liquidations, in time order."""
    rows: list[tuple[datetime, list[Cell]]] = []
    for taken in result.taken:
        step = taken.step
        for action in step.approved:
            kind, where, what = describe(action)
            rows.append((taken.ts, [f"{taken.ts:%Y-%m-%d %H:%M}", f"{step.kind.value} ({taken.trigger})", kind, where, what, "approved", action.reason]))
        for refusal in step.refused:
            kind, where, what = describe(refusal.action)
            rows.append((taken.ts, [f"{taken.ts:%Y-%m-%d %H:%M}", f"{step.kind.value} ({taken.trigger})", kind, where, what,
                                    f"refused: {refusal.code.value}", refusal.reason]))
    for ev in result.liquidation_events:
        closed = "; ".join(f"{size} {market} at {price}" for market, size, price in ev.positions)
        rows.append((ev.ts, [f"{ev.ts:%Y-%m-%d %H:%M}", "venue", "Liquidated", ev.venue, closed, "liquidated",
                             f"equity {ev.equity:,.2f} at or below maintenance {ev.maintenance_margin:,.2f}; penalty {ev.penalty:,.2f}"]))
    rows.sort(key=lambda r: r[0])
    return [r for _, r in rows]


def fill_rows(result: RunResult) -> list[list[Cell]]:
    """Every fill of the strategy's orders (with the order's client id)."""
    return [
        [f"{f.ts:%Y-%m-%d %H:%M}", f.venue, f.fill.client_id, f.fill.market, f.fill.side.value, str(f.fill.quantity), f"{f.fill.price:,.2f}",
         _money(f.fill.quantity * f.fill.price), f"{f.fill.fee:,.4f}", f"{f.fill.slippage:,.4f}"]
        for f in result.fills
    ]


def _capped(head: Sequence[str], rows: Sequence[Sequence[Cell]], numeric_from: int) -> str:
    shown = table(head, rows[:MAX_ROWS], numeric_from)
    more = note(f"... and {len(rows) - MAX_ROWS} more (see the JSON and the journal).") if len(rows) > MAX_ROWS else ""
    return f'<div class="scroll">{shown}</div>{more}' if rows else note("none")


DEFINITIONS = (
    "Daily returns: between the last sampled NAV of consecutive UTC days. CAGR: (NAV end / NAV start) ^ (1 / years) - 1."
    " Volatility: standard deviation of daily returns x sqrt(365). Sortino: mean daily return x 365 / (downside deviation"
    " x sqrt(365)), the downside deviation sqrt(mean(min(r, 0)^2)) over every day; n/a without a losing day. Calmar: CAGR /"
    " max drawdown. Max drawdown: the deepest fall from a running peak of the sampled NAV; its duration from that peak to"
    " the first sample back at or above it (or to the end). Turnover: the traded notional (every fill's quantity x price)"
    " / the mean NAV. Fees / funding: the share of the funding received the trading fees took. Time hedged: the share of"
    " time an asset held a hedge (gross > 0) with |net delta| <= delta_tolerance x gross, read at each sample. "
)


def write_html(
    path: Path,
    strategy_run: RunResult,
    baseline_run: RunResult,
    strategy: Summary,
    baseline: Summary,
    baselines: Sequence[BaselineResult],
    *,
    title: str,
    nav: Decimal,
    delta_tolerance: Decimal,
    sample_every: str = "8h",
) -> Path:
    """Write the backtest report to ``path``: one self-contained interactive HTML page."""
    chart = Charts()
    trades = trade_rows(strategy_run)
    body = {
        "summary": summary_table(strategy, baseline),
        "baselines": baselines_section(strategy_run, baseline_run, strategy, baseline, baselines, nav),
        "equity": chart(equity_chart(strategy_run, baseline_run), "equity"),
        "drawdown": chart(drawdown_chart(strategy_run, baseline_run), "drawdown"),
        "monthly": note("Strategy: each month from the previous month's last NAV (the first month from the start; the first and"
                        " last months are partial when the period does not start or end on a month boundary)")
        + monthly_table(_points(strategy_run)) + note("Passive replay:") + monthly_table(_points(baseline_run)),
        "venues": table(("fuse", "funding", "fees", "slippage", "borrow interest", "lending interest", "carry PnL",
                         "time holding", "liquidations"), venue_rows(strategy_run))
        + note("Strategy, per fuse. Carry PnL: funding - fees - slippage - borrow + lending interest (price moves of the legs"
               " are not split by venue). Time holding: share of time the fuse held a position, spot or lending balance."),
        "assets": table(("asset", "funding", "fees", "slippage", "carry PnL", "mean gross", "time with a hedge", "time hedged"),
                        asset_rows(strategy_run, delta_tolerance))
        + note(f"Strategy, per asset. Time hedged: with |net delta| within delta_tolerance ({_pct(delta_tolerance)}) of gross."),
        "funding": chart(funding_chart([strategy_run, baseline_run]), "funding"),
        "exposure": chart(exposure_chart(strategy_run, baseline_run), "exposure"),
        "margin": chart(margin_chart([strategy_run, baseline_run], sample_every), "margin")
        + note("The ratio is read at each sample; a venue liquidates an account the moment it reaches 1, which usually falls"
               " between samples: each liquidation is marked (x) at the ratio it happened at."),
        "trades": note(f"{len(trades)} actions (the strategy's), with the step that decided them and why.")
        + _capped(("time", "step", "action", "asset / fuse", "what", "outcome", "reason"), trades, 99),
        "fills": _capped(("time", "fuse", "order", "market", "side", "quantity", "price", "notional", "fee", "slippage"), fill_rows(strategy_run), 5)
        + note("An order the executor sliced fills once per slice (one order id each)."),
        "definitions": note(DEFINITIONS) + note(SHARPE_NOTE),
    }
    subtitle = (f"{strategy.start:%Y-%m-%d %H:%M} .. {strategy.end:%Y-%m-%d %H:%M} UTC; the strategy is the daemon's own"
                " decide/plan/gate/executor over recorded history; the passive replay holds its first decision's book.")
    return write_text(path, page(title, subtitle, [(key, name, body[key]) for key, name in SECTIONS]))


# ------------------------------------------------------------------ walk-forward report

WALK_FORWARD_SECTIONS = (
    ("summary", "Out of sample, all test windows"),
    ("risk", "Out of sample, test windows chained: return and risk"),
    ("windows", "Test windows: strategy beside each baseline"),
    ("equity", "Out-of-sample PnL"),
    ("drawdown", "Drawdown"),
    ("monthly", "Monthly returns (out of sample)"),
    ("apr", "APR per test window"),
    ("assets", "Per asset (carry)"),
    ("venues", "Per venue"),
    ("costs", "Costs and trades per window"),
    ("fits", "Training fits"),
    ("definitions", "Definitions"),
)


def _d(x: str | None) -> Decimal | None:
    return None if x is None else Decimal(x)


def stitched(evaluation: WalkForward) -> list[tuple[datetime, Decimal]]:
    """The configured NAV plus the strategy's out-of-sample PnL, window after window (each test starts flat)."""
    if not evaluation.results:
        return []
    points = [(evaluation.results[0].window.test_start, evaluation.nav)]
    for r in evaluation.results:
        points.append((r.window.test_end, points[-1][1] + r.test.net_pnl))
    return points


def walk_forward_summary(evaluation: WalkForward) -> str:
    """The aggregate APRs of the strategy and each baseline, and the metrics of the stitched test windows."""
    agg = evaluation.aggregate()
    names = evaluation.baseline_names()
    rows: list[list[Cell]] = [
        ["strategy", _signed(_d(agg["strategy_apr"])), _pct(_d(agg["strategy_apr_on_notional"])), _signed(_d(agg["strategy_carry_apr"])), "", ""],
    ]
    for n in names:
        rows.append([
            n, _signed(_d(agg["baselines_apr"][n])), _pct(_d(agg["baselines_apr_on_notional"][n])), _signed(_d(agg["baselines_carry_apr"][n])),
            _pct(agg["strategy_at_least"][n], 0), _pct(agg["strategy_carry_at_least"][n], 0),
        ])
    points = stitched(evaluation)
    funding = sum((r.test.funding for r in evaluation.results), ZERO)
    fees = sum((r.test.fees for r in evaluation.results), ZERO)
    slip = sum((r.test.slippage for r in evaluation.results), ZERO)
    sheet = tearsheet(points, funding=funding, fees=fees, slippage=slip, traded_notional=ZERO)
    metrics = [
        ["test windows", str(agg["windows"])],
        ["test years", f"{float(agg['test_years']):.2f}"],
        ["total return (stitched)", _pct(sheet.total_return)],
        ["CAGR (stitched)", _pct(sheet.cagr)],
        ["max drawdown at window ends", _pct(sheet.max_drawdown)],
        ["its duration (days)", f"{sheet.max_drawdown_duration.total_seconds() / 86400:.1f}"],
        ["Calmar", _num(sheet.calmar)],
        ["funding", _money(funding)],
        ["fees", _money(fees)],
        ["slippage", _money(slip)],
        ["fees / funding", _pct(sheet.fee_share_of_funding)],
        ["(fees + slippage) / funding", _pct(sheet.cost_share_of_funding)],
        ["rebalances", str(sum(r.test.rebalances for r in evaluation.results))],
    ]
    return (
        note(f"Net APR on the vault's NAV ({_money(evaluation.nav)}) over every test window; each test window starts flat"
             " with the configured NAV and the grid point fitted on the window before it.")
        + table(("", "net APR on NAV", "APR per $ notional", "carry APR (funding - costs)", "strategy >= it (windows)",
                 "on carry (windows)"), rows)
        + table(("strategy, stitched test windows", ""), metrics)
        + note("The stitched series adds each window's PnL to the configured NAV, one point per window end, so its drawdown"
               " is a lower bound of the daily one; the daily figures of the chained test windows follow.")
    )


def walk_forward_risk(evaluation: WalkForward, points: Sequence[tuple[datetime, Decimal]]) -> str:
    """The tearsheet metrics of the strategy's daily NAV over the test windows chained end to end."""
    if not points:
        return note("n/a: the test replays kept no daily NAV.")
    funding = sum((r.test.funding for r in evaluation.results), ZERO)
    fees = sum((r.test.fees for r in evaluation.results), ZERO)
    slip = sum((r.test.slippage for r in evaluation.results), ZERO)
    sheet = tearsheet(points, funding=funding, fees=fees, slippage=slip, traded_notional=ZERO)
    worst = sheet.drawdown
    when = "n/a" if worst is None else (
        f"{worst.peak:%Y-%m-%d} .. {worst.trough:%Y-%m-%d}, "
        + (f"recovered {worst.recovered:%Y-%m-%d}" if worst.recovered else "not recovered by the end"))
    rows: list[list[Cell]] = [
        ["period", f"{points[0][0]:%Y-%m-%d %H:%M} .. {points[-1][0]:%Y-%m-%d %H:%M} UTC"],
        ["NAV start -> end (chained)", f"{_money(points[0][1])} -> {_money(points[-1][1])}"],
        ["total return", _pct(sheet.total_return)],
        ["CAGR", _pct(sheet.cagr)],
        ["volatility (annualised)", _pct(sheet.volatility)],
        ["Sortino", _num(sheet.sortino)],
        ["Calmar", _num(sheet.calmar)],
        ["max drawdown", _pct(sheet.max_drawdown)],
        ["max drawdown duration", _days(sheet.max_drawdown_duration.total_seconds() / 86400)],
        ["max drawdown peak .. trough", when],
        ["longest under water", _days(sheet.longest_underwater.total_seconds() / 86400)],
        ["share of days negative", _pct(sheet.negative_day_share)],
        ["Sharpe-like ratio (see definitions)", _num(sheet.sharpe)],
    ]
    return (
        table(("strategy, test windows chained", ""), rows)
        + note("Each test window's daily NAV (the last sample of each UTC day) is scaled onto the NAV the previous window"
               " ended with, so the windows' returns compound; only test windows enter, never a training window. Drawdowns"
               " are read on these daily closes, so an intraday low between two closes does not show. The"
               " baselines keep their totals per window, not a daily NAV: they are compared on APR above.")
    )


def walk_forward_windows(evaluation: WalkForward, figures: Sequence[dict[str, Any]]) -> str:
    """One row per test window: the chosen point, the strategy's and each baseline's net APR on NAV."""
    names = evaluation.baseline_names()
    rows: list[list[Cell]] = []
    for f in figures:
        label = " ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in f["chosen"].items()) or "(as configured)"
        rows.append([f"{f['test_start'][:10]}..{f['test_end'][:10]}", label, _signed(_d(f["strategy"]["net_apr"])),
                     *(_signed(_d(f["baselines_apr"].get(n))) for n in names)])
    return table(("test window", "chosen", "strategy", *names), rows, numeric_from=2)


def walk_forward_charts(evaluation: WalkForward, figures: Sequence[dict[str, Any]]) -> tuple[Any, Any, Any]:
    """Cumulative out-of-sample PnL (strategy on its own axis), its drawdown and the APR of each window."""
    import plotly.graph_objects as go

    names = evaluation.baseline_names()
    ends = [r.window.test_end for r in evaluation.results]
    x = [evaluation.results[0].window.test_start, *ends] if evaluation.results else []
    series: list[tuple[int, str, list[datetime], list[float]]] = []
    total = ZERO
    ys = [0.0]
    for r in evaluation.results:
        total += r.test.net_pnl
        ys.append(float(total))
    series.append((1, "strategy", x, ys))
    for n in names:
        total, ys = ZERO, [0.0]
        for r in evaluation.results:
            total += sum((b.net for b in r.baselines if b.name == n), ZERO)
            ys.append(float(total))
        series.append((2, n, x, ys))
    equity = _two_panels("Cumulative out-of-sample net PnL", "strategy", "baselines (own scale)", series, "net PnL")
    joined = evaluation.joined_nav()
    dd = drawdowns(joined or stitched(evaluation))
    drawdown = go.Figure(go.Scatter(x=[t for t, _ in dd], y=[float(v) * 100 for _, v in dd], name="strategy", mode="lines" if joined else "lines+markers"))
    what = "daily, test windows chained" if joined else "at window ends"
    drawdown.update_layout(title=f"Strategy drawdown, {what} (%)", yaxis_title="%", height=380)
    labels = [f"{f['test_start'][:10]}..{f['test_end'][:10]}" for f in figures]
    apr = go.Figure()
    apr.add_trace(go.Bar(x=labels, y=[float(f["strategy"]["net_apr"]) * 100 for f in figures], name="strategy"))
    for n in names:
        apr.add_trace(go.Bar(x=labels, y=[float(f["baselines_apr"].get(n) or 0) * 100 for f in figures], name=n))
    apr.update_layout(title="Net APR on NAV per test window (%)", barmode="group", yaxis_title="%", height=450)
    return equity, drawdown, apr


def walk_forward_assets(evaluation: WalkForward, figures: Sequence[dict[str, Any]]) -> tuple[str, str]:
    """Per window and asset the carry APR of the strategy and each baseline; per venue the funding each earned there."""
    names = evaluation.baseline_names()
    asset_rows: list[list[Cell]] = []
    venue_rows: list[list[Cell]] = []
    for f in figures:
        span = f"{f['test_start'][:10]}..{f['test_end'][:10]}"
        for a in f["assets"]:
            asset_rows.append([span, a["asset"], _signed(_d(a["strategy_apr"])), *(_signed(_d(a["baselines_apr"].get(n))) for n in names)])
            for v in a["venues"]:
                venue_rows.append([span, a["asset"], v["venue"], _money(_d(v["strategy_funding"])), _money(_d(v["passive_funding"])),
                                   _signed(_d(v["passive_apr"]))])
    assets = table(("test window", "asset", "strategy", *names), asset_rows, numeric_from=2) + note(
        "Carry: funding - fees - slippage on the asset's markets, as APR on the asset's share of the NAV.")
    totals: dict[str, list[Decimal]] = {}
    for r in evaluation.results:
        for (fuse, _market), amounts in r.test.by_market.items():
            into = totals.setdefault(fuse, [ZERO, ZERO, ZERO, ZERO])
            for i, x in enumerate(amounts):
                into[i] += x
        for b in r.baselines:
            if b.name.startswith("passive ") and b.venue:
                totals.setdefault(b.venue, [ZERO, ZERO, ZERO, ZERO])[3] += b.funding
    whole = [[fuse, _money(f), _money(c), _money(sl), _money(f - c - sl), _money(p)] for fuse, (f, c, sl, p) in sorted(totals.items())]
    venues = (
        table(("fuse", "strategy funding", "fees", "slippage", "carry PnL", "passive carry funding"), whole)
        + note("Every test window together; the passive carry is the independent baseline holding that venue.")
        + table(("test window", "asset", "venue", "strategy funding", "passive carry funding", "passive carry APR"), venue_rows, numeric_from=3)
    )
    return assets, venues


def walk_forward_page(evaluation: WalkForward, dropped: Sequence[str], *, title: str) -> str:
    """The walk-forward report as one self-contained interactive HTML page."""
    chart = Charts()
    figures = [evaluation.window_figures(r) for r in evaluation.results]
    equity, drawdown, apr = walk_forward_charts(evaluation, figures)
    assets, venues = walk_forward_assets(evaluation, figures)
    costs = [
        [f"{r.window.test_start:%Y-%m-%d}..{r.window.test_end:%Y-%m-%d}", _money(r.test.net_pnl), _money(r.test.funding), _money(r.test.fees),
         _money(r.test.slippage), _pct(cost_share(r.test.fees, r.test.funding)), _money(r.test.mean_notional), str(r.test.rebalances)]
        for r in evaluation.results
    ]
    labels = [p.label() for p in evaluation.points]
    fits = [
        [f"{r.window.train_start:%Y-%m-%d}..{r.window.test_start:%Y-%m-%d}",
         *((f"{_money(f.net_pnl)} (chosen)" if i == r.chosen else _money(f.net_pnl)) for i, f in enumerate(r.train))]
        for r in evaluation.results
    ]
    joined = evaluation.joined_nav()
    body = {
        "summary": walk_forward_summary(evaluation),
        "risk": walk_forward_risk(evaluation, joined),
        "windows": walk_forward_windows(evaluation, figures),
        "equity": chart(equity, "equity"),
        "drawdown": chart(drawdown, "drawdown"),
        "monthly": (note("Strategy, test windows chained: each month from the previous month's last NAV (the first month from"
                         " the first test window's start; the first and last months are partial).") + monthly_table(joined))
        if joined else note("n/a: the test replays kept no daily NAV."),
        "apr": chart(apr, "apr"),
        "assets": assets,
        "venues": venues,
        "costs": table(("test window", "net PnL", "funding", "fees", "slippage", "fees / funding", "mean notional", "rebalances"), costs),
        "fits": table(("training window", *labels), fits)
        + note("Training net PnL of each grid point; the best (ties: fewer rebalances, then the earlier point) is tested on the next window.")
        + "".join(note(f"grid point dropped: {d}") for d in dropped),
        "definitions": note(" ".join(evaluation.lines()[-1:])) + note(DEFINITIONS) + note(SHARPE_NOTE),
    }
    subtitle = (f"train {format_duration(evaluation.train)}, test {format_duration(evaluation.test)}, {len(evaluation.points)} grid point(s);"
                " every figure is out of sample but the training fits.")
    return page(title, subtitle, [(key, name, body[key]) for key, name in WALK_FORWARD_SECTIONS])


def write_walk_forward_html(path: Path, evaluation: WalkForward, dropped: Sequence[str], *, title: str) -> Path:
    """Write the walk-forward report (``walk_forward_page``) to ``path``."""
    return write_text(path, walk_forward_page(evaluation, dropped, title=title))
