"""``AaveLendingFuse``: supply, withdraw, borrow (variable rate), repay and read an Aave v3 market.

Amounts cross the edge here: ``Decimal`` in token units inside alpha, integers with the token's
decimals on chain. Rates come as annual rates in ray (1e27); account values in the oracle's
base currency (USD with ``BASE_CURRENCY_UNIT`` = 1e8); health factor in wad (1e18).

Every release in use, v3.0 to v3.7: the fuse calls only functions present in all of them, except
e-mode, whose layout it probes once at start (``EMODE_LAYOUTS``). Reserves are resolved by
address: ``symbol()`` is read raw and decoded as a string or a bytes32 (MKR); a symbol two
reserves share is refused unless ``options`` pins the one meant (``reserve.<ASSET>: 0x...``),
which also names a reserve whose symbol cannot be read.
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
from fuses.base import BadPayloadError, Capabilities, FatalError, RejectedError
from fuses.evm.erc20 import SYMBOL_SELECTOR, decode_symbol
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
PIN_PREFIX = "reserve."  # options key that pins an asset to a reserve address
EMODE_BITS = (168, 0xFF)  # v3.0-v3.1: a reserve's e-mode category in its configuration bitmap
EMODE_SCAN_CHUNK = 16  # v3.2+: categories read per round trip while discovering them

# Where a reserve's e-mode membership lives, per release (probed once at start).
EMODE_LAYOUTS: dict[str, str] = {
    "reserve-config": "v3.0-v3.1: one category per reserve, bits 168-175 of Pool.getConfiguration",
    "bitmaps": "v3.2+: Pool.getEModeCategoryCollateralBitmap / BorrowableBitmap per category, bit = reserve id",
}


@dataclass(frozen=True, slots=True)
class Reserve:
    """A reserve the fuse may use, resolved from the market at start."""

    symbol: str  # the asset's name in alpha (the token's symbol unless pinned)
    address: str
    decimals: int
    a_token: str
    stable_debt_token: str  # the zero address from v3.2 (stable debt removed)
    variable_debt_token: str
    reserve_id: int = 0  # the reserve's index in the pool: its bit in e-mode bitmaps


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
    emode_categories: tuple[int, ...]  # e-mode categories where the reserve is collateral or borrowable
    collateral_enabled: bool
    borrowing_enabled: bool
    active: bool
    frozen: bool
    paused: bool
    price: Decimal  # in the oracle's base currency (USD)


class AaveLendingFuse:
    """A lending fuse on an Aave v3 market, through one account and the shared transaction manager."""

    REVERT_CODES = AAVE_REVERT_CODES  # how reverts are named (a subclass acting through other contracts adds theirs)

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
            revert_codes=self.REVERT_CODES,
        )
        self.address = self.tx.address
        self.reserves: dict[str, Reserve] = {}  # by alpha asset name; each a distinct reserve address
        self.listed: dict[str, str | None] = {}  # every reserve of the market: address -> decoded symbol
        self.emode_layout = ""
        self.emode_ids: tuple[int, ...] = ()  # v3.2+: the market's configured e-mode categories
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
        try:
            self.pool_address = await self.tx.call(provider.functions.getPool(), label="getPool")
            oracle_address = await self.tx.call(provider.functions.getPriceOracle(), label="getPriceOracle")
            data_address = await self.tx.call(provider.functions.getPoolDataProvider(), label="getPoolDataProvider")
        except RejectedError as exc:
            raise FatalError(
                f"fuse {self.name}: {self.config.pool_addresses_provider} does not answer as an Aave "
                f"PoolAddressesProvider on chain {self.config.chain_id} ({exc})",
                venue=self.config.venue,
                code="not-a-provider",
            ) from exc
        if int(self.pool_address, 16) == 0:
            raise FatalError(
                f"fuse {self.name}: PoolAddressesProvider {self.config.pool_addresses_provider} has no pool",
                venue=self.config.venue,
            )
        self.pool = self.tx.contract(self.pool_address, ABI["Pool"])
        self.oracle = self.tx.contract(oracle_address, ABI["AaveOracle"])
        self.data = self.tx.contract(data_address, ABI["AaveProtocolDataProvider"])
        self._base_unit = Decimal(await self.tx.call(self.oracle.functions.BASE_CURRENCY_UNIT(), label="BASE_CURRENCY_UNIT"))
        addresses = await self.tx.call(self.pool.functions.getReservesList(), label="getReservesList")
        symbols = await asyncio.gather(*(self._symbol(a) for a in addresses))
        self.listed = dict(zip(addresses, symbols, strict=True))
        chosen = self._resolve_assets()
        for name, address in chosen.items():
            decimals, data = await asyncio.gather(
                self.tx.call(self.tx.erc20(address).functions.decimals(), label="decimals"),
                self.tx.call(self.pool.functions.getReserveData(address), label="getReserveData"),
            )
            self.reserves[name] = Reserve(name, address, int(decimals), data[8], data[9], data[10], int(data[7]))
        self.emode_layout = await self._probe_emode_layout()
        if self.emode_layout == "bitmaps":
            self.emode_ids = await self._discover_emode_categories()
        self._started = True
        log.info(
            "aave.started", fuse=self.name, pool=self.pool_address, assets={n: r.address for n, r in self.reserves.items()},
            emode_layout=self.emode_layout, account=self.address,
        )

    def _resolve_assets(self) -> dict[str, str]:
        """Map each configured asset to one listed reserve address: pinned, or by a unique symbol."""
        venue = self.config.venue
        by_lower = {a.lower(): a for a in self.listed}
        pins = {k[len(PIN_PREFIX):]: v for k, v in self.config.options.items() if k.startswith(PIN_PREFIX)}
        stray = sorted(set(pins) - set(self.config.assets))
        if stray:
            raise FatalError(
                f"fuse {self.name}: options pin {', '.join(PIN_PREFIX + s for s in stray)} but those are not in assets",
                venue=venue,
            )
        chosen: dict[str, str] = {}
        missing: list[str] = []
        for name in self.config.assets:
            pin = pins.get(name)
            if pin is not None:
                address = by_lower.get(str(pin).lower())
                if address is None:
                    raise FatalError(
                        f"fuse {self.name}: options.{PIN_PREFIX}{name} = {pin} is not a reserve of this market", venue=venue
                    )
            elif name.lower() in by_lower:  # a reserve named by its address (e.g. its symbol is unreadable)
                address = by_lower[name.lower()]
            else:
                matches = [a for a, symbol in self.listed.items() if symbol == name]
                if not matches:
                    missing.append(name)
                    continue
                if len(matches) > 1:
                    raise FatalError(
                        f"fuse {self.name}: asset {name} is ambiguous: reserves {', '.join(matches)} all have the "
                        f"symbol {name}; pin the one you mean with options '{PIN_PREFIX}{name}: <address>'",
                        venue=venue,
                        code="ambiguous-symbol",
                    )
                address = matches[0]
            if address in chosen.values():
                other = next(n for n, a in chosen.items() if a == address)
                raise FatalError(f"fuse {self.name}: assets {other} and {name} are the same reserve {address}", venue=venue)
            chosen[name] = address
        if missing:
            names = sorted(symbol or address for address, symbol in self.listed.items())
            raise FatalError(
                f"fuse {self.name}: assets {', '.join(missing)} are not reserves of this market "
                f"(it lists {', '.join(names)})",
                venue=venue,
            )
        return chosen

    async def _symbol(self, address: str) -> str | None:
        """Return the token's symbol (string or bytes32), or None when it has none that reads."""
        try:
            raw = await self.tx.call_raw(address, SYMBOL_SELECTOR, label="symbol")
        except RejectedError:
            return None  # reverts or has no symbol(): the reserve is known by its address
        return decode_symbol(raw)

    async def _probe_emode_layout(self) -> str:
        """Tell the e-mode layout by whether the pool answers v3.2's ``getEModeCategoryCollateralBitmap``."""
        probe = self.pool.functions.getEModeCategoryCollateralBitmap(0)
        try:
            await self.tx.call(probe, label="probe:getEModeCategoryCollateralBitmap")
        except RejectedError:
            return "reserve-config"  # the function does not exist before v3.2: the call reverts
        return "bitmaps"

    async def _discover_emode_categories(self) -> tuple[int, ...]:
        """Return the configured e-mode category ids (threshold > 0), read in chunks until a chunk has none."""
        found: list[int] = []
        for first in range(1, 256, EMODE_SCAN_CHUNK):
            ids = range(first, min(first + EMODE_SCAN_CHUNK, 256))
            configs = await asyncio.gather(*(
                self.tx.call(self.pool.functions.getEModeCategoryCollateralConfig(i), label="getEModeCategoryCollateralConfig")
                for i in ids
            ))
            configured = [i for i, (_ltv, threshold, _bonus) in zip(ids, configs, strict=True) if threshold > 0]
            if not configured:
                break
            found.extend(configured)
        return tuple(found)

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
        try:
            raw = await self.tx.call(self.oracle.functions.getAssetPrice(reserve.address), label="getAssetPrice")
        except RejectedError as exc:
            # AaveOracle reverts when the asset's feed answers <= 0 and no fallback oracle answers: a dead feed,
            # not a refusal of ours; the price is unusable until the feed answers again
            raise BadPayloadError(
                f"fuse {self.name}: the oracle cannot price {asset} ({exc}); nothing is done on it",
                venue=self.config.venue, field=f"{asset} oracle price", value="revert", check="unreadable",
            ) from exc
        if isinstance(raw, bool) or not isinstance(raw, int) or raw <= 0:
            # an oracle answering 0 (a dead feed) must not price anything: repayments would divide by it
            raise BadPayloadError(
                f"fuse {self.name}: the oracle's price of {asset} is {raw!r}; a price must be positive (nothing is done on it)",
                venue=self.config.venue, field=f"{asset} oracle price", value=repr(raw)[:40], check="range",
            )
        return Decimal(raw) / self._base_unit

    async def reserve_data(self, asset: str) -> ReserveData:
        """Return rates, totals, caps, risk parameters, e-mode and status of ``asset``'s reserve."""
        reserve = self._reserve(asset)
        return await self._reserve_data(asset, await self._emode_memberships((reserve,)))

    async def emode_category(self) -> int:
        """Return the account's e-mode category (0: none)."""
        self._check_started()
        return int(await self.tx.call(self.pool.functions.getUserEMode(self.address), label="getUserEMode"))

    async def _emode_memberships(self, reserves: tuple[Reserve, ...]) -> dict[str, tuple[int, ...]]:
        """Return, per reserve address, the e-mode categories where it is collateral or borrowable."""
        if self.emode_layout == "reserve-config":
            configs = await asyncio.gather(*(
                self.tx.call(self.pool.functions.getConfiguration(r.address), label="getConfiguration") for r in reserves
            ))
            shift, mask = EMODE_BITS
            categories = [(int(c[0]) >> shift) & mask for c in configs]
            return {r.address: ((c,) if c else ()) for r, c in zip(reserves, categories, strict=True)}
        p = self.pool.functions
        bitmaps = await asyncio.gather(*(
            asyncio.gather(
                self.tx.call(p.getEModeCategoryCollateralBitmap(i), label="getEModeCategoryCollateralBitmap"),
                self.tx.call(p.getEModeCategoryBorrowableBitmap(i), label="getEModeCategoryBorrowableBitmap"),
            )
            for i in self.emode_ids
        ))
        return {
            r.address: tuple(i for i, (coll, borr) in zip(self.emode_ids, bitmaps, strict=True) if (coll | borr) >> r.reserve_id & 1)
            for r in reserves
        }

    async def _reserve_data(self, asset: str, emode: dict[str, tuple[int, ...]]) -> ReserveData:
        reserve = self._reserve(asset)
        d = self.data.functions
        data, conf, caps, paused, price = await asyncio.gather(
            self.tx.call(d.getReserveData(reserve.address), label="getReserveData"),
            self.tx.call(d.getReserveConfigurationData(reserve.address), label="getReserveConfigurationData"),
            self.tx.call(d.getReserveCaps(reserve.address), label="getReserveCaps"),
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
            emode_categories=emode[reserve.address],
            collateral_enabled=bool(collateral),
            borrowing_enabled=bool(borrowing),
            active=bool(active),
            frozen=bool(frozen),
            paused=bool(paused),
            price=price,
        )

    async def reserve_rates(self) -> dict[str, tuple[Decimal, Decimal]]:
        """Return (supply APR, variable borrow APR) per allowed asset."""
        rows = await self._all_reserve_data()
        return {r.asset: (r.supply_apr, r.variable_borrow_apr) for r in rows}

    async def _all_reserve_data(self) -> list[ReserveData]:
        self._check_started()
        emode = await self._emode_memberships(tuple(self.reserves.values()))
        return list(await asyncio.gather(*(self._reserve_data(a, emode) for a in self.reserves)))

    async def account(self) -> AccountSnapshot:
        """Return wallet balances, supplied and borrowed amounts per asset, and lending health."""
        health = await self.health()
        assets = list(self.reserves)
        user_rows, reserve_rows, wallet_rows = await asyncio.gather(
            asyncio.gather(*(self.tx.call(self.data.functions.getUserReserveData(self.reserves[a].address, self.address), label="getUserReserveData") for a in assets)),
            self._all_reserve_data(),
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
    def _check_started(self) -> None:
        if not self._started:
            raise FatalError(f"fuse {self.name} is not started", venue=self.config.venue)

    def _reserve(self, asset: str) -> Reserve:
        self._check_started()
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
