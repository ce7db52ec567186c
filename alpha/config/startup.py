"""What a strategy needs to start in a mode, checked before anything is built.

``startup_problems`` is the one check ``alpha check``, ``alpha run``, ``alpha inspect`` and the
daemon's wiring (``alpha.daemon.app.build_daemon``) share, so a file that passes ``check``
starts: every fuse fits the mode (demo and backtest simulate every fuse; live trades real
venues only; paper reads real venues' public data and simulates execution), every ccxt fuse's
venue is in the venue table with the kind the table gives it and the credentials its client
requires, the control endpoint binds to loopback and both endpoints are ``host:port``.
Secrets are not read here (they may live only on the machine that runs the daemon).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from alpha.config.schema import FuseConfig, FuseKind, RateFuseConfig, StrategyConfig

MODES = ("demo", "paper", "live", "backtest")
DAEMON_MODES = ("demo", "paper", "live")

# ccxt's requiredCredentials names -> our credentials fields
_CREDENTIAL_FIELDS = {"apiKey": "api_key", "secret": "secret", "password": "password", "privateKey": "wallet_key"}


@dataclass(frozen=True, slots=True)
class StartupProblem:
    """One reason the strategy cannot start in the mode: the field (as a path) and a sentence."""

    path: tuple[str | int, ...]
    message: str


def _simulated(f: FuseConfig) -> bool:
    return f.kind is FuseKind.SIM or (f.kind is FuseKind.LENDING and f.venue == "sim")


def startup_problems(
    config: StrategyConfig,
    mode: str | None = None,
    *,
    control_address: str | None = None,
    metrics_address: str | None = None,
) -> list[StartupProblem]:
    """List what stops ``config`` from starting in ``mode`` (default: the file's); empty if it can start."""
    mode = mode or config.mode
    if mode not in MODES:
        return [StartupProblem(("mode",), f"mode {mode!r} is not one of {', '.join(MODES)}")]
    problems: list[StartupProblem] = []
    for i, f in enumerate(config.fuses):
        if f.enabled:
            problems.extend(_fuse_problems(f, i, mode))
    for i, r in enumerate(config.rates):
        if r.enabled:
            problems.extend(_rate_problems(r, i, mode))
    if mode == "paper" and not any(f.kind in (FuseKind.CEX, FuseKind.PERP_DEX) for f in config.enabled_fuses):
        problems.append(StartupProblem(("fuses",), "paper mode needs at least one cex or perp_dex fuse to read market data from"))
    if mode in DAEMON_MODES:
        problems.extend(_address_problems(config, control_address, metrics_address))
    return problems


def _rate_problems(r: RateFuseConfig, i: int, mode: str) -> list[StartupProblem]:
    """A rate fuse fits the mode: simulated outside live mode, a real venue with its credentials in live mode."""
    where = ("rates", i)
    if mode in ("demo", "backtest", "paper") and r.venue != "sim":
        return [StartupProblem((*where, "venue"), f"{mode} mode simulates every rate fuse, but {r.name!r} is on {r.venue}: use venue: sim, or mode: live")]
    if mode == "live" and r.venue == "sim":
        return [StartupProblem((*where, "venue"), f"live mode trades real venues only, but rate fuse {r.name!r} is simulated: disable it or use mode: demo")]
    if mode == "live":
        creds = r.credentials
        missing = [n for n in ("wallet_address", "wallet_key") if creds is None or getattr(creds, n) is None]
        if missing:
            return [StartupProblem((*where, "credentials"), f"rate fuse {r.name!r} on {r.venue} needs credentials {', '.join(missing)}"
                                   " (the root account's address, and the agent key approved for it: {env: VARIABLE} or {file: /path})")]
    return []


def _fuse_problems(f: FuseConfig, i: int, mode: str) -> list[StartupProblem]:
    where = ("fuses", i)
    kind = ("fuses", i, "kind")
    if mode in ("demo", "backtest") and not _simulated(f):
        return [StartupProblem(kind, f"{mode} mode simulates every fuse, but fuse {f.name!r} is kind {f.kind.value} on"
                               f" {f.venue}: use kind: sim (a lending fuse: venue: sim), or mode: live")]
    if mode == "paper" and f.kind is FuseKind.LENDING and f.venue != "sim":
        return [StartupProblem(("fuses", i, "venue"), f"paper mode cannot simulate the on-chain lending fuse {f.name!r}"
                               f" on {f.venue}: use venue: sim, or mode: live")]
    if mode == "live" and _simulated(f):
        return [StartupProblem(kind, f"live mode trades real venues only, but fuse {f.name!r} is simulated"
                               f" ({f.kind.value} on {f.venue}): disable it or use mode: demo")]
    if mode in ("paper", "live") and f.kind in (FuseKind.CEX, FuseKind.PERP_DEX):
        return _venue_problems(f, where, check_credentials=mode == "live")
    return []


def _venue_problems(f: FuseConfig, where: tuple[str | int, ...], *, check_credentials: bool) -> list[StartupProblem]:
    try:
        from fuses.ccxt.venues import VENUES
    except ImportError as exc:
        return [StartupProblem((*where, "venue"), f"fuse {f.name!r} needs the ccxt connector, which failed to import: {exc}")]
    spec = VENUES.get(f.venue)
    if spec is None:
        return [StartupProblem((*where, "venue"), f"venue {f.venue!r} is not in the venue table; known: {', '.join(sorted(VENUES))}")]
    if spec.kind != f.kind.value:
        return [StartupProblem((*where, "kind"), f"venue {f.venue} is a {spec.kind} venue, but fuse {f.name!r} says kind {f.kind.value}")]
    if not check_credentials:
        return []
    creds = f.credentials
    missing = [
        field for ccxt_name, field in _CREDENTIAL_FIELDS.items()
        if ccxt_name in required_credentials(spec.ccxt_id) and (creds is None or getattr(creds, field) is None)
    ]
    if missing:
        return [StartupProblem((*where, "credentials"), f"venue {f.venue} needs credentials {', '.join(missing)}"
                               " ({env: VARIABLE} or {file: /path})")]
    return []


@functools.cache
def required_credentials(ccxt_id: str) -> frozenset[str]:
    """The credentials ccxt's client for ``ccxt_id`` requires to sign (``walletAddress`` is derived from the key)."""
    import ccxt

    required = getattr(ccxt, ccxt_id)().requiredCredentials
    return frozenset(k for k, v in required.items() if v and k != "walletAddress")


def _address_problems(config: StrategyConfig, control: str | None, metrics: str | None) -> list[StartupProblem]:
    from alpha.config.types import check_bind_address
    from alpha.daemon.http import is_loopback

    problems = []
    for path, address, override in (
        (("control", "address"), control or config.control.address, control),
        (("metrics", "address"), metrics or config.metrics.address, metrics),
    ):
        try:
            check_bind_address(address)
        except ValueError as exc:
            where = " (from the command line)" if override else ""
            problems.append(StartupProblem(path, f"{exc}{where}"))
            continue
        if path[0] == "control" and not is_loopback(address.rpartition(":")[0].strip("[]")):
            problems.append(StartupProblem(path, f"the control endpoint must bind to loopback (127.0.0.1, ::1 or localhost),"
                                           f" not {address}: it pauses, resumes and flattens the vault"))
    return problems
