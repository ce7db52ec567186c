"""The daemon's own notices: hedges opened and closed, top-ups, deleverages, pauses, the kill switch, unhedged legs.

Sent through apprise (one library for Telegram, Slack, Discord, e-mail, webhooks and some hundred
other services, each a URL) to the URLs that the strategy file's ``notify.urls`` secrets hold.
Prometheus alerts (deploy/alertmanager) say what has been wrong for a while; a notice says what
the daemon just did, the moment it did it.

Sending never blocks or breaks the daemon: ``Notifier.notify`` only filters and queues (a full
queue drops the notice and counts it in ``alpha_notices_dropped_total``); one task sends the
queue in order, each send in a worker thread bounded by ``notify.timeout``; a failed or slow
send is counted and logged without its URL. The URLs are registered with the log redaction and
apprise's own log lines pass through it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from alpha.config.schema import NoticeEvent, NoticeSeverity, Notify
from alpha.observability.logging import get_logger, register_secret
from alpha.observability.metrics import Metrics

__all__ = ["SEVERITY", "Notice", "NoticeEvent", "NoticeSeverity", "Notifier", "NotifyError", "notices_of_action", "wanted"]

log = get_logger("alpha.notices")

SEVERITY: Mapping[NoticeEvent, NoticeSeverity] = {
    NoticeEvent.HEDGE_OPENED: NoticeSeverity.INFO,
    NoticeEvent.HEDGE_CLOSED: NoticeSeverity.INFO,
    NoticeEvent.RESUMED: NoticeSeverity.INFO,
    NoticeEvent.TOP_UP: NoticeSeverity.WARNING,
    NoticeEvent.DELEVERAGE: NoticeSeverity.WARNING,
    NoticeEvent.PAUSED: NoticeSeverity.WARNING,
    NoticeEvent.KILL_SWITCH: NoticeSeverity.CRITICAL,
    NoticeEvent.UNHEDGED_LEG: NoticeSeverity.CRITICAL,
}
_RANK = {s: i for i, s in enumerate(NoticeSeverity)}
_TITLES = {e: e.value.replace("_", " ") for e in NoticeEvent}


class NotifyError(Exception):
    """The notify section cannot be used (a secret missing, a URL apprise does not know); raised at start."""


@dataclass(frozen=True, slots=True)
class Notice:
    """One event to tell the operators about: what happened (one line), when (the daemon's clock), details."""

    event: NoticeEvent
    ts: datetime
    text: str
    fields: Mapping[str, str] = field(default_factory=dict)

    @property
    def severity(self) -> NoticeSeverity:
        return SEVERITY[self.event]

    def title(self, source: str) -> str:
        return f"alpha {source}: {_TITLES[self.event]}"

    def body(self) -> str:
        """The text, then one ``key: value`` line per detail (event, severity and time first)."""
        lines = [self.text, f"event: {self.event.value}", f"severity: {self.severity.value}", f"time: {self.ts.isoformat()}"]
        lines += [f"{k}: {v}" for k, v in self.fields.items()]
        return "\n".join(lines)


def wanted(config: Notify, event: NoticeEvent) -> bool:
    """Whether ``config`` sends ``event``: it is listed and at or above the minimum severity."""
    return event in config.events and _RANK[SEVERITY[event]] >= _RANK[config.min_severity]


class Notifier:
    """Queue notices as they happen and send them, one at a time, through apprise.

    ``urls`` are the apprise URLs (already read from their secrets: ``from_config``); none makes
    a notifier that sends nothing. ``source`` names this daemon in every title.
    """

    def __init__(self, config: Notify, metrics: Metrics, urls: list[str], *, source: str) -> None:
        self.config = config
        self.metrics = metrics
        self.source = source
        self._apprise: Any = None
        if urls:
            import apprise

            self._apprise = apprise.Apprise()
            for i, url in enumerate(urls):
                register_secret(url)
                if not self._apprise.add(url):
                    raise NotifyError(f"notify.urls: URL {i + 1} is not one apprise can send to (its value is not shown)")
            _route_apprise_logs()
        self._queue: asyncio.Queue[Notice] = asyncio.Queue(maxsize=config.queue_size)
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @classmethod
    def from_config(cls, config: Notify, metrics: Metrics, *, source: str, environ: Mapping[str, str] | None = None) -> Notifier:
        """Read every URL secret ``config`` names; ``NotifyError`` saying which one is missing (never its value)."""
        from fuses.base import FatalError
        from fuses.ccxt.config import read_secret

        urls: list[str] = []
        for ref in config.urls:
            try:
                urls += read_secret(ref, None if environ is None else dict(environ)).reveal().split()
            except FatalError as exc:
                raise NotifyError(f"notify.urls: {exc}") from None
        return cls(config, metrics, urls, source=source)

    @property
    def enabled(self) -> bool:
        return self._apprise is not None

    def notify(self, notice: Notice) -> None:
        """Queue ``notice`` if the config sends its event; never blocks (a full queue drops it, counted)."""
        if not self.enabled or self._closing or not wanted(self.config, notice.event):
            return
        try:
            self._queue.put_nowait(notice)
        except asyncio.QueueFull:
            self.metrics.notices_dropped.labels(event=notice.event.value, reason="queue_full").inc()
            log.warning("notice dropped: the queue is full (a notifier is slow or down)", notice_event=notice.event.value)

    def start(self) -> None:
        """Start the sending task (in the running loop); a no-op without URLs."""
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._run(), name="notices")

    async def close(self, timeout: float) -> None:
        """Stop taking notices, send what is queued for at most ``timeout`` seconds, then stop."""
        self._closing = True
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        while not self._queue.empty():
            left = self._queue.get_nowait()
            self.metrics.notices_dropped.labels(event=left.event.value, reason="timeout").inc()

    async def _run(self) -> None:
        while True:
            notice = await self._queue.get()
            try:
                await self._send(notice)
            except asyncio.CancelledError:  # closed while sending: not delivered in time
                self.metrics.notices_dropped.labels(event=notice.event.value, reason="timeout").inc()
                raise
            finally:
                self._queue.task_done()

    async def _send(self, notice: Notice) -> None:
        import apprise

        kind = {
            NoticeSeverity.INFO: apprise.NotifyType.INFO,
            NoticeSeverity.WARNING: apprise.NotifyType.WARNING,
            NoticeSeverity.CRITICAL: apprise.NotifyType.FAILURE,
        }[notice.severity]
        event = notice.event.value
        try:
            sent = await asyncio.wait_for(
                asyncio.to_thread(self._apprise.notify, body=notice.body(), title=notice.title(self.source), notify_type=kind),
                self.config.timeout.total_seconds(),
            )
        except TimeoutError:
            self.metrics.notices_dropped.labels(event=event, reason="timeout").inc()
            log.warning("notice not delivered in time", notice_event=event, timeout_seconds=self.config.timeout.total_seconds())
            return
        except Exception as exc:  # a notifier's bug must not stop the others: counted, logged (redacted)
            self.metrics.notices_dropped.labels(event=event, reason="failed").inc()
            log.warning("notice not delivered", notice_event=event, error=type(exc).__name__)
            return
        if sent:
            self.metrics.notices_sent.labels(event=event).inc()
        else:
            self.metrics.notices_dropped.labels(event=event, reason="failed").inc()
            log.warning("notice not delivered (apprise reported a failure; its log says which service)", notice_event=event)


