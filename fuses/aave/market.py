"""Deploy a working Aave v3 market on a local node from real Aave contracts.

Two releases: v3.0 from the npm ``@aave/core-v3`` artifacts (``V3_0``, the default), and the
current one compiled from npm ``@aave-dao/aave-v3-origin`` sources (``fuses.aave.origin``).
The order follows FIELD-NOTES.md: addresses provider, ACL, logic libraries linked into Pool and
PoolConfigurator, data provider, test tokens, price feeds and the oracle, token implementations
and rate strategies, ``initReserves``, then risk settings and seed liquidity. Prices move by
writing the feed's storage (``anvil_setStorageAt``), which only a local node allows; that is
what ``alpha chain price`` does.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_account import Account
from web3 import AsyncWeb3

from alpha.domain.clock import Clock, LiveClock
from fuses.aave.errors import AAVE_REVERT_CODES
from fuses.evm.anvil import ANVIL_CHAIN_ID, CHAIN_DIR, dev_key
from fuses.evm.txmanager import TxManager, TxSettings

ARTIFACTS = CHAIN_DIR / "node_modules" / "@aave" / "core-v3" / "artifacts" / "contracts"
RAY = 10**27
PRICE_UNIT = 10**8  # AaveOracle in USD with 8 decimals, like Chainlink USD feeds
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
LIBRARIES = (
    "SupplyLogic", "BorrowLogic", "LiquidationLogic", "EModeLogic", "BridgeLogic", "PoolLogic",
    "ConfiguratorLogic", "FlashLoanLogic",  # FlashLoanLogic links BorrowLogic: deployed last
)


class Artifacts:
    """Compiled contracts (``abi``, ``bytecode``, ``linkReferences``) found by name under folders."""

    def __init__(self, *roots: Path, missing_hint: str = "run `make node-deps`") -> None:
        self.roots = roots
        self._hint = missing_hint

    @cached_property
    def _index(self) -> dict[str, Path]:
        index: dict[str, Path] = {}
        for root in reversed(self.roots):  # earlier roots win
            if not root.is_dir():
                raise FileNotFoundError(f"contract artifacts not found under {root}: {self._hint}")
            index.update({p.stem: p for p in root.rglob("*.json") if not p.name.endswith(".dbg.json")})
        return index

    def get(self, name: str) -> dict[str, Any]:
        """Load the artifact of contract ``name``."""
        data: dict[str, Any] = json.loads(self._index[name].read_text())
        return data

    def abi(self, name: str) -> list[dict[str, Any]]:
        """Return the ABI of contract ``name``."""
        result: list[dict[str, Any]] = self.get(name)["abi"]
        return result

    def linked_bytecode(self, name: str, libraries: dict[str, str]) -> str:
        """Return ``name``'s bytecode with each library's address written at its link offsets."""
        art = self.get(name)
        code: str = art["bytecode"]
        hexcode = list(code[2:])
        for _file, libs in art["linkReferences"].items():
            for lib, refs in libs.items():
                if lib not in libraries:
                    raise KeyError(f"{name} needs library {lib}, not deployed yet")
                addr = libraries[lib].lower().removeprefix("0x")
                for ref in refs:
                    start = ref["start"] * 2
                    hexcode[start : start + ref["length"] * 2] = list(addr)
        return "0x" + "".join(hexcode)


@dataclass(frozen=True, slots=True)
class Release:
    """How to deploy one Aave release: its artifacts and the names and shapes that differ."""

    name: str
    artifacts: Artifacts
    libraries: tuple[str, ...]  # in deployment order (a library after those it links)
    pool: str
    configurator: str
    a_token: str
    variable_debt_token: str
    stable_debt_token: str | None  # None: removed (v3.2+)
    shared_rate_strategy: bool  # v3.2+: one DefaultReserveInterestRateStrategyV2 given to the Pool
    initialize_pool_implementation: bool  # v3.0: the implementation is initialised by hand; later ones lock it


V3_0 = Release(
    name="v3.0",
    artifacts=Artifacts(ARTIFACTS),
    libraries=LIBRARIES,
    pool="Pool",
    configurator="PoolConfigurator",
    a_token="AToken",
    variable_debt_token="VariableDebtToken",
    stable_debt_token="StableDebtToken",
    shared_rate_strategy=False,
    initialize_pool_implementation=True,
)


@dataclass(frozen=True, slots=True)
class ReserveSpec:
    """A test token and its risk parameters (basis points as Aave takes them)."""

    symbol: str
    decimals: int
    price: Decimal  # USD
    ltv_bps: int
    liquidation_threshold_bps: int
    liquidation_bonus_bps: int
    reserve_factor_bps: int
    seed_liquidity: Decimal  # supplied by the admin so that users can borrow
    user_mint: Decimal  # minted to each user
    # DefaultReserveInterestRateStrategy, as fractions
    optimal_usage: Decimal
    slope1: Decimal
    slope2: Decimal
    base_rate: Decimal = Decimal(0)
    token: str = "MintableERC20"  # the test token's contract (constructor: name, symbol, decimals)
    key: str = ""  # the market's unique name for this reserve (default: the symbol)

    @property
    def name(self) -> str:
        return self.key or self.symbol


DEFAULT_RESERVES: tuple[ReserveSpec, ...] = (
    ReserveSpec("USDC", 6, Decimal(1), 8000, 8500, 10500, 1000, Decimal(2_000_000), Decimal(1_000_000),
                Decimal("0.90"), Decimal("0.04"), Decimal("0.60")),
    ReserveSpec("WETH", 18, Decimal(3000), 8000, 8250, 10500, 1500, Decimal(1_000), Decimal(100),
                Decimal("0.80"), Decimal("0.033"), Decimal("0.80"), Decimal("0.01")),
    ReserveSpec("WBTC", 8, Decimal(60000), 7000, 7500, 10650, 2000, Decimal(50), Decimal(50),
                Decimal("0.45"), Decimal("0.04"), Decimal("3.00")),
)


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A reserve of the local market."""

    address: str
    decimals: int
    feed: str  # MockAggregator the oracle reads


