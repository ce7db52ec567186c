"""Hyperliquid's request signatures, verified the way the venue verifies them.

Two kinds of signed action reach ``POST /exchange``:

* **L1 actions** (order, cancel, cancelByCloid, updateLeverage, setReferrer, ...). The server
  parses the JSON action into its own typed structure, serialises it with msgpack in that
  structure's field order, appends the nonce (8 bytes, big endian), a vault flag (``00``, or
  ``01`` + the 20-byte vault address) and, when given, ``00`` + ``expiresAfter`` (8 bytes), and
  hashes that with keccak-256: the *connection id*. The signer signed the EIP-712 message
  ``Agent{source, connectionId}`` (source ``"a"`` on mainnet, ``"b"`` on testnet) in the domain
  ``{name: "Exchange", version: "1", chainId: 1337, verifyingContract: 0x0}``; the server
  recovers the signer's address from that.
* **User-signed actions** (usdClassTransfer, approveBuilderFee, ...): the action's fields are
  signed directly as ``HyperliquidTransaction:<Name>`` in the domain
  ``{name: "HyperliquidSignTransaction", version: "1", chainId: <signatureChainId>,
  verifyingContract: 0x0}``.

Because the server re-serialises the action in its own field order, the field layouts below
are the protocol: a client that signs its keys in another order, or sends a field the venue
does not know, does not get its intended signer back. Nothing here trusts the client's bytes.

msgpack is ccxt's vendored copy of msgpack-python (a ccxt dependency); the EIP-712 encoding and
the recovery use eth-account, independent of ccxt's own signing code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ccxt.static_dependencies.msgpack import packb
from eth_account import Account
from eth_account.messages import SignableMessage, encode_typed_data
from eth_hash.auto import keccak

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
L1_DOMAIN: dict[str, Any] = {
    "name": "Exchange",
    "version": "1",
    "chainId": 1337,
    "verifyingContract": ZERO_ADDRESS,
}
AGENT_TYPES: dict[str, list[dict[str, str]]] = {
    "Agent": [{"name": "source", "type": "string"}, {"name": "connectionId", "type": "bytes32"}],
}


class MalformedRequest(ValueError):
    """The body does not deserialise into the venue's types (the venue answers HTTP 422)."""


@dataclass(frozen=True, slots=True)
class Field:
    """One field of an action, in the position the venue serialises it.

    ``shape`` is ``"str"``, ``"int"``, ``"bool"``, ``"any"`` (kept as sent), the name of a
    nested layout in ``LAYOUTS``, or ``"[...]"`` around one of those for a list.
    """

    name: str
    shape: str
    required: bool = True


def _f(name: str, shape: str, required: bool = True) -> Field:
    return Field(name, shape, required)


# Field layouts of the L1 actions and their parts, in the venue's serialisation order.
LAYOUTS: dict[str, tuple[Field, ...]] = {
    # actions, keyed by their "type"
    "order": (
        _f("type", "str"),
        _f("orders", "[orderWire]"),
        _f("grouping", "str"),
        _f("builder", "builder", required=False),
    ),
    "cancel": (_f("type", "str"), _f("cancels", "[cancelWire]")),
    "cancelByCloid": (_f("type", "str"), _f("cancels", "[cancelByCloidWire]")),
    "updateLeverage": (
        _f("type", "str"),
        _f("asset", "int"),
        _f("isCross", "bool"),
        _f("leverage", "int"),
    ),
    "updateIsolatedMargin": (
        _f("type", "str"),
        _f("asset", "int"),
        _f("isBuy", "bool"),
        _f("ntli", "int"),
    ),
    "setReferrer": (_f("type", "str"), _f("code", "str")),
    "scheduleCancel": (_f("type", "str"), _f("time", "int", required=False)),
    "noop": (_f("type", "str"),),
    # parts
    "orderWire": (
        _f("a", "int"),
        _f("b", "bool"),
        _f("p", "str"),
        _f("s", "str"),
        _f("r", "bool"),
        _f("t", "orderType"),
        _f("c", "str", required=False),
    ),
    "orderType": (
        _f("limit", "limitType", required=False),
        _f("trigger", "triggerType", required=False),
    ),
    "limitType": (_f("tif", "str"),),
    "triggerType": (_f("isMarket", "bool"), _f("triggerPx", "str"), _f("tpsl", "str")),
    "builder": (_f("b", "str"), _f("f", "int")),
    "cancelWire": (_f("a", "int"), _f("o", "int")),
    "cancelByCloidWire": (_f("asset", "int"), _f("cloid", "str")),
}

