"""``AaveLendingFuse``: supply, withdraw, borrow (variable rate), repay and read an Aave v3 market.

Amounts cross the edge here: ``Decimal`` in token units inside alpha, integers with the token's
decimals on chain. Rates come as annual rates in ray (1e27); account values in the oracle's
base currency (USD with ``BASE_CURRENCY_UNIT`` = 1e8); health factor in wad (1e18).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

import structlog
from eth_account.signers.local import LocalAccount

from alpha.config.schema import FuseConfig
from alpha.domain.account import AccountSnapshot, Balance, LendingHealth, LendingPosition
from alpha.domain.clock import Clock
from alpha.observability.metrics import Metrics
from fuses.aave.errors import AAVE_REVERT_CODES
from fuses.aave.health import DEFAULT_HEADROOM, repay_to_restore, to_asset_amount
from fuses.base import Capabilities, FatalError, RejectedError
from fuses.evm.keys import load_account
from fuses.evm.txmanager import TxManager, TxSettings

log = structlog.get_logger(__name__)

ABI: dict[str, list[dict[str, Any]]] = json.loads((Path(__file__).with_name("abi.json")).read_text())
RAY = Decimal(10) ** 27
WAD = Decimal(10) ** 18
BPS = Decimal(10_000)
MAX_UINT256 = 2**256 - 1
VARIABLE_RATE = 2
ALL = Decimal("Infinity")  # withdraw(asset, ALL) / repay(asset, ALL): the whole balance or debt
REPAY_ALL_ALLOWANCE_MARGIN = Decimal("1.001")  # interest accrues between approval and repayment


@dataclass(frozen=True, slots=True)
class Reserve:
    """A reserve the fuse may use, resolved from the market at start."""

    symbol: str
    address: str
    decimals: int
    a_token: str
    stable_debt_token: str
    variable_debt_token: str


@dataclass(frozen=True, slots=True)
class ReserveData:
    """What the market says about one reserve now. Rates are APRs; caps in tokens (0: none)."""

    asset: str
    supply_apr: Decimal
    variable_borrow_apr: Decimal
    total_supplied: Decimal
    total_variable_debt: Decimal
    supply_cap: Decimal
    borrow_cap: Decimal
    ltv: Decimal
    liquidation_threshold: Decimal
    liquidation_bonus: Decimal
    reserve_factor: Decimal
    emode_category: int
    collateral_enabled: bool
    borrowing_enabled: bool
    active: bool
    frozen: bool
    paused: bool
    price: Decimal  # in the oracle's base currency (USD)


class AaveLendingFuse:
    """A lending fuse on an Aave v3 market, through one account and the shared transaction manager."""

    def __init__(
        self,
        config: FuseConfig,
        *,
        clock: Clock,
        metrics: Metrics | None = None,
        account: LocalAccount | None = None,
    ) -> None:
        if config.pool_addresses_provider is None:
            raise FatalError(f"fuse {config.name}: 'pool_addresses_provider' is required", venue=config.venue)
        self.name = config.name
        self.config = config
        self.capabilities = Capabilities.lending_market(price_oracle=True, restore_health=True)
        self._clock = clock
        self._metrics = metrics
        if account is None:
            if config.credentials is None or config.credentials.wallet_key is None:
                raise FatalError(f"fuse {config.name}: credentials.wallet_key is required", venue=config.venue)
            account = load_account(config.credentials.wallet_key, venue=config.venue)
        self.tx = TxManager(
            TxSettings.from_fuse_config(config),
            account,
            clock=clock,
            venue=config.venue,
            fuse=config.name,
            metrics=metrics,
            revert_codes=AAVE_REVERT_CODES,
        )
        self.address = self.tx.address
        self.reserves: dict[str, Reserve] = {}
        self.pool_address = ""
        self._base_unit = Decimal(10) ** 8
        self._started = False

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Check the chain, resolve the pool, oracle, data provider and the allowed reserves; idempotent."""
        if self._started:
            return
        await self.tx.start()
        provider = self.tx.contract(self.config.pool_addresses_provider or "", ABI["PoolAddressesProvider"])
        self.pool_address = await self.tx.call(provider.functions.getPool(), label="getPool")
        oracle_address = await self.tx.call(provider.functions.getPriceOracle(), label="getPriceOracle")
        data_address = await self.tx.call(provider.functions.getPoolDataProvider(), label="getPoolDataProvider")
        if int(self.pool_address, 16) == 0:
            raise FatalError(
                f"fuse {self.name}: PoolAddressesProvider {self.config.pool_addresses_provider} has no pool",
                venue=self.config.venue,
            )
        self.pool = self.tx.contract(self.pool_address, ABI["Pool"])
        self.oracle = self.tx.contract(oracle_address, ABI["AaveOracle"])
        self.data = self.tx.contract(data_address, ABI["AaveProtocolDataProvider"])
        self._base_unit = Decimal(await self.tx.call(self.oracle.functions.BASE_CURRENCY_UNIT(), label="BASE_CURRENCY_UNIT"))
        listed: dict[str, str] = {}
        for address in await self.tx.call(self.pool.functions.getReservesList(), label="getReservesList"):
            symbol = await self.tx.call(self.tx.erc20(address).functions.symbol(), label="symbol")
            listed[symbol] = address
        missing = [a for a in self.config.assets if a not in listed]
        if missing:
            raise FatalError(
                f"fuse {self.name}: assets {', '.join(missing)} are not reserves of this market "
                f"(it lists {', '.join(sorted(listed))})",
                venue=self.config.venue,
            )
        for symbol in self.config.assets:
            address = listed[symbol]
            decimals = await self.tx.call(self.tx.erc20(address).functions.decimals(), label="decimals")
            a_token, stable, variable = await self.tx.call(
                self.data.functions.getReserveTokensAddresses(address), label="getReserveTokensAddresses"
            )
            self.reserves[symbol] = Reserve(symbol, address, int(decimals), a_token, stable, variable)
        self._started = True
        log.info("aave.started", fuse=self.name, pool=self.pool_address, assets=list(self.reserves), account=self.address)

    async def close(self) -> None:
        """Close the RPC connection; idempotent."""
        self._started = False
        await self.tx.close()

    # -- actions -----------------------------------------------------------------------------
    async def supply(self, asset: str, amount: Decimal) -> str:
        """Supply ``amount`` of ``asset`` from the wallet; approve exactly that amount first if needed."""
        reserve = self._reserve(asset)
        units = self._units(reserve, amount, "supply")
        await self.tx.ensure_allowance(reserve.address, self.pool_address, units, label=f"supply:{asset}")
        result = await self.tx.send_call(self.pool, "supply", [reserve.address, units, self.address, 0], label=f"supply:{asset}")
        return result.tx_hash

    async def withdraw(self, asset: str, amount: Decimal) -> str:
        """Withdraw ``amount`` (or ``ALL``) of ``asset`` to the wallet."""
        reserve = self._reserve(asset)
        units = MAX_UINT256 if amount == ALL else self._units(reserve, amount, "withdraw")
        result = await self.tx.send_call(self.pool, "withdraw", [reserve.address, units, self.address], label=f"withdraw:{asset}")
        return result.tx_hash

    async def borrow(self, asset: str, amount: Decimal) -> str:
        """Borrow ``amount`` of ``asset`` at the variable rate."""
        reserve = self._reserve(asset)
        units = self._units(reserve, amount, "borrow")
        result = await self.tx.send_call(
            self.pool, "borrow", [reserve.address, units, VARIABLE_RATE, 0, self.address], label=f"borrow:{asset}"
        )
        return result.tx_hash

    async def repay(self, asset: str, amount: Decimal) -> str:
        """Repay ``amount`` (or ``ALL``) of the variable debt in ``asset``; approve only what is repaid."""
        reserve = self._reserve(asset)
        if amount == ALL:
            debt = await self.tx.call(self.tx.erc20(reserve.variable_debt_token).functions.balanceOf(self.address), label="debt")
            if debt == 0:
                raise RejectedError(f"repay {asset}: there is no variable debt to repay", venue=self.config.venue)
            allowance = int((Decimal(debt) * REPAY_ALL_ALLOWANCE_MARGIN).to_integral_value(ROUND_CEILING))
            units = MAX_UINT256
        else:
            # The core sizes repayments to 8 decimals; the token's own units are this edge's concern.
            units = allowance = self._units(reserve, _to_token_units(amount, reserve.decimals), "repay")
        await self.tx.ensure_allowance(reserve.address, self.pool_address, allowance, label=f"repay:{asset}")
        result = await self.tx.send_call(
            self.pool, "repay", [reserve.address, units, VARIABLE_RATE, self.address], label=f"repay:{asset}"
        )
        return result.tx_hash

    async def restore_health(
        self, min_health_factor: Decimal, asset: str, *, headroom: Decimal = DEFAULT_HEADROOM
    ) -> str | None:
        """Repay debt in ``asset`` until the health factor is back above ``min_health_factor``.

        Return the repayment's transaction hash, or None when the account is healthy. The
        amount comes from ``repay_to_restore``; it is capped by the debt in ``asset`` and by the
        wallet's balance (a partial repayment still helps).
        """
        health = await self.health()
        value = repay_to_restore(health, min_health_factor, headroom=headroom)
        if value <= 0:
            return None
        reserve = self._reserve(asset)
        price = await self.price(asset)
        amount = to_asset_amount(value, price, reserve.decimals)
        debt, wallet = await asyncio.gather(
            self._token_amount(reserve.variable_debt_token, reserve), self._token_amount(reserve.address, reserve)
        )
        amount = min(amount, debt, wallet)
        if amount <= 0:
            raise RejectedError(
                f"restore health: no {asset} debt or no {asset} in the wallet to repay with", venue=self.config.venue
            )
        log.warning("aave.restore_health", fuse=self.name, health_factor=str(health.health_factor), asset=asset, amount=str(amount))
        return await self.repay(asset, ALL if amount >= debt else amount)

    # -- reads -------------------------------------------------------------------------------
    async def health(self) -> LendingHealth:
        """Return collateral, debt, available borrows (base currency), LTV, threshold and health factor."""
        (collateral, debt, available, threshold, ltv, hf) = await self.tx.call(
            self.pool.functions.getUserAccountData(self.address), label="getUserAccountData"
        )
        health = LendingHealth(
            collateral_value=Decimal(collateral) / self._base_unit,
            debt_value=Decimal(debt) / self._base_unit,
            available_borrows=Decimal(available) / self._base_unit,
            ltv=Decimal(ltv) / BPS,
            liquidation_threshold=Decimal(threshold) / BPS,
            health_factor=Decimal("Infinity") if hf == MAX_UINT256 else Decimal(hf) / WAD,
        )
        if self._metrics is not None:
            self._metrics.health_factor.labels(self.name).set(float(health.health_factor))
        return health

    async def price(self, asset: str) -> Decimal:
        """Return the oracle's price of ``asset`` in the base currency."""
        reserve = self._reserve(asset)
        raw = await self.tx.call(self.oracle.functions.getAssetPrice(reserve.address), label="getAssetPrice")
        return Decimal(raw) / self._base_unit

    async def reserve_data(self, asset: str) -> ReserveData:
        """Return rates, totals, caps, risk parameters, e-mode and status of ``asset``'s reserve."""
        reserve = self._reserve(asset)
        d = self.data.functions
        data, conf, caps, emode, paused, price = await asyncio.gather(
            self.tx.call(d.getReserveData(reserve.address), label="getReserveData"),
            self.tx.call(d.getReserveConfigurationData(reserve.address), label="getReserveConfigurationData"),
            self.tx.call(d.getReserveCaps(reserve.address), label="getReserveCaps"),
            self.tx.call(d.getReserveEModeCategory(reserve.address), label="getReserveEModeCategory"),
            self.tx.call(d.getPaused(reserve.address), label="getPaused"),
            self.price(asset),
        )
        scale = Decimal(10) ** reserve.decimals
        _dec, ltv, threshold, bonus, factor, collateral, borrowing, _stable, active, frozen = conf
        borrow_cap, supply_cap = caps
        return ReserveData(
            asset=asset,
            supply_apr=Decimal(data[5]) / RAY,
            variable_borrow_apr=Decimal(data[6]) / RAY,
            total_supplied=Decimal(data[2]) / scale,
            total_variable_debt=Decimal(data[4]) / scale,
            supply_cap=Decimal(supply_cap),
            borrow_cap=Decimal(borrow_cap),
            ltv=Decimal(ltv) / BPS,
            liquidation_threshold=Decimal(threshold) / BPS,
            liquidation_bonus=Decimal(bonus) / BPS,
            reserve_factor=Decimal(factor) / BPS,
            emode_category=int(emode),
            collateral_enabled=bool(collateral),
            borrowing_enabled=bool(borrowing),
            active=bool(active),
            frozen=bool(frozen),
            paused=bool(paused),
            price=price,
        )

    async def reserve_rates(self) -> dict[str, tuple[Decimal, Decimal]]:
        """Return (supply APR, variable borrow APR) per allowed asset."""
        rows = await asyncio.gather(*(self.reserve_data(a) for a in self.reserves))
        return {r.asset: (r.supply_apr, r.variable_borrow_apr) for r in rows}

    async def account(self) -> AccountSnapshot:
        """Return wallet balances, supplied and borrowed amounts per asset, and lending health."""
        health = await self.health()
        assets = list(self.reserves)
        user_rows, reserve_rows, wallet_rows = await asyncio.gather(
            asyncio.gather(*(self.tx.call(self.data.functions.getUserReserveData(self.reserves[a].address, self.address), label="getUserReserveData") for a in assets)),
            asyncio.gather(*(self.reserve_data(a) for a in assets)),
            asyncio.gather(*(self._token_amount(self.reserves[a].address, self.reserves[a]) for a in assets)),
        )
        positions = []
        balances = []
        for asset, user, rdata, wallet in zip(assets, user_rows, reserve_rows, wallet_rows, strict=True):
            scale = Decimal(10) ** self.reserves[asset].decimals
            supplied = Decimal(user[0]) / scale
            borrowed = (Decimal(user[1]) + Decimal(user[2])) / scale
            positions.append(LendingPosition(asset, supplied, borrowed, rdata.supply_apr, rdata.variable_borrow_apr))
            balances.append(Balance(asset, wallet, wallet))
            if self._metrics is not None:
                self._metrics.supplied.labels(self.name, asset).set(float(supplied * rdata.price))
                self._metrics.borrowed.labels(self.name, asset).set(float(borrowed * rdata.price))
        return AccountSnapshot(
            fuse=self.name,
            ts=self._clock.now(),
            balances=tuple(balances),
            lending=health,
            lending_positions=tuple(positions),
        )

    # -- helpers -----------------------------------------------------------------------------
    def _reserve(self, asset: str) -> Reserve:
        if not self._started:
            raise FatalError(f"fuse {self.name} is not started", venue=self.config.venue)
        reserve = self.reserves.get(asset)
        if reserve is None:
            raise RejectedError(
                f"fuse {self.name}: asset {asset!r} is not allowed (allowed: {', '.join(self.reserves)})",
                venue=self.config.venue,
                code="asset-not-allowed",
            )
        return reserve

    def _units(self, reserve: Reserve, amount: Decimal, action: str) -> int:
        if not isinstance(amount, Decimal) or not amount.is_finite() or amount <= 0:
            raise RejectedError(f"{action} {reserve.symbol}: amount must be a positive finite Decimal, got {amount!r}", venue=self.config.venue)
        scaled = amount.scaleb(reserve.decimals)
        if scaled != scaled.to_integral_value():
            raise RejectedError(
                f"{action} {reserve.symbol}: amount {amount} has more decimals than the token's {reserve.decimals}",
                venue=self.config.venue,
            )
        return int(scaled)

    async def _token_amount(self, token: str, reserve: Reserve) -> Decimal:
        raw = await self.tx.call(self.tx.erc20(token).functions.balanceOf(self.address), label="balanceOf")
        return Decimal(raw).scaleb(-reserve.decimals)


def _to_token_units(amount: Decimal, decimals: int) -> Decimal:
    """Round ``amount`` down to the token's decimals (a repayment a fraction of a unit short still helps)."""
    if not amount.is_finite():
        return amount
    return amount.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_FLOOR)
