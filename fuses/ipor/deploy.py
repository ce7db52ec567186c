"""Deploy an IPOR Fusion PlasmaVault over a local Aave v3 market, wired as FIELD-NOTES.md describes.

Order: PriceOracleMiddleware (implementation, ERC1967Proxy with ``initialize(owner)``, a
FixedValuePriceFeed of 1 USD with 18 decimals for USDC) -> IporFusionAccessManager(admin, 0)
-> WithdrawManager -> FeeManagerFactory -> PlasmaVaultBase -> PlasmaVaultMarketsLib ->
PlasmaVault (linked) -> ``proxyInitialize`` -> roles -> fee manager ``initialize`` -> Aave
market (id 1): AaveV3SupplyFuse, AaveV3BalanceFuse, USDC substrate -> optional market limit ->
ALPHA role to the daemon's account -> a depositor deposits test USDC.

Roles (Roles.sol): the vault holds TECH_PLASMA_VAULT and the access manager's
``canCallAndUpdate`` (and three more) is mapped to it, or every restricted vault call reverts
``AccessManagedUnauthorized``; ``execute`` is ALPHA's, deposit/mint/withdraw/redeem PUBLIC,
governance (fuses, substrates, limits) ATOMIST's and ``updateTargetClosed`` (pause) GUARDIAN's,
both held by the admin here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from eth_account import Account
from eth_utils.abi import function_abi_to_4byte_selector

from alpha.domain.clock import Clock, LiveClock
from fuses.aave.market import LocalMarket
from fuses.evm.anvil import dev_key
from fuses.evm.txmanager import TxManager, TxSettings
from fuses.ipor import artifacts
from fuses.ipor.errors import IPOR_REVERT_CODES

AAVE_V3_MARKET_ID = 1
USD_WAD = 10**18  # FixedValuePriceFeed answers with 18 decimals
ONE_HUNDRED_PERCENT = 10**18  # market limits: 1e18 = 100 %
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"

ADMIN_ROLE = 0
OWNER_ROLE = 1
GUARDIAN_ROLE = 2
TECH_PLASMA_VAULT_ROLE = 3
ATOMIST_ROLE = 100
ALPHA_ROLE = 200
FUSE_MANAGER_ROLE = 300
TECH_PERFORMANCE_FEE_MANAGER_ROLE = 400
TECH_MANAGEMENT_FEE_MANAGER_ROLE = 500
PUBLIC_ROLE = 2**64 - 1

_ATOMIST_FUNCTIONS = (
    "addFuses", "removeFuses", "addBalanceFuse", "removeBalanceFuse", "grantMarketSubstrates", "setupMarketsLimits",
    "activateMarketsLimits", "deactivateMarketsLimits", "updateDependencyBalanceGraphs", "setTotalSupplyCap",
)


@dataclass(frozen=True, slots=True)
class LocalVault:
    """Addresses and accounts of a deployed local PlasmaVault (saved as JSON next to the market's)."""

    rpc_url: str
    chain_id: int
    vault: str
    asset: str  # the underlying (the market's USDC)
    access_manager: str
    price_oracle_middleware: str
    withdraw_manager: str
    fee_manager: str
    supply_fuse: str
    balance_fuse: str
    market_id: int
    admin: str  # admin, atomist and guardian
    alpha: str
    depositor: str
    deposited_units: int
    market_limit: int | None = None  # 1e18 = 100 %; None: limits not activated
    extra: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> LocalVault:
        return cls(**json.loads(text))


def selectors(contract: str, *names: str) -> list[bytes]:
    """The 4-byte selectors of ``names`` in ``contract``'s ABI (each name must be there, overloads all)."""
    abi = artifacts.artifact(contract)["abi"]
    found = [e for e in abi if e["type"] == "function" and e["name"] in names]
    missing = set(names) - {e["name"] for e in found}
    if missing:
        raise KeyError(f"{contract} has no {', '.join(sorted(missing))}")
    return [function_abi_to_4byte_selector(e) for e in found]


async def deploy_vault(
    market: LocalMarket,
    *,
    alpha_index: int,
    depositor_index: int,
    deposit: Decimal = Decimal(100_000),
    asset: str = "USDC",
    market_limit: Decimal | None = None,
    admin_index: int | None = None,
    clock: Clock | None = None,
) -> LocalVault:
    """Deploy a PlasmaVault of ``asset`` over ``market``; ``deposit`` of it from the depositor; ALPHA to ``alpha_index``.

    ``market_limit`` (a fraction, e.g. ``Decimal("0.5")``) activates the vault's market limits
    with that share for the Aave market. The depositor must hold the test tokens (the market's
    user accounts do).
    """
    admin = Account.from_key(dev_key(market.admin_account_index if admin_index is None else admin_index))
    settings = TxSettings(rpc_url=market.rpc_url, chain_id=market.chain_id, poll_interval=0.02, receipt_timeout=60)
    tx = TxManager(settings, admin, clock=clock or LiveClock(), venue="ipor-local", revert_codes=IPOR_REVERT_CODES)
    depositor = TxManager(
        settings, Account.from_key(dev_key(depositor_index)), clock=clock or LiveClock(), venue="ipor-local",
        revert_codes=IPOR_REVERT_CODES,
    )
    await tx.start()
    await depositor.start()
    try:
        return await _deploy(tx, depositor, market, Account.from_key(dev_key(alpha_index)).address, deposit, asset, market_limit)
    finally:
        await depositor.close()
        await tx.close()


async def _deploy(
    tx: TxManager,
    depositor: TxManager,
    market: LocalMarket,
    alpha: str,
    deposit: Decimal,
    asset_name: str,
    market_limit: Decimal | None,
) -> LocalVault:
    me = tx.address
    token = market.tokens[asset_name]
    vault_abi = artifacts.merged_abi("PlasmaVault", "PlasmaVaultBase")

    async def deploy(name: str, *args: Any, libs: dict[str, str] | None = None) -> str:
        return await tx.deploy(artifacts.linked_bytecode(name, libs or {}), artifacts.artifact(name)["abi"], list(args),
                               label=f"deploy:{name}")

    async def send(address: str, abi: list[dict[str, Any]], fn: str, *args: Any, label: str = "") -> None:
        await tx.send_call(tx.contract(address, abi), fn, list(args), label=label or fn)

    # price oracle middleware behind a proxy, USD quote, USDC at a fixed 1 USD
    oracle_abi = artifacts.artifact("PriceOracleMiddleware")["abi"]
    oracle_impl = await deploy("PriceOracleMiddleware", ZERO_ADDRESS)
    init = tx.contract(oracle_impl, oracle_abi).encode_abi("initialize", args=[me])
    oracle = await deploy("ERC1967Proxy", oracle_impl, bytes.fromhex(init[2:]))
    feed = await deploy("FixedValuePriceFeed", USD_WAD)
    await send(oracle, oracle_abi, "setAssetsPricesSources", [token.address], [feed])

    am_abi = artifacts.artifact("IporFusionAccessManager")["abi"]
    access = await deploy("IporFusionAccessManager", me, 0)
    withdraw_manager = await deploy("WithdrawManager", access)
    fee_factory = await deploy("FeeManagerFactory")
    base = await deploy("PlasmaVaultBase")
    markets_lib = await deploy("PlasmaVaultMarketsLib")
    vault = await deploy("PlasmaVault", libs={"PlasmaVaultMarketsLib": markets_lib})
    await send(vault, vault_abi, "proxyInitialize", (
        f"alpha local {asset_name} vault", f"ipv{asset_name}", token.address, oracle, (fee_factory, 0, 0, me),
        access, base, withdraw_manager, ZERO_ADDRESS,
    ))

    # roles (RoleLib.sol): the vault is TECH_PLASMA_VAULT; who may call what on the vault and the manager
    async def map_functions(target: str, contract: str, names: tuple[str, ...], role: int) -> None:
        await send(access, am_abi, "setTargetFunctionRole", target, selectors(contract, *names), role,
                   label=f"setTargetFunctionRole:{role}")

    await send(access, am_abi, "grantRole", TECH_PLASMA_VAULT_ROLE, vault, 0, label="grantRole:TECH_PLASMA_VAULT")
    await map_functions(access, "IporFusionAccessManager",
                        ("canCallAndUpdate", "convertToPublicVault", "enableTransferShares", "setMinimalExecutionDelaysForRoles"),
                        TECH_PLASMA_VAULT_ROLE)
    await map_functions(vault, "PlasmaVault", ("execute",), ALPHA_ROLE)
    await map_functions(vault, "PlasmaVault", ("deposit", "mint", "withdraw", "redeem"), PUBLIC_ROLE)
    await map_functions(vault, "PlasmaVaultBase", _ATOMIST_FUNCTIONS, ATOMIST_ROLE)
    await map_functions(access, "IporFusionAccessManager", ("updateTargetClosed",), GUARDIAN_ROLE)
    for role in (ATOMIST_ROLE, GUARDIAN_ROLE):
        await send(access, am_abi, "grantRole", role, me, 0, label=f"grantRole:{role}")

    # the fee manager the factory deployed: its two roles, then initialise it
    vault_c = tx.contract(vault, vault_abi)
    perf_account, _fee = await tx.call(vault_c.functions.getPerformanceFeeData(), label="getPerformanceFeeData")
    fee_account = tx.contract(perf_account, artifacts.artifact("FeeAccount")["abi"])
    fee_manager: str = await tx.call(fee_account.functions.FEE_MANAGER(), label="FEE_MANAGER")
    await map_functions(vault, "PlasmaVaultBase", ("configurePerformanceFee",), TECH_PERFORMANCE_FEE_MANAGER_ROLE)
    await map_functions(vault, "PlasmaVaultBase", ("configureManagementFee",), TECH_MANAGEMENT_FEE_MANAGER_ROLE)
    for role in (TECH_PERFORMANCE_FEE_MANAGER_ROLE, TECH_MANAGEMENT_FEE_MANAGER_ROLE):
        await send(access, am_abi, "grantRole", role, fee_manager, 0, label=f"grantRole:{role}")
    await send(fee_manager, artifacts.artifact("FeeManager")["abi"], "initialize", label="FeeManager.initialize")
    await send(withdraw_manager, artifacts.artifact("WithdrawManager")["abi"], "updatePlasmaVaultAddress", vault)

    # the Aave v3 market: supply fuse, balance fuse, the asset as substrate
    supply_fuse = await deploy("AaveV3SupplyFuse", AAVE_V3_MARKET_ID, market.pool_addresses_provider)
    balance_fuse = await deploy("AaveV3BalanceFuse", AAVE_V3_MARKET_ID, market.pool_addresses_provider)
    await send(vault, vault_abi, "addFuses", [supply_fuse])
    await send(vault, vault_abi, "addBalanceFuse", AAVE_V3_MARKET_ID, balance_fuse)
    await send(vault, vault_abi, "grantMarketSubstrates", AAVE_V3_MARKET_ID, [asset_substrate(token.address)])
    limit = None
    if market_limit is not None:
        limit = int(market_limit * ONE_HUNDRED_PERCENT)
        await send(vault, vault_abi, "setupMarketsLimits", [(AAVE_V3_MARKET_ID, limit)])
        await send(vault, vault_abi, "activateMarketsLimits")

    await send(access, am_abi, "grantRole", ALPHA_ROLE, alpha, 0, label="grantRole:ALPHA")

    units = int(deposit.scaleb(token.decimals))
    await depositor.ensure_allowance(token.address, vault, units, label="deposit")
    await depositor.send_call(depositor.contract(vault, vault_abi), "deposit", [units, depositor.address], label="deposit")

    return LocalVault(
        rpc_url=market.rpc_url, chain_id=market.chain_id, vault=vault, asset=token.address, access_manager=access,
        price_oracle_middleware=oracle, withdraw_manager=withdraw_manager, fee_manager=fee_manager,
        supply_fuse=supply_fuse, balance_fuse=balance_fuse, market_id=AAVE_V3_MARKET_ID, admin=me, alpha=alpha,
        depositor=depositor.address, deposited_units=units, market_limit=limit,
    )


def asset_substrate(address: str) -> bytes:
    """An asset as a market substrate: its address left-padded to 32 bytes."""
    return bytes(12) + bytes.fromhex(address.removeprefix("0x"))
