"""``alpha emulate binance`` on a local chain, as its own process: a withdrawal through the real ccxt fuse is an
ERC-20 transfer from the hot wallet, and a transfer to the printed deposit address is credited."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from alpha.domain.clock import LiveClock
from fuses.ccxt.config import CcxtSettings, Secret
from fuses.ccxt.fuse import CcxtFuse
from fuses.ccxt.ratelimit import forget_limiters
from fuses.ccxt.venues import VENUES
from fuses.evm.anvil import AnvilNode, dev_key
from fuses.evm.bridge import deposit_to_bridge
from tests.chain.test_hyperliquid_bridge import _deploy, _missing, units_of
from tests.chain.venue_rig import FEE, HOT_WALLET, NETWORK, USER, TokenChain, tx_manager, units, until

pytestmark = pytest.mark.chain

KEY, SECRET = "emu-chain-key", "emu-chain-secret-never-shown"


async def test_the_emulate_command_moves_usdc_on_the_chain(token_chain: TokenChain, tmp_path: Path) -> None:
    env = {**os.environ, "EMU_HOT_KEY": dev_key(HOT_WALLET), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "alpha", "emulate", "binance", "--key", KEY, "--secret", SECRET, "--chain-rpc", token_chain.url,
        "--chain-id", str(token_chain.node.chain_id), "--chain-token", token_chain.token, "--hot-wallet-key-env", "EMU_HOT_KEY",
        "--spot", "100", "--confirmations", "2", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )
    forget_limiters()
    fuse: CcxtFuse | None = None
    try:
        text = await _banner(proc)
        assert dev_key(HOT_WALLET).removeprefix("0x") not in text  # the hot wallet's key is never shown
        url = re.search(r"listening on (http://127\.0\.0\.1:\d+)", text)
        deposit = re.search(r"deposit address \(USDC on ARBITRUM\): (0x[0-9a-fA-F]{40})", text)
        assert url is not None and deposit is not None
        settings = CcxtSettings(name="binance", venue="binanceusdm", markets=("BTC/USDT:USDT",), api_url=url.group(1),
                                api_key=Secret(KEY, "test"), secret=Secret(SECRET, "test"))
        fuse = CcxtFuse(settings, VENUES["binanceusdm"], clock=LiveClock(), timeout_ms=10_000)
        await fuse.start()
        assert await fuse.deposit_address("USDC", NETWORK) == (deposit.group(1), None)

        # A withdrawal: the amount less the fee arrives on chain from the hot wallet.
        destination = Account.create().address
        await fuse.withdraw("USDC", Decimal(10), destination, NETWORK, client_id="emu-w1")
        await until(lambda: _completed(fuse), "the withdrawal to complete on chain", timeout=120)
        assert token_chain.balance(destination) == units(Decimal(10) - FEE)

        # A deposit from another wallet to the printed address: credited after two blocks.
        sender = tx_manager(token_chain, USER)
        await sender.start()
        try:
            sent = await sender.send_call(sender.erc20(token_chain.token), "transfer", [deposit.group(1), units(Decimal("7.5"))], label="deposit")
        finally:
            await sender.close()
        token_chain.mine()

        async def credited() -> bool:
            assert fuse is not None
            found = await fuse.deposit("USDC", sent.tx_hash)
            return found is not None and found.status == "credited" and found.amount == Decimal("7.5")

        await until(credited, "the deposit to be credited", timeout=120)
    finally:
        if fuse is not None:
            await fuse.close()
        proc.terminate()
        await asyncio.wait_for(proc.wait(), timeout=60)
        forget_limiters()


async def _completed(fuse: CcxtFuse) -> bool:
    found = await fuse.withdrawal("USDC", "emu-w1")
    return found is not None and found.status == "completed"


async def test_the_emulate_command_credits_a_bridge_deposit_on_hyperliquid_and_pays_a_withdrawal() -> None:
    missing = _missing()
    if missing:
        pytest.skip(missing)
    node = AnvilNode()
    node.start()
    proc = None
    fuse: CcxtFuse | None = None
    forget_limiters()
    try:
        usdc, bridge, wallet, operator, wallet_tx = await _deploy(node, 0)
        env = {**os.environ, "EMU_OPERATOR_KEY": "0x" + bytes(operator.key).hex(), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "alpha", "emulate", "hyperliquid", "--chain-rpc", node.rpc_url, "--chain-token", usdc,
            "--bridge", bridge, "--bridge-operator-key-env", "EMU_OPERATOR_KEY", "--wallet", wallet.address, "--confirmations", "1",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )
        text = await _banner(proc)
        assert bytes(operator.key).hex() not in text and "wallet key" not in text  # no key is shown
        url = re.search(r"listening on (http://127\.0\.0\.1:\d+)", text)
        assert url is not None
        settings = CcxtSettings(name="hl", venue="hyperliquid", markets=("BTC/USDC:USDC",), api_url=url.group(1),
                                wallet_key=Secret("0x" + bytes(wallet.key).hex(), "test"), wallet_address=wallet.address, signer=wallet.address,
                                options={"bridge_address": bridge, "bridge_rpc_url": node.rpc_url})
        fuse = CcxtFuse(settings, VENUES["hyperliquid"], clock=LiveClock(), timeout_ms=10_000)
        await fuse.start()
        tx_hash = await deposit_to_bridge(wallet_tx, usdc, bridge, Decimal(50))

        async def credited() -> bool:
            assert fuse is not None
            found = await fuse.deposit("USDC", tx_hash)
            return found is not None and (found.status, found.amount) == ("credited", Decimal(50))

        await until(credited, "the bridge deposit to be credited", timeout=120)

        # A withdrawal is completed only once the bridge has paid it on chain, with the chain's hash.
        destination = Account.create().address
        await fuse.withdraw("USDC", Decimal(20), destination, "ARBITRUM", client_id="emu-hl-w1")

        async def paid() -> Any:
            assert fuse is not None
            found = await fuse.withdrawal("USDC", "emu-hl-w1")
            return found if found is not None and found.status == "completed" else None

        found = await until(paid, "the withdrawal to be paid on chain", timeout=120)
        receipt = wallet_tx.w3  # the chain's own view of the payout transaction
        tx = await receipt.eth.get_transaction_receipt(found.tx_id)
        assert tx["to"].lower() == bridge.lower() and tx["status"] == 1
        assert units_of(node.rpc_url, usdc, destination) == 19 * 10**6
        await wallet_tx.close()
    finally:
        if fuse is not None:
            await fuse.close()
        if proc is not None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), timeout=60)
        node.stop()
        forget_limiters()


async def _banner(proc: asyncio.subprocess.Process) -> str:
    """The emulator's opening lines, up to the one saying the test account is funded."""
    assert proc.stdout is not None
    lines: list[str] = []
    while not any(line.startswith("test account funded") for line in lines):
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=120)).decode()
        assert line, f"the emulator stopped: {lines}"
        lines.append(line.strip())
    return "\n".join(lines)
