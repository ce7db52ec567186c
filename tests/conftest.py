"""Shared test helpers: where the repository and the recorded market data live."""

from __future__ import annotations

import decimal
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"recorded market data not found at {SHARED_DATA} (expected ../shared/data beside the repo)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _fresh_decimal_context() -> Iterator[None]:
    """Give every test the default decimal context back.

    Tests that drive a raw ccxt client (emulator tests) let ccxt set the thread's decimal
    context to ROUND_HALF_UP; the product guards its own calls (fuses.ccxt.client.isolated),
    but test code does not, and must not change how the next test's Decimals round.
    """
    yield
    decimal.setcontext(decimal.Context())
