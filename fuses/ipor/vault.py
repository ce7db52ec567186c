"""The daemon as the Alpha of an IPOR Fusion PlasmaVault: read it, and move its capital through its fuses.

``PlasmaVaultConnector`` reads the vault (``totalAssets``, ``totalAssetsInMarket`` per market,
the fuses and market substrates its atomists configured, the market limits, whether its
guardian closed it) and acts only through ``PlasmaVault.execute([FuseAction(fuse, data)])``
with the vault's own AaveV3SupplyFuse: ``enter((asset, amount, eMode))`` and
``exit((asset, amount))``. Nothing is ever sent from the Alpha's wallet to a market.

The calldata is encoded here with web3's ABI encoder from the fragments in ``abi.json``
rather than through PyPI ``ipor-fusion`` (the official SDK, which encodes the same bytes):
the SDK requires web3 < 8 and the project pins web3 8.0.0 for every other chain fuse; four
calls do not justify downgrading web3 for the whole daemon (see ``fuses/ipor/README.md``).

Before any transaction the connector checks what the chain would refuse: the fuse must be one
the vault supports, the asset a granted substrate of the fuse's market, the vault open, and
(limits active) the market's balance after a supply within its limit, computed as the vault
computes it: ``limit = floor(limitInPercentage x totalAssets / 1e18)``. A refusal there is a
``RejectedError`` with a ``vault-*`` code and no transaction. What the chain still refuses
(``AccessManagedUnauthorized`` for an account without the ALPHA role, ``MarketLimitExceeded``
...) is decoded by name (``fuses.ipor.errors``).

``VaultAaveFuse`` is the Aave lending fuse whose account is the vault: reads (positions,
rates, health) are of the vault's address; supply and withdraw go through ``execute``. Its
account's wallet balance is the vault's idle underlying, so idle + supplied is the vault's
``totalAssets`` (NAV's on-chain part), counted once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import structlog
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress

from alpha.config.schema import FuseConfig
from alpha.domain.account import AccountSnapshot
from alpha.domain.clock import Clock
from alpha.observability.metrics import Metrics
from alpha.risk.gate import VaultCap
from fuses.aave.fuse import ALL, MAX_UINT256, AaveLendingFuse
from fuses.base import FatalError, RejectedError
from fuses.evm.txmanager import TxManager, TxResult
from fuses.ipor.errors import IPOR_REVERT_CODES

log = structlog.get_logger(__name__)

ABI: dict[str, list[dict[str, Any]]] = json.loads(Path(__file__).with_name("abi.json").read_text())
VAULT_ABI = ABI["PlasmaVault"] + [e for e in ABI["PlasmaVaultBase"] if e["type"] == "function"]
AAVE_V3_MARKET_ID = 1
KEEP_EMODE = 256  # an e-mode category of 256 or more leaves the vault's e-mode alone
ONE_HUNDRED_PERCENT = 10**18


@dataclass(frozen=True, slots=True)
class MarketState:
    """One market of the vault, in underlying units (integers as on chain)."""

    market_id: int
    substrates: tuple[str, ...]  # granted substrates read as asset addresses (checksummed)
    balance: int  # totalAssetsInMarket
    limit: int | None  # limitInPercentage (1e18 = 100 %); None while limits are not active


@dataclass(frozen=True, slots=True)
class VaultState:
    """What the vault says now; ``total_assets`` = idle + every market's balance."""

    vault: str
    asset: str
    decimals: int
    total_assets: int
    idle: int
    fuses: tuple[str, ...]
    markets: dict[int, MarketState] = field(default_factory=dict)
    closed: bool = False  # the guardian closed the vault (``updateTargetClosed``): every restricted call reverts

    def amount(self, units: int) -> Decimal:
        return Decimal(units).scaleb(-self.decimals)

    def market_limit_units(self, market_id: int) -> int | None:
        """The most the market may hold now (None: no limit), as the vault's ``checkLimits`` computes it."""
        market = self.markets.get(market_id)
        if market is None or market.limit is None:
            return None
        return market.limit * self.total_assets // ONE_HUNDRED_PERCENT

    def to_json(self) -> dict[str, Any]:
        """Amounts as decimal strings in the underlying, limits as fractions."""
        return {
            "vault": self.vault,
            "asset": self.asset,
            "total_assets": str(self.amount(self.total_assets)),
            "idle": str(self.amount(self.idle)),
            "closed": self.closed,
            "fuses": list(self.fuses),
            "markets": {
                str(m.market_id): {
                    "balance": str(self.amount(m.balance)),
                    "substrates": list(m.substrates),
                    "limit": None if m.limit is None else str(Decimal(m.limit).scaleb(-18)),
                }
                for m in self.markets.values()
            },
        }


