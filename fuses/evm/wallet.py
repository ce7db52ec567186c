"""The vault's wallet as the source of a move: ERC-20 transfers it signs itself, through the transaction manager.

The wallet is a lending fuse's account (``credentials.wallet_key``, the key ``fuses.aave`` signs
with, on its ``rpc_url`` and ``chain_id``). A move out of it is not a venue's withdrawal but a
transaction: ``alpha.daemon.moves`` journals its hash, nonce and signed bytes before it is
broadcast, so a restart finds it by hash and never signs another (``TxManager.check``).

Which token an asset is: ``options["token.<ASSET>"]``, else the Aave reserve pin
``options["reserve.<ASSET>"]`` (a reserve's address is its underlying token's).
"""

from __future__ import annotations

from decimal import Decimal

from alpha.config.schema import FuseConfig
from alpha.domain.clock import Clock
from fuses.base import FatalError, RejectedError
from fuses.evm.bridge import to_units
from fuses.evm.keys import load_account
from fuses.evm.signed import SignedTx
from fuses.evm.txmanager import TxManager, TxResult, TxSettings

TOKEN_PREFIXES = ("token.", "reserve.")


class WalletSender:
    """Send a fuse's tokens from its own wallet: sign, broadcast and check one transfer at a time."""

    def __init__(self, name: str, tx: TxManager, tokens: dict[str, str]) -> None:
        self.name = name
        self.tx = tx
        self.address = tx.address
        self.tokens = tokens  # asset -> the ERC-20's address
        self._decimals: dict[str, int] = {}

    @classmethod
    def from_fuse_config(cls, config: FuseConfig, *, clock: Clock) -> WalletSender:
        """The wallet of an on-chain fuse (its key read now; never shown)."""
        if config.credentials is None or config.credentials.wallet_key is None:
            raise FatalError(f"fuse {config.name}: credentials.wallet_key is required to send from its wallet", venue=config.venue)
        account = load_account(config.credentials.wallet_key, venue=config.venue)
        tx = TxManager(TxSettings.from_fuse_config(config), account, clock=clock, venue=config.venue, fuse=config.name)
        tokens: dict[str, str] = {}
        for prefix in reversed(TOKEN_PREFIXES):  # token.<ASSET> wins over reserve.<ASSET>
            tokens.update({k[len(prefix):]: str(v) for k, v in config.options.items() if k.startswith(prefix)})
        return cls(config.name, tx, tokens)

    async def start(self) -> None:
        await self.tx.start()

    async def close(self) -> None:
        await self.tx.close()

    def token(self, asset: str) -> str:
        found = self.tokens.get(asset)
        if found is None:
            raise RejectedError(
                f"fuse {self.name}: no token address for {asset} (options token.{asset} or reserve.{asset}): the wallet cannot send it",
                venue=self.tx.venue,
            )
        return found

    async def _units(self, asset: str, amount: Decimal) -> int:
        if asset not in self._decimals:
            self._decimals[asset] = int(await self.tx.call(self.tx.erc20(self.token(asset)).functions.decimals(), label="decimals"))
        return to_units(amount, self._decimals[asset])

    async def balance(self, asset: str) -> Decimal:
        """The wallet's balance of ``asset`` (exact)."""
        units = await self.tx.call(self.tx.erc20(self.token(asset)).functions.balanceOf(self.address), label="balanceOf")
        await self._units(asset, Decimal(0))
        return Decimal(int(units)).scaleb(-self._decimals[asset])

    async def sign_transfer(self, asset: str, amount: Decimal, address: str) -> SignedTx:
        """Sign (not broadcast) a transfer of ``amount`` to ``address``; refused before signing if the wallet lacks it."""
        units = await self._units(asset, amount)
        if amount > await self.balance(asset):
            raise RejectedError(f"fuse {self.name}: the wallet holds less than {amount} {asset}", venue=self.tx.venue, code="insufficient")
        token = self.tx.erc20(self.token(asset))
        return await self.tx.sign_call(token, "transfer", [self.tx.w3.to_checksum_address(address), units], label=f"move:{asset}")

    async def broadcast(self, signed: SignedTx) -> None:
        await self.tx.broadcast(signed)

    async def check(self, signed: SignedTx) -> TxResult | None:
        return await self.tx.check(signed)