class _ToStructlog(logging.Handler):
    """Pass apprise's warnings through the daemon's logger, whose redaction masks the registered URLs."""

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            log.warning("apprise: " + record.getMessage())


def _route_apprise_logs() -> None:
    logger = logging.getLogger("apprise")
    if not any(isinstance(h, _ToStructlog) for h in logger.handlers):
        logger.addHandler(_ToStructlog(logging.WARNING))
        logger.propagate = False


# -- the notices of the daemon's events ---------------------------------------------------------


def notices_of_action(action: Any, *, ts: datetime, decision_id: str, why: str, completed: bool, error: str | None,
                      unhedged: Any, describe: Callable[[Any], str]) -> list[Notice]:
    """The notices one executed action makes: a hedge opened or closed, a top-up, or an unhedged leg."""
    from alpha.domain.actions import CloseHedge, OpenHedge, ResizeLeg, TopUpMargin

    base = {"decision_id": decision_id, "trigger": why}
    out: list[Notice] = []
    if completed and isinstance(action, OpenHedge | CloseHedge):
        event = NoticeEvent.HEDGE_OPENED if isinstance(action, OpenHedge) else NoticeEvent.HEDGE_CLOSED
        verb = "opened" if isinstance(action, OpenHedge) else "closed"
        out.append(Notice(event, ts, f"hedge {verb} on {action.asset}: {describe(action)}",
                          {**base, "asset": action.asset, "hedge_id": str(action.hedge_id), "reason": action.reason}))
    elif completed and isinstance(action, TopUpMargin):
        out.append(Notice(NoticeEvent.TOP_UP, ts, f"margin topped up on {action.fuse}: {action.amount} {action.asset} from {action.source}",
                          {**base, "fuse": action.fuse, "asset": action.asset, "amount": str(action.amount), "reason": action.reason}))
    if not completed and isinstance(action, OpenHedge | CloseHedge | ResizeLeg) and unhedged > 0:
        out.append(Notice(NoticeEvent.UNHEDGED_LEG, ts, f"a hedge leg is left unhedged: {unhedged:.2f} notional ({describe(action)})",
                          {**base, "asset": action.asset, "unhedged_notional": f"{unhedged:.2f}", "error": error or "not filled"}))
    return out
