"""Argument types shared by several subcommands (the leading _ keeps this module out of the dispatcher)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime


def utc_date(text: str) -> datetime:
    """Parse a YYYY-MM-DD or ISO-8601 argument as an aware UTC instant (naive input is read as UTC)."""
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD or ISO-8601)") from None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
