"""The live status table ``alpha run`` shows on a terminal."""

from __future__ import annotations

from typing import Any

CLEAR = "\x1b[H\x1b[2J"


def render(status: dict[str, Any]) -> str:
    """Render a daemon status (``Daemon.status()``) as a text table."""
    lines = [
        f"alpha {status['mode']}  {status['now'][:16].replace('T', ' ')}  "
        f"{'READY' if status['ready'] else 'not ready'}"
        f"{'  KILL SWITCH' if status['kill_switch'] else ''}"
        f"{'  PAUSED: ' + ', '.join(status['paused']) if status['paused'] else ''}",
        f"NAV {status['nav']}   idle {status['idle']}   funding earned {status['funding_earned']}   "
        f"top-ups {status['top_ups']}   decisions {status['decisions']}   liquidations {status['liquidations']}",
        "",
        f"{'fuse':<12} {'capital':>16} {'margin ratio':>13}",
    ]
    for name, info in status["fuses"].items():
        lines.append(f"{name:<12} {info['capital']:>16} {info['margin_ratio'] or '-':>13}")
    lines += ["", f"{'position':<28} {'size':>16} {'mark':>14}"]
    for p in status["positions"]:
        lines.append(f"{p['fuse'] + ' ' + p['market']:<28} {p['size']:>16} {p['mark']:>14}")
    lines += ["", "last events:"]
    lines += [f"  {e}" for e in status["events"][-10:]]
    return "\n".join(lines)
