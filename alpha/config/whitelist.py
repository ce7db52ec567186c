"""The withdrawal whitelist: per fuse, the only places its money may be sent to.

Each fuse may list ``withdrawals``: named destinations, each an address on a network (named
as ccxt names networks: ``ERC20``, ``ARBITRUM``, ``BEP20``, ``TRC20``, ...), of one kind:

* ``venue``: another fuse's deposit address on its venue (``fuse`` names the destination fuse);
* ``vault``: the vault's own wallet;
* ``bridge``: a bridge contract (e.g. Hyperliquid's USDC bridge on Arbitrum); ``fuse`` may name
  the fuse the bridge credits (Hyperliquid credits the sender's account), so a move there is
  followed until that fuse's venue shows the deposit.

Nothing else can ever be a destination: a move to anything not listed is refused by the risk
gate (``alpha.risk.gate.check_move``) before any request leaves the process. A fuse without
``withdrawals`` sends nowhere: its cross-venue moves stay an operator action.

Addresses are checked where they are read: on an EVM network an address must be EIP-55
checksummed (a mistyped character then fails the checksum instead of sending to a stranger);
on the other networks it must have the network's shape. A memo (tag) is taken only on the
networks that use one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from alpha.config.types import Asset, Duration, unique

Assets = Annotated[tuple[Asset, ...], unique("assets")]


class DestinationKind(StrEnum):
    """What a whitelisted destination is."""

    VENUE = "venue"  # another fuse's deposit address on its venue
    VAULT = "vault"  # the vault's own wallet
    BRIDGE = "bridge"  # a bridge contract


@dataclass(frozen=True, slots=True)
class Network:
    """One network as ccxt names it: whether it is an EVM chain, the shape of its addresses, whether it takes a memo."""

    evm: bool
    address: re.Pattern[str] | None = None  # non-EVM: the shape an address must have
    memo: bool = False  # the venue needs a memo (tag) beside the address


_BASE58 = "[1-9A-HJ-NP-Za-km-z]"
_EVM = Network(evm=True)

# Networks by the unified names ccxt gives them (its exchanges' ``options["networks"]`` keys).
NETWORKS: dict[str, Network] = {
    "ERC20": _EVM,
    "ARBITRUM": _EVM,
    "OPTIMISM": _EVM,
    "OP": _EVM,
    "BASE": _EVM,
    "BEP20": _EVM,
    "MATIC": _EVM,
    "POLYGON": _EVM,
    "AVAXC": _EVM,
    "ZKSYNCERA": _EVM,
    "LINEA": _EVM,
    "SCROLL": _EVM,
    "TRC20": Network(evm=False, address=re.compile(f"T{_BASE58}{{33}}")),
    "SOL": Network(evm=False, address=re.compile(f"{_BASE58}{{32,44}}")),
    "BTC": Network(evm=False, address=re.compile(f"(bc1[02-9ac-hj-np-z]{{11,71}}|[13]{_BASE58}{{25,34}})")),
    "XRP": Network(evm=False, address=re.compile(f"r{_BASE58}{{24,34}}"), memo=True),
    "XLM": Network(evm=False, address=re.compile("G[A-Z2-7]{55}"), memo=True),
    "TON": Network(evm=False, address=re.compile("[A-Za-z0-9_-]{48}"), memo=True),
}
# Where each kind of destination can be: the vault's wallet and bridge contracts are EVM accounts.
KIND_NETWORKS: dict[DestinationKind, frozenset[str]] = {
    DestinationKind.VENUE: frozenset(NETWORKS),
    DestinationKind.VAULT: frozenset(n for n, spec in NETWORKS.items() if spec.evm),
    DestinationKind.BRIDGE: frozenset(n for n, spec in NETWORKS.items() if spec.evm),
}


def same_address(network: str, a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` are one address on ``network`` (EVM addresses compare without case)."""
    spec = NETWORKS.get(network)
    if spec is not None and spec.evm:
        return a.lower() == b.lower()
    return a == b


