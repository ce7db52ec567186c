"""Moves out of Hyperliquid (alpha.daemon.moves over the real ccxt fuse, the emulator and its bridge on anvil):
the venue's not-found horizon is its nonce window, a crashed request is sent again with its journalled nonce
and paid once, and a move is confirmed by the bridge's payout on chain, not by the ledger's row."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from eth_account import Account

from alpha.daemon.journal import Journal
from alpha.daemon.moves import NOT_FOUND_AFTER, MoveRunner, journal_moves, unfinished
from alpha.domain.clock import LiveClock, SimulatedClock
from fuses.ccxt.fuse import CcxtFuse
from fuses.ccxt.venues import VENUES
from fuses.emulators.hyperliquid import venue_of
from fuses.evm.anvil import dev_key
from tests.chain.test_hyperliquid_bridge import BASE, Rig, _fund_bridge, rig, units_of

__all__ = ["rig"]  # the fixture, used by name

TO_WALLET = {"name": "vault-wallet", "kind": "vault", "fuse": None, "address": Account.from_key(dev_key(4)).address,
             "network": "ARBITRUM", "memo": None}


def _states(journal: Journal, move_id: str) -> list[str]:
    return [str(r.data["state"]) for r in journal.records("move") if r.client_id == move_id]


def _with_bridge(rig: Rig) -> CcxtFuse:
    """A fresh fuse (a new process) that reads the bridge's payouts on chain."""
    options = {**rig.fuse.settings.options, "bridge_address": rig.bridge_address, "bridge_rpc_url": rig.url}
    return CcxtFuse(replace(rig.fuse.settings, options=options), VENUES["hyperliquid"], clock=LiveClock(), timeout_ms=5000)


async def test_a_requested_move_hyperliquid_does_not_show_waits_out_its_nonce_window(tmp_path: Path, rig: Rig) -> None:
    journal = Journal(tmp_path / "journal.db")
    old = SimulatedClock(LiveClock().now() - NOT_FOUND_AFTER * 10)  # long past Binance's horizon, well inside two days
    ancient = SimulatedClock(LiveClock().now() - timedelta(days=3))
    MoveRunner(journal, old).request("mv-recent", rig.fuse.name, "USDC", Decimal(10), TO_WALLET)
    MoveRunner(journal, ancient).request("mv-ancient", rig.fuse.name, "USDC", Decimal(10), TO_WALLET)

    runner = MoveRunner(journal, LiveClock())
    for move in unfinished(journal):
        await runner.resolve(rig.fuse, move)

    moves = journal_moves(journal)
    assert (moves["mv-recent"].state, moves["mv-ancient"].state) == ("requested", "not_sent")
    assert rig.bridge.withdrawals == {}
    journal.close()


async def test_a_request_that_arrived_before_the_crash_is_not_paid_twice_when_sent_again(tmp_path: Path, rig: Rig) -> None:
    await _fund_bridge(rig, Decimal(200))
    journal = Journal(tmp_path / "journal.db")
    runner = MoveRunner(journal, LiveClock())
    nonce = rig.fuse.plan_withdrawal("mv-twice")
    assert nonce is not None
    move = runner.request("mv-twice", rig.fuse.name, "USDC", Decimal(50), TO_WALLET, venue_id=nonce)
    await rig.fuse.withdraw("USDC", Decimal(50), TO_WALLET["address"], "ARBITRUM", client_id=move.id, venue_id=nonce)  # then the crash

    fresh = _with_bridge(rig)
    await fresh.start()
    log = venue_of(rig.server.app).log
    try:
        [found] = unfinished(journal)
        assert (found.state, found.venue_id) == ("requested", nonce)
        # Sent again with the journalled nonce (as when the ledger did not show it yet): the venue refuses the
        # repeated nonce, and the move is what its ledger says: sent, then confirmed by the bridge's payout.
        before = log.count("/exchange")
        after = await MoveRunner(journal, LiveClock(), follow_for=timedelta(0))._ask(fresh, found, again=True)
        assert log.count("/exchange") == before + 1 and after.state == "sent"
        await rig.bridge.step()
        done = await MoveRunner(journal, LiveClock(), follow_for=timedelta(0)).resume(fresh, after)
        [pending] = rig.bridge.withdrawals.values()
        assert (done.state, done.tx_id) == ("confirmed", pending.finalize_tx)  # the chain's payout, not the ledger's hash
    finally:
        await fresh.close()
    assert len(rig.bridge.withdrawals) == 1
    assert units_of(rig.url, rig.usdc, TO_WALLET["address"]) == 49 * 10**6
    assert rig.venue_usdc() == BASE + 200 - 50
    assert _states(journal, "mv-twice") == ["requested", "sent", "confirmed"]
    journal.close()


async def test_a_withdrawal_in_the_ledger_is_not_confirmed_before_the_bridge_pays_it(tmp_path: Path, rig: Rig) -> None:
    await _fund_bridge(rig, Decimal(100))
    fresh = _with_bridge(rig)
    await fresh.start()
    journal = Journal(tmp_path / "journal.db")
    try:
        runner = MoveRunner(journal, LiveClock(), follow_for=timedelta(0))
        move = runner.request("mv-wait", fresh.name, "USDC", Decimal(30), TO_WALLET, venue_id=fresh.plan_withdrawal("mv-wait"))
        sent = await runner.send(fresh, move)
        ledger = await rig.fuse.withdrawal("USDC", "mv-wait")  # the fuse without the bridge: the ledger's row
        assert ledger is not None and ledger.status == "completed"
        assert sent.state == "sent" and sent.tx_id is None  # listed by the venue, not yet paid on chain
        await rig.bridge.step()
        done = await runner.resolve(fresh, sent)
        assert done.state == "confirmed" and done.tx_id != ledger.tx_id
        assert units_of(rig.url, rig.usdc, TO_WALLET["address"]) == 29 * 10**6
    finally:
        await fresh.close()
        journal.close()
