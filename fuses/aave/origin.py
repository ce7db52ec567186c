"""The current Aave v3 release (v3.2+) compiled offline from npm ``@aave-dao/aave-v3-origin``.

``compile_origin()`` runs ``deploy/chain/compile-origin.mjs`` (solc-js, settings from
FIELD-NOTES.md "Current Aave") once per set of inputs and caches the artifacts outside git, in
``$ALPHA_AAVE_ORIGIN_CACHE`` or ``~/.cache/alpha/aave-origin-<hash>``; the hash covers the
installed package versions, the compile script and the test token's source, so a change of
any of them compiles again. ``current_release()`` is the ``Release`` that ``deploy_market``
deploys from those artifacts.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from fuses.aave.market import ARTIFACTS, V3_0, Artifacts, Release
from fuses.evm.anvil import CHAIN_DIR
from fuses.evm.solcjs import CompileError as CompileError  # re-exported: callers catch it from here
from fuses.evm.solcjs import cache_dir as solc_cache_dir
from fuses.evm.solcjs import compile_into, inputs_hash

ORIGIN_PACKAGE = CHAIN_DIR / "node_modules" / "@aave-dao" / "aave-v3-origin"
COMPILE_SCRIPT = CHAIN_DIR / "compile-origin.mjs"
TOKEN_SOURCE = CHAIN_DIR / "contracts" / "Bytes32SymbolToken.sol"
CACHE_ENV = "ALPHA_AAVE_ORIGIN_CACHE"
_PACKAGES = ("@aave-dao/aave-v3-origin", "solc", "@openzeppelin/contracts", "@openzeppelin/contracts-upgradeable")
ORIGIN_LIBRARIES = ("SupplyLogic", "BorrowLogic", "LiquidationLogic", "PoolLogic", "ConfiguratorLogic", "FlashLoanLogic")


def origin_version() -> str:
    """Return the installed ``@aave-dao/aave-v3-origin`` version."""
    version: str = json.loads((ORIGIN_PACKAGE / "package.json").read_text())["version"]
    return version


def _inputs_hash() -> str:
    return inputs_hash(_PACKAGES, (COMPILE_SCRIPT, TOKEN_SOURCE))


def cache_dir() -> Path:
    """Where the compiled artifacts for the installed inputs live (created by ``compile_origin``)."""
    return solc_cache_dir(CACHE_ENV, "aave-origin", _inputs_hash())


def compile_origin(target: Path | None = None, *, node: str = "node", timeout: float = 600) -> Path:
    """Return a folder of compiled origin artifacts, compiling into it only if it is not complete."""
    return compile_into(target or cache_dir(), COMPILE_SCRIPT, "aave-v3-origin", node=node, timeout=timeout)


def current_release(compiled: Path | None = None) -> Release:
    """The ``Release`` of the installed aave-v3-origin, compiled (or cached) artifacts included."""
    compiled = compiled or compile_origin()
    return Release(
        name=f"v{origin_version()}",
        artifacts=Artifacts(compiled),
        libraries=ORIGIN_LIBRARIES,
        pool="PoolInstance",
        configurator="PoolConfiguratorInstance",
        a_token="ATokenInstance",
        variable_debt_token="VariableDebtTokenInstance",
        stable_debt_token=None,
        shared_rate_strategy=True,
        initialize_pool_implementation=False,
    )


def v3_0_with_test_tokens(compiled: Path | None = None) -> Release:
    """v3.0 from @aave/core-v3, able to list the compiled test tokens (``Bytes32SymbolToken``) too."""
    return replace(V3_0, artifacts=Artifacts(ARTIFACTS, compiled or compile_origin()))
