"""The ccxt fuse's settings, read once from a ``FuseConfig``: credentials, URL, budget share.

Secrets are read from the environment variable or file a ``SecretRef`` names, kept in a
``Secret`` whose ``repr``/``str`` never show the value, and handed only to the ccxt client.
A wallet key's address is derived here (``signer_address``): it fills a missing
``wallet_address``, and the fuse refuses to start when it does not match the configured one
(``CcxtFuse.start``), before anything is signed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from alpha.config.schema import FuseConfig, SecretRef
from fuses.base import FatalError


class Secret:
    """A secret value that never prints itself."""

    __slots__ = ("_source", "_value")

    def __init__(self, value: str, source: str) -> None:
        self._value = value
        self._source = source

    def reveal(self) -> str:
        """Return the secret (only to hand it to the venue client)."""
        return self._value

    @property
    def source(self) -> str:
        """Where the secret came from (``env:NAME`` or ``file:/path``), never the value."""
        return self._source

    def __repr__(self) -> str:
        return f"Secret({self._source})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)  # equal secrets (same value, any source) must hash alike


def read_secret(ref: SecretRef, environ: dict[str, str] | None = None) -> Secret:
    """Read the secret ``ref`` points at, or raise ``FatalError`` saying where it was looked for."""
    env = os.environ if environ is None else environ
    where = ref.describe()
    if ref.env is not None:
        value = env.get(ref.env)
        if not value:
            raise FatalError(f"secret {where} is not set (environment variable {ref.env} is empty or missing)")
        return Secret(value.strip(), where)
    assert ref.file is not None
    path = Path(ref.file)
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise FatalError(f"secret {where} cannot be read: {exc.strerror}") from exc
    if not value:
        raise FatalError(f"secret {where} is empty")
    return Secret(value, where)


def signer_address(key: Secret) -> str:
    """The address ``key`` signs as (eth_account); ``FatalError`` if it is not a private key, never showing it."""
    from eth_account import Account

    try:
        return str(Account.from_key(key.reveal()).address)
    except Exception:  # eth_account's errors may quote the input: say where it came from, not what it is
        raise FatalError(f"secret {key.source} is not a wallet private key (expected 32 bytes as 64 hex digits)") from None


@dataclass(frozen=True)
class CcxtSettings:
    """Everything the ccxt fuse needs from its configuration, secrets resolved."""

    name: str
    venue: str
    markets: tuple[str, ...]
    api_url: str | None = None
    rate_limit_share: Decimal = Decimal(1)
    max_leverage: Decimal = Decimal(3)
    api_key: Secret | None = field(default=None, repr=False)
    secret: Secret | None = field(default=None, repr=False)
    password: Secret | None = field(default=None, repr=False)
    wallet_key: Secret | None = field(default=None, repr=False)
    wallet_address: str | None = None
    signer: str | None = None  # the address wallet_key signs as (derived, never configured)
    options: dict[str, str | int | bool] = field(default_factory=dict)

    @property
    def has_credentials(self) -> bool:
        return self.api_key is not None or self.wallet_key is not None

    @classmethod
    def from_fuse_config(cls, config: FuseConfig, *, public_only: bool = False, environ: dict[str, str] | None = None) -> CcxtSettings:
        """Resolve ``config``; with ``public_only`` (paper mode) no secret is read."""
        creds = None if public_only else config.credentials

        def get(ref: SecretRef | None) -> Secret | None:
            return None if ref is None else read_secret(ref, environ)

        wallet_key = get(creds.wallet_key) if creds else None
        signer = signer_address(wallet_key) if wallet_key is not None else None
        return cls(
            name=config.name,
            venue=config.venue,
            markets=tuple(config.markets),
            api_url=config.api_url,
            rate_limit_share=config.rate_limit_share,
            max_leverage=config.max_leverage,
            api_key=get(creds.api_key) if creds else None,
            secret=get(creds.secret) if creds else None,
            password=get(creds.password) if creds else None,
            wallet_key=wallet_key,
            wallet_address=(creds.wallet_address if creds else None) or signer,
            signer=signer,
            options=dict(config.options),
        )
