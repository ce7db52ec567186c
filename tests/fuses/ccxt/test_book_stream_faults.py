"""Faults of the order-book stream (ccxt.pro watch_order_book over the Binance emulator's diff-depth
stream): a dropped stream falls back to REST and comes back to the venue's book, a missed depth
update makes ccxt resync from a fresh snapshot, and refused reconnects space out."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from alpha.domain.clock import LiveClock
from fuses.ccxt.streams import Backoff, BookUpdate, FeedState, MarketStreams, MarkUpdate, StreamSettings
from fuses.emulators.binance import BINANCE_KEY
from tests.fuses.ccxt.test_streams import SETTINGS, ShiftedClock, running, wait_for, wait_for_async

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
MARKETS = (BTC, ETH)
DEPTH = "/fapi/v1/depth"


def streamed_since(streams: MarketStreams, since: datetime | None = None) -> bool:
    """Return whether every market's book came from the stream (after ``since``, if given)."""
    return all(
        m in streams.books
        and streams.books[m].source == "stream"
        and (since is None or streams.books[m].received > since)
        for m in MARKETS
    )


def streaming(streams: MarketStreams, since: datetime | None = None) -> bool:
    """Return whether the books feed streams and every book came from the stream (after ``since``)."""
    return streams.states["books"] is FeedState.STREAMING and streamed_since(streams, since)


async def equals_rest_book_after(rig: Any, streams: MarketStreams, since: datetime, counter: list[int]) -> None:
    """Wait until every streamed book, received after ``since``, equals the venue's REST book;
    add the test's own depth requests to ``counter``."""

    async def same() -> bool:
        rest = {m: await rig.fuse.order_book(m, streams.settings.book_depth) for m in MARKETS}
        counter[0] += len(MARKETS)
        return streamed_since(streams, since) and all(streams.books[m].book == rest[m] for m in MARKETS)

    await wait_for_async(same)


class StaleSampler:
    """Sample, every ``every`` seconds, the books older than ``bound`` (real time), while ``running`` holds."""

    def __init__(
        self, streams: MarketStreams, bound: timedelta, every: float = 0.02, running: Callable[[], bool] = lambda: True
    ) -> None:
        self.streams, self.bound, self.every, self.running = streams, bound, every, running
        self.stale: list[tuple[str, timedelta]] = []
        self.samples = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while self.running():
            now = LiveClock().now()
            for market, update in self.streams.books.items():
                if now - update.received > self.bound:
                    self.stale.append((market, now - update.received))
            self.samples += 1
            await asyncio.sleep(self.every)

    def __enter__(self) -> StaleSampler:
        self._task = asyncio.create_task(self._run())
        return self

    def __exit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()


def refusals(rig: Any, path_prefix: str, since: float) -> dict[str, list[float]]:
    """Return, per stream URL under ``path_prefix``, the times the emulator refused a connection after ``since``."""
    out: dict[str, list[float]] = {}
    for e in rig.server.state.log.entries:
        if e.at >= since and e.path.startswith(path_prefix) and e.status == 503:
            out.setdefault(e.path, []).append(e.at)
    return out


async def test_dropped_book_stream_polls_rest_stays_fresh_then_streams_the_venues_book_again(rig_factory: Any) -> None:
    seen: list[MarkUpdate | BookUpdate] = []
    async with rig_factory() as rig:
        venue_clock = ShiftedClock()
        rig.server.state.clock = venue_clock
        rig.fuse.clock_skew = timedelta(hours=1)  # the venue's clock runs ahead to move its market: allow its stamps
        streams = MarketStreams(rig.fuse, clock=LiveClock(), settings=SETTINGS, on_update=seen.append)
        log = rig.server.state.log
        async with running(streams):
            await wait_for(lambda: streaming(streams))
            with StaleSampler(streams, SETTINGS.stale_after) as sampler:
                dropped_at = LiveClock().now()
                rig.server.state.faults.disconnect_streams += 1  # every stream connection closes; REST stays up

                def polled() -> set[str]:
                    books = [u for u in seen if isinstance(u, BookUpdate) and u.received > dropped_at]
                    return {u.market for u in books if u.source == "poll"}

                await wait_for(lambda: polled() == set(MARKETS))  # REST filled in while the stream was away
                await wait_for(lambda: streaming(streams, dropped_at))
            assert sampler.samples > 0 and sampler.stale == []
            book_gaps = [g for g in streams.gaps if g.feed == "books"]
            assert book_gaps and dropped_at <= book_gaps[0].start <= book_gaps[0].end
            reconnects = streams.reconnects
            assert reconnects >= 1

            # Back on the stream, and in step with the venue: its moves arrive as diffs.
            snapshots, ours = log.count(DEPTH), [0]
            for step in range(2):
                before = {m: streams.books[m].book for m in MARKETS}
                venue_clock.offset += timedelta(minutes=7)  # the venue's synthetic market steps: its books move
                await equals_rest_book_after(rig, streams, LiveClock().now(), ours)
                assert all(streams.books[m].book != before[m] for m in MARKETS), step
            assert log.count(DEPTH) == snapshots + ours[0]  # no snapshot and no poll: only the test's requests
            assert streams.reconnects == reconnects and streams.states["books"] is FeedState.STREAMING


