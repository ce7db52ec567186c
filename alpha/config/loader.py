"""Load a strategy file: YAML with exact numbers, every error with file, line and field path."""

from __future__ import annotations

import difflib
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from alpha.config.schema import SecretRef, StrategyConfig

PathKey = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a strategy file."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path or '<top>'}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(Exception):
    """A strategy file that cannot be used; ``problems`` lists every error found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class _Loader(yaml.SafeLoader):
    """SafeLoader that never turns numbers into binary floats."""


def _build(loader: _Loader, node: yaml.Node, path: PathKey, lines: dict[PathKey, int], problems: list[tuple[PathKey, int, str]]) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                problems.append((path, key_node.start_mark.line + 1, "keys must be plain scalars"))
                continue
            key = key_node.value
            child = (*path, key)
            if key in result:
                problems.append((child, key_node.start_mark.line + 1, f"key '{key}' is given twice"))
                continue
            lines[child] = key_node.start_mark.line + 1
            result[key] = _build(loader, value_node, child, lines, problems)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, (*path, i), lines, problems) for i, item in enumerate(node.value)]
    assert isinstance(node, yaml.ScalarNode)
    tag = node.tag
    if tag == "tag:yaml.org,2002:float":
        text = node.value.replace("_", "")
        try:
            value = Decimal(text)
        except InvalidOperation:
            return loader.construct_object(node)  # .nan, .inf: validation names them
        return value
    if tag == "tag:yaml.org,2002:timestamp":
        return node.value
    return loader.construct_object(node, deep=True)


def _parse(text: str, filename: str) -> tuple[Any, dict[PathKey, int], list[Problem]]:
    loader = _Loader(text)
    problems: list[Problem] = []
    try:
        node = loader.get_single_node()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        return None, {}, [Problem(filename, line, "", f"not valid YAML: {problem}")]
    finally:
        loader.dispose()
    if node is None:
        return None, {}, [Problem(filename, 1, "", "the file is empty")]
    lines: dict[PathKey, int] = {}
    raw: list[tuple[PathKey, int, str]] = []
    data = _build(loader, node, (), lines, raw)
    problems.extend(Problem(filename, line, _format_path(p, data), msg) for p, line, msg in raw)
    return data, lines, problems


def _format_path(loc: Iterable[str | int], data: Any) -> str:
    """Render ('fuses', 0, 'max_share') as fuses[0](binance).max_share."""
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("name"), str):
                out += f"({node['name']})"
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out


def _line_for(loc: PathKey, lines: dict[PathKey, int]) -> int | None:
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def _model_at(loc: PathKey) -> type[BaseModel] | None:
    """Find the pydantic model that owns the last key of ``loc`` (for did-you-mean hints)."""
    model: Any = StrategyConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return None
        model = _unwrap(model.model_fields[part].annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _in_secret(loc: PathKey) -> bool:
    """Say whether ``loc`` is a secret reference or inside one (its input may be a pasted secret)."""
    model: Any = StrategyConfig
    for part in loc:
        if model is SecretRef:
            return True
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return False
        model = _unwrap(model.model_fields[part].annotation)
    return model is SecretRef


def _unwrap(annotation: Any) -> Any:
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
        for inner in typing.get_args(arg):
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner
    return annotation


def _message(err: Any) -> str:
    kind = err["type"]
    loc = tuple(err["loc"])
    if kind == "extra_forbidden":
        key = str(loc[-1])
        model = _model_at(loc)
        hint = ""
        if model is not None:
            close = difflib.get_close_matches(key, list(model.model_fields), n=1)
            if close:
                hint = f" (did you mean '{close[0]}'?)"
        return f"unknown key '{key}'{hint}"
    if kind == "missing":
        return "required field is missing"
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    echo = not isinstance(err.get("input"), dict | list | tuple) and not _in_secret(loc)
    if kind != "value_error" and "input" in err and echo:
        msg = f"{msg} (got {err['input']!r})"
    return msg


def load_config_text(text: str, filename: str = "<string>") -> StrategyConfig:
    """Validate strategy YAML ``text``; raise ``ConfigError`` listing every problem."""
    data, lines, problems = _parse(text, filename)
    if data is None and problems:
        raise ConfigError(problems)
    if not isinstance(data, dict):
        raise ConfigError([Problem(filename, 1, "", "the top level must be a mapping of sections")])
    try:
        config = StrategyConfig.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        failing = [tuple(e["loc"]) for e in errors]
        for err in errors:
            loc = tuple(err["loc"])
            if err["type"] == "too_short" and any(len(f) > len(loc) and f[: len(loc)] == loc for f in failing):
                continue  # a list whose items failed is not also "too short"
            problems.append(Problem(filename, _line_for(loc, lines), _format_path(loc, data), _message(err)))
        problems.sort(key=lambda p: (p.line or 0, p.path))
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    return config


def load_config(path: str | Path) -> StrategyConfig:
    """Read and validate a strategy file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem(str(p), None, "", f"cannot read the file: {exc.strerror}")]) from exc
    return load_config_text(text, str(p))
