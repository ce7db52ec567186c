"""Field types for the strategy file: exact decimals, shares and durations (secret references are in ``schema``)."""

from __future__ import annotations

import re
import unicodedata
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, StrictBool, StrictInt

from alpha.domain.money import to_decimal

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNITS = {"ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600), "d": Decimal(86400), "w": Decimal(604800)}
MAX_DIGITS = 28
MAX_MAGNITUDE = Decimal("1e15")  # no amount, rate or count in a strategy comes near this
MIN_MAGNITUDE = Decimal("1e-18")  # below this a non-zero number cannot be meant (wei is 1e-18 ETH)
MAX_DURATION = timedelta(days=3650)  # ten years


def _exact(value: Any) -> Decimal:
    """Read a YAML/JSON scalar as an exact Decimal; refuse what cannot be exact."""
    # The YAML loader keeps numbers as exact decimals; a binary float here came from code or
    # JSON and to_decimal takes it only if its shortest repr is what was meant.
    result = to_decimal(value.replace("_", "") if isinstance(value, str) else value, field="")
    if len(result.as_tuple().digits) > MAX_DIGITS:
        raise ValueError(f"{_short(value)} has more than {MAX_DIGITS} significant digits and cannot be held exactly")
    if abs(result) >= MAX_MAGNITUDE:
        raise ValueError(f"{_short(value)} is out of range: numbers in a strategy file must be below {MAX_MAGNITUDE:.0e}")
    if result and abs(result) < MIN_MAGNITUDE:
        raise ValueError(f"{_short(value)} is out of range: a non-zero number must be at least {MIN_MAGNITUDE:.0e}")
    return result


def _short(value: Any, limit: int = 40) -> str:
    """``value`` as text, cut to ``limit`` characters (an error never echoes a whole pasted blob)."""
    text = str(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def within(low: Decimal | int | str, high: Decimal | int | str, *, above: bool = False) -> AfterValidator:
    """A bound check: ``low <= v <= high`` (``above``: ``low < v``), the error naming the range."""
    lo, hi = Decimal(low), Decimal(high)

    def check(v: Decimal) -> Decimal:
        if (v <= lo if above else v < lo) or v > hi:
            left = "(" if above else "["
            raise ValueError(f"must be within {left}{lo}, {hi}], got {v}")
        return v

    return AfterValidator(check)


def _non_negative(v: Decimal) -> Decimal:
    if v < 0:
        raise ValueError(f"must not be negative, got {v}")
    return v


def _positive(v: Decimal) -> Decimal:
    if v <= 0:
        raise ValueError(f"must be positive, got {v}")
    return v


def _share(v: Decimal) -> Decimal:
    if v < 0 or v > 1:
        raise ValueError(f"must be a share between 0 and 1 (e.g. '0.10' for 10%), got {v}")
    return v


def _seconds(seconds: Decimal, written: Any) -> timedelta:
    """A duration of exactly ``seconds`` (to the microsecond), fractions kept: 0.5 is 500 ms."""
    if not seconds.is_finite() or abs(seconds) > Decimal(MAX_DURATION.days * 86400):
        raise ValueError(f"{_short(repr(written))} is out of range: a duration is at most 10 years (3650d)")
    return timedelta(microseconds=int((seconds * 1_000_000).to_integral_value()))


def parse_duration(value: Any) -> timedelta:
    """Read a duration: "30s", "5m", "8h", "7d", "250ms", or a number of seconds (fractions kept)."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return _seconds(Decimal(value), value)
    if isinstance(value, str):
        m = _DURATION.match(value) if len(value) <= 40 else None
        if m:
            return _seconds(Decimal(m.group(1)) * _UNITS[m.group(2)], value)
    raise ValueError(f"{_short(repr(value))} is not a duration; write e.g. '30s', '5m', '8h', '7d'")


def _positive_duration(v: timedelta) -> timedelta:
    if v.total_seconds() <= 0:
        raise ValueError("must be a positive duration")
    if v > MAX_DURATION:
        raise ValueError("must be at most 10 years (3650d)")
    return v


def format_duration(td: timedelta) -> str:
    """Write a duration the way the strategy file takes it ("8h", "90s", "250ms"); it reads back equal."""
    micro = (td.days * 86400 + td.seconds) * 1_000_000 + td.microseconds
    if micro % 1_000_000:
        return f"{micro // 1000}ms" if micro % 1000 == 0 else f"{Decimal(micro) / 1_000_000}s"
    seconds = micro // 1_000_000
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


_dec_ser = PlainSerializer(lambda d: str(d), return_type=str, when_used="json")
_td_ser = PlainSerializer(format_duration, return_type=str, when_used="json")

Exact = Annotated[Decimal, BeforeValidator(_exact), _dec_ser]
Apr = Annotated[Decimal, BeforeValidator(_exact), within(-3, 10), _dec_ser]  # annualised: -300% .. +1000% (below -100%: research runs that stay in whatever it costs)
Fee = Annotated[Decimal, BeforeValidator(_exact), within(0, "0.1"), _dec_ser]  # a trading fee: 0 .. 10%
# gross exposure / capital: below 1 is a cash cushion (a spot fuse at 0.8), above 100 is absurd
Leverage = Annotated[Decimal, BeforeValidator(_exact), within(0, 100, above=True), _dec_ser]
Notional = Annotated[Decimal, BeforeValidator(_exact), within(1, MAX_MAGNITUDE), _dec_ser]  # at least 1: no dust
Amount = Annotated[Decimal, BeforeValidator(_exact), within(0, MAX_MAGNITUDE, above=True), _dec_ser]  # NAV, prices
Count = StrictInt  # ``true`` is not 1
Flag = StrictBool  # ``1`` or ``"yes"`` is not true
NonNegative = Annotated[Decimal, BeforeValidator(_exact), AfterValidator(_non_negative), _dec_ser]
Positive = Annotated[Decimal, BeforeValidator(_exact), AfterValidator(_positive), _dec_ser]
Share = Annotated[Decimal, BeforeValidator(_exact), AfterValidator(_share), _dec_ser]
Duration = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(_positive_duration), _td_ser]


def _plain_ascii(v: str, what: str) -> str:
    """Refuse any character outside printable ASCII, naming it: a Cyrillic 'В' looks like 'B' but is not."""
    for ch in v:
        if not " " <= ch <= "~":
            name = unicodedata.name(ch, "a control character")
            raise ValueError(
                f"{what} contains U+{ord(ch):04X} ({name}), which is not plain ASCII;"
                " lookalike and invisible characters are refused"
            )
    return v


def _identifier(what: str, pattern: str, example: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(v: str) -> str:
        _plain_ascii(v, what)
        if not compiled.fullmatch(v):
            raise ValueError(f"{_short(repr(v))} is not a valid {what} (e.g. {example})")
        return v

    return AfterValidator(check)


def _url(v: str) -> str:
    _plain_ascii(v, "the URL")
    try:
        parts = urlsplit(v)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
        raise ValueError(f"{_short(repr(v))} is not a URL; write e.g. 'https://api.example.com' or 'http://127.0.0.1:8545'")
    if parts.username is not None or parts.password is not None:
        raise ValueError("the URL carries credentials (user:password@); secrets go in 'credentials', never in a URL")
    if port == 0:
        raise ValueError(f"{_short(repr(v))} has port 0")
    return v


_HOST = re.compile(r"^(localhost|[A-Za-z0-9.-]+|[0-9A-Fa-f:.]+)$")


def check_bind_address(v: str) -> str:
    """Return ``v`` if it is ``host:port`` (IPv6 in brackets), else raise ``ValueError`` saying so."""
    _plain_ascii(v, "the address")
    host, _, port = v.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or not _HOST.fullmatch(host) or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{_short(repr(v))} is not host:port (e.g. '127.0.0.1:9464', '[::1]:9464')")
    return v


Asset = Annotated[str, _identifier("asset name", r"[A-Za-z0-9][A-Za-z0-9._-]{0,30}", "'BTC', 'USDC', '1000PEPE'")]
Venue = Annotated[str, _identifier("venue name", r"[A-Za-z0-9][A-Za-z0-9._-]{0,30}", "'binanceusdm', 'hyperliquid', 'sim-cex'")]
Market = Annotated[
    str,
    _identifier("market symbol", r"[A-Za-z0-9._-]{1,31}/[A-Za-z0-9._-]{1,31}(:[A-Za-z0-9._-]{1,31})?", "'BTC/USDT', 'BTC/USDT:USDT'"),
]
Url = Annotated[str, AfterValidator(_url)]


def _path_text(v: Any) -> Any:
    if isinstance(v, str):
        for ch in v:
            if ch < " " or ch == "\x7f":
                raise ValueError(f"a path must not contain control characters (found U+{ord(ch):04X})")
        if len(v) > 4096:
            raise ValueError("a path is at most 4096 characters")
    return v


FilePath = Annotated[Path, BeforeValidator(_path_text)]
BindAddress = Annotated[str, AfterValidator(check_bind_address)]


def unique(what: str) -> AfterValidator:
    """Refuse a list that names the same thing twice."""

    def check(v: tuple[Any, ...]) -> tuple[Any, ...]:
        seen: set[Any] = set()
        dupes = [x for x in v if x in seen or seen.add(x)]  # type: ignore[func-returns-value]
        if dupes:
            raise ValueError(f"{what} must be unique; repeated: {', '.join(sorted({str(d) for d in dupes}))}")
        return v

    return AfterValidator(check)
