"""Every action is decided in the pure core: the shell (daemon, backtest, commands) builds none.

``alpha.core.pipeline`` composes the steps; the daemon, the backtest replay and ``alpha plan``
only gather inputs and execute what the gate approved. This test reads the shell's source and
fails on any call of an action type's constructor there (legs of an approved action, which the
executor slices and unwinds, are execution detail, not new actions).
"""

from __future__ import annotations

import ast
import typing
from pathlib import Path

from alpha.domain import actions

ROOT = Path(__file__).resolve().parents[2] / "alpha"
SHELL = ("daemon", "backtest", "commands")
ACTION_TYPES = {t.__name__ for t in typing.get_args(actions.Action)}


def _constructor_calls(path: Path, root: Path = ROOT) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr if isinstance(node.func, ast.Attribute) else None
            if name in ACTION_TYPES:
                found.append(f"{path.relative_to(root.parent)}:{node.lineno} {name}(...)")
    return found


def test_the_action_types_are_known() -> None:
    assert {"OpenHedge", "CloseHedge", "ResizeLeg", "TopUpMargin", "Transfer", "Repay"} <= ACTION_TYPES


def test_no_action_is_constructed_outside_the_core() -> None:
    shell_files = [p for part in SHELL for p in sorted((ROOT / part).rglob("*.py"))]
    assert len(shell_files) > 10

    calls = [c for p in shell_files for c in _constructor_calls(p)]

    assert calls == [], "actions built outside alpha.core / alpha.strategy:\n" + "\n".join(calls)


def test_the_check_sees_a_constructor_call(tmp_path: Path) -> None:
    fake = tmp_path / "alpha" / "daemon" / "x.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("from alpha.domain import actions\nfrom alpha.domain.actions import Repay\n"
                    "r = Repay('f', 'USDC', 1, 'why')\nt = actions.Transfer('a', 'b', 'USDC', 1, 'why')\n")

    assert _constructor_calls(fake, tmp_path / "alpha") == ["alpha/daemon/x.py:3 Repay(...)", "alpha/daemon/x.py:4 Transfer(...)"]
