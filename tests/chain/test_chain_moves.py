"""Moves (alpha.daemon.moves) from one Binance emulator account to another over a real chain, with the real
ccxt fuses: requested -> sent -> confirmed -> credited, a crash between every two steps, never sent twice."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from eth_account import Account

from alpha.daemon.journal import Journal
from alpha.daemon.moves import ARRIVE_WITHIN, MoveRunner, journal_moves, unfinished
from alpha.domain.clock import LiveClock, SimulatedClock
from fuses.emulators.binance import deposit_address
from fuses.evm.anvil import dev_key
from tests.chain.venue_rig import FEE, HOT_WALLET, NETWORK, ChainBinance, TokenChain, chain_binance, units

pytestmark = pytest.mark.chain

HOT = Account.from_key(dev_key(HOT_WALLET)).address
BOB_ADDRESS = deposit_address("bob", "USDC", NETWORK)
TO_BOB = {"name": "to-bob", "kind": "venue", "fuse": "binance-bob", "address": BOB_ADDRESS, "network": NETWORK, "memo": None}


def _states(journal: Journal, move_id: str) -> list[str]:
    return [str(r.data["state"]) for r in journal.records("move") if r.client_id == move_id]


def _runner(
    journal: Journal, venue: ChainBinance, clock: LiveClock | SimulatedClock | None = None, *,
    follow_for: timedelta = timedelta(0), arrive_within: timedelta = ARRIVE_WITHIN,
) -> MoveRunner:
    """A runner that has bob's fuse as a receiver (a fresh one after every simulated crash)."""
    return MoveRunner(journal, clock or LiveClock(), poll=timedelta(seconds=0.05), follow_for=follow_for,
                      receivers={venue.bob.name: venue.bob}, arrive_within=arrive_within)


async def test_a_move_to_another_venue_is_credited_across_a_crash_at_every_step(tmp_path: Path, token_chain: TokenChain) -> None:
    db = tmp_path / "journal.db"
    async with chain_binance(token_chain, confirmations=2) as venue:
        venue.x.withdraw_seconds = 3600.0  # the venue holds it "processing" until the test lets it go on chain

        # Step 1: requested, and the request reached the venue; the process dies before journalling "sent".
        journal = Journal(db)
        move = _runner(journal, venue).request("mv-b2b", venue.alice.name, "USDC", Decimal(500), TO_BOB)
        assert move.credit_to == "binance-bob"
        await venue.alice.withdraw("USDC", Decimal(500), BOB_ADDRESS, NETWORK, client_id=move.id)
        journal.close()

        # Step 2: a restart finds it at the venue: sent (recovered), not sent again.
        journal = Journal(db)
        [move] = unfinished(journal)
        assert (move.state, move.credit_to) == ("requested", "binance-bob")
        assert (await _runner(journal, venue).resolve(venue.alice, move)).state == "sent"
        journal.close()

        # Step 3: the venue sends it on chain; a restart journals confirmed; bob's venue has one confirmation of 2.
        venue.x.withdraw_seconds = 0.0
        journal = Journal(db)
        [move] = unfinished(journal)
        move = await _runner(journal, venue).resolve(venue.alice, move)
        assert move.state == "confirmed" and move.tx_id is not None
        assert not move.final and venue.spot("bob") == Decimal(0)
        journal.close()

        # Step 4: a restart before the second confirmation: still confirmed, nothing journalled.
        journal = Journal(db)
        [move] = unfinished(journal)
        assert (await _runner(journal, venue).resolve(venue.alice, move)).state == "confirmed"
        assert _states(journal, "mv-b2b") == ["requested", "sent", "confirmed"]
        journal.close()

        # Step 5: the second block; a restart journals credited with what bob's venue credited.
        token_chain.mine()
        journal = Journal(db)
        [move] = unfinished(journal)
        move = await _runner(journal, venue).resolve(venue.alice, move)

        # Assert: credited exactly once, every balance to the unit, one withdrawal, one transfer on chain.
        assert move.state == "credited" and move.final
        assert _states(journal, "mv-b2b") == ["requested", "sent", "confirmed", "credited"]
        credited = journal_moves(journal)["mv-b2b"]
        assert Decimal(str(credited.data["credited"])) == Decimal(500) - FEE and credited.tx_id == move.tx_id
        assert unfinished(journal) == []
        assert [w.withdraw_order_id for w in venue.x.withdrawals["alice"]] == ["mv-b2b"]
        assert venue.server.state.log.count(path="/sapi/v1/capital/withdraw/apply") == 1
        assert [t["transactionHash"] for t in token_chain.transfers_from(HOT)] == [move.tx_id]
        assert token_chain.balance(BOB_ADDRESS) == units(Decimal(500) - FEE)
        assert venue.spot("alice") == Decimal(4500)
        assert venue.spot("bob") == Decimal(500) - FEE

        # And a further restart changes nothing.
        assert (await _runner(journal, venue).resolve(venue.alice, move)).state == "credited"
        assert _states(journal, "mv-b2b")[-1] == "credited" and len(_states(journal, "mv-b2b")) == 4
        journal.close()


async def test_a_move_not_credited_in_time_is_overdue_once_and_still_followed(tmp_path: Path, token_chain: TokenChain) -> None:
    async with chain_binance(token_chain, confirmations=2) as venue:
        journal = Journal(tmp_path / "journal.db")
        clock = SimulatedClock(LiveClock().now())
        runner = _runner(journal, venue, clock, arrive_within=timedelta(minutes=10))

        move = await runner.send(venue.alice, runner.request("mv-late", venue.alice.name, "USDC", Decimal("20.5"), TO_BOB))
        assert move.state == "confirmed"  # on chain, one confirmation of the two bob's venue needs

        # Act: past arrive_within, looked at twice.
        clock.advance(timedelta(minutes=11))
        first = await runner.resolve(venue.alice, move)
        second = await runner.resolve(venue.alice, first)

        # Assert: overdue once (with why), not final, still unfinished; then credited when the block comes.
        assert (first.state, second.state) == ("overdue", "overdue")
        assert "not credited by its destination yet" in first.reason and not second.final
        assert [m.id for m in unfinished(journal)] == ["mv-late"]
        token_chain.mine()
        [recovered] = unfinished(journal)
        done = await _runner(journal, venue, clock, arrive_within=timedelta(minutes=10)).resolve(venue.alice, recovered)
        assert done.state == "credited"
        assert _states(journal, "mv-late") == ["requested", "sent", "confirmed", "overdue", "credited"]
        assert venue.spot("bob") == Decimal("20.5") - FEE
        journal.close()


async def test_a_move_to_a_plain_address_ends_at_confirmed(tmp_path: Path, token_chain: TokenChain) -> None:
    wallet = Account.create().address
    plain = {"name": "cold", "kind": "address", "fuse": None, "address": wallet, "network": NETWORK, "memo": None}
    async with chain_binance(token_chain) as venue:
        journal = Journal(tmp_path / "journal.db")
        runner = _runner(journal, venue, follow_for=timedelta(seconds=30))
        move = await runner.send(venue.alice, runner.request("mv-cold", venue.alice.name, "USDC", Decimal(40), plain))
        assert (move.state, move.credit_to, move.final) == ("confirmed", None, True)
        assert unfinished(journal) == []
        assert token_chain.balance(wallet) == units(Decimal(40) - FEE)
        journal.close()
