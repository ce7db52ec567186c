"""Load a strategy file: YAML with exact numbers, every error with file, line and field path.

Safe by construction on any input: the file is at most ``MAX_FILE_BYTES``; the composer refuses
nesting deeper than ``MAX_DEPTH`` and more than ``MAX_ALIASES`` aliases; building the data
refuses a recursive alias and stops after ``MAX_NODES`` nodes (an alias bomb expands to
billions); unreadable bytes, NUL and other characters YAML forbids are reported with their
line. No error message echoes a secret-shaped value (``alpha.domain.redact``).
"""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from alpha.config.schema import Credentials, SecretRef, StrategyConfig
from alpha.domain.redact import redact_secrets

MAX_FILE_BYTES = 256 * 1024  # strategy files are a few KB; pure-Python YAML reads 256 KiB in < 1 s
MAX_DEPTH = 64  # of nested mappings and lists, aliases expanded
MAX_ALIASES = 256  # alias uses (``*name``) in one file
MAX_NODES = 100_000  # values after expanding aliases

PathKey = tuple[str | int, ...]
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,30}")  # a fuse name as the schema takes it: only such a name decorates a path


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a strategy file."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        text = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        return redact_secrets(text)


class ConfigError(Exception):
    """A strategy file that cannot be used; ``problems`` lists every error found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class _Loader(yaml.SafeLoader):
    """SafeLoader that never turns numbers into binary floats and composes within limits.

    PyYAML's composer recurses once per nesting level and shares an aliased node wherever it is
    used; counting here stops a 5,000-deep file before Python's recursion limit and caps aliases.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        mark: Any = event.start_mark
        if isinstance(event, yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise yaml.composer.ComposerError(None, None, f"more than {MAX_ALIASES} aliases (*name) in one file", mark)
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _TooBig(Exception):
    """The data cannot be built within the limits (depth, size or a recursive alias)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


@dataclass
class _Builder:
    """Turn composed YAML nodes into plain data, remembering each path's line, within limits."""

    loader: _Loader
    lines: dict[PathKey, int]
    problems: list[tuple[PathKey, int, str]]
    nodes: int = 0

    def build(self, node: yaml.Node, path: PathKey, active: frozenset[int] = frozenset()) -> Any:
        line = node.start_mark.line + 1
        self.lines.setdefault(path, line)
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _TooBig(line, f"the file expands to more than {MAX_NODES} values (an alias used too often?)")
        if len(active) >= MAX_DEPTH:
            raise _TooBig(line, f"nested more than {MAX_DEPTH} levels deep once aliases are expanded")
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            if id(node) in active:
                raise _TooBig(line, "an alias refers to a value that contains it (a recursive alias)")
            active = active | {id(node)}
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, active)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i), active) for i, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _mapping(self, node: yaml.MappingNode, path: PathKey, active: frozenset[int]) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.append((path, key_node.start_mark.line + 1, "keys must be plain scalars"))
                continue
            key = key_node.value
            child = (*path, key)
            if key in result:
                self.problems.append((child, key_node.start_mark.line + 1, f"key '{key}' is given twice"))
                continue
            self.lines[child] = key_node.start_mark.line + 1
            result[key] = self.build(value_node, child, active)
        return result

    def _scalar(self, node: yaml.Node, path: PathKey) -> Any:
        tag = node.tag
        if tag == "tag:yaml.org,2002:float":
            try:
                return Decimal(str(node.value).replace("_", ""))
            except InvalidOperation:
                pass  # .nan, .inf: validation names them
        if tag == "tag:yaml.org,2002:timestamp":
            return node.value
        try:
            return self.loader.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            reason = getattr(exc, "problem", None) or str(exc)
            self.problems.append((path, node.start_mark.line + 1, f"cannot read this value ({tag}): {reason}"))
            return None


def _yaml_problem(exc: yaml.YAMLError, text: str, filename: str) -> Problem:
    """Say what is wrong with the YAML, and where, in one sentence."""
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        what = "a NUL byte" if char == "\0" else f"character U+{ord(char):04X}"
        return Problem(filename, line, "", f"not valid YAML: {what} is not allowed in a YAML file")
    mark = getattr(exc, "problem_mark", None)
    at: int | None = mark.line + 1 if mark is not None else None
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    return Problem(filename, at, "", f"not valid YAML: {problem}" + (f" ({context})" if context else ""))


def _parse(text: str, filename: str) -> tuple[Any, dict[PathKey, int], list[Problem], list[tuple[PathKey, int, str]]]:
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_FILE_BYTES:
        return None, {}, [Problem(filename, None, "", _too_large(size))], []
    try:
        loader = _Loader(text)
    except yaml.YAMLError as exc:  # the reader refuses NUL and other forbidden characters at once
        return None, {}, [_yaml_problem(exc, text, filename)], []
    problems: list[Problem] = []
    try:
        node = loader.get_single_node()
    except yaml.YAMLError as exc:
        return None, {}, [_yaml_problem(exc, text, filename)], []
    finally:
        loader.dispose()
    if node is None:
        return None, {}, [Problem(filename, 1, "", "the file is empty")], []
    lines: dict[PathKey, int] = {}
    raw: list[tuple[PathKey, int, str]] = []
    try:
        data = _Builder(loader, lines, raw).build(node, ())
    except _TooBig as exc:
        return None, {}, [Problem(filename, exc.line, "", exc.message)], []
    problems.extend(Problem(filename, line, _format_path(p, data), msg) for p, line, msg in raw)
    return data, lines, problems, raw


