"""The functional core (domain, strategy, risk) never imports a connector (``fuses``), and imports downwards.

The domain imports nothing above it; the risk gate never the strategy (no risk <-> strategy cycle).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CORE = ("alpha.domain", "alpha.strategy", "alpha.risk", "alpha.core")

# Import every module of the named packages in a fresh interpreter; print what got loaded.
PROBE = """
import importlib, json, pkgutil, sys
names = []
for name in sys.argv[1:]:
    package = importlib.import_module(name)
    names.append(name)
    for info in pkgutil.walk_packages(getattr(package, "__path__", []), name + "."):
        importlib.import_module(info.name)
        names.append(info.name)
print(json.dumps({
    "imported": names,
    "fuses": sorted(m for m in sys.modules if m == "fuses" or m.startswith("fuses.")),
    "alpha": sorted(m for m in sys.modules if m.startswith("alpha.")),
}))
"""


def _load(repo: Path, *packages: str) -> dict[str, list[str]]:
    env = {**os.environ, "PYTHONPATH": str(repo)}
    done = subprocess.run([sys.executable, "-c", PROBE, *packages], cwd=repo, env=env, capture_output=True, text=True, timeout=120, check=True)
    out: dict[str, list[str]] = json.loads(done.stdout)
    return out


def test_core_packages_never_import_fuses(repo_root: Path) -> None:
    loaded = _load(repo_root, *CORE)

    assert {"alpha.risk.gate", "alpha.strategy.decide", "alpha.domain.events"} <= set(loaded["imported"])
    assert loaded["fuses"] == []


def test_the_probe_sees_fuses_when_a_module_imports_them(repo_root: Path) -> None:
    loaded = _load(repo_root, "fuses.sim.world")

    assert "fuses.sim.world" in loaded["fuses"] and "fuses.base" in loaded["fuses"]


def test_the_domain_imports_nothing_above_it(repo_root: Path) -> None:
    loaded = _load(repo_root, "alpha.domain")

    assert "alpha.domain.apply" in loaded["imported"]
    assert [m for m in loaded["alpha"] if not m.startswith("alpha.domain")] == []


def test_the_risk_gate_never_pulls_in_the_strategy(repo_root: Path) -> None:
    loaded = _load(repo_root, "alpha.risk")

    assert {"alpha.risk.gate", "alpha.domain.apply"} <= set(loaded["alpha"])
    assert [m for m in loaded["alpha"] if not m.startswith(("alpha.domain", "alpha.config", "alpha.risk"))] == []
