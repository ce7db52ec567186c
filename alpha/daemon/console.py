"""The terminal view of a running daemon (``alpha run`` on a terminal, ``alpha status``), drawn with ``rich``.

``StatusScreen`` renders a daemon status (``Daemon.status()``, or the control endpoint's
``/status``) to the console's size: the header (mode, time, readiness, pauses and the kill
switch, then NAV, net PnL, funding, fees, idle and top-ups) always comes first and is never
dropped; below it the fuses (capital, margin ratio, journal-only allocations), the positions
and the recent events take what height is left, the events last, newest kept. A bigger
terminal shows more positions and events and, from 110 columns, more columns. Numbers are
never cut: numeric columns keep their full width and text wraps between words.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import IO, Any

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.table import Table
from rich.text import Text

from alpha.daemon.portfolio import JOURNAL_ONLY

WIDE = 110  # columns from which the tables show their extra columns
MIN_EVENTS = 5  # lines kept for events (title and four) before positions take the rest


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def money(value: Any, *, signed: bool = False) -> str:
    """A decimal string as ``1,234.56`` (``+``/``-`` when ``signed``); ``-`` when absent."""
    d = _decimal(value)
    if d is None:
        return "-" if value is None or value == "" else str(value)
    return f"{d:+,.2f}" if signed else f"{d:,.2f}"


def quantity(value: Any) -> str:
    """A size or price without trailing zeros (``0.5``, ``60,000``)."""
    d = _decimal(value)
    if d is None:
        return "-" if value is None or value == "" else str(value)
    text = f"{d:,f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def header_line(status: dict[str, Any]) -> Text:
    """Mode, time, readiness, pauses and kill switch, on one line (wrapped between words if narrow)."""
    line = Text(no_wrap=False, overflow="fold")
    line.append(f"alpha {status.get('mode', '?')}", style="bold")
    line.append(f"  {str(status.get('now', ''))[:16].replace('T', ' ')} UTC  ")
    line.append("READY" if status.get("ready") else "not ready", style="green" if status.get("ready") else "yellow")
    if status.get("kill_switch"):
        line.append("  KILL SWITCH", style="bold white on red")
    paused = status.get("paused") or {}
    if paused:
        line.append("  PAUSED: " + ", ".join(sorted(paused)), style="bold yellow")
    return line


def figures(status: dict[str, Any]) -> Table:
    """NAV, net PnL, funding, fees, idle and top-ups: a label row over a value row."""
    pnl = status.get("pnl") or {}
    fees = pnl.get("fees")
    cells = [
        (f"NAV {status.get('base_asset') or ''}".strip(), money(status.get("nav"))),
        ("net PnL", money(pnl.get("net_pnl"), signed=True)),
        ("funding", money(pnl.get("funding", status.get("funding_earned")), signed=True)),
        ("fees", money(None if fees is None else -Decimal(str(fees)), signed=True)),
        ("idle", money(status.get("idle"))),
        ("top-ups", money(status.get("top_ups"))),
    ]
    grid = Table.grid(padding=(0, 2))
    for label, value in cells:
        grid.add_column(justify="right", no_wrap=True, min_width=max(len(label), len(value)))
    grid.add_row(*[Text(label, style="dim") for label, _ in cells])
    grid.add_row(*[Text(value, style="bold") for _, value in cells])
    return grid


def allocation_line(status: dict[str, Any]) -> Text | None:
    """What of idle is a journal-only allocation (capital that never left its venue), or None."""
    alloc = status.get("allocations")
    if not alloc or not alloc.get("fuses"):
        return None
    where = ", ".join(f"{name} {money(amount)}" for name, amount in alloc["fuses"].items())
    text = Text(no_wrap=False, overflow="fold", style="cyan")
    text.append(f"idle includes {money(alloc['total'])} {alloc.get('asset', '')} {JOURNAL_ONLY} ({where}): no money moved between venues")
    return text


def _table(*columns: tuple[str, str], wide: bool) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1), expand=False, header_style="bold")
    for name, justify in columns:
        if justify == "left":
            table.add_column(name, justify="left", no_wrap=True, overflow="ellipsis", ratio=1 if not wide else None)
        else:
            table.add_column(name, justify="right", no_wrap=True)
    return table


def fuse_table(status: dict[str, Any], wide: bool) -> Table | None:
    """Per fuse: capital, margin ratio and (live) the capital allocated to the vault in the journal only."""
    fuses: dict[str, dict[str, Any]] = status.get("fuses") or {}
    if not fuses:
        return None
    allocated = any(info.get("allocated") for info in fuses.values())
    cols = [("fuse", "left"), ("capital", "right"), ("margin ratio", "right")]
    if allocated:
        cols.append(("idle here (journal only)", "right"))
    table = _table(*cols, wide=wide)
    for name, info in fuses.items():
        row = [name, money(info.get("capital")), quantity(info.get("margin_ratio"))]
        if allocated:
            row.append(money(info["allocated"]) if info.get("allocated") else "-")
        table.add_row(*row)
    return table


def position_table(
    positions: Sequence[dict[str, Any]], wide: bool, more: int = 0, perp_power: Sequence[dict[str, Any]] = ()
) -> Table:
    """Positions (and coins held): fuse, market, size, mark, and from ``WIDE`` columns the notional
    and how far the index may move before the position is liquidated (its p-perp view)."""
    cols = [("fuse", "left"), ("market", "left"), ("size", "right"), ("mark", "right")]
    if wide:
        cols += [("notional", "right"), ("liquidated after", "right")]
    table = _table(*cols, wide=wide)
    distances = {(r.get("fuse"), r.get("market")): r for r in perp_power if r.get("liquidation_distance") is not None}
    for p in positions:
        row = [str(p.get("fuse", "")), str(p.get("market", "")), quantity(p.get("size")), quantity(p.get("mark"))]
        if wide:
            row += [_notional(p), _distance(distances.get((p.get("fuse"), p.get("market"))))]
        table.add_row(*row)
    if more:
        table.add_row(f"... and {more} more", "", "", "", *(["", ""] if wide else []))
    return table


def _distance(row: dict[str, Any] | None) -> str:
    """``a 72.1% rise`` / ``a 36.5% fall`` from a ``perp_power`` row; ``-`` when the position cannot be liquidated."""
    d = _decimal(row.get("liquidation_distance")) if row is not None else None
    if row is None or d is None:
        return "-"
    return f"a {d * 100:.1f}% {'rise' if row.get('direction') == 'up' else 'fall'}"


def _notional(p: dict[str, Any]) -> str:
    try:
        return money(abs(Decimal(str(p["size"])) * Decimal(str(p["mark"]))))
    except (InvalidOperation, KeyError):
        return "-"


class StatusScreen:
    """A daemon status laid out to the console's width and height (see the module docstring)."""

    def __init__(self, status: dict[str, Any]) -> None:
        self.status = status

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        height = options.height or console.height
        wide = width >= WIDE
        opts = options.update(width=width, height=None)

        def lines(block: RenderableType) -> int:
            return len(console.render_lines(block, opts, pad=False))

        head: list[RenderableType] = [header_line(self.status), figures(self.status)]
        alloc = allocation_line(self.status)
        if alloc is not None:
            head.append(alloc)
        blocks: list[RenderableType] = list(head)
        left = height - sum(lines(b) for b in head)
        fuses = fuse_table(self.status, wide)
        if fuses is not None and left - lines(fuses) >= MIN_EVENTS:
            blocks.append(fuses)
            left -= lines(fuses)
        positions = list(self.status.get("positions") or [])
        shown = self._fit_positions(positions, wide, left - MIN_EVENTS, lines, list(self.status.get("perp_power") or []))
        if shown is not None:
            blocks.append(shown)
            left -= lines(shown)
        events = self._fit_events(list(self.status.get("events") or []), left, lines)
        if events is not None:
            blocks.append(events)
        yield Group(*blocks)

    @staticmethod
    def _fit_positions(
        positions: list[dict[str, Any]], wide: bool, room: int, lines: Any, perp_power: Sequence[dict[str, Any]] = ()
    ) -> Table | None:
        if not positions:
            return None
        for n in range(len(positions), 0, -1):
            table = position_table(positions[:n], wide, more=len(positions) - n, perp_power=perp_power)
            if lines(table) <= room:
                return table
        return None

    @staticmethod
    def _fit_events(events: list[str], room: int, lines: Any) -> Group | None:
        if room < 2 or not events:
            return None
        kept: list[Text] = []
        used = 1  # the title line
        for event in reversed(events):  # newest first, until the screen is full
            text = Text("  " + event, no_wrap=False, overflow="fold")
            need = lines(text)
            if used + need > room:
                break
            kept.insert(0, text)
            used += need
        if not kept:
            return None
        return Group(Text("recent events", style="bold"), *kept)


