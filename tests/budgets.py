"""Test budgets: how many examples a property test runs, how long a CPU-bound test may take.

``tests/conftest.py`` registers the Hypothesis profiles: ``ci`` (the default: derandomized, no
example database) and ``long`` (``HYPOTHESIS_PROFILE=long``, ``make test-long``: many more
random examples). A test states the budget it runs under ``ci``; other profiles scale it.
"""

from __future__ import annotations

import pytest
from hypothesis import settings

# A CPU-bound run (a simulation of days, a backtest over a full history): about a minute on an
# idle machine and five times that on a loaded one, too close to the suite's 300 s hang guard
# (pyproject: timeout).
CPU_BOUND = pytest.mark.timeout(1200)


def examples(ci: int) -> int:
    """Return ``ci`` scaled by the loaded profile's ``max_examples`` over the ``ci`` profile's."""
    return max(1, ci * settings.default.max_examples // settings.get_profile("ci").max_examples)