def _too_large(size: int) -> str:
    return f"the file is {size} bytes; a strategy file is at most {MAX_FILE_BYTES} bytes ({MAX_FILE_BYTES // 1024} KiB)"


def _format_path(loc: Iterable[str | int], data: Any) -> str:
    """Render ('fuses', 0, 'max_share') as fuses[0](binance).max_share."""
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list | tuple) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("name"), str) and _NAME.fullmatch(node["name"]):
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
    """Say whether ``loc`` is in a secret reference or the credentials (its input may be a pasted secret)."""
    model: Any = StrategyConfig
    for part in loc:
        if model is SecretRef or model is Credentials:
            return True
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return False
        model = _unwrap(model.model_fields[part].annotation)
    return model is SecretRef or model is Credentials


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
        got = repr(err["input"])
        msg = f"{msg} (got {got if len(got) <= 60 else got[:60] + '...'})"
    return msg


def load_config_text(text: str, filename: str = "<string>") -> StrategyConfig:
    """Validate strategy YAML ``text``; raise ``ConfigError`` listing every problem."""
    return _validate(text, filename)[0]


def _validate(text: str, filename: str) -> tuple[StrategyConfig, dict[PathKey, int]]:
    data, lines, problems, raw = _parse(text, filename)
    if data is None and problems:
        raise ConfigError(problems)
    if not isinstance(data, dict):
        raise ConfigError([Problem(filename, 1, "", "the top level must be a mapping of sections")])
    if "version" not in data:
        problems.append(Problem(filename, 1, "version", "required field is missing (write 'version: 1' at the top)"))
    try:
        config = StrategyConfig.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        failing = [tuple(e["loc"]) for e in errors]
        unreadable = {p for p, _line, _msg in raw}
        for err in errors:
            loc = tuple(err["loc"])
            if loc in unreadable:
                continue  # already said: the YAML value itself could not be read
            if err["type"] == "too_short" and any(len(f) > len(loc) and f[: len(loc)] == loc for f in failing):
                continue  # a list whose items failed is not also "too short"
            problems.append(Problem(filename, _line_for(loc, lines), _format_path(loc, data), _message(err)))
        problems.sort(key=lambda p: (p.line or 0, p.path))
        raise ConfigError(problems) from None
    except (ArithmeticError, ValueError, TypeError, RecursionError) as exc:  # a validator's own failure
        raise ConfigError([*problems, Problem(filename, None, "", f"cannot validate the file: {type(exc).__name__}: {exc}")]) from None
    if problems:
        raise ConfigError(problems)
    return config, lines


def load_config(path: str | Path) -> StrategyConfig:
    """Read and validate a strategy file."""
    p = Path(path)
    return load_config_text(read_strategy_text(p), str(p))


def load_strategy(
    path: str | Path,
    mode: str | None = None,
    *,
    control_address: str | None = None,
    metrics_address: str | None = None,
) -> StrategyConfig:
    """Read and validate a strategy file, and check it can start in ``mode`` (default: the file's).

    What ``alpha check``, ``alpha run`` and ``alpha inspect`` load: a file this accepts starts
    (``alpha.config.startup.startup_problems``, which the daemon's wiring runs too).
    """
    from alpha.config.startup import startup_problems

    p = Path(path)
    config, lines = _validate(read_strategy_text(p), str(p))
    found = startup_problems(config, mode, control_address=control_address, metrics_address=metrics_address)
    if found:
        data = config.model_dump()
        raise ConfigError([Problem(str(p), _line_for(f.path, lines), _format_path(f.path, data), f.message) for f in found])
    return config


def read_strategy_text(p: Path) -> str:
    """Read at most ``MAX_FILE_BYTES`` of UTF-8 from ``p``; a larger or undecodable file is a ``ConfigError``."""
    try:
        with p.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
            size = len(raw) if len(raw) <= MAX_FILE_BYTES else max(len(raw), _size(p))
    except OSError as exc:
        raise ConfigError([Problem(str(p), None, "", f"cannot read the file: {exc.strerror or exc}")]) from None
    except ValueError as exc:  # a path with a NUL byte
        raise ConfigError([Problem(str(p), None, "", f"cannot read the file: {exc}")]) from None
    if size > MAX_FILE_BYTES:
        raise ConfigError([Problem(str(p), None, "", _too_large(size))])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError([Problem(str(p), line, "", f"the file is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})")]) from None


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return MAX_FILE_BYTES + 1
