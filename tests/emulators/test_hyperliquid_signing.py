"""Hyperliquid signature verification against what the real ccxt client signs."""

from __future__ import annotations

import copy
import json
from typing import Any

import ccxt.async_support as ccxt
import pytest
from eth_account import Account

from fuses.emulators import hyperliquid_signing as signing

NONCE = 1_760_000_000_123
ORDER: dict[str, Any] = {
    "type": "order",
    "orders": [
        {
            "a": 0,
            "b": True,
            "p": "100.5",
            "s": "0.1",
            "r": False,
            "t": {"limit": {"tif": "Ioc"}},
            "c": "0x" + "ab" * 16,
        }
    ],
    "grouping": "na",
}


@pytest.fixture
async def client() -> Any:
    key = Account.create()
    exchange = ccxt.hyperliquid({"privateKey": key.key.hex(), "walletAddress": key.address})
    exchange.test_address = key.address.lower()
    yield exchange
    await exchange.close()


def _l1_signer(action: dict[str, Any], signature: dict[str, Any], *, vault: str | None = None, mainnet: bool = True) -> str:
    wire = json.loads(json.dumps(action))  # what arrives over HTTP
    connection_id = signing.action_hash(signing.canonical_action(wire), NONCE, vault)
    return signing.recover(signing.l1_signable(connection_id, mainnet), signature)


async def test_ccxt_order_signature_recovers_the_signing_wallet(client: Any) -> None:
    signature = client.sign_l1_action(ORDER, NONCE)

    assert _l1_signer(ORDER, signature) == client.test_address


async def test_vault_address_is_part_of_the_signed_hash(client: Any) -> None:
    vault = "ab" * 20
    signature = client.sign_l1_action(ORDER, NONCE, vault)

    assert _l1_signer(ORDER, signature, vault="0x" + vault) == client.test_address
    assert _l1_signer(ORDER, signature, vault=None) != client.test_address


async def test_testnet_signature_does_not_recover_the_wallet_on_mainnet(client: Any) -> None:
    client.options["sandboxMode"] = True
    signature = client.sign_l1_action(ORDER, NONCE)

    assert _l1_signer(ORDER, signature, mainnet=False) == client.test_address
    assert _l1_signer(ORDER, signature, mainnet=True) != client.test_address


async def test_tampered_price_recovers_another_address(client: Any) -> None:
    signature = client.sign_l1_action(ORDER, NONCE)
    tampered = copy.deepcopy(ORDER)
    tampered["orders"][0]["p"] = "99.5"

    assert _l1_signer(tampered, signature) != client.test_address


async def test_keys_are_hashed_in_the_venue_order_not_the_sender_order(client: Any) -> None:
    reordered = {"grouping": "na", "orders": ORDER["orders"], "type": "order"}
    signature_of_reordered_bytes = client.sign_l1_action(reordered, NONCE)
    signature_of_canonical = client.sign_l1_action(ORDER, NONCE)

    # The venue re-serialises in its own layout: only the canonical layout's signature holds.
    assert _l1_signer(reordered, signature_of_canonical) == client.test_address
    assert _l1_signer(reordered, signature_of_reordered_bytes) != client.test_address


async def test_user_signed_usd_class_transfer_recovers_the_wallet(client: Any) -> None:
    payload = {"hyperliquidChain": "Mainnet", "amount": "12.5", "toPerp": True, "nonce": NONCE}
    signature = client.build_usd_class_send_sig(payload)
    action = {"hyperliquidChain": "Mainnet", "signatureChainId": "0x66eee", "type": "usdClassTransfer",
              "amount": "12.5", "toPerp": True, "nonce": NONCE}

    assert signing.recover(signing.user_signed_signable(action), signature) == client.test_address
    action["amount"] = "125"
    assert signing.recover(signing.user_signed_signable(action), signature) != client.test_address


def test_our_signer_matches_ccxt_byte_for_byte() -> None:
    key = Account.create()
    exchange = ccxt.hyperliquid({"privateKey": key.key.hex(), "walletAddress": key.address})

    assert signing.sign_l1(key.key.hex(), ORDER, NONCE) == exchange.sign_l1_action(ORDER, NONCE)


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda a: a.update(extra=1), "unknown field `extra`"),
        (lambda a: a["orders"][0].pop("s"), "missing field `s`"),
        (lambda a: a["orders"][0].update(a="0"), "expected int"),
        (lambda a: a.update(type="launchRocket"), "unknown variant"),
    ],
)
def test_actions_the_venue_cannot_deserialise_are_refused(mutate: Any, problem: str) -> None:
    action = copy.deepcopy(ORDER)
    mutate(action)

    with pytest.raises(signing.MalformedRequest, match=problem):
        signing.canonical_action(action)


def test_garbage_signature_recovers_no_known_address() -> None:
    connection_id = signing.action_hash(ORDER, NONCE, None)
    signable = signing.l1_signable(connection_id, True)

    assert signing.recover(signable, {"r": "0x0", "s": "0x0", "v": 27}) == signing.ZERO_ADDRESS
    with pytest.raises(signing.MalformedRequest):
        signing.recover(signable, {"r": "zz"})
