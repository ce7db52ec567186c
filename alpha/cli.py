"""The ``alpha`` command line. Each subcommand lives in ``alpha.commands.<name>`` and exposes
``help`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``; this module only
dispatches, importing a command's module when it is used (so ``alpha check`` stays fast).

Logs go to stderr for every command (``alpha run`` chooses its own destination), so stdout
carries only a command's output: ``--json`` output is pure JSON.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

import alpha
import alpha.commands


def _command_modules() -> dict[str, str]:
    names = {}
    for info in pkgutil.iter_modules(alpha.commands.__path__):
        if not info.name.startswith("_"):
            names[info.name.replace("_", "-")] = f"alpha.commands.{info.name}"
    return dict(sorted(names.items()))


def _load(module: str) -> ModuleType:
    return importlib.import_module(module)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alpha",
        description="Farm perpetual-futures funding rates while staying delta-neutral.",
    )
    parser.add_argument("--version", action="version", version=f"alpha {alpha.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in _command_modules().items():
        if only is not None and name != only:
            sub.add_parser(name, help=argparse.SUPPRESS, add_help=False)
            continue
        module = _load(module_name)
        p = sub.add_parser(name, help=getattr(module, "help", ""), description=getattr(module, "help", ""))
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    commands = _command_modules()
    only = args_list[0] if args_list and args_list[0] in commands else None
    parser = build_parser(only)
    args = parser.parse_args(args_list)
    module = getattr(args, "_module", None)
    if module is None:
        parser.print_help()
        return 2
    import structlog

    from alpha.observability.logging import CurrentStderr, configure

    previous = structlog.get_config()
    configure(stream=CurrentStderr())
    try:
        result = module.run(args)
    except KeyboardInterrupt:
        return 130
    finally:
        structlog.configure(**previous)  # a caller in the same process keeps its own set-up
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
