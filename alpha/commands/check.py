"""``alpha check FILE``: validate a strategy file, report every error, exit 2 on any.

It runs what ``alpha run`` runs before starting (``alpha.config.load_strategy``): the schema and
the file's mode's requirements (``--mode`` checks another), so a file that passes starts. Output
never carries a secret-shaped value (``alpha.domain.redact``).
"""

from __future__ import annotations

import argparse
import sys

from alpha.config import ConfigError, load_strategy
from alpha.config.schema import StrategyConfig
from alpha.domain.redact import redact_secrets

help = "validate a strategy file and print a short summary"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="+", help="strategy YAML file(s)")
    parser.add_argument("--mode", choices=("demo", "paper", "live", "backtest"), help="check for this mode instead of the file's")


def summary(config: StrategyConfig) -> str:
    """Describe a valid strategy in a few lines."""
    lines = [
        f"vault {config.vault.name}: NAV {config.vault.nav} {config.vault.base_asset}, mode {config.mode}",
        f"farming {', '.join(config.assets)}; idle buffer {config.idle_buffer * 100}%, "
        f"delta tolerance {config.delta_tolerance * 100}% of gross",
        f"entry >= {config.thresholds.entry_min_net_apr * 100}% net APR, exit < {config.thresholds.exit_min_net_apr * 100}%;"
        f" PnL policy {config.pnl.policy.value}",
    ]
    for f in config.fuses:
        scope = ", ".join(f.markets or f.assets)
        state = "" if f.enabled else " (disabled)"
        lines.append(
            f"  fuse {f.name}{state}: {f.kind.value} on {f.venue}, cap {f.max_share * 100}% of NAV, "
            f"max {f.max_leverage}x, {scope}"
        )
        if f.withdrawals:
            lines.append(f"    may send to: {'; '.join(d.describe() for d in f.withdrawals)}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.file:
        try:
            config = load_strategy(path, args.mode)
        except ConfigError as exc:
            failed += 1
            n = len(exc.problems)
            print(redact_secrets(f"{path}: {n} error{'s' if n != 1 else ''}"), file=sys.stderr)
            for problem in exc.problems:
                print(f"  {problem}", file=sys.stderr)
            continue
        print(redact_secrets(f"{path}: OK"))
        print(redact_secrets(summary(config)))
    return 2 if failed else 0