@dataclass(frozen=True, slots=True)
class LocalMarket:
    """Addresses of a deployed local market (saved as JSON next to the node's state)."""

    rpc_url: str
    chain_id: int
    pool_addresses_provider: str
    pool: str
    pool_configurator: str
    acl_manager: str
    data_provider: str
    oracle: str
    admin: str
    tokens: dict[str, TokenInfo] = field(default_factory=dict)
    admin_account_index: int = 0
    user_account_indices: tuple[int, ...] = (1,)
    release: str = "v3.0"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> LocalMarket:
        data = json.loads(text)
        data["tokens"] = {k: TokenInfo(**v) for k, v in data["tokens"].items()}
        data["user_account_indices"] = tuple(data["user_account_indices"])
        return cls(**data)


def artifact(name: str) -> dict[str, Any]:
    """Load the Hardhat artifact of @aave/core-v3 contract ``name`` (abi, bytecode, linkReferences)."""
    return V3_0.artifacts.get(name)


def abi(name: str) -> list[dict[str, Any]]:
    """Return the ABI of @aave/core-v3 contract ``name``."""
    return V3_0.artifacts.abi(name)


def linked_bytecode(name: str, libraries: dict[str, str]) -> str:
    """Return @aave/core-v3 ``name``'s bytecode with its libraries linked."""
    return V3_0.artifacts.linked_bytecode(name, libraries)


def _units(amount: Decimal, decimals: int) -> int:
    return int(amount * (Decimal(10) ** decimals))


async def deploy_market(
    rpc_url: str,
    *,
    chain_id: int = ANVIL_CHAIN_ID,
    admin_index: int = 0,
    user_indices: tuple[int, ...] = (1,),
    reserves: tuple[ReserveSpec, ...] = DEFAULT_RESERVES,
    clock: Clock | None = None,
    release: Release = V3_0,
) -> LocalMarket:
    """Deploy a full Aave ``release`` market with ``reserves``; mint test tokens to the user accounts."""
    admin = Account.from_key(dev_key(admin_index))
    settings = TxSettings(rpc_url=rpc_url, chain_id=chain_id, poll_interval=0.02, receipt_timeout=60)
    tx = TxManager(settings, admin, clock=clock or LiveClock(), venue="aave-local", revert_codes=AAVE_REVERT_CODES)
    await tx.start()
    try:
        return await _deploy(tx, release, rpc_url, chain_id, admin_index, user_indices, reserves)
    finally:
        await tx.close()


