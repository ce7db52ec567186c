"""The default Hypothesis profile makes property tests run the same examples every time."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.budgets import examples


def _drawn() -> list[int]:
    """Run a property once and return the examples it was given."""
    seen: list[int] = []

    @settings(max_examples=examples(20))
    @given(st.integers())
    def collect(n: int) -> None:
        seen.append(n)

    collect()
    return seen


@pytest.mark.skipif(os.environ.get("HYPOTHESIS_PROFILE", "ci") != "ci", reason="checks the default (ci) profile")
def test_the_default_profile_draws_the_same_examples_on_every_run_and_keeps_no_database() -> None:
    assert settings.default.database is None
    assert _drawn() == _drawn()


def test_a_budget_scales_with_the_loaded_profile() -> None:
    factor = settings.default.max_examples // settings.get_profile("ci").max_examples
    assert examples(150) == 150 * factor
    assert examples(0) == 1
