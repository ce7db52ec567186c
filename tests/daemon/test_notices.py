"""Daemon notices through apprise: a real demo daemon's events reach a local webhook; a dead notifier costs nothing.

The receiver is an aiohttp server on 127.0.0.1; apprise's ``json://`` URL posts each notice to
it as ``{"title", "message", "type", ...}``. The daemon runs in-process on a stepped simulated
clock (tests/e2e/harness.py) and opens its first hedges at its first decision.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web

from alpha.config import ConfigError, load_config_text
from alpha.config.schema import NoticeEvent, NoticeSeverity, Notify, SecretRef
from alpha.daemon.app import build_daemon
from alpha.daemon.notices import Notice, Notifier, NotifyError, wanted
from alpha.domain.clock import utc
from alpha.observability.logging import CurrentStderr, configure
from alpha.observability.metrics import Metrics
from tests.e2e.harness import DEMO, SteppedClock, demo_config, run_for

TOKEN = "hook-5ecret-path-token-0123"  # a token in the URL's path: it must never reach a log line


class Receiver:
    """An aiohttp server on 127.0.0.1 that keeps every JSON body posted to it (or never answers: ``hang``)."""

    def __init__(self, hang: bool = False) -> None:
        self.posts: list[dict[str, Any]] = []
        self.hang = hang
        self.port = 0
        self._release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        if self.hang:
            await self._release.wait()
        self.posts.append(await request.json())
        return web.Response(text="ok")

    def titles(self) -> list[str]:
        return [p["title"] for p in self.posts]

    def of(self, event: NoticeEvent) -> list[dict[str, Any]]:
        return [p for p in self.posts if f"event: {event.value}\n" in p["message"]]

    async def wait_for(self, check: Callable[[], bool], timeout: float = 60.0) -> None:
        """Wait (real time, generous) until ``check()`` holds."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not check():
            assert loop.time() < end, f"not received in {timeout}s; got {self.titles()}"
            await asyncio.sleep(0.05)


