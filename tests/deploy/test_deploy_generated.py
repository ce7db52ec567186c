"""Generated deployment files are current: docs from the schema and registry, container strategy."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import typing
from pathlib import Path
from types import ModuleType

from pydantic import BaseModel

from alpha.config import load_config_text, schema
from alpha.observability.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]


def _generate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_generate", REPO / "deploy" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_files_are_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "deploy" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, "stale generated files:\n" + result.stderr


def test_stale_check_notices_a_changed_file(tmp_path: Path) -> None:
    gen = _generate()
    target = REPO / "deploy" / "docs" / "metrics.md"
    outputs = gen.outputs()
    assert outputs[target] == target.read_text(encoding="utf-8")
    gen.ROOT = tmp_path  # a checkout where nothing was generated yet
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "demo.yaml").write_text((REPO / "config" / "demo.yaml").read_text())
    assert len(gen.stale()) == len(outputs)


def _models(model: type[BaseModel], seen: set[type[BaseModel]]) -> None:
    if model in seen:
        return
    seen.add(model)
    for info in model.model_fields.values():
        stack = [info.annotation]
        while stack:
            a = stack.pop()
            if isinstance(a, type) and issubclass(a, BaseModel):
                _models(a, seen)
            stack.extend(typing.get_args(a))


def test_config_reference_documents_every_field_of_every_section() -> None:
    text = (REPO / "deploy" / "docs" / "config-reference.md").read_text(encoding="utf-8")
    seen: set[type[BaseModel]] = set()
    _models(schema.StrategyConfig, seen)
    assert len(seen) > 10
    for model in seen:
        for name in model.model_fields:
            assert f"| `{name}` |" in text, f"{model.__name__}.{name} missing from config-reference.md"
    assert "| `max_share` | share 0..1 | **required** |" in text


def test_metrics_reference_lists_every_registered_metric() -> None:
    text = (REPO / "deploy" / "docs" / "metrics.md").read_text(encoding="utf-8")
    for metric in Metrics().all():
        assert f"`{metric._name}" in text


def test_container_strategy_is_the_demo_with_container_addresses() -> None:
    gen = _generate()
    demo = (REPO / "config" / "demo.yaml").read_text(encoding="utf-8")
    original = load_config_text(demo, "demo.yaml")
    container = load_config_text(gen.container_strategy(demo), "container.yaml")
    assert container.metrics.address == "0.0.0.0:9464"
    assert str(container.journal.path) == "/var/lib/alpha/demo.db"
    changed = {"metrics", "journal"}
    for field in schema.StrategyConfig.model_fields:
        if field not in changed:
            assert getattr(container, field) == getattr(original, field), field
