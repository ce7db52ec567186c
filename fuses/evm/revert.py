"""Decode EVM revert data into ``RejectedError``: ``Error(string)``, ``Panic(uint256)`` and
protocol error tables: numeric strings such as Aave v3.0's ``'36'``, and custom errors keyed by
their selector (``'0x'`` + 4 bytes hex, see ``custom_error_selector``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from eth_abi.abi import decode as abi_decode
from eth_utils.crypto import keccak

from fuses.base import RejectedError

ERROR_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256)

# Solidity's panic codes (docs.soliditylang.org, "Panic via assert and error via require").
PANIC_CODES: Mapping[int, str] = {
    0x00: "generic compiler panic",
    0x01: "assertion failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division or modulo by zero",
    0x21: "invalid enum value",
    0x22: "corrupt storage byte array",
    0x31: "pop on an empty array",
    0x32: "array index out of bounds",
    0x41: "out of memory",
    0x51: "call to a zero-initialised internal function",
}


@dataclass(frozen=True, slots=True)
class RevertCode:
    """What a protocol's revert code means and which rejected kind it becomes."""

    name: str
    message: str
    error: type[RejectedError] = RejectedError
    code: str | None = None  # the ``code`` the error carries; None: the table's key


def custom_error_selector(name: str, types: str = "") -> str:
    """Return the table key of custom error ``name(types)``: ``'0x'`` + its 4-byte selector."""
    return "0x" + keccak(text=f"{name}({types})")[:4].hex()


def revert_bytes(data: object) -> bytes | None:
    """Extract raw revert bytes from what web3 or a JSON-RPC error carries (hex text or dict)."""
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return None
    return None


def decode_revert(
    data: object,
    *,
    venue: str,
    action: str,
    codes: Mapping[str, RevertCode] | None = None,
) -> RejectedError:
    """Build the ``RejectedError`` that revert ``data`` means, saying which ``action`` failed."""
    raw = revert_bytes(data)
    codes = codes or {}
    if raw is None or len(raw) < 4:
        return RejectedError(f"{action} reverted without a reason", venue=venue, code="revert")
    selector, body = raw[:4], raw[4:]
    if selector == ERROR_SELECTOR:
        try:
            (reason,) = abi_decode(["string"], body)
        except Exception:  # malformed payload from a non-Solidity contract
            return RejectedError(f"{action} reverted with undecodable Error(string)", venue=venue, code="revert")
        known = codes.get(reason)
        if known is not None:
            return known.error(
                f"{action} reverted: {known.message} ({known.name}, code {reason})", venue=venue, code=reason
            )
        return RejectedError(f"{action} reverted: {reason}", venue=venue, code="revert")
    if selector == PANIC_SELECTOR:
        try:
            (panic,) = abi_decode(["uint256"], body)
        except Exception:
            panic = -1
        what = PANIC_CODES.get(panic, "unknown panic")
        return RejectedError(f"{action} reverted: panic 0x{panic:02x} ({what})", venue=venue, code=f"panic:{panic}")
    custom = codes.get("0x" + selector.hex())
    if custom is not None:
        return custom.error(f"{action} reverted: {custom.message} ({custom.name})", venue=venue, code=custom.code or custom.name)
    return RejectedError(
        f"{action} reverted with custom error 0x{selector.hex()}", venue=venue, code=f"custom:0x{selector.hex()}"
    )