def render(status: dict[str, Any], *, width: int = 100, height: int = 40) -> str:
    """The screen as plain text at ``width`` x ``height`` (for a pipe or a log)."""
    console = Console(width=width, height=height, record=True, file=io.StringIO(), color_system=None, legacy_windows=False)
    console.print(StatusScreen(status))
    return console.export_text().rstrip("\n")


def show(status: dict[str, Any], file: IO[str] | None = None) -> None:
    """Print the screen once to ``file`` (stdout): a terminal's size, else 100 x 40 plain text."""
    out = file or sys.stdout
    if out.isatty():
        Console(file=out).print(StatusScreen(status))
    else:
        print(render(status), file=out)


class TerminalView:
    """The live screen ``alpha run`` keeps on a terminal (the alternate screen, redrawn every tick)."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.live = Live(console=self.console, screen=True, auto_refresh=False, redirect_stdout=False, redirect_stderr=False)
        self.last: dict[str, Any] | None = None

    def __enter__(self) -> TerminalView:
        self.live.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.live.stop()
        if self.last is not None:  # the final state stays on the terminal once the alternate screen is gone
            self.console.print(StatusScreen(self.last))

    async def draw(self, daemon: Any) -> None:
        """Redraw from ``daemon.status()`` (``run_daemon``'s ``on_tick``)."""
        self.last = daemon.status()
        self.live.update(StatusScreen(self.last), refresh=True)
