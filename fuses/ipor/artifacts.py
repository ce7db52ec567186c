"""The compiled IPOR Fusion contracts (``../shared/contracts/ipor-fusion``, provenance in its README).

``IPOR_ARTIFACTS`` is the runs-200 build (every contract fits the 24,576-byte limit, so a
default anvil serves it); ``$ALPHA_IPOR_ARTIFACTS`` names another ``artifacts*.json``. Only the
local deployment (``fuses.ipor.deploy``) needs the bytecode; the connector's ABI fragments are
in ``fuses/ipor/abi.json`` (written from these artifacts by ``python -m fuses.ipor.artifacts``).
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

from fuses.evm.anvil import REPO

ARTIFACTS_ENV = "ALPHA_IPOR_ARTIFACTS"
IPOR_DIR = REPO.parent / "shared" / "contracts" / "ipor-fusion"
IPOR_ARTIFACTS = IPOR_DIR / "artifacts-runs200.json"
ABI_FILE = Path(__file__).with_name("abi.json")

# What the connector calls, per contract (the vault's ABI is PlasmaVault's and PlasmaVaultBase's merged:
# governance lives in PlasmaVaultBase, reached through the vault's fallback).
CONNECTOR_ABI: dict[str, tuple[str, ...]] = {
    "PlasmaVault": (
        "execute", "totalAssets", "totalAssetsInMarket", "asset", "decimals", "deposit", "balanceOf", "totalSupply",
        "convertToAssets", "PLASMA_VAULT_BASE", "authority",
    ),
    "PlasmaVaultBase": (
        "getFuses", "isFuseSupported", "getMarketSubstrates", "isMarketSubstrateGranted", "getMarketLimit",
        "isMarketsLimitsActivated", "isBalanceFuseSupported", "getActiveMarketsInBalanceFuses", "getAccessManagerAddress",
        "getPriceOracleMiddleware", "grantMarketSubstrates", "addFuses", "removeFuses", "setupMarketsLimits",
        "activateMarketsLimits", "deactivateMarketsLimits",
    ),
    "AaveV3SupplyFuse": ("enter", "exit", "MARKET_ID", "AAVE_V3_POOL_ADDRESSES_PROVIDER"),
    "IporFusionAccessManager": ("hasRole", "isTargetClosed", "getTargetFunctionRole", "canCall", "updateTargetClosed", "grantRole"),
}


def artifacts_path() -> Path:
    env = os.environ.get(ARTIFACTS_ENV)
    return Path(env) if env else IPOR_ARTIFACTS


def available() -> str | None:
    """None when the compiled contracts can be loaded, else why not."""
    path = artifacts_path()
    if not path.is_file():
        return f"IPOR Fusion artifacts not found at {path} (set {ARTIFACTS_ENV})"
    return None


@cache
def _load(path: Path) -> dict[str, dict[str, Any]]:
    data: dict[str, dict[str, Any]] = json.loads(path.read_text())
    return data


def artifact(name: str) -> dict[str, Any]:
    """``{abi, bytecode, linkReferences, ...}`` of contract ``name``."""
    return _load(artifacts_path())[name]


def linked_bytecode(name: str, libraries: dict[str, str]) -> str:
    """``name``'s creation code with each library's address written at its link offsets."""
    art = artifact(name)
    code = str(art["bytecode"]).removeprefix("0x")
    chars = list(code)
    for _file, libs in art.get("linkReferences", {}).items():
        for lib, refs in libs.items():
            if lib not in libraries:
                raise KeyError(f"{name} needs library {lib}, not deployed yet")
            addr = libraries[lib].lower().removeprefix("0x")
            for ref in refs:
                start = ref["start"] * 2
                chars[start : start + ref["length"] * 2] = list(addr)
    return "0x" + "".join(chars)


def merged_abi(*names: str) -> list[dict[str, Any]]:
    """The ABIs of ``names`` merged, each function, event and error once (first wins)."""
    seen: set[tuple[str, str, str]] = set()
    out: list[dict[str, Any]] = []
    for name in names:
        for entry in artifact(name)["abi"]:
            key = (entry["type"], entry.get("name", ""), _types(entry.get("inputs", [])))
            if entry["type"] in ("constructor", "fallback", "receive") or key in seen:
                continue
            seen.add(key)
            out.append(entry)
    return out


def _types(params: list[dict[str, Any]]) -> str:
    """The canonical type list of ``params`` (tuples expanded; names and internal types ignored)."""
    out = []
    for p in params:
        kind = str(p["type"])
        if kind.startswith("tuple"):
            kind = "(" + _types(p.get("components", [])) + ")" + kind[len("tuple"):]
        out.append(kind)
    return ",".join(out)


def connector_abi() -> dict[str, list[dict[str, Any]]]:
    """The ABI fragments the connector needs (functions above, every error), from the artifacts."""
    out: dict[str, list[dict[str, Any]]] = {}
    for contract, functions in CONNECTOR_ABI.items():
        entries = artifact(contract)["abi"]
        picked = [e for e in entries if e["type"] == "function" and e["name"] in functions]
        missing = set(functions) - {e["name"] for e in picked}
        if missing:
            raise KeyError(f"{contract} has no {', '.join(sorted(missing))}")
        out[contract] = picked + [e for e in entries if e["type"] == "error"]
    return out


if __name__ == "__main__":
    ABI_FILE.write_text(json.dumps(connector_abi(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {ABI_FILE}")
