"""How many examples a property test runs under the loaded Hypothesis profile.

``tests/conftest.py`` registers the profiles: ``ci`` (the default: derandomized, no example
database) and ``long`` (``HYPOTHESIS_PROFILE=long``, ``make test-long``: many more random
examples). A test states the budget it runs under ``ci``; other profiles scale it.
"""

from __future__ import annotations

from hypothesis import settings


def examples(ci: int) -> int:
    """Return ``ci`` scaled by the loaded profile's ``max_examples`` over the ``ci`` profile's."""
    return max(1, ci * settings.default.max_examples // settings.get_profile("ci").max_examples)
