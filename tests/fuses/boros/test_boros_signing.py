"""The agent's EIP-712 ``PendleSignTx`` signature against an independent implementation (anvil's
``eth_signTypedData_v4``, alloy's encoder), and the book's tick arithmetic against the formula."""

from __future__ import annotations

import json
import urllib.request
from decimal import Decimal
from typing import Any

import pytest
from eth_account import Account

from fuses.boros.signing import ROUTER, AgentSigner, place_order_calldata, rate_at_tick, tick_for_rate
from fuses.emulators import boros as emulator
from fuses.evm.anvil import AnvilNode, anvil_binary, dev_key


def _rpc(url: str, method: str, params: list[Any]) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        answer = json.loads(resp.read())
    assert "error" not in answer, answer
    return answer["result"]


@pytest.mark.skipif(anvil_binary() is None, reason="anvil not installed (make node-deps)")
def test_the_agent_signs_pendle_sign_tx_as_an_independent_eip712_signer_does() -> None:
    key = dev_key(0)
    agent = Account.from_key(key).address
    root = "0x1eCa053Af93A7AFaeFCD2133A352f422c3C04903"
    signer = AgentSigner(key, root, 3)
    calldata = place_order_calldata(2, 1, 5 * 10**18, 1166, 2, Decimal("0.06"))
    call = signer.sign(calldata, 1755505047123)
    typed = {
        "types": {
            "EIP712Domain": emulator.DOMAIN_TYPES,
            "PendleSignTx": emulator.SIGN_TX_TYPES,
        },
        "primaryType": "PendleSignTx",
        "domain": {"name": "Pendle Boros Router", "version": "1.0", "chainId": 42161, "verifyingContract": ROUTER},
        "message": call.body["message"] | {"nonce": 1755505047123},
    }
    with AnvilNode() as node:
        theirs = _rpc(node.rpc_url, "eth_signTypedData_v4", [agent, typed])
    assert call.body["signature"] == theirs
    assert call.body["message"]["account"] == "0x1eca053af93a7afaefcd2133a352f422c3c0490303"
    assert call.body["agent"] == agent


def test_ticks_follow_the_books_formula_and_round_the_way_asked() -> None:
    assert rate_at_tick(0, 2) == 0
    assert rate_at_tick(1, 1) == Decimal("0.00005")
    assert rate_at_tick(2, 1) == Decimal("0.0001000025")
    assert rate_at_tick(-2, 1) == -Decimal("0.0001000025")
    for rate in (Decimal("0.0734"), Decimal("-0.021"), Decimal("1.5")):
        down = tick_for_rate(rate, 2, round_down=True)
        up = tick_for_rate(rate, 2, round_down=False)
        assert rate_at_tick(down, 2) <= rate < rate_at_tick(down + 1, 2)
        assert rate_at_tick(up - 1, 2) < rate <= rate_at_tick(up, 2)
        # the emulator's own implementation agrees
        assert (emulator.tick_for_rate(rate, 2, round_down=True), emulator.tick_for_rate(rate, 2, round_down=False)) == (down, up)
