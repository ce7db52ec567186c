"""Hyperliquid's bridge on an EVM chain: the local stand-in contract, and the deposit a wallet sends to it.

The contract (``deploy/chain/contracts/HyperliquidBridge.sol``) is modelled on Bridge2 on
Arbitrum: a deposit is a plain USDC ``transfer`` to the bridge's address, credited on
Hyperliquid to the sender; a withdrawal is requested and, after a dispute period, finalized by
the bridge's operator, once per withdrawal id. ``compile_bridge()`` compiles it with solc-js
offline (``deploy/chain/compile-bridge.mjs``) once per set of inputs and caches the artifact
outside git, in ``$ALPHA_BRIDGE_CACHE`` or ``~/.cache/alpha/hl-bridge-<hash>``, the way
``fuses.aave.origin`` caches the Aave release.

``deposit_to_bridge`` is the on-chain half of a move into Hyperliquid: it sends the USDC
through the ``TxManager`` (signed locally, tracked by hash, never re-sent with a new nonce)
and returns the transaction hash, which is what the venue's ledger shows for the deposit.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from eth_hash.auto import keccak

from fuses.base import RejectedError
from fuses.evm.anvil import CHAIN_DIR
from fuses.evm.solcjs import CompileError as CompileError  # re-exported: callers catch it from here
from fuses.evm.solcjs import cache_dir as solc_cache_dir
from fuses.evm.solcjs import compile_into, inputs_hash
from fuses.evm.txmanager import TxManager

BRIDGE_SOURCE = CHAIN_DIR / "contracts" / "HyperliquidBridge.sol"
COMPILE_SCRIPT = CHAIN_DIR / "compile-bridge.mjs"
CACHE_ENV = "ALPHA_BRIDGE_CACHE"
USDC_DECIMALS = 6
MINIMUM_DEPOSIT = Decimal(5)  # Hyperliquid's documented minimum: less is never credited (and is lost)
TRANSFER_TOPIC = "0x" + keccak(b"Transfer(address,address,uint256)").hex()


def _inputs_hash() -> str:
    return inputs_hash(("solc",), (COMPILE_SCRIPT, BRIDGE_SOURCE))


def cache_dir() -> Path:
    """Where the compiled bridge for the installed inputs lives (created by ``compile_bridge``)."""
    return solc_cache_dir(CACHE_ENV, "hl-bridge", _inputs_hash())


def compile_bridge(target: Path | None = None, *, node: str = "node", timeout: float = 300) -> Path:
    """Return a folder holding ``HyperliquidBridge.json``, compiling into it only if it is not complete."""
    return compile_into(target or cache_dir(), COMPILE_SCRIPT, "the bridge", node=node, timeout=timeout)


def bridge_artifact(compiled: Path | None = None) -> dict[str, Any]:
    """The compiled bridge: ``{abi, bytecode}``."""
    folder = compiled or compile_bridge()
    artifact: dict[str, Any] = json.loads((folder / "HyperliquidBridge.json").read_text())
    return artifact


def bridge_abi(compiled: Path | None = None) -> list[dict[str, Any]]:
    """The bridge's ABI."""
    abi: list[dict[str, Any]] = bridge_artifact(compiled)["abi"]
    return abi


async def deploy_bridge(tx: TxManager, usdc: str, operator: str, dispute_period_seconds: int, *, compiled: Path | None = None) -> str:
    """Deploy the bridge for ``usdc`` with ``operator`` as the only key that releases withdrawals; return its address."""
    artifact = bridge_artifact(compiled)
    args = [tx.w3.to_checksum_address(usdc), tx.w3.to_checksum_address(operator), dispute_period_seconds]
    return await tx.deploy(artifact["bytecode"], artifact["abi"], args, label="deploy:hl-bridge")


def to_units(amount: Decimal, decimals: int = USDC_DECIMALS) -> int:
    """``amount`` in the token's smallest units, exactly; an amount finer than one unit is refused."""
    units = amount.scaleb(decimals)
    if not amount.is_finite() or units != units.to_integral_value():
        raise RejectedError(f"{amount} is not a whole number of 10^-{decimals} units", code="bad_number")
    return int(units)


def from_units(units: int, decimals: int = USDC_DECIMALS) -> Decimal:
    """Smallest units as a token amount, exactly."""
    return Decimal(units).scaleb(-decimals)


async def deposit_to_bridge(tx: TxManager, usdc: str, bridge: str, amount: Decimal, *, minimum: Decimal = MINIMUM_DEPOSIT) -> str:
    """Send ``amount`` USDC from the manager's wallet to the bridge (a Hyperliquid deposit); return the tx hash.

    A deposit below the venue's minimum is refused before anything is signed: the venue would
    never credit it and the USDC would be lost.
    """
    if amount < minimum:
        raise RejectedError(
            f"a Hyperliquid deposit of {amount} USDC is below the venue's minimum of {minimum}: it would never be credited",
            code="below_minimum",
        )
    units = to_units(amount)
    result = await tx.send_call(tx.erc20(usdc), "transfer", [tx.w3.to_checksum_address(bridge), units], label="hl-bridge:deposit")
    return result.tx_hash


def withdrawal_id(user: str, nonce: int) -> bytes:
    """The bridge's id of the venue's withdrawal signed by ``user`` with ``nonce``: keccak(user || nonce)."""
    return keccak(bytes.fromhex(user.lower().removeprefix("0x")) + nonce.to_bytes(8, "big"))


async def release_of(tx: TxManager, bridge: str, user: str, nonce: int, *, from_block: int = 0) -> str | None:
    """The hash of the chain transaction that paid out ``user``'s withdrawal ``nonce``, None while it has not.

    Hyperliquid's ledger shows a withdrawal under the venue's own transaction hash; the Arbitrum
    side is read here, from the bridge's ``FinalizedWithdrawal`` event.
    """
    return await release_on(tx.w3, bridge, user, nonce, from_block=from_block)


async def release_on(w3: Any, bridge: str, user: str, nonce: int, *, from_block: int = 0) -> str | None:
    """``release_of`` over any ``AsyncWeb3`` connection (a reader that signs nothing)."""
    contract = w3.eth.contract(address=w3.to_checksum_address(bridge), abi=bridge_abi())
    wid = withdrawal_id(user, nonce)
    logs = await contract.events.FinalizedWithdrawal.get_logs(from_block=from_block, argument_filters={"id": wid})
    if not logs:
        return None
    return "0x" + bytes(logs[0]["transactionHash"]).hex().removeprefix("0x")