async def test_a_missed_depth_update_makes_ccxt_resync_from_a_fresh_snapshot(rig_factory: Any) -> None:
    async with rig_factory() as rig:
        venue_clock = ShiftedClock()
        rig.server.state.clock = venue_clock
        rig.fuse.clock_skew = timedelta(hours=1)  # the venue's clock runs ahead to move its market: allow its stamps
        venue = rig.server.app[BINANCE_KEY]
        seen: list[MarkUpdate | BookUpdate] = []
        streams = MarketStreams(rig.fuse, clock=LiveClock(), settings=SETTINGS, on_update=seen.append)
        log = rig.server.state.log
        async with running(streams):
            await wait_for(lambda: streaming(streams))
            before = {m: streams.books[m].book for m in MARKETS}
            reconnects, snapshots, updates = streams.reconnects, log.count(DEPTH), len(seen)

            venue.skip_depth_updates = 1  # the next depth event that changes a book is never sent
            venue_clock.offset += timedelta(minutes=7)  # the venue's books move: one event per market carries it
            await wait_for(lambda: len(venue.skipped_depth) == 1)
            [skipped] = venue.skipped_depth
            assert skipped["b"] or skipped["a"]  # the lost event carried changes: a book without it is wrong
            moved_at = LiveClock().now()

            # The next event's pu is not the last u ccxt applied: it drops the book and resubscribes,
            # which starts from a fresh REST snapshot; the feed reads the failure and re-watches.
            ours = [0]
            await equals_rest_book_after(rig, streams, moved_at, ours)
            assert all(streams.books[m].book != before[m] for m in MARKETS)
            assert streams.reconnects > reconnects and streams.states["books"] is FeedState.STREAMING
            assert any(g.feed == "books" for g in streams.gaps)
            # depth requests beyond the test's own and the feed's REST fill-ins: ccxt's resync snapshots
            fill_ins = sum(1 for u in seen[updates:] if isinstance(u, BookUpdate) and u.source == "poll")
            assert log.count(DEPTH) - snapshots - ours[0] - fill_ins >= 1
            assert venue.skip_depth_updates == 0 and len(venue.skipped_depth) == 1


BACKOFF = Backoff(initial=0.2, factor=2.0, maximum=0.8)
# stale_after well above every reconnect delay here: each attempt reaches the venue (none is cut
# short as a silent stream), so every attempt is a refused connection in the emulator's log
PATIENT = StreamSettings(stale_after=timedelta(seconds=5), poll_every=timedelta(seconds=0.1), backoff=BACKOFF)


async def test_refused_book_stream_reconnects_space_out_by_the_backoff_then_recover(rig_factory: Any) -> None:
    async with rig_factory() as rig:
        streams = MarketStreams(rig.fuse, clock=LiveClock(), settings=PATIENT)
        log = rig.server.state.log
        async with running(streams):
            await wait_for(lambda: streaming(streams))
            since = log.monotonic()
            rig.server.state.faults.streams_down = True  # the stream service refuses connections; REST answers

            def refused_four_times() -> bool:
                per_url = refusals(rig, "/public/ws", since)
                return len(per_url) == len(MARKETS) and all(len(t) >= 4 for t in per_url.values())

            await wait_for(refused_four_times)
            rig.server.state.faults.streams_down = False
            back_at = LiveClock().now()
            await wait_for(lambda: streaming(streams, back_at))

        per_url = refusals(rig, "/public/ws", since)
        assert len(per_url) == len(MARKETS)  # one stream connection per market's book
        for path, times in per_url.items():
            spacing = [b - a for a, b in itertools.pairwise(times)]
            # The closed live connection was attempt 1's failure, so the first refusal is attempt 2
            # and the k-th wait is delay(k + 1): never sooner (a little slack for timer resolution),
            # and not much later while the backoff still grows
            for attempt, gap in enumerate(spacing[:3], start=2):
                assert BACKOFF.delay(attempt) - 0.02 <= gap <= BACKOFF.delay(attempt) + 1.0, (path, attempt, spacing)
        assert streams.reconnects >= 4


