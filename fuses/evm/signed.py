"""A transaction signed locally, as a move journals it before broadcasting (no web3 import: the journal's readers need it)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class SignedTx:
    """A transaction signed locally and not yet known to be on chain: its hash, nonce and the exact bytes."""

    tx_hash: str
    nonce: int
    raw: bytes = field(repr=False)
    label: str
