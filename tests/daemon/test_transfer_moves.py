"""Withdrawal moves in the journal (alpha.daemon.moves) against the Binance emulator with the real ccxt fuse:
what a restart finds, and what it concludes when the venue never got the request or refused it."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from alpha.daemon.journal import Journal
from alpha.daemon.moves import NOT_FOUND_AFTER, MoveRunner, journal_moves, unfinished
from alpha.domain.clock import LiveClock, SimulatedClock
from fuses.emulators.binance import BINANCE_KEY
from fuses.emulators.common import SPOT_SUFFIX
from tests.fuses.conftest import ACCOUNT, BinanceRig, binance_rig

DESTINATION = {"name": "to-okx", "kind": "venue", "fuse": "okx", "address": "0xAb5801a7D398351b8bE11C439e05C5B3259aeC9B", "network": "ERC20", "memo": None}


def _spot(rig: BinanceRig) -> Decimal:
    return rig.backend.account(ACCOUNT + SPOT_SUFFIX, LiveClock().now()).balance("USDT").total


async def test_a_requested_move_the_venue_never_got_is_not_sent_once_its_request_has_expired(tmp_path: Path) -> None:
    async with binance_rig() as rig:
        rig.backend.transfer(ACCOUNT, "USDT", Decimal(1000), "futures", "spot", LiveClock().now())
        # Arrange: a process journalled "requested" and died before its request left (long enough ago, and just now).
        journal = Journal(tmp_path / "journal.db")
        then = SimulatedClock(LiveClock().now() - NOT_FOUND_AFTER - timedelta(seconds=1))
        MoveRunner(journal, then).request("mv-old", rig.fuse.name, "USDT", Decimal(100), DESTINATION)
        MoveRunner(journal, LiveClock()).request("mv-new", rig.fuse.name, "USDT", Decimal(100), DESTINATION)
        journal.close()

        # Act: a restart reads the journal afresh and resolves both from the venue's history.
        journal = Journal(tmp_path / "journal.db")
        runner = MoveRunner(journal, LiveClock())
        for move in unfinished(journal, rig.fuse.name):
            await runner.resolve(rig.fuse, move)

        # Assert: the expired one is not_sent; the fresh one stays of unknown outcome; nothing was withdrawn.
        moves = journal_moves(journal)
        assert (moves["mv-old"].state, moves["mv-new"].state) == ("not_sent", "requested")
        assert "it is not sent again" in moves["mv-old"].reason
        assert [m.id for m in unfinished(journal, rig.fuse.name)] == ["mv-new"]
        assert rig.server.app[BINANCE_KEY].withdrawals.get(ACCOUNT, []) == []
        assert rig.server.state.log.count(path="/sapi/v1/capital/withdraw/apply") == 0
        assert _spot(rig) == Decimal(1000)
        journal.close()


async def test_a_withdrawal_the_venue_refuses_is_not_sent_with_its_reason(tmp_path: Path) -> None:
    async with binance_rig() as rig:
        rig.backend.transfer(ACCOUNT, "USDT", Decimal(1000), "futures", "spot", LiveClock().now())
        journal = Journal(tmp_path / "journal.db")
        runner = MoveRunner(journal, LiveClock(), follow_for=timedelta(seconds=10))

        below = await runner.send(rig.fuse, runner.request("mv-small", rig.fuse.name, "USDT", Decimal(5), DESTINATION))
        short = await runner.send(rig.fuse, runner.request("mv-big", rig.fuse.name, "USDT", Decimal(1001), DESTINATION))
        done = await runner.send(rig.fuse, runner.request("mv-ok", rig.fuse.name, "USDT", Decimal("999.5"), DESTINATION))

        assert (below.state, short.state, done.state) == ("not_sent", "not_sent", "confirmed")
        assert "venue code -1013" in below.reason  # under the emulator's minimum for USDT on ERC20 (10)
        assert [w.withdraw_order_id for w in rig.server.app[BINANCE_KEY].withdrawals[ACCOUNT]] == ["mv-ok"]
        assert _spot(rig) == Decimal("0.5")
        assert unfinished(journal) == []
        journal.close()
