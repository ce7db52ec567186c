"""Start-up warns when the strategy file's vault.nav and what the venues hold disagree beyond 10%."""

from __future__ import annotations

from decimal import Decimal

import pytest

from alpha.daemon.vault import NAV_MISMATCH, nav_mismatch

D = Decimal


@pytest.mark.parametrize(
    ("configured", "actual", "warned"),
    [
        (D("500000"), D("200000"), True),  # the case: a 500k file against a 200k account
        (D("200000"), D("500000"), True),
        (D("1000000"), D("1000000"), False),
        (D("1000000"), D("900000"), False),  # exactly 10% apart: within the bound
        (D("1000000"), D("899999.99"), True),
        (D("1000000"), D("1099000"), False),
        (D("1000000"), D("0"), True),  # nothing on the venues
    ],
)
def test_nav_mismatch_beyond_the_bound_is_warned_with_both_figures(configured: Decimal, actual: Decimal, warned: bool) -> None:
    text = nav_mismatch(configured, actual, "USDT")
    assert (text is not None) is warned
    if text is not None:
        assert f"{configured:,.2f}" in text and f"{actual:,.2f}" in text and "USDT" in text
        assert f"over {NAV_MISMATCH * 100:.0f}%" in text