# User-signed actions: EIP-712 primary type and its fields (the action carries them all).
USER_SIGNED: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "usdClassTransfer": (
        "HyperliquidTransaction:UsdClassTransfer",
        (("hyperliquidChain", "string"), ("amount", "string"), ("toPerp", "bool"), ("nonce", "uint64")),
    ),
    "usdSend": (
        "HyperliquidTransaction:UsdSend",
        (("hyperliquidChain", "string"), ("destination", "string"), ("amount", "string"), ("time", "uint64")),
    ),
    "withdraw3": (
        "HyperliquidTransaction:Withdraw",
        (("hyperliquidChain", "string"), ("destination", "string"), ("amount", "string"), ("time", "uint64")),
    ),
    "approveBuilderFee": (
        "HyperliquidTransaction:ApproveBuilderFee",
        (("hyperliquidChain", "string"), ("maxFeeRate", "string"), ("builder", "address"), ("nonce", "uint64")),
    ),
}
# The field of a user-signed action that must equal the request's nonce.
USER_SIGNED_NONCE_FIELD: dict[str, str] = {
    "usdClassTransfer": "nonce",
    "usdSend": "time",
    "withdraw3": "time",
    "approveBuilderFee": "nonce",
}

_SCALARS: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "bool": (bool,)}


def _coerce(value: Any, shape: str, where: str) -> Any:
    if shape == "any":
        return value
    if shape.startswith("[") and shape.endswith("]"):
        if not isinstance(value, list):
            raise MalformedRequest(f"{where}: expected a sequence")
        return [_coerce(v, shape[1:-1], f"{where}[{i}]") for i, v in enumerate(value)]
    if shape in _SCALARS:
        expected = _SCALARS[shape]
        # JSON booleans are not integers to a typed deserialiser.
        if not isinstance(value, expected) or (shape == "int" and isinstance(value, bool)):
            raise MalformedRequest(f"{where}: invalid type: expected {shape}")
        if isinstance(value, int) and value < 0:
            raise MalformedRequest(f"{where}: invalid value: expected u64")
        return value
    return _canonical(value, LAYOUTS[shape], where)


