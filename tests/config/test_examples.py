"""Every example strategy shipped in config/ validates."""

from __future__ import annotations

from pathlib import Path

import pytest

from alpha.config import load_config

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
EXAMPLES = sorted(CONFIG_DIR.glob("*.yaml"))


def test_required_examples_are_shipped() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"demo.yaml", "binance-hyperliquid.yaml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates(path: Path) -> None:
    config = load_config(path)
    assert config.enabled_fuses
    total = sum(f.max_share for f in config.enabled_fuses)
    assert total <= 1
