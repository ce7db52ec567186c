"""``python -m tests.chaos [--quick]``: the chaos suite (``tests/chaos/runner.py``)."""

from tests.chaos.runner import main

raise SystemExit(main())
