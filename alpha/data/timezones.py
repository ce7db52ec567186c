"""Local wall-clock times to UTC, across daylight-saving changes, without guessing silently.

Some exports write Europe/London local time. In spring one local hour does not exist (the
clocks jump); in autumn one local hour happens twice. A nonexistent time is refused. An
ambiguous one is resolved by the only rule that keeps a time series in order: take the first
occurrence unless that would not come after the previous row, then take the second.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from alpha.data.series import DataError


def local_to_utc(naive: datetime, zone: str, *, previous: datetime | None = None, where: str = "") -> datetime:
    """Convert a naive local ``naive`` in ``zone`` to aware UTC (``previous``: the row before, in UTC)."""
    if naive.tzinfo is not None:
        return naive.astimezone(UTC)
    tz = ZoneInfo(zone)
    first = naive.replace(tzinfo=tz, fold=0)
    second = naive.replace(tzinfo=tz, fold=1)
    a, b = first.astimezone(UTC), second.astimezone(UTC)
    # A nonexistent local time does not round-trip: converting back gives another wall time.
    if a.astimezone(tz).replace(tzinfo=None) != naive and b.astimezone(tz).replace(tzinfo=None) != naive:
        raise DataError(f"{where}: {naive.isoformat(sep=' ')} does not exist in {zone} (clocks went forward)")
    if a == b:
        return a
    earlier, later = min(a, b), max(a, b)
    if previous is not None and earlier <= previous:
        return later
    return earlier
