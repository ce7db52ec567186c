"""The Binance emulator's money on a real chain: withdrawals are ERC-20 transfers from its hot wallet,
deposits to its accounts' addresses are credited after N confirmations, both through the real ccxt client."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from eth_account import Account
from web3 import Web3

from fuses.emulators.binance import deposit_address
from fuses.evm.anvil import dev_key
from tests.chain.venue_rig import FEE, HOT_WALLET, NETWORK, USER, TokenChain, chain_binance, tx_manager, units, until

pytestmark = pytest.mark.chain

HOT = Account.from_key(dev_key(HOT_WALLET)).address


async def test_a_withdrawal_lands_on_chain_as_the_amount_less_the_fee_with_its_real_hash(token_chain: TokenChain) -> None:
    destination = Account.create().address
    hot_before = token_chain.balance(HOT)
    async with chain_binance(token_chain) as venue:
        withdrawal_id = await venue.alice.withdraw("USDC", Decimal("100.25"), destination, NETWORK, client_id="mv-chain-1")

        async def completed() -> Any:
            found = await venue.alice.withdrawal("USDC", "mv-chain-1")
            return found if found is not None and found.status == "completed" else None

        found = await until(completed, "the withdrawal completed on chain")

        # Assert: exactly the amount less the venue's fee arrived, in the transaction the history names.
        assert found.id == withdrawal_id and found.fee == FEE and found.amount == Decimal("100.25")
        assert token_chain.balance(destination) == units(Decimal("100.25") - FEE)
        assert token_chain.balance(HOT) == hot_before - units(Decimal("100.25") - FEE)
        receipt = token_chain.w3.eth.get_transaction_receipt(found.tx_id)
        assert receipt["status"] == 1 and receipt["from"] == HOT and receipt["to"] == Web3.to_checksum_address(token_chain.token)
        assert "0x" + bytes(receipt["transactionHash"]).hex() == found.tx_id
        assert len(token_chain.transfers_from(HOT)) == 1
        raw = await venue.alice.client.fetch_withdrawals("USDC", None, None, {"withdrawOrderId": "mv-chain-1"})
        assert raw[0]["info"]["status"] == 6 and raw[0]["info"]["txId"] == found.tx_id and raw[0]["network"] == NETWORK
        assert venue.spot("alice") == Decimal(5000) - Decimal("100.25")
        # The fuse learnt USDC (outside its USDT markets) for these wallet calls and still reads its own account and markets.
        assert (await venue.alice.account()).balance("USDT").total == Decimal(1000)
        assert "BTC/USDT:USDT" in {i.symbol for i in await venue.alice.instruments()}


async def test_an_amount_the_token_cannot_carry_is_refused_before_anything_is_debited(token_chain: TokenChain) -> None:
    from fuses.base import RejectedError

    async with chain_binance(token_chain) as venue:
        with pytest.raises(RejectedError, match=r"not a multiple of the venue's step on ARBITRUM \(ccxt would send 10\)"):
            await venue.alice.withdraw("USDC", Decimal("10.0000001"), Account.create().address, NETWORK, client_id="mv-dust")
        assert venue.spot("alice") == Decimal(5000)
        assert venue.x.withdrawals.get("alice", []) == []


async def test_a_withdrawal_the_hot_wallet_cannot_pay_fails_and_is_refunded(token_chain: TokenChain) -> None:
    async with chain_binance(token_chain, alice_usdc=Decimal(2_000_000)) as venue:
        await venue.alice.withdraw("USDC", Decimal(1_500_000), Account.create().address, NETWORK, client_id="mv-too-big")

        async def settled() -> Any:
            found = await venue.alice.withdrawal("USDC", "mv-too-big")
            return found if found is not None and found.status != "processing" else None

        found = await until(settled, "the withdrawal settled")
        assert found.status == "failed" and found.tx_id is None
        assert venue.spot("alice") == Decimal(2_000_000)  # Binance's "Failure" (5): the money came back
        assert token_chain.transfers_from(HOT) == []


async def test_a_deposit_is_pending_until_its_confirmations_then_credited_exactly(token_chain: TokenChain) -> None:
    async with chain_binance(token_chain, confirmations=3) as venue:
        address, tag = await venue.alice.deposit_address("USDC", NETWORK)
        assert address == deposit_address("alice", "USDC", NETWORK) and tag is None
        user = tx_manager(token_chain, USER)
        await user.start()
        try:
            sent = await user.send_call(user.contract(token_chain.token, _erc20()), "transfer", [address, units(Decimal("250.123456"))], label="deposit")
        finally:
            await user.close()

        # Arrange: the block holding it is its first confirmation; the venue waits for 3.
        async def seen() -> Any:
            return await venue.alice.deposit("USDC", sent.tx_hash)

        pending = await until(seen, "the venue saw the deposit")
        assert (pending.status, pending.amount, pending.asset) == ("pending", Decimal("250.123456"), "USDC")
        raw = await venue.alice.client.fetch_deposits("USDC", None, None, {"txId": sent.tx_hash})
        assert (raw[0]["info"]["status"], raw[0]["info"]["confirmTimes"], raw[0]["txid"]) == (0, "1/3", sent.tx_hash)
        token_chain.mine()
        still = await venue.alice.deposit("USDC", sent.tx_hash)
        assert still is not None and still.status == "pending"
        assert venue.spot("alice") == Decimal(5000)

        # Act: the third block.
        token_chain.mine()

        # Assert: credited once, to the unit, in the spot wallet; bob's account saw nothing.
        credited = await venue.alice.deposit("USDC", sent.tx_hash)
        assert credited is not None and (credited.status, credited.amount, credited.network) == ("credited", Decimal("250.123456"), NETWORK)
        assert venue.spot("alice") == Decimal("5250.123456")
        token_chain.mine(2)
        await venue.alice.deposit("USDC", sent.tx_hash)
        assert venue.spot("alice") == Decimal("5250.123456")
        raw = await venue.alice.client.fetch_deposits("USDC")
        assert [(d["info"]["status"], d["info"]["confirmTimes"]) for d in raw] == [(1, "3/3")]
        assert await venue.bob.deposit("USDC", sent.tx_hash) is None
        assert await venue.alice.deposit("USDC", "0x" + "ab" * 32) is None


def _erc20() -> list[dict[str, Any]]:
    from fuses.evm.erc20 import ERC20_ABI

    return ERC20_ABI
