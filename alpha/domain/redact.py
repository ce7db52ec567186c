"""Mask secret-shaped text (a 32-byte hex key, a long API-key-like token) wherever it would be shown.

An error message, a log line or a metric label never carries such a value whole, whichever
field it was pasted into: ``0x5ec2...`` becomes ``0x5e…(redacted)``.
"""

from __future__ import annotations

import re

# 64+ hex digits (an EVM / Hyperliquid private key, with or without 0x), or a 32+ character
# run of letters and digits that has both (the shape of CEX API keys and secrets); a 20-byte
# 0x address is public and kept.
_SECRET_SHAPED = re.compile(
    r"(?<![0-9A-Za-z])(?:0x)?[0-9a-fA-F]{64,}(?![0-9A-Za-z])"
    r"|(?<![A-Za-z0-9_-])(?!0x[0-9a-fA-F]{40}(?![A-Za-z0-9_-]))(?=[A-Za-z0-9_-]*[0-9])(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9_-]{32,}(?![A-Za-z0-9_-])"
)
KEEP = 4
MARK = "…(redacted)"


def redact_secrets(text: str) -> str:
    """Return ``text`` with every secret-shaped substring cut to its first characters."""
    return _SECRET_SHAPED.sub(lambda m: m.group(0)[:KEEP] + MARK, text)


def looks_secret(text: str) -> bool:
    """Say whether ``text`` contains a secret-shaped substring."""
    return _SECRET_SHAPED.search(text) is not None