def substrate_address(raw: bytes) -> str | None:
    """A substrate as an asset address (its low 20 bytes), or None when it is not an address (high bytes set)."""
    if len(raw) != 32 or any(raw[:12]):
        return None
    from web3 import Web3

    return str(Web3.to_checksum_address(raw[12:]))


class PlasmaVaultConnector:
    """Reads of and ``execute`` calls on one PlasmaVault, through the Alpha's transaction manager."""

    def __init__(self, tx: TxManager, vault: str, *, venue: str, market_ids: tuple[int, ...] = (AAVE_V3_MARKET_ID,)) -> None:
        self.tx = tx
        self.venue = venue
        self.market_ids = market_ids
        self.contract = tx.contract(vault, VAULT_ABI)
        self.address: ChecksumAddress = self.contract.address
        self.asset = ""
        self.decimals = 0
        self.access_manager = ""
        self.last: VaultState | None = None

    async def start(self) -> VaultState:
        """Read the underlying and the access manager, then the whole state; FatalError if it is not a PlasmaVault."""
        f = self.contract.functions
        try:
            self.asset = await self.tx.call(f.asset(), label="vault.asset")
            # the underlying's decimals: the vault's own shares carry an offset on top
            self.decimals = int(await self.tx.call(self.tx.erc20(self.asset).functions.decimals(), label="asset.decimals"))
            self.access_manager = await self.tx.call(f.getAccessManagerAddress(), label="vault.getAccessManagerAddress")
        except RejectedError as exc:
            raise FatalError(
                f"{self.address} does not answer as an IPOR Fusion PlasmaVault ({exc})", venue=self.venue, code="not-a-vault"
            ) from exc
        self.manager = self.tx.contract(self.access_manager, ABI["IporFusionAccessManager"])
        return await self.refresh()

    async def refresh(self) -> VaultState:
        """Read totals, fuses, substrates, limits and the guardian's switch; keep it as ``last``."""
        f = self.contract.functions
        total, idle, fuses, active, closed = (
            await self.tx.call(f.totalAssets(), label="vault.totalAssets"),
            await self.tx.call(self.tx.erc20(self.asset).functions.balanceOf(self.address), label="vault.idle"),
            await self.tx.call(f.getFuses(), label="vault.getFuses"),
            await self.tx.call(f.isMarketsLimitsActivated(), label="vault.isMarketsLimitsActivated"),
            await self.tx.call(self.manager.functions.isTargetClosed(self.address), label="vault.isTargetClosed"),
        )
        markets = {}
        for market_id in self.market_ids:
            raw = await self.tx.call(f.getMarketSubstrates(market_id), label="vault.getMarketSubstrates")
            balance = await self.tx.call(f.totalAssetsInMarket(market_id), label="vault.totalAssetsInMarket")
            limit = await self.tx.call(f.getMarketLimit(market_id), label="vault.getMarketLimit") if active else None
            substrates = tuple(a for a in (substrate_address(bytes(s)) for s in raw) if a is not None)
            markets[market_id] = MarketState(market_id, substrates, int(balance), None if limit is None else int(limit))
        state = VaultState(
            self.address, self.asset, self.decimals, int(total), int(idle), tuple(fuses), markets, bool(closed)
        )
        if self.last is not None and (self.last.fuses, self.last.closed, _substrates(self.last)) != (
            state.fuses, state.closed, _substrates(state)
        ):
            log.warning("ipor.vault_changed", vault=self.address, fuses=state.fuses, closed=state.closed, substrates=_substrates(state))
        self.last = state
        return state

    async def supply_fuse(self, market_id: int = AAVE_V3_MARKET_ID) -> str:
        """The vault's fuse for ``market_id`` that answers ``AAVE_V3_POOL_ADDRESSES_PROVIDER`` (an Aave supply fuse)."""
        state = self.last or await self.refresh()
        for address in state.fuses:
            fuse = self.tx.contract(address, ABI["AaveV3SupplyFuse"])
            try:
                mid = await self.tx.call(fuse.functions.MARKET_ID(), label="fuse.MARKET_ID")
                await self.tx.call(fuse.functions.AAVE_V3_POOL_ADDRESSES_PROVIDER(), label="fuse.AAVE_V3_POOL_ADDRESSES_PROVIDER")
            except RejectedError:
                continue
            if int(mid) == market_id:
                return str(fuse.address)
        raise RejectedError(
            f"vault {self.address} has no Aave supply fuse for market {market_id} (fuses: {', '.join(state.fuses) or 'none'})",
            venue=self.venue, code="vault-no-fuse",
        )

    async def fuse_provider(self, fuse: str) -> str:
        """The Aave PoolAddressesProvider the vault's supply fuse ``fuse`` uses."""
        c = self.tx.contract(fuse, ABI["AaveV3SupplyFuse"])
        return str(await self.tx.call(c.functions.AAVE_V3_POOL_ADDRESSES_PROVIDER(), label="fuse.AAVE_V3_POOL_ADDRESSES_PROVIDER"))

    def check(self, state: VaultState, fuse: str, market_id: int, asset: str, supply_units: int, *, what: str) -> None:
        """Refuse (``RejectedError``, no transaction) what the vault would revert or cut short: closed, fuse, substrate, idle, limit."""
        if state.closed:
            raise RejectedError(f"{what}: vault {self.address} is closed by its guardian", venue=self.venue, code="vault-closed")
        if fuse not in state.fuses:
            raise RejectedError(f"{what}: fuse {fuse} is no longer one of the vault's fuses", venue=self.venue, code="vault-no-fuse")
        market = state.markets.get(market_id)
        if market is None or asset.lower() not in {s.lower() for s in market.substrates}:
            raise RejectedError(
                f"{what}: {asset} is not a substrate of the vault's market {market_id}", venue=self.venue, code="vault-substrate"
            )
        if supply_units > state.idle and asset.lower() == state.asset.lower():
            raise RejectedError(
                f"{what}: the vault holds {state.amount(state.idle)} idle, short of {state.amount(supply_units)}",
                venue=self.venue, code="vault-idle",
            )
        limit = state.market_limit_units(market_id)
        if supply_units > 0 and limit is not None and market.balance + supply_units > limit:
            raise RejectedError(
                f"{what}: market {market_id} would hold {state.amount(market.balance + supply_units)} of the vault's "
                f"{state.amount(state.total_assets)}, over its limit {state.amount(limit)} "
                f"({Decimal(market.limit or 0).scaleb(-16)} %)",
                venue=self.venue, code="vault-market-limit",
            )

    async def enter(self, fuse: str, asset: str, units: int, *, market_id: int = AAVE_V3_MARKET_ID) -> TxResult:
        """Supply ``units`` of the vault's idle ``asset`` into the market through ``execute`` and ``fuse.enter``."""
        state = await self.refresh()
        self.check(state, fuse, market_id, asset, units, what="supply")
        data = self.tx.contract(fuse, ABI["AaveV3SupplyFuse"]).encode_abi("enter", args=[(asset, units, KEEP_EMODE)])
        return await self.execute([(fuse, data)], label="vault.execute:enter")

    async def exit(self, fuse: str, asset: str, units: int, *, market_id: int = AAVE_V3_MARKET_ID) -> TxResult:
        """Withdraw ``units`` (capped by the fuse at what the vault holds) back to the vault through ``fuse.exit``."""
        state = await self.refresh()
        self.check(state, fuse, market_id, asset, 0, what="withdraw")
        data = self.tx.contract(fuse, ABI["AaveV3SupplyFuse"]).encode_abi("exit", args=[(asset, units)])
        return await self.execute([(fuse, data)], label="vault.execute:exit")

    async def execute(self, actions: list[tuple[str, str | bytes]], *, label: str) -> TxResult:
        """``PlasmaVault.execute([FuseAction(fuse, data)])``; reverts arrive decoded by name."""
        calls = [(self.tx.w3.to_checksum_address(f), bytes.fromhex(d[2:]) if isinstance(d, str) else d) for f, d in actions]
        result = await self.tx.send_call(self.contract, "execute", [calls], label=label)
        await self.refresh()
        return result


