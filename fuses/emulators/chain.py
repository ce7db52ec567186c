"""An emulated venue's link to a local EVM chain (anvil): its hot wallet and its deposit watcher.

A venue emulator given a ``ChainLink`` moves real tokens: a withdrawal it completes is an
ERC-20 ``transfer`` from the venue's hot wallet (a dev key on the local chain), so its
transaction id is a real hash whose receipt and balances anyone can check; and a ``Transfer``
of the token to one of its accounts' deposit addresses is seen in the chain's logs and credited
once it has ``confirmations`` blocks (the block that holds it counts as one, as venues count).

The link knows one token on one network (the venue's network id, e.g. Binance's ``ARBITRUM``);
other coins and networks keep the emulator's chain-less behaviour. Sends go through the
project's ``TxManager`` (nonces, in-doubt broadcasts resolved by hash, never re-signed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiohttp
from eth_account import Account
from eth_utils.address import to_checksum_address
from web3.exceptions import Web3Exception

from alpha.domain.clock import LiveClock
from fuses.base import TransientError
from fuses.evm.erc20 import ERC20_ABI
from fuses.evm.txmanager import TxManager, TxResult, TxSettings

TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"  # keccak("Transfer(address,address,uint256)")


@dataclass(frozen=True, slots=True)
class ChainSettings:
    """Where the venue's chain is and what it moves there. ``hot_wallet_key`` is a secret (never shown)."""

    rpc_url: str
    chain_id: int
    token: str  # the ERC-20 the venue lists as ``coin`` on ``network``
    hot_wallet_key: str = field(repr=False)
    coin: str = "USDC"
    network: str = "ARBITRUM"  # the venue's own network id
    decimals: int = 6
    confirmations: int = 2  # blocks a deposit needs (its own included) before it is credited
    poll: float = 0.2  # seconds between the emulator's looks at the chain


@dataclass(frozen=True, slots=True)
class ChainTransfer:
    """One ``Transfer`` of the token to a watched address, as the chain's log shows it."""

    tx_id: str
    log_index: int
    block: int
    to: str
    units: int


class ChainLink:
    """The venue's hot wallet and its view of the token's transfers on one chain."""

    def __init__(self, settings: ChainSettings, *, venue: str = "emulator") -> None:
        self.settings = settings
        account = Account.from_key(settings.hot_wallet_key)
        self.tx = TxManager(
            TxSettings(rpc_url=settings.rpc_url, chain_id=settings.chain_id, poll_interval=0.02, receipt_timeout=60.0),
            account, clock=LiveClock(), venue=venue, fuse=f"{venue}-hot-wallet",
        )
        self.hot_wallet: str = account.address
        self.next_block: int | None = None  # the first block not yet scanned for deposits

    @property
    def scale(self) -> Decimal:
        return Decimal(10) ** self.settings.decimals

    def units(self, amount: Decimal) -> int | None:
        """``amount`` in the token's smallest units, None when it is not a whole number of them."""
        scaled = amount * self.scale
        return int(scaled) if scaled == scaled.to_integral_value() else None

    def amount(self, units: int) -> Decimal:
        return Decimal(units) / self.scale

    def handles(self, coin: str, network: str) -> bool:
        return (coin, network) == (self.settings.coin, self.settings.network)

    async def start(self) -> None:
        """Check the chain id, sync the hot wallet's nonce, and watch deposits from the current block on."""
        await self.tx.start()
        if self.next_block is None:
            self.next_block = await self.head()

    async def close(self) -> None:
        await self.tx.close()

    async def _rpc(self, awaitable: Any, label: str) -> Any:
        """Await one read of the node; transport and node errors become ``TransientError`` (looked at again later)."""
        try:
            return await awaitable
        except (Web3Exception, aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise TransientError(f"{label}: the chain's node did not answer ({type(exc).__name__})", venue=self.tx.venue) from exc

    async def head(self) -> int:
        return int(await self._rpc(self.tx.w3.eth.block_number, "eth_blockNumber"))

    async def send(self, to: str, units: int, *, label: str) -> TxResult:
        """Transfer ``units`` of the token from the hot wallet to ``to`` and wait for it to be mined."""
        token = self.tx.contract(self.settings.token, ERC20_ABI)
        return await self.tx.send_call(token, "transfer", [to_checksum_address(to), units], label=label)

    async def resolve(self, tx_hash: str) -> TxResult:
        """The outcome of a send whose broadcast was in doubt (``TxManager.resolve``)."""
        return await self.tx.resolve(tx_hash)

    async def transfers_to(self, addresses: Mapping[str, Any]) -> tuple[list[ChainTransfer], int]:
        """New ``Transfer`` logs of the token to any of ``addresses`` since the last scan, and the head now."""
        head = await self.head()
        start = head if self.next_block is None else self.next_block
        if start > head or not addresses:
            self.next_block = max(start, head + 1)
            return [], head
        topics: list[Any] = [TRANSFER_TOPIC, None, ["0x" + "0" * 24 + a.lower().removeprefix("0x") for a in addresses]]
        logs = await self._rpc(self.tx.w3.eth.get_logs({
            "address": to_checksum_address(self.settings.token), "fromBlock": start, "toBlock": head, "topics": topics,
        }), "eth_getLogs")
        self.next_block = head + 1
        found = [
            ChainTransfer("0x" + bytes(entry["transactionHash"]).hex(), int(entry["logIndex"]), int(entry["blockNumber"]),
                          to_checksum_address("0x" + bytes(entry["topics"][2])[-20:].hex()), int.from_bytes(bytes(entry["data"]), "big"))
            for entry in logs
        ]
        return found, head
