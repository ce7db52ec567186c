"""The ``alpha`` command line. Each subcommand lives in ``alpha.commands.<name>`` and exposes
``help`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``; this module only
dispatches, importing a command's module when it is used (so ``alpha check`` stays fast).

Logs go to stderr for every command (``alpha run`` chooses its own destination), so stdout
carries only a command's output: ``--json`` output is pure JSON.

No command shows a traceback: an exception a command did not turn into its own message ends
in one line, ``error: <Class>: <message>`` (secret-shaped values redacted), and exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
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
    except BrokenPipeError:  # the reader went away (``alpha check x | head -1``): nothing to say to it
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:  # the last resort: a clear line, never a traceback or a secret
        print(last_resort_message(exc), file=sys.stderr)
        return 2
    finally:
        structlog.configure(**previous)  # a caller in the same process keeps its own set-up
    return int(result or 0)


def last_resort_message(exc: BaseException) -> str:
    """One line naming the error's class and message, cut short and with secret-shaped values redacted."""
    from alpha.domain.redact import redact_secrets

    text = " ".join(str(exc).split()) or "(no message)"
    if len(text) > 2000:
        text = text[:2000] + "..."
    return redact_secrets(f"error: {type(exc).__name__}: {text}")


if __name__ == "__main__":
    sys.exit(main())