def _substrates(state: VaultState) -> tuple[tuple[int, tuple[str, ...]], ...]:
    return tuple((m.market_id, m.substrates) for m in state.markets.values())


class VaultAaveFuse(AaveLendingFuse):
    """The Aave lending fuse of a PlasmaVault: the vault's positions, supply and withdraw through ``execute``."""

    REVERT_CODES = IPOR_REVERT_CODES  # the vault's errors and Aave's, by name

    def __init__(
        self,
        config: FuseConfig,
        *,
        clock: Clock,
        metrics: Metrics | None = None,
        account: LocalAccount | None = None,
    ) -> None:
        if config.plasma_vault is None:
            raise FatalError(f"fuse {config.name}: 'plasma_vault' is required", venue=config.venue)
        super().__init__(config, clock=clock, metrics=metrics, account=account)
        self.vault = PlasmaVaultConnector(self.tx, config.plasma_vault, venue=config.venue)
        self.alpha = self.tx.address  # who signs; ``address`` (whose positions are read) is the vault
        self.address = self.vault.address
        self.fuse_address = ""
        self.capabilities = type(self.capabilities).lending_market(price_oracle=True, restore_health=False)

    async def start(self) -> None:
        if self._started:
            return
        await super().start()
        state = await self.vault.start()
        self.fuse_address = await self.vault.supply_fuse()
        provider = await self.vault.fuse_provider(self.fuse_address)
        if provider.lower() != (self.config.pool_addresses_provider or "").lower():
            raise FatalError(
                f"fuse {self.name}: the vault's Aave fuse uses PoolAddressesProvider {provider}, not the configured "
                f"{self.config.pool_addresses_provider}", venue=self.config.venue, code="vault-provider",
            )
        log.info("ipor.started", fuse=self.name, vault=self.vault.address, alpha=self.alpha, aave_fuse=self.fuse_address,
                 total_assets=str(state.amount(state.total_assets)))

    async def supply(self, asset: str, amount: Decimal) -> str:
        """Supply ``amount`` of the vault's idle ``asset`` into Aave through the vault's supply fuse."""
        reserve = self._reserve(asset)
        units = self._units(reserve, amount, "supply")
        return (await self.vault.enter(self.fuse_address, reserve.address, units)).tx_hash

    async def withdraw(self, asset: str, amount: Decimal) -> str:
        """Withdraw ``amount`` (or ``ALL``) of ``asset`` from Aave back to the vault."""
        reserve = self._reserve(asset)
        units = MAX_UINT256 if amount == ALL else self._units(reserve, amount, "withdraw")
        return (await self.vault.exit(self.fuse_address, reserve.address, units)).tx_hash

    async def borrow(self, asset: str, amount: Decimal) -> str:
        raise RejectedError(f"fuse {self.name}: the vault has no borrow fuse; borrowing is not allowed", venue=self.config.venue,
                            code="vault-no-fuse")

    async def repay(self, asset: str, amount: Decimal) -> str:
        raise RejectedError(f"fuse {self.name}: the vault has no borrow fuse, so no debt to repay", venue=self.config.venue,
                            code="vault-no-fuse")

    async def restore_health(self, min_health_factor: Decimal, asset: str, *, headroom: Decimal = Decimal(0)) -> str | None:
        return None  # no debt: nothing to restore

    async def account(self) -> AccountSnapshot:
        """The vault's account (idle underlying as its wallet, its Aave positions); refreshes the vault's state."""
        await self.vault.refresh()
        return await super().account()

    async def vault_state(self) -> VaultState:
        return await self.vault.refresh()

    def vault_cap(self) -> VaultCap | None:
        """The vault's caps on this fuse as last read (the risk gate's ``RiskState.vault_caps``), None before start."""
        state = self.vault.last
        if state is None:
            return None
        market = state.markets.get(AAVE_V3_MARKET_ID)
        granted = {a.lower() for a in market.substrates} if market is not None else set()
        limit = state.market_limit_units(AAVE_V3_MARKET_ID)
        return VaultCap(
            vault=state.vault,
            assets=frozenset(name for name, r in self.reserves.items() if r.address.lower() in granted),
            market_balance=state.amount(market.balance if market is not None else 0),
            market_limit=None if limit is None else state.amount(limit),
            closed=state.closed or self.fuse_address not in state.fuses,
        )