async def serve(rx: Receiver) -> web.AppRunner:
    """Serve ``rx`` on a free port of 127.0.0.1 (``rx.port``); clean the returned runner up."""
    app = web.Application()
    app.router.add_post("/{path}", rx.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rx.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rx = Receiver()
    runner = await serve(rx)
    yield rx
    rx._release.set()
    await runner.cleanup()


def _metric(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_demo_daemon_sends_hedge_opened_pause_and_resume_to_the_webhook(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ALPHA_TEST_NOTIFY_URL", f"json://127.0.0.1:{receiver.port}/{TOKEN}")
    cfg = demo_config(tmp_path, notify=Notify(urls=(SecretRef(env="ALPHA_TEST_NOTIFY_URL"),)))
    clock = SteppedClock(cfg.clock.start)
    daemon = build_daemon(cfg, clock=clock, serve_http=False)
    task = asyncio.create_task(daemon.run(install_signals=False))
    try:
        await receiver.wait_for(lambda: daemon.ready or task.done(), timeout=120)
        await run_for(daemon, clock, timedelta(minutes=30))
        await receiver.wait_for(lambda: bool(receiver.of(NoticeEvent.HEDGE_OPENED)))
        await daemon.pause()
        await receiver.wait_for(lambda: bool(receiver.of(NoticeEvent.PAUSED)))
        await daemon.resume()
        await receiver.wait_for(lambda: bool(receiver.of(NoticeEvent.RESUMED)))
    finally:
        daemon.request_stop()
        assert await asyncio.wait_for(task, 120) == 0

    opened = receiver.of(NoticeEvent.HEDGE_OPENED)
    first = next(d for d in daemon.decisions if any(type(a).__name__ == "OpenHedge" for a in d.actions))
    hedges = [a for a in first.actions if type(a).__name__ == "OpenHedge"]
    assert len(opened) == len(hedges)
    notice = opened[0]
    assert notice["title"] == "alpha demo-vault (demo): hedge opened"
    assert notice["type"] == "info"
    lines = notice["message"].splitlines()
    hedge = hedges[0]
    leg = hedge.legs[0]
    assert lines[0].startswith(f"hedge opened on {hedge.asset}: {leg.fuse} {leg.market} {leg.side.value} ")
    assert f"decision_id: {first.decision_id}" in lines
    assert f"hedge_id: {hedge.hedge_id}" in lines
    assert f"time: {first.ts.isoformat()}" in lines
    paused = receiver.of(NoticeEvent.PAUSED)
    assert [p["type"] for p in paused] == ["warning"] and "reason: operator" in paused[0]["message"].splitlines()
    assert _metric(daemon.metrics, "alpha_notices_sent_total", event="hedge_opened") == len(opened)
    assert _metric(daemon.metrics, "alpha_notices_dropped_total", event="hedge_opened", reason="failed") == 0
    out, err = capfd.readouterr()
    assert TOKEN not in out + err  # the URL is a secret: in no log line


async def test_a_hanging_notifier_never_blocks_and_every_lost_notice_is_counted() -> None:
    rx = Receiver(hang=True)
    runner = await serve(rx)
    port = rx.port
    metrics = Metrics()
    config = Notify(urls=(SecretRef(env="UNUSED"),), queue_size=2, timeout=timedelta(seconds=30))
    notifier = Notifier(config, metrics, [f"json://127.0.0.1:{port}/{TOKEN}"], source="test")
    notifier.start()
    try:
        for i in range(10):  # synchronous: the sending task has not run yet, so two are queued and eight dropped
            notifier.notify(Notice(NoticeEvent.KILL_SWITCH, utc(2024, 1, 1), f"engaged {i}"))
        assert _metric(metrics, "alpha_notices_dropped_total", event="kill_switch", reason="queue_full") == 8
        await rx.wait_for(lambda: notifier._queue.qsize() == 1)  # one taken and hanging on the receiver
        await notifier.close(timeout=0.5)
    finally:
        rx._release.set()
        await runner.cleanup()
    assert _metric(metrics, "alpha_notices_dropped_total", event="kill_switch", reason="timeout") == 2
    assert _metric(metrics, "alpha_notices_sent_total", event="kill_switch") == 0
    notifier.notify(Notice(NoticeEvent.KILL_SWITCH, utc(2024, 1, 1), "after close"))  # closed: ignored, never raises
    assert _metric(metrics, "alpha_notices_dropped_total", event="kill_switch", reason="queue_full") == 8


async def test_an_unreachable_notifier_is_counted_as_failed_and_named_without_its_url(capfd: pytest.CaptureFixture[str]) -> None:
    previous = structlog.get_config()
    configure(json=True, stream=CurrentStderr())  # log as the CLI does: an earlier test in this process may log elsewhere
    try:
        metrics = Metrics()
        notifier = Notifier(Notify(urls=(SecretRef(env="UNUSED"),)), metrics, [f"json://127.0.0.1:9/{TOKEN}"], source="test")
        notifier.start()
        notifier.notify(Notice(NoticeEvent.UNHEDGED_LEG, utc(2024, 1, 1), "leg left"))
        await notifier.close(timeout=60)
    finally:
        structlog.configure(**previous)
    assert _metric(metrics, "alpha_notices_dropped_total", event="unhedged_leg", reason="failed") == 1
    out, err = capfd.readouterr()
    assert "notice not delivered" in out + err
    assert TOKEN not in out + err


@pytest.mark.parametrize(
    ("events", "minimum", "sent"),
    [
        (tuple(NoticeEvent), NoticeSeverity.INFO, set(NoticeEvent)),
        (tuple(NoticeEvent), NoticeSeverity.WARNING, set(NoticeEvent) - {NoticeEvent.HEDGE_OPENED, NoticeEvent.HEDGE_CLOSED, NoticeEvent.RESUMED}),
        (tuple(NoticeEvent), NoticeSeverity.CRITICAL, {NoticeEvent.KILL_SWITCH, NoticeEvent.UNHEDGED_LEG}),
        ((NoticeEvent.HEDGE_OPENED, NoticeEvent.KILL_SWITCH), NoticeSeverity.INFO, {NoticeEvent.HEDGE_OPENED, NoticeEvent.KILL_SWITCH}),
    ],
)
def test_events_and_minimum_severity_choose_what_is_sent(events: tuple[NoticeEvent, ...], minimum: NoticeSeverity, sent: set[NoticeEvent]) -> None:
    config = Notify(events=events, min_severity=minimum)
    assert {e for e in NoticeEvent if wanted(config, e)} == sent


def _strategy(notify: str) -> str:
    return DEMO.read_text() + "\nnotify:\n" + notify


def test_the_notify_section_names_urls_by_secret_reference() -> None:
    cfg = load_config_text(_strategy("  urls: [{env: ALPHA_NOTIFY_URLS}, {file: /run/secrets/alpha/notify}]\n  min_severity: warning\n  events: [top_up, kill_switch]\n"))
    assert cfg.notify.urls[0].env == "ALPHA_NOTIFY_URLS" and str(cfg.notify.urls[1].file) == "/run/secrets/alpha/notify"
    assert cfg.notify.events == (NoticeEvent.TOP_UP, NoticeEvent.KILL_SWITCH)
    assert load_config_text(DEMO.read_text()).notify.urls == ()  # no section: no notices


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("  urls: ['tgram://123456:ABCdef/42']\n", "secrets are never written inline"),
        ("  url: [{env: X}]\n", "url"),
        ("  events: [hedge_opend]\n", "hedge_opend"),
        ("  events: [top_up, top_up]\n", "repeated: top_up"),
        ("  min_severity: loud\n", "loud"),
    ],
    ids=["inline-url", "unknown-key", "unknown-event", "repeated-event", "unknown-severity"],
)
def test_a_bad_notify_section_is_refused_at_load(section: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(_strategy(section), "strategy.yaml")
    assert message in str(info.value)
    assert "123456:ABCdef" not in str(info.value)


def test_a_missing_url_secret_is_named_without_any_value() -> None:
    with pytest.raises(NotifyError, match="ALPHA_NOT_SET") as info:
        Notifier.from_config(Notify(urls=(SecretRef(env="ALPHA_NOT_SET"),)), Metrics(), source="x", environ={})
    assert "notify.urls" in str(info.value)


def test_a_url_apprise_cannot_send_to_is_refused_without_showing_it() -> None:
    with pytest.raises(NotifyError) as info:
        Notifier.from_config(Notify(urls=(SecretRef(env="U"),)), Metrics(), source="x", environ={"U": "nosuchscheme://s3cret"})
    assert "URL 1" in str(info.value) and "s3cret" not in str(info.value)


def test_notice_body_lists_its_details_after_the_line() -> None:
    n = Notice(NoticeEvent.TOP_UP, utc(2024, 1, 2), "margin topped up on perp-cex: 5000 USDC from vault", {"fuse": "perp-cex"})
    assert n.body().splitlines() == [
        "margin topped up on perp-cex: 5000 USDC from vault", "event: top_up", "severity: warning",
        "time: 2024-01-02T00:00:00+00:00", "fuse: perp-cex",
    ]
    assert json.dumps(n.title("v (demo)")) == '"alpha v (demo): top up"'


def _hedge(kind: type[Any]) -> Any:
    from alpha.domain.actions import HedgeRef, Leg
    from alpha.domain.instruments import Side

    legs = (Leg("spot", "BTC/USDC", Side.SELL, Decimal("1.5")), Leg("perp-cex", "BTC/USDC:USDC", Side.BUY, Decimal("1.5")))
    return kind(HedgeRef.named("h-1"), "BTC", legs, "exit: funding turned")


@pytest.mark.parametrize(
    ("completed", "unhedged", "events"),
    [(True, Decimal(0), [NoticeEvent.HEDGE_CLOSED]), (False, Decimal("31500.5"), [NoticeEvent.UNHEDGED_LEG]), (False, Decimal(0), [])],
    ids=["closed", "leg-left-unhedged", "nothing-filled"],
)
def test_an_executed_hedge_makes_its_notice(completed: bool, unhedged: Decimal, events: list[NoticeEvent]) -> None:
    from alpha.daemon.notices import notices_of_action
    from alpha.domain.actions import CloseHedge

    notices = notices_of_action(
        _hedge(CloseHedge), ts=utc(2024, 1, 3), decision_id="d1", why="schedule", completed=completed,
        error=None if completed else "perp-cex rejected", unhedged=unhedged, describe=lambda a: "legs",
    )
    assert [n.event for n in notices] == events
    if events == [NoticeEvent.UNHEDGED_LEG]:
        (n,) = notices
        assert n.severity is NoticeSeverity.CRITICAL
        assert n.fields["unhedged_notional"] == "31500.50" and n.fields["error"] == "perp-cex rejected"
