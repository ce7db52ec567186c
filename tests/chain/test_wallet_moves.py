"""Moves out of the vault's wallet (``fuses.evm.wallet``) on a real anvil chain: the transfer is journalled ``sent``
with its hash before it is broadcast, and a restart settles it by that hash without signing another."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from eth_account import Account

from alpha.daemon.journal import Journal
from alpha.daemon.moves import MoveRunner, unfinished
from alpha.domain.clock import LiveClock
from fuses.evm.wallet import WalletSender
from tests.chain.venue_rig import USER, TokenChain, tx_manager, units

pytestmark = pytest.mark.chain


def _plain(address: str) -> dict[str, object]:
    return {"name": "cold", "kind": "vault", "fuse": None, "address": address, "network": "ARBITRUM", "memo": None}


def _runner(journal: Journal) -> MoveRunner:
    return MoveRunner(journal, LiveClock(), poll=timedelta(seconds=0.05), follow_for=timedelta(seconds=30))


async def test_a_transfer_journalled_but_never_broadcast_is_broadcast_once_from_its_bytes(tmp_path: Path, token_chain: TokenChain) -> None:
    to = Account.create().address
    journal = Journal(tmp_path / "journal.db")
    sender = WalletSender("wallet", tx_manager(token_chain, USER), {"USDC": token_chain.token})
    await sender.start()
    try:
        # The crash: requested, signed and journalled sent, and the process dies before the broadcast.
        runner = _runner(journal)
        move = runner.request("mv-w1", "wallet", "USDC", Decimal("12.5"), _plain(to))
        signed = await sender.sign_transfer("USDC", move.amount, to)
        runner._record(move, "sent", tx_id=signed.tx_hash, venue_id=str(signed.nonce), raw=signed.raw.hex())
        assert token_chain.balance(to) == 0
    finally:
        await sender.close()

    # A restart with a fresh wallet: the journalled bytes are broadcast, nothing is signed again.
    again = WalletSender("wallet", tx_manager(token_chain, USER), {"USDC": token_chain.token})
    await again.start()
    try:
        [found] = unfinished(journal)
        assert found.signed is not None and found.signed.tx_hash == signed.tx_hash
        done = await _runner(journal).resume(again, found)
        assert (done.state, done.tx_id, done.final) == ("confirmed", signed.tx_hash, True)
        assert token_chain.w3.eth.get_transaction_count(again.address) == signed.nonce + 1  # one transaction from the key
        assert token_chain.balance(to) == units(Decimal("12.5"))
        assert [t["transactionHash"] for t in token_chain.transfers_from(again.address)] == [signed.tx_hash]
    finally:
        await again.close()
        journal.close()


async def test_a_transfer_whose_nonce_another_transaction_took_is_failed_not_signed_again(tmp_path: Path, token_chain: TokenChain) -> None:
    to = Account.create().address
    journal = Journal(tmp_path / "journal.db")
    sender = WalletSender("wallet", tx_manager(token_chain, USER), {"USDC": token_chain.token})
    await sender.start()
    try:
        runner = _runner(journal)
        move = runner.request("mv-w2", "wallet", "USDC", Decimal(3), _plain(to))
        signed = await sender.sign_transfer("USDC", move.amount, to)
        runner._record(move, "sent", tx_id=signed.tx_hash, venue_id=str(signed.nonce), raw=signed.raw.hex())
    finally:
        await sender.close()
    other = tx_manager(token_chain, USER)  # another sender on the key takes the nonce first
    await other.start()
    try:
        await other.send_call(other.erc20(token_chain.token), "transfer", [Account.create().address, 1], label="other")
    finally:
        await other.close()

    again = WalletSender("wallet", tx_manager(token_chain, USER), {"USDC": token_chain.token})
    await again.start()
    try:
        [found] = unfinished(journal)
        done = await _runner(journal).resume(again, found)
        assert done.state == "failed" and "nonce" in done.reason
        assert token_chain.w3.eth.get_transaction_count(again.address) == signed.nonce + 1  # only the other one
        assert again.tx.sent_hashes == [] and token_chain.balance(to) == 0
        assert unfinished(journal) == []
    finally:
        await again.close()
        journal.close()


async def test_a_transfer_above_the_wallet_balance_is_not_sent_and_nothing_is_signed(tmp_path: Path, token_chain: TokenChain) -> None:
    journal = Journal(tmp_path / "journal.db")
    sender = WalletSender("wallet", tx_manager(token_chain, USER), {"USDC": token_chain.token})
    await sender.start()
    try:
        runner = _runner(journal)
        move = runner.request("mv-w3", "wallet", "USDC", Decimal(2_000_000), _plain(Account.create().address))
        done = await runner.send(sender, move)
        assert done.state == "not_sent" and "holds less than" in done.reason
        assert sender.tx.sent_hashes == [] and token_chain.w3.eth.get_transaction_count(sender.address) == 0
    finally:
        await sender.close()
        journal.close()