async def _deploy(
    tx: TxManager,
    release: Release,
    rpc_url: str,
    chain_id: int,
    admin_index: int,
    user_indices: tuple[int, ...],
    reserves: tuple[ReserveSpec, ...],
) -> LocalMarket:
    me = tx.address
    arts = release.artifacts

    async def deploy(name: str, *args: Any, libs: dict[str, str] | None = None) -> str:
        code = arts.linked_bytecode(name, libs or {})
        return await tx.deploy(code, arts.abi(name), list(args), label=f"deploy:{name}")

    async def send(address: str, name: str, fn: str, *args: Any) -> None:
        await tx.send_call(tx.contract(address, arts.abi(name)), fn, list(args), label=f"{name}.{fn}")

    provider = await deploy("PoolAddressesProvider", "alpha-local", me)
    await send(provider, "PoolAddressesProvider", "setACLAdmin", me)
    acl = await deploy("ACLManager", provider)
    await send(provider, "PoolAddressesProvider", "setACLManager", acl)
    for role in ("addPoolAdmin", "addEmergencyAdmin", "addRiskAdmin", "addAssetListingAdmin"):
        await send(acl, "ACLManager", role, me)

    libraries: dict[str, str] = {}
    for lib in release.libraries:
        libraries[lib] = await deploy(lib, libs=libraries)
    shared_strategy = ""
    if release.shared_rate_strategy:
        shared_strategy = await deploy("DefaultReserveInterestRateStrategyV2", provider)
        pool_impl = await deploy(release.pool, provider, shared_strategy, libs=libraries)
    else:
        pool_impl = await deploy(release.pool, provider, libs=libraries)
    if release.initialize_pool_implementation:
        await send(pool_impl, release.pool, "initialize", provider)
    await send(provider, "PoolAddressesProvider", "setPoolImpl", pool_impl)
    conf_impl = await deploy(release.configurator, libs=libraries)
    await send(provider, "PoolAddressesProvider", "setPoolConfiguratorImpl", conf_impl)
    provider_c = tx.contract(provider, arts.abi("PoolAddressesProvider"))
    pool: str = await tx.call(provider_c.functions.getPool(), label="getPool")
    configurator: str = await tx.call(provider_c.functions.getPoolConfigurator(), label="getPoolConfigurator")
    data_provider = await deploy("AaveProtocolDataProvider", provider)
    await send(provider, "PoolAddressesProvider", "setPoolDataProvider", data_provider)

    tokens: dict[str, str] = {}
    feeds: dict[str, str] = {}
    for spec in reserves:
        tokens[spec.name] = await deploy(spec.token, f"Test {spec.symbol}", spec.symbol, spec.decimals)
        feeds[spec.name] = await deploy("MockAggregator", int(spec.price * PRICE_UNIT))
    oracle = await deploy(
        "AaveOracle", provider, [tokens[s.name] for s in reserves], [feeds[s.name] for s in reserves],
        ZERO_ADDRESS, ZERO_ADDRESS, PRICE_UNIT,
    )
    await send(provider, "PoolAddressesProvider", "setPriceOracle", oracle)

    inputs = await _reserve_inputs(release, deploy, pool, provider, me, reserves, tokens)
    await send(configurator, release.configurator, "initReserves", inputs)
    for spec in reserves:
        asset = tokens[spec.name]
        await send(configurator, release.configurator, "configureReserveAsCollateral", asset,
                   spec.ltv_bps, spec.liquidation_threshold_bps, spec.liquidation_bonus_bps)
        await send(configurator, release.configurator, "setReserveBorrowing", asset, True)
        await send(configurator, release.configurator, "setReserveFactor", asset, spec.reserve_factor_bps)

    pool_c = tx.contract(pool, arts.abi(release.pool))
    users = [Account.from_key(dev_key(i)).address for i in user_indices]
    for spec in reserves:
        token = tx.contract(tokens[spec.name], arts.abi(spec.token))
        seed = _units(spec.seed_liquidity, spec.decimals)
        await tx.send_call(token, "mint", [me, seed], label=f"mint:{spec.name}")
        await tx.ensure_allowance(tokens[spec.name], pool, seed, label=f"seed:{spec.name}")
        await tx.send_call(pool_c, "supply", [tokens[spec.name], seed, me, 0], label=f"seed:{spec.name}")
        for user in users:
            await tx.send_call(token, "mint", [user, _units(spec.user_mint, spec.decimals)], label=f"mint:{spec.name}")

    return LocalMarket(
        rpc_url=rpc_url,
        chain_id=chain_id,
        pool_addresses_provider=provider,
        pool=pool,
        pool_configurator=configurator,
        acl_manager=acl,
        data_provider=data_provider,
        oracle=oracle,
        admin=me,
        tokens={s.name: TokenInfo(tokens[s.name], s.decimals, feeds[s.name]) for s in reserves},
        admin_account_index=admin_index,
        user_account_indices=user_indices,
        release=release.name,
    )


