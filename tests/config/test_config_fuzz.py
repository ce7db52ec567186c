"""Fuzz ``alpha check`` with mutated copies of every shipped example (``fuzz_cases.corpus``).

Each file goes through the real entry point (``alpha.cli.main(["check", FILE])``) in-process, and
a handful through ``python -m alpha check`` in a subprocess. For every file: no traceback and no
last-resort ``error:`` line (every bad input is a named config error), it finishes within a
per-case bound that only a genuine hang exceeds (``HANG_BOUND``; the measured figures are
printed), no secret the cases pasted appears in any output, and every labelled break is refused
with exit code 2 and a message naming the field.
"""

from __future__ import annotations

import contextlib
import io
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from alpha.cli import main
from tests.config.fuzz_cases import SECRETS, Case, corpus

REPO = Path(__file__).resolve().parents[2]
HANG_BOUND = 20.0  # seconds; a case is a few ms to ~1 s, so only a hang gets near this on a loaded machine
CASES = corpus(REPO / "config")


class Hang(BaseException):
    """Raised in the main thread when a case exceeds ``HANG_BOUND`` (a BaseException: no handler swallows it)."""


@contextlib.contextmanager
def hang_bound(seconds: float) -> Iterator[None]:
    def expire(_sig: int, _frame: FrameType | None) -> None:
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def leaked(output: str) -> list[str]:
    """Every 10-character piece of a pasted secret that shows up in ``output``."""
    return [s[i : i + 10] for s in SECRETS for i in range(len(s) - 9) if s[i : i + 10] in output]


def check_in_process(path: Path) -> tuple[int, str, float]:
    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with hang_bound(HANG_BOUND), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["check", str(path)])
    return code, out.getvalue() + err.getvalue(), time.perf_counter() - start


def test_corpus_is_large_and_covers_every_shipped_example() -> None:
    examples = {p.stem for p in (REPO / "config").glob("*.yaml")}
    assert len(CASES) >= 500
    assert {c.name.split(":")[0] for c in CASES} == examples
    assert sum(c.expect is not None for c in CASES) >= 300
    assert len({c.name for c in CASES}) == len(CASES)


def test_fuzzed_files_never_crash_hang_or_leak_and_labelled_breaks_are_named(tmp_path: Path) -> None:
    failures: list[str] = []
    refused = accepted = 0
    slowest = (0.0, "")
    for n, case in enumerate(CASES):
        path = tmp_path / f"case{n}.yaml"
        path.write_bytes(case.content)
        try:
            code, output, took = check_in_process(path)
        except Hang:
            failures.append(f"{case.name}: hung (no answer within {HANG_BOUND} s)")
            continue
        slowest = max(slowest, (took, case.name))
        refused += code != 0
        accepted += code == 0
        failures.extend(f"{case.name}: {problem}" for problem in judge(case, code, output))
    with contextlib.suppress(Exception):  # the figures, for the record (not a timing assertion)
        sys.__stdout__.write(
            f"\nconfig fuzz: {len(CASES)} files, {refused} refused, {accepted} accepted;"
            f" slowest {slowest[0]:.2f} s ({slowest[1]})\n"
        )
    assert failures == []


def judge(case: Case, code: int, output: str) -> list[str]:
    """What is wrong with how ``alpha check`` answered ``case`` (empty: nothing)."""
    problems = []
    if "Traceback" in output or "\nerror: " in "\n" + output:
        problems.append(f"crashed:\n{output[-2000:]}")
    if leaked(output):
        problems.append(f"echoed a secret ({leaked(output)[0]}...):\n{output[-500:]}")
    if code not in (0, 2):
        problems.append(f"exit code {code}")
    if case.expect is not None:
        if code != 2:
            problems.append(f"a labelled break was accepted (exit {code}):\n{output[-500:]}")
        elif not re.search(case.expect, output):
            problems.append(f"the error does not name {case.expect!r}:\n{output[-800:]}")
    return problems


SUBPROCESS_CASES = [
    c for c in CASES
    if c.name.endswith((":alias-bomb-top", ":deep-lists", ":nul-byte", ":as-shipped"))
    and c.name.startswith(("demo:", "binance-hyperliquid:"))
] + [c for c in CASES if c.name == "binance-hyperliquid:fuse1-wallet-address-is-a-key"]


@pytest.mark.parametrize("case", SUBPROCESS_CASES, ids=lambda c: c.name)
def test_the_command_line_answers_the_same_in_a_process(case: Case, tmp_path: Path) -> None:
    path = tmp_path / "case.yaml"
    path.write_bytes(case.content)
    done = subprocess.run(
        [sys.executable, "-m", "alpha", "check", str(path)], capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    assert judge(case, done.returncode, done.stdout + done.stderr) == []
    assert done.returncode == (0 if case.expect is None else 2)


def test_a_20_mb_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as fh:
        fh.write(b"version: 1\n# " + b"x" * (20 * 1024 * 1024) + b"\n")
    code, output, took = check_in_process(path)
    assert code == 2 and "at most 262144 bytes" in output and f"is {path.stat().st_size} bytes" in output
    assert took < HANG_BOUND
