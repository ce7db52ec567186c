"""The ERC-20 calls a fuse needs (and ``mint`` of the test tokens on a local market)."""

from __future__ import annotations

from typing import Any

from eth_abi.abi import decode as abi_decode

ERC20_ABI: list[dict[str, Any]] = [
    {"type": "function", "name": "balanceOf", "stateMutability": "view",
     "inputs": [{"name": "account", "type": "address"}], "outputs": [{"name": "", "type": "uint256"}]},
    {"type": "function", "name": "allowance", "stateMutability": "view",
     "inputs": [{"name": "owner", "type": "address"}, {"name": "spender", "type": "address"}],
     "outputs": [{"name": "", "type": "uint256"}]},
    {"type": "function", "name": "approve", "stateMutability": "nonpayable",
     "inputs": [{"name": "spender", "type": "address"}, {"name": "amount", "type": "uint256"}],
     "outputs": [{"name": "", "type": "bool"}]},
    {"type": "function", "name": "transfer", "stateMutability": "nonpayable",
     "inputs": [{"name": "to", "type": "address"}, {"name": "amount", "type": "uint256"}],
     "outputs": [{"name": "", "type": "bool"}]},
    {"type": "function", "name": "decimals", "stateMutability": "view", "inputs": [],
     "outputs": [{"name": "", "type": "uint8"}]},
    {"type": "function", "name": "symbol", "stateMutability": "view", "inputs": [],
     "outputs": [{"name": "", "type": "string"}]},
    {"type": "function", "name": "totalSupply", "stateMutability": "view", "inputs": [],
     "outputs": [{"name": "", "type": "uint256"}]},
    {"type": "function", "name": "mint", "stateMutability": "nonpayable",
     "inputs": [{"name": "account", "type": "address"}, {"name": "value", "type": "uint256"}],
     "outputs": [{"name": "", "type": "bool"}]},
]


SYMBOL_SELECTOR = bytes.fromhex("95d89b41")  # symbol()


def decode_symbol(raw: bytes) -> str | None:
    """Decode what ``symbol()`` returned: an ABI string, or a bytes32 (MKR on Ethereum); None if neither.

    A symbol with control characters or that is not UTF-8 is refused (None): the caller names
    the token by its address instead.
    """
    text: str | None = None
    if len(raw) >= 64:
        try:
            (decoded,) = abi_decode(["string"], raw)
            text = str(decoded)
        except Exception:  # eth_abi raises several types for malformed payloads
            text = None
    if text is None and len(raw) == 32:
        try:
            text = raw.rstrip(b"\0").decode("utf-8")
        except UnicodeDecodeError:
            return None
    if not text or not text.isprintable() or "\0" in text:
        return None
    return text.strip() or None