class Destination(BaseModel):
    """One place a fuse may send money to."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,30}$")  # how the operator and the journal call it
    kind: DestinationKind
    address: str = Field(min_length=1, max_length=128)  # EVM: EIP-55 checksummed
    network: str = Field(pattern=r"^[A-Z0-9_]{1,20}$")  # as ccxt names it: ERC20, ARBITRUM, BEP20, TRC20, ...
    fuse: str | None = None  # kind venue: the fuse whose deposit address this is; kind bridge: the fuse it credits (optional)
    assets: Assets = ()  # the assets it may receive; empty: any
    memo: str | None = Field(default=None, min_length=1, max_length=100, pattern=r"^[ -~]+$")  # memo/tag, where the network needs one
    # How long a move takes from the request until the destination has credited it (the venue's
    # processing, the network's confirmations, the destination's own); none: not known, so the
    # margin monitor never counts on it arriving before a deadline (alpha.core.margin.route_time).
    arrives_within: Duration | None = None  # how long a move takes until the destination credits it; none: not known (the margin monitor never counts on it)

    @field_validator("address", mode="before")
    @classmethod
    def _quoted(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            raise ValueError("YAML read this address as a number: write it in quotes, e.g. address: \"0xAbC...\"")
        return v

    @field_validator("memo", mode="before")
    @classmethod
    def _tag(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else v  # an XRP tag is a number

    @model_validator(mode="after")
    def _checked(self) -> Destination:
        spec = NETWORKS.get(self.network)
        if spec is None:
            raise ValueError(f"network {self.network!r} is not known; known networks: {', '.join(sorted(NETWORKS))}")
        if self.network not in KIND_NETWORKS[self.kind]:
            allowed = ", ".join(sorted(KIND_NETWORKS[self.kind]))
            raise ValueError(f"a {self.kind.value} destination is on an EVM network ({allowed}), not {self.network}")
        if spec.evm:
            # imported here: eth_utils takes ~0.2 s to import, and a file without EVM destinations need not wait for it
            from eth_utils.address import is_checksum_address, is_hex_address

            if not is_hex_address(self.address):
                raise ValueError(f"{self.address!r} is not an EVM address (0x and 40 hexadecimal digits)")
            if not is_checksum_address(self.address):
                raise ValueError(
                    f"{self.address} is not EIP-55 checksummed: copy the address with its mixed case from its source"
                    " (a checksummed address catches a mistyped character)"
                )
        elif spec.address is not None and not spec.address.fullmatch(self.address):
            raise ValueError(f"{self.address!r} is not a {self.network} address")
        if self.memo is not None and not spec.memo:
            raise ValueError(f"network {self.network} takes no memo: remove 'memo'")
        if (self.kind is DestinationKind.VENUE and self.fuse is None) or (self.kind is DestinationKind.VAULT and self.fuse is not None):
            raise ValueError("'fuse' names the destination fuse of a venue destination (or the fuse a bridge credits), and only of those")
        return self

    def allows(self, asset: str) -> bool:
        """Whether this destination may receive ``asset``."""
        return not self.assets or asset in self.assets

    def describe(self) -> str:
        """One line naming the destination, its address and network."""
        to = f"fuse {self.fuse}" if self.fuse else self.kind.value
        memo = f" memo {self.memo}" if self.memo else ""
        return f"{self.name} ({to}: {self.address} on {self.network}{memo})"



def whitelist_problems(source: str, withdrawals: Iterable[Destination], kinds: Mapping[str, str]) -> list[str]:
    """What is wrong with fuse ``source``'s whitelist as a whole (``kinds``: every fuse's kind, by name).

    Refused: a name given twice; a destination fuse that is missing or the fuse itself; a
    deposit address "on" a perp DEX (Hyperliquid takes deposits only through its bridge, from
    the account's own wallet); a bridge as a CEX's destination (a bridge credits the sender,
    and a CEX withdrawal is sent from the exchange's wallet, so the money would be lost).
    """
    entries = list(withdrawals)
    problems = []
    names = [d.name for d in entries]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        problems.append(f"fuse {source}: withdrawal destination names must be unique; repeated: {', '.join(dupes)}")
    for d in entries:
        where = f"fuse {source}: withdrawal destination {d.name}"
        if d.fuse is not None and d.fuse not in kinds:
            problems.append(f"{where} names fuse {d.fuse}, which is not in the strategy")
        elif d.fuse == source:
            problems.append(f"{where} names the fuse itself")
        elif d.kind is DestinationKind.VENUE and d.fuse is not None and kinds[d.fuse] == "perp_dex":
            problems.append(f"{where}: fuse {d.fuse} is a perp DEX, which takes deposits only through its bridge from its own wallet")
        if d.kind is DestinationKind.BRIDGE and kinds.get(source) == "cex":
            problems.append(f"{where}: a bridge credits the sender, and a CEX withdrawal is sent from the exchange's wallet")
    return problems
