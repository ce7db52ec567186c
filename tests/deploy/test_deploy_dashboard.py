"""The Grafana dashboard's content: pause panel, gross beside leverage, counters through increase(), drawdown, annotations.

Whether each query returns data from the demo daemon is tests/deploy/test_deploy_live_prometheus.py's job.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = json.loads((REPO / "deploy" / "grafana" / "dashboards" / "alpha.json").read_text(encoding="utf-8"))
PANELS: list[dict[str, Any]] = [p for p in DASHBOARD["panels"] if p["type"] != "row"]


def _exprs(panel: dict[str, Any]) -> list[str]:
    return [t["expr"] for t in panel.get("targets", [])]


def _panel(title: str) -> dict[str, Any]:
    (panel,) = [p for p in PANELS if p["title"] == title]
    return panel


def test_a_panel_shows_trading_paused_per_reason() -> None:
    panel = _panel("Trading paused")
    assert any(re.search(r"by \(reason\) \(alpha_risk_paused\{", e) for e in _exprs(panel))
    assert any("alpha_risk_paused" in e for e in _exprs(_panel("Kill switch / paused / ready")))


def test_gross_and_leverage_per_venue_plots_both_on_two_axes() -> None:
    panel = _panel("Gross and leverage per venue")
    exprs = _exprs(panel)
    assert any("alpha_exposure_venue_gross_usd" in e for e in exprs)
    assert any("alpha_exposure_venue_leverage_ratio" in e for e in exprs)
    (override,) = panel["fieldConfig"]["overrides"]
    legends = [t["legendFormat"] for t in panel["targets"]]
    matcher = re.compile(override["matcher"]["options"])
    assert [bool(matcher.fullmatch(legend.replace("{{fuse}}", "perp-cex"))) for legend in legends] == [False, True]
    assert {"id": "custom.axisPlacement", "value": "right"} in override["properties"]


def test_no_counter_is_plotted_raw() -> None:
    """A *_total resets to 0 when the daemon restarts: every panel reads it through increase() or rate()."""
    counters = 0
    for panel in PANELS:
        for expr in _exprs(panel):
            for m in re.finditer(r"\balpha_[a-z0-9_]+_total\b", expr):
                counters += 1
                before = expr[: m.start()]
                assert re.search(r"\b(increase|rate)\($", before), f"{panel['title']}: {m.group(0)} plotted raw in {expr}"
    assert counters >= 12


def test_a_drawdown_panel_compares_nav_with_its_peak() -> None:
    (expr,) = _exprs(_panel("Drawdown from peak NAV"))
    assert re.search(r"alpha_vault_nav_usd\{[^}]*\} / max_over_time\(alpha_vault_nav_usd\{[^}]*\}\[30d\]\) - 1", expr)


def test_annotations_mark_decisions_and_trades() -> None:
    annotations = {a["name"]: a for a in DASHBOARD["annotations"]["list"] if "expr" in a}
    assert set(annotations) == {"Decisions", "Trades"}
    assert "increase(alpha_strategy_decisions_total" in annotations["Decisions"]["expr"]
    assert 'outcome=~"filled|partially_filled"' in annotations["Trades"]["expr"]
    assert all(a["enable"] and a["datasource"]["uid"] == "${datasource}" for a in annotations.values())


def test_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in DASHBOARD["panels"]:
        g = panel["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
    assert len({p["id"] for p in DASHBOARD["panels"]}) == len(DASHBOARD["panels"])