CAPPED = StreamSettings(stale_after=PATIENT.stale_after, poll_every=PATIENT.poll_every, backoff=Backoff(0.2, 2.0, 0.4))


@pytest.mark.xfail(
    strict=True,
    reason="known limitation, left because it honours the venue: ccxt.pro's own per-URL dial backoff (0.1 s x 2**n up to 30 s, kept in "
    "client.ws_dial_backoff across MarketStreams' re-watches) stacks on Backoff, so reconnects space out "
    "past Backoff.maximum (0.4 s here: 0.4, 0.4, 0.8, 1.6, 3.2 ...); it also carries a handshake's Retry-After, "
    "and at the default Backoff maximum (30 s) the two agree",
)
async def test_book_reconnects_keep_to_the_backoff_maximum_through_a_long_refusal(rig_factory: Any) -> None:
    """Reconnects keep to ``Backoff.maximum`` through a long outage, so recovery is that quick."""
    async with rig_factory() as rig:
        streams = MarketStreams(rig.fuse, clock=LiveClock(), settings=CAPPED)
        log = rig.server.state.log
        async with running(streams):
            await wait_for(lambda: streams.states["books"] is FeedState.STREAMING)
            since = log.monotonic()
            rig.server.state.faults.streams_down = True
            await asyncio.sleep(4.5)
            rig.server.state.faults.streams_down = False
        per_url = refusals(rig, "/public/ws", since)
        assert len(per_url) == len(MARKETS)
        slack = 0.6  # the REST fill-in and a loaded machine between attempts
        for path, times in per_url.items():
            spacing = [b - a for a, b in itertools.pairwise(times)]
            assert len(spacing) >= 4 and max(spacing) <= CAPPED.backoff.maximum + slack, (path, spacing)


async def test_books_stay_fresh_from_rest_through_a_long_stream_outage(rig_factory: Any) -> None:
    """While the stream is refused, REST keeps every book younger than ``stale_after``."""
    async with rig_factory() as rig:
        streams = MarketStreams(rig.fuse, clock=LiveClock(), settings=SETTINGS)
        stop = asyncio.Event()
        task = asyncio.create_task(streams.run(stop))
        try:
            await wait_for(lambda: streams.states["books"] is FeedState.STREAMING)
            rig.server.state.faults.streams_down = True
            with StaleSampler(streams, SETTINGS.stale_after, every=0.05, running=lambda: not task.done()) as sampler:
                await asyncio.sleep(3.0)
            rig.server.state.faults.streams_down = False
        finally:
            stop.set()
            await asyncio.wait({task}, timeout=5)
        assert sampler.samples > 10
        assert sampler.stale == [], sampler.stale[:5]


async def test_a_silent_book_stream_is_reopened_while_the_mark_stream_keeps_running(rig_factory: Any) -> None:
    """A book stream that goes quiet (connected, no events) is failed and re-opened; marks carry on."""
    async with rig_factory() as rig:
        venue = rig.server.app[BINANCE_KEY]
        streams = MarketStreams(rig.fuse, clock=LiveClock(), settings=SETTINGS)
        stop = asyncio.Event()
        task = asyncio.create_task(streams.run(stop))
        try:
            await wait_for(lambda: streaming(streams) and streams.states["marks"] is FeedState.STREAMING)
            venue.silent_depth = True
            await wait_for(lambda: streams.states["books"] is FeedState.RECONNECTING)
            quiet_at = LiveClock().now()
            await asyncio.sleep(2 * SETTINGS.stale_after.total_seconds())
            venue.silent_depth = False
            await wait_for(lambda: task.done() or streaming(streams, quiet_at))
            assert not task.done(), task  # the feeds still run
            assert streams.marks[BTC].source == "stream" and streams.marks[BTC].received > quiet_at
        finally:
            stop.set()
            await asyncio.wait({task}, timeout=5)  # never raises: the assertion above tells how it ended
