"""Operator docs: every relative link in deploy/docs resolves to a file and, if given, a heading."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "deploy" / "docs"


def _anchors(path: Path) -> set[str]:
    headings = re.findall(r"^#{1,6} (.+)$", path.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {re.sub(r"[^a-z0-9 _-]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_relative_links_resolve() -> None:
    checked = 0
    for doc in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            file_part, _, anchor = target.partition("#")
            path = (doc.parent / file_part).resolve() if file_part else doc
            assert path.is_file(), f"{doc.name}: broken link {target}"
            if anchor:
                assert anchor in _anchors(path), f"{doc.name}: no heading #{anchor} in {path.name}"
            checked += 1
    assert checked > 10


def test_operations_covers_container_compose_kubernetes_secrets_volumes_upgrades() -> None:
    anchors = _anchors(DOCS / "operations.md")
    for section in ("the-image", "docker-compose", "kubernetes", "secrets", "volumes-and-backups", "upgrades"):
        assert section in anchors, section