async def _reserve_inputs(
    release: Release,
    deploy: Callable[..., Awaitable[str]],
    pool: str,
    provider: str,
    me: str,
    reserves: tuple[ReserveSpec, ...],
    tokens: dict[str, str],
) -> list[tuple[Any, ...]]:
    """Deploy the token implementations (and v3.0's rate strategies); build ``initReserves``' inputs."""
    if release.shared_rate_strategy:  # v3.2+: (aToken, vToken, asset, names..., params, abi-encoded rate data in bps)
        a_impl = await deploy(release.a_token, pool, ZERO_ADDRESS, me)  # rewards controller, treasury
        v_impl = await deploy(release.variable_debt_token, pool, ZERO_ADDRESS)
        return [
            (
                a_impl, v_impl, tokens[spec.name], f"Aave Local {spec.symbol}", f"a{spec.symbol}",
                f"Aave Local Variable Debt {spec.symbol}", f"variableDebt{spec.symbol}", b"",
                abi_encode(["(uint16,uint32,uint32,uint32)"], [(
                    _bps(spec.optimal_usage), _bps(spec.base_rate), _bps(spec.slope1), _bps(spec.slope2),
                )]),
            )
            for spec in reserves
        ]
    a_impl = await deploy(release.a_token, pool)
    s_impl = await deploy(release.stable_debt_token or "", pool)
    v_impl = await deploy(release.variable_debt_token, pool)
    inputs = []
    for spec in reserves:
        strategy = await deploy(
            "DefaultReserveInterestRateStrategy", provider,
            int(spec.optimal_usage * RAY), int(spec.base_rate * RAY), int(spec.slope1 * RAY), int(spec.slope2 * RAY),
            0, 0, 0, 0, int(Decimal("0.2") * RAY),
        )
        inputs.append((
            a_impl, s_impl, v_impl, spec.decimals, strategy, tokens[spec.name], me, ZERO_ADDRESS,
            f"Aave Local {spec.symbol}", f"a{spec.symbol}", f"Aave Local Variable Debt {spec.symbol}",
            f"variableDebt{spec.symbol}", f"Aave Local Stable Debt {spec.symbol}", f"stableDebt{spec.symbol}", b"",
        ))
    return inputs


def _bps(fraction: Decimal) -> int:
    return int(fraction * 10_000)


async def set_price(w3: AsyncWeb3[Any], market: LocalMarket, asset: str, price: Decimal) -> None:
    """Move ``asset``'s USD price on a local node by writing its MockAggregator's answer (slot 0)."""
    if asset not in market.tokens:
        raise KeyError(f"unknown asset {asset}; the market has {', '.join(market.tokens)}")
    if price <= 0:
        raise ValueError(f"price must be positive, got {price}")
    answer = int(price * PRICE_UNIT)
    await w3.provider.make_request(
        "anvil_setStorageAt", [market.tokens[asset].feed, "0x0", "0x" + answer.to_bytes(32, "big").hex()]
    )