def _canonical(value: Any, layout: tuple[Field, ...], where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise MalformedRequest(f"{where}: expected a map")
    known = {f.name for f in layout}
    unknown = sorted(set(value) - known)
    if unknown:
        raise MalformedRequest(f"{where}: unknown field `{unknown[0]}`")
    out: dict[str, Any] = {}
    for f in layout:
        if f.name not in value or (value[f.name] is None and not f.required):
            if f.required:
                raise MalformedRequest(f"{where}: missing field `{f.name}`")
            continue
        out[f.name] = _coerce(value[f.name], f.shape, f"{where}.{f.name}")
    return out


def canonical_action(action: Any) -> dict[str, Any]:
    """Deserialise an L1 action into the venue's layout (field order included) or raise ``MalformedRequest``."""
    if not isinstance(action, Mapping):
        raise MalformedRequest("action: expected a map")
    kind = action.get("type")
    if not isinstance(kind, str) or kind not in LAYOUTS or kind in USER_SIGNED:
        raise MalformedRequest(f"action: unknown variant `{kind}`")
    return _canonical(action, LAYOUTS[kind], "action")


def _address_bytes(address: str) -> bytes:
    text = address[2:] if address.startswith("0x") else address
    try:
        raw = bytes.fromhex(text)
    except ValueError as exc:
        raise MalformedRequest(f"vaultAddress: {address!r} is not hex") from exc
    if len(raw) != 20:
        raise MalformedRequest(f"vaultAddress: {address!r} is not 20 bytes")
    return raw


def action_hash(
    action: Mapping[str, Any], nonce: int, vault_address: str | None, expires_after: int | None = None
) -> bytes:
    """Return the connection id: keccak(msgpack(action) || nonce || vault flag [|| vault] [|| 00 expiresAfter])."""
    data = packb(dict(action)) + nonce.to_bytes(8, "big")
    data += b"\x00" if vault_address is None else b"\x01" + _address_bytes(vault_address)
    if expires_after is not None:
        data += b"\x00" + expires_after.to_bytes(8, "big")
    return keccak(data)


def l1_signable(connection_id: bytes, mainnet: bool) -> SignableMessage:
    """Build the EIP-712 ``Agent`` message (the phantom agent) a signer signs for an L1 action."""
    message = {"source": "a" if mainnet else "b", "connectionId": connection_id}
    return encode_typed_data(L1_DOMAIN, AGENT_TYPES, message)


def user_signed_signable(action: Mapping[str, Any]) -> SignableMessage:
    """Build the EIP-712 message of a user-signed action (``HyperliquidSignTransaction`` domain)."""
    kind = action.get("type")
    if not isinstance(kind, str) or kind not in USER_SIGNED:
        raise MalformedRequest(f"action: unknown variant `{kind}`")
    primary, fields = USER_SIGNED[kind]
    chain_id_text = action.get("signatureChainId")
    if not isinstance(chain_id_text, str):
        raise MalformedRequest("action: missing field `signatureChainId`")
    try:
        chain_id = int(chain_id_text, 16)
    except ValueError as exc:
        raise MalformedRequest("action.signatureChainId: not a hex chain id") from exc
    message: dict[str, Any] = {}
    for name, eip_type in fields:
        if name not in action:
            raise MalformedRequest(f"action: missing field `{name}`")
        message[name] = action[name]
        expected = {"string": str, "bool": bool, "uint64": int, "address": str}[eip_type]
        if not isinstance(message[name], expected):
            raise MalformedRequest(f"action.{name}: invalid type: expected {eip_type}")
    domain = {
        "name": "HyperliquidSignTransaction",
        "version": "1",
        "chainId": chain_id,
        "verifyingContract": ZERO_ADDRESS,
    }
    return encode_typed_data(domain, {primary: [{"name": n, "type": t} for n, t in fields]}, message)


def _vrs(signature: Any) -> tuple[int, int, int]:
    if not isinstance(signature, Mapping):
        raise MalformedRequest("signature: expected a map")
    try:
        r = int(str(signature["r"]), 16)
        s = int(str(signature["s"]), 16)
        v = int(signature["v"])
    except (KeyError, ValueError, TypeError) as exc:
        raise MalformedRequest("signature: expected r, s (hex) and v (27 or 28)") from exc
    return v, r, s


def recover(signable: SignableMessage, signature: Any) -> str:
    """Recover the signer's lower-case address; a signature that fits no key recovers nothing useful.

    Like the venue, an invalid signature is not an error here: it recovers *some* address (or
    none), which then matches no user or API wallet.
    """
    v, r, s = _vrs(signature)
    try:
        return str(Account.recover_message(signable, vrs=(v, r, s))).lower()
    except Exception:  # eth-keys refuses out-of-range r/s/v: recovers no address at all
        return ZERO_ADDRESS


def sign_l1(
    private_key: str,
    action: Mapping[str, Any],
    nonce: int,
    *,
    vault_address: str | None = None,
    expires_after: int | None = None,
    mainnet: bool = True,
) -> dict[str, Any]:
    """Sign an L1 action as a Hyperliquid client does (for tools and raw-protocol tests)."""
    connection_id = action_hash(canonical_action(action), nonce, vault_address, expires_after)
    signed = Account.sign_message(l1_signable(connection_id, mainnet), private_key)
    return {"r": f"0x{signed.r:064x}", "s": f"0x{signed.s:064x}", "v": signed.v}
