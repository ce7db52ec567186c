"""Shared test helpers: where the repository and the recorded market data live; Hypothesis profiles."""

from __future__ import annotations

import decimal
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# ``ci`` (the default, and what CI=true runs): the same examples on every run and every machine,
# whatever a local example database holds; no deadline, since a loaded machine is slow.
# ``long`` (HYPOTHESIS_PROFILE=long, ``make test-long``): random and twenty times the examples;
# it keeps the local database so that a failure it finds is replayed on the next run.
# A test's own ``max_examples`` is its ci budget, scaled by ``tests/budgets.examples``.
settings.register_profile("ci", max_examples=100, derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("long", max_examples=2000, derandomize=False, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

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
