"""The HTML reports in a real headless Chromium: no console errors, every section, the plotly charts drawn, a non-blank screenshot.

A short real backtest (and a short walk-forward) over recorded history writes the pages; Chromium
opens them from disk (offline: plotly.js is inlined), runs their scripts under a virtual time
budget, and gives back the DOM after rendering, its console output and a screenshot.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from alpha.backtest.report import SECTIONS, WALK_FORWARD_SECTIONS

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / ".." / "shared" / "data"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (make system-deps installs it)"),
    pytest.mark.skipif(not DATA.exists(), reason="shared data missing"),
]
CONSOLE = re.compile(r":CONSOLE[^\]]*\] (.*)")
TIMEOUT = 240  # seconds for one browser run on a loaded machine


@dataclass
class Rendered:
    dom: str
    console: list[str]
    screenshot: Path


def render(page: Path, out: Path, *, height: int = 6000) -> Rendered:
    """Open ``page`` in headless Chromium: the DOM after its scripts ran, its console messages and a screenshot."""
    assert CHROMIUM is not None
    args = [
        CHROMIUM, "--headless", "--disable-gpu", "--hide-scrollbars", "--no-first-run", "--mute-audio",
        f"--user-data-dir={out / 'profile'}", "--enable-logging=stderr", "--v=0",
        "--virtual-time-budget=30000", f"--window-size=1280,{height}",
    ]
    if os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to start as root with its sandbox (test containers run as root)
    url = page.resolve().as_uri()
    dom = subprocess.run([*args, "--dump-dom", url], capture_output=True, text=True, timeout=TIMEOUT)
    assert dom.returncode == 0, dom.stderr[-2000:]
    shot = out / f"{page.stem}.png"
    taken = subprocess.run([*args, f"--screenshot={shot}", url], capture_output=True, text=True, timeout=TIMEOUT)
    assert taken.returncode == 0, taken.stderr[-2000:]
    console = [m.group(1) for line in (dom.stderr + taken.stderr).splitlines() if (m := CONSOLE.search(line))]
    return Rendered(dom.stdout, console, shot)


def distinct_colours(png: Path) -> int:
    from PIL import Image

    with Image.open(png) as im:
        colours = im.convert("RGB").getcolors(maxcolors=1 << 20)
    return len(colours) if colours is not None else 1 << 20


def alpha(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "alpha", *args], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("data")
    alpha("data", "import", str(DATA / "prices" / "binance-bybit-okx_BTC-ETH_8h_spot_perp_ohlc_funding_2023-2024.csv"), "--out", str(d))
    return d


def assert_rendered(shown: Rendered, sections: tuple[tuple[str, str], ...], charts: set[str]) -> None:
    assert shown.console == [], f"console messages: {shown.console}"
    for key, title in sections:
        assert f'<section id="{key}">' in shown.dom, key
        assert f"<h2>{title}</h2>" in shown.dom, title
    # plotly draws each chart into an <svg class="main-svg"> once its script has run
    drawn = set(re.findall(r'id="chart-([a-z]+)"[^>]*class="[^"]*js-plotly-plot', shown.dom))
    assert drawn == charts
    assert shown.dom.count('class="main-svg"') >= len(charts)
    assert shown.screenshot.stat().st_size > 20_000
    assert distinct_colours(shown.screenshot) > 50  # text, tables and coloured lines: not a blank page


def test_the_backtest_report_renders_every_section_and_chart_without_console_errors(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    alpha("backtest", "--config", str(ROOT / "config" / "backtest-btc-eth-multivenue.yaml"), "--data", str(data),
          "--from", "2023-02-01", "--to", "2023-02-06", "--out", str(out))

    shown = render(out / "report.html", tmp_path)

    assert_rendered(shown, SECTIONS, charts={"equity", "drawdown", "funding", "exposure", "margin"})
    assert "OpenHedge" in shown.dom and "approved" in shown.dom  # the trade list, with its reasons
    assert "liquidation line (ratio 1)" in shown.dom


def test_the_walk_forward_report_renders_every_section_and_chart_without_console_errors(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "wf"
    alpha("backtest", "--config", str(ROOT / "config" / "backtest-btc-eth-multivenue.yaml"), "--data", str(data),
          "--from", "2023-01-01", "--to", "2023-01-25", "--walk-forward", "--train", "10d", "--test", "7d", "--workers", "1",
          "--grid", "thresholds.entry_min_net_apr=0.05", "--out", str(out))

    shown = render(out / "walk-forward.html", tmp_path, height=4000)

    assert {"risk", "monthly"} <= {key for key, _ in WALK_FORWARD_SECTIONS}  # the chained test windows' daily figures
    assert_rendered(shown, WALK_FORWARD_SECTIONS, charts={"equity", "drawdown", "apr"})
    risk = shown.dom.split('<section id="risk">', 1)[1].split("</section>", 1)[0]
    assert "<td>volatility (annualised)</td>" in risk and "<td>Sortino</td>" in risk and "n/a: the test replays" not in risk
    monthly = shown.dom.split('<section id="monthly">', 1)[1].split("</section>", 1)[0]
    assert "<td>2023</td>" in monthly and "<th>Jan</th>" in monthly


def test_the_browser_check_catches_a_page_whose_script_fails(tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text('<!doctype html><html><body><h1>broken</h1><script>noSuchFunction();</script></body></html>')

    shown = render(page, tmp_path, height=600)

    assert any("noSuchFunction is not defined" in m for m in shown.console)
