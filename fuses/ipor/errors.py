"""IPOR Fusion revert codes as data: every custom error of the contracts the connector calls.

A handful carry a sentence of what they mean to the Alpha (below); every other error of the
vault, its fuses and its access manager (``abi.json``) is still named, by its Solidity name.
Aave's own codes (a fuse's delegatecall into the pool bubbles them up) are included. The
``code`` of each rejection is the error's name, e.g. ``AccessManagedUnauthorized``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from fuses.aave.errors import AAVE_REVERT_CODES
from fuses.base import InsufficientFundsError, RejectedError
from fuses.evm.revert import RevertCode, custom_error_selector

_MEANINGS: dict[str, tuple[str, type[RejectedError]]] = {
    "AccessManagedUnauthorized": ("the account lacks the role for this vault call (execute needs ALPHA), or the vault is closed by its guardian", RejectedError),
    "MarketLimitExceeded": ("the vault's market limit (share of total assets an atomist set) would be exceeded", RejectedError),
    "AaveV3SupplyFuseUnsupportedAsset": ("the asset is not a substrate the atomist granted for this market", RejectedError),
    "UnsupportedFuse": ("the fuse is not one the vault's atomist added", RejectedError),
    "FuseUnsupported": ("the fuse is not one the vault's atomist added", RejectedError),
    "ERC4626ExceededMaxWithdraw": ("more than the owner may withdraw from the vault", InsufficientFundsError),
    "ERC4626ExceededMaxRedeem": ("more shares than the owner may redeem", InsufficientFundsError),
    "ERC20InsufficientBalance": ("the token balance is short", InsufficientFundsError),
    "ERC20InsufficientAllowance": ("the token allowance is short", InsufficientFundsError),
    "ReentrancyGuardReentrantCall": ("a vault call re-entered the vault", RejectedError),
}


def _table() -> dict[str, RevertCode]:
    abi = json.loads(Path(__file__).with_name("abi.json").read_text())
    out: dict[str, RevertCode] = {}
    for entries in abi.values():
        for e in entries:
            if e["type"] != "error":
                continue
            types = ",".join(i["type"] for i in e["inputs"])
            message, kind = _MEANINGS.get(e["name"], (e["name"], RejectedError))
            out[custom_error_selector(e["name"], types)] = RevertCode(e["name"], message, kind, code=e["name"])
    return out


IPOR_REVERT_CODES: Mapping[str, RevertCode] = {**AAVE_REVERT_CODES, **_table()}
