"""What the Boros SDK's agent does before a call reaches the relay: the router calldata, the
account packing, the implied-APR ticks and the EIP-712 ``PendleSignTx`` signature.

The agent (a key the root wallet approved on the router) signs ``PendleSignTx{account: bytes21
(root address, account id), connectionId: keccak256(calldata), nonce: uint64}`` in the domain
``{name: "Pendle Boros Router", version: "1.0", chainId: 42161, verifyingContract: router}``
(sdk-boros-public ``src/utils/signing``). The router checks the signer, its approval, that the
calldata hashes to the signed connection id and that the nonce is above the signer's last one;
the SDK uses the time in milliseconds, and so do we (strictly increasing within a process).

Book ticks (documentation/contracts-docs/market-over-view.md): the rate of tick ``t`` is
``1.00005^(tickStep x t) - 1`` for ``t >= 0`` and ``-rate(-t)`` below zero, an 18-decimal
fixed-point number on chain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal, localcontext
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_hash.auto import keccak

WEI = Decimal("1e-18")
ONE_E18 = Decimal(10) ** 18
CHAIN_ID = 42161
ROUTER = "0x8080808080daB95eFED788a9214e400ba552DEf6"
CROSS_MARKET_ID = 0xFFFFFF
LONG, SHORT = 0, 1
GTC, IOC, FOK, POST_ONLY = 0, 1, 2, 3
ORDER_REQ = "((bool,uint24,uint24,uint8,uint8,uint256,int16),bool,uint64,bool,uint256,bool,int128)"
CANCELS_REQ = "(bool,uint24,bool,uint64[])"
TICK_MIN, TICK_MAX = -(2**15), 2**15 - 1


def rate_at_tick(tick: int, tick_step: int) -> Decimal:
    """The implied APR of book tick ``tick``, to the wei (rounded toward zero)."""
    with localcontext() as ctx:
        ctx.prec = 60
        magnitude = Decimal("1.00005") ** (tick_step * abs(tick)) - 1
    magnitude = magnitude.quantize(WEI, rounding=ROUND_FLOOR)
    return magnitude if tick >= 0 else -magnitude


def tick_for_rate(rate: Decimal, tick_step: int, *, round_down: bool) -> int:
    """The highest tick whose rate is at or below ``rate`` (``round_down``), else the lowest at or above it."""
    guess = round(math.log(1 + abs(float(rate))) / math.log(1.00005) / tick_step)
    tick = guess if rate >= 0 else -guess
    while rate_at_tick(tick, tick_step) > rate:
        tick -= 1
    while rate_at_tick(tick + 1, tick_step) <= rate:
        tick += 1
    if not round_down and rate_at_tick(tick, tick_step) < rate:
        tick += 1
    if not TICK_MIN <= tick <= TICK_MAX:
        raise ValueError(f"rate {rate} is outside the book's ticks")
    return tick


def to_wei(amount: Decimal) -> int:
    """An amount as the venue's 18-decimal integer; refuse one finer than a wei."""
    scaled = amount * ONE_E18
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} is finer than the venue's 18 decimals")
    return int(scaled)


def account_bytes(root: str, account_id: int) -> bytes:
    """The router's ``Account``: the root address then the account id (21 bytes)."""
    return bytes.fromhex(root.lower().removeprefix("0x")) + bytes([account_id])


def place_order_calldata(market_id: int, side: int, size_wei: int, tick: int, tif: int, limit_rate: Decimal) -> bytes:
    """``placeSingleOrder`` on the cross account, no market entry/exit, no strict cancel, no isolated cash."""
    desired = int((limit_rate * ONE_E18).to_integral_value())
    req = ((True, market_id, 0, side, tif, size_wei, tick), False, 0, False, 0, False, desired)
    return keccak(f"placeSingleOrder({ORDER_REQ})".encode())[:4] + abi_encode([ORDER_REQ], [req])


def cancel_calldata(market_id: int, order_ids: list[int], cancel_all: bool = False) -> bytes:
    """``bulkCancels`` on the cross account."""
    return keccak(f"bulkCancels({CANCELS_REQ})".encode())[:4] + abi_encode([CANCELS_REQ], [(True, market_id, cancel_all, order_ids)])


@dataclass(frozen=True, slots=True)
class SignedCall:
    """One ``AgentExecuteDto``, ready to post (and to post again, unchanged, on a retry)."""

    body: dict[str, Any]
    nonce: int


class AgentSigner:
    """Signs router calls for ``root``'s account ``account_id`` with an approved agent key."""

    def __init__(self, agent_key: str, root: str, account_id: int = 0, *, chain_id: int = CHAIN_ID, router: str = ROUTER) -> None:
        self._agent = Account.from_key(agent_key)
        self.root = root.lower()
        self.account_id = account_id
        self._domain = {"name": "Pendle Boros Router", "version": "1.0", "chainId": chain_id, "verifyingContract": router}
        self._last_nonce = 0

    @property
    def agent(self) -> str:
        return str(self._agent.address)

    def next_nonce(self, now_ms: int) -> int:
        """The time in milliseconds, strictly above the last nonce this signer used."""
        self._last_nonce = max(now_ms, self._last_nonce + 1)
        return self._last_nonce

    def sign(self, calldata: bytes, nonce: int) -> SignedCall:
        account = account_bytes(self.root, self.account_id)
        connection = keccak(calldata)
        typed = encode_typed_data(full_message={
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "PendleSignTx": [
                    {"name": "account", "type": "bytes21"},
                    {"name": "connectionId", "type": "bytes32"},
                    {"name": "nonce", "type": "uint64"},
                ],
            },
            "primaryType": "PendleSignTx",
            "domain": self._domain,
            "message": {"account": account, "connectionId": connection, "nonce": nonce},
        })
        signature = self._agent.sign_message(typed).signature
        body = {
            "agent": self.agent,
            "message": {"account": "0x" + account.hex(), "connectionId": "0x" + connection.hex(), "nonce": str(nonce)},
            "signature": "0x" + bytes(signature).hex(),
            "calldata": "0x" + calldata.hex(),
        }
        return SignedCall(body, nonce)
