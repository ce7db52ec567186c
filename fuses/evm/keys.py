"""Load an EVM account key from the place a ``SecretRef`` names; the key is never logged."""

from __future__ import annotations

import os

from eth_account import Account
from eth_account.signers.local import LocalAccount

from alpha.config.schema import SecretRef
from fuses.base import FatalError


def load_account(ref: SecretRef, *, venue: str) -> LocalAccount:
    """Read the key from ``ref`` (env var or file) and return the account; FatalError if unusable."""
    if ref.env is not None:
        text = os.environ.get(ref.env)
        if not text:
            raise FatalError(f"wallet key: environment variable {ref.env} is not set or empty", venue=venue)
    else:
        assert ref.file is not None
        try:
            text = ref.file.read_text(encoding="utf-8")
        except OSError as exc:
            raise FatalError(f"wallet key: cannot read {ref.file}: {exc.strerror}", venue=venue) from None
    key = text.strip()
    try:
        account: LocalAccount = Account.from_key(key)
    except Exception:
        # The exception text could echo key material: raise without chaining it.
        raise FatalError(
            f"wallet key from {ref.describe()} is not a valid 32-byte hex private key", venue=venue
        ) from None
    return account
