"""The emulators' chaos controls: timed faults, the venue's order log, positions per account.

Served under ``/_chaos`` by both emulators (Binance USD-M and Hyperliquid) to 127.0.0.1 callers
only; ``fuses/emulators/README.md`` documents the HTTP API. A fault is posted as JSON::

    {"kind": "maintenance", "duration_s": 20, "trigger": "order", "after_orders": 2}

``trigger: "now"`` starts it at once; ``trigger: "order"`` arms it and starts it with the
venue's next order after ``after_orders`` orders (the triggering order is the first one hit).
It then lasts ``duration_s`` real seconds. What each kind does is decided by the emulator's
fault middleware (``common.fault_middleware``) with the venue's own answers.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

KINDS = ("5xx", "timeout_after_accept", "disconnect", "maintenance", "partial_fills", "rate_limit_storm", "latency", "corrupt")
TRIGGERS = ("now", "order")
SERVER_ERRORS = (502, 503)
DEFAULT_HANG_S = 30.0  # how long an accepted order's answer is held back: past any sane client timeout
LOCAL_CALLERS = ("127.0.0.1", "::1")
MAX_DURATION_S = 3600.0
MAX_EDITS = 64
MAX_CORRUPT_COUNT = 10_000
EVERY = "*"  # in an edit's path: every element of a list (every value of an object)


class ChaosRequestError(ValueError):
    """A fault request that cannot be honoured; the message says which field and why."""


@dataclass
class ChaosFault:
    """One fault posted through ``/_chaos/faults``; times are on the emulator's monotonic clock."""

    id: int
    kind: str
    duration_s: float
    trigger: str
    after_orders: int = 0
    latency_ms: int = 0
    fill_ratio: Decimal | None = None
    status: int = 503
    hang_s: float = DEFAULT_HANG_S
    endpoint: str = ""  # corrupt: the URL path whose answers are rewritten
    info_type: str | None = None  # corrupt: only requests whose JSON body's "type" is this (Hyperliquid /info)
    edits: tuple[Edit, ...] = ()
    count: int = 1  # corrupt: how many answers are rewritten before the fault ends
    orders_seen: int = 0
    started_at: float | None = None

    def active(self, now: float) -> bool:
        """Say whether the fault applies at ``now``."""
        if self.kind == "corrupt" and self.count <= 0:
            return False
        return self.started_at is not None and self.started_at <= now < self.started_at + self.duration_s

    def over(self, now: float) -> bool:
        """Say whether the fault has run its course."""
        if self.kind == "corrupt" and self.count <= 0:
            return True
        return self.started_at is not None and now >= self.started_at + self.duration_s

    def remaining(self, now: float) -> float:
        """Seconds the fault still lasts (its whole duration while armed)."""
        if self.started_at is None:
            return self.duration_s
        return max(0.0, self.started_at + self.duration_s - now)

    def json(self, now: float) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "kind": self.kind, "duration_s": self.duration_s, "trigger": self.trigger,
            "after_orders": self.after_orders, "state": "active" if self.active(now) else "armed",
            "remaining_s": round(self.remaining(now), 3),
        }
        if self.kind == "latency":
            out["latency_ms"] = self.latency_ms
        if self.kind == "partial_fills":
            out["fill_ratio"] = str(self.fill_ratio)
        if self.kind == "5xx":
            out["status"] = self.status
        if self.kind == "timeout_after_accept":
            out["hang_s"] = self.hang_s
        if self.kind == "corrupt":
            out.update(endpoint=self.endpoint, info_type=self.info_type, count=self.count,
                       edits=[e.json() for e in self.edits])
        return out


@dataclass(frozen=True)
class Edit:
    """One rewrite of a JSON answer: set ``value`` (any JSON, NaN and Infinity too) at ``path``, or delete it."""

    path: tuple[str | int, ...]
    value: Any = None
    delete: bool = False

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": list(self.path)}
        if self.delete:
            out["delete"] = True
        else:
            out["value"] = self.value
        return out

    def apply(self, body: Any) -> Any:
        """Return ``body`` with this edit applied where its path exists (a path that is not there changes nothing)."""
        return _edit(body, self.path, self)


def _edit(node: Any, path: tuple[str | int, ...], edit: Edit) -> Any:
    if not path:
        return edit.value
    step, rest = path[0], path[1:]
    if isinstance(node, list):
        indexes = range(len(node)) if step == EVERY else [step] if isinstance(step, int) and -len(node) <= step < len(node) else []
        out = list(node)
        for i in reversed(indexes) if edit.delete and not rest else indexes:
            if edit.delete and not rest:
                del out[i]
            else:
                out[i] = _edit(out[i], rest, edit)
        return out
    if isinstance(node, dict):
        keys = list(node) if step == EVERY else [step] if isinstance(step, str) and step in node else []
        if not keys and isinstance(step, str) and step != EVERY and not rest and not edit.delete:
            return {**node, step: edit.value}  # a field the venue did not send, added
        out_d = dict(node)
        for k in keys:
            if edit.delete and not rest:
                del out_d[k]
            else:
                out_d[k] = _edit(out_d[k], rest, edit)
        return out_d
    return node


def parse_edits(raw: Any) -> tuple[Edit, ...]:
    """Validate a corrupt fault's ``edits``: a non-empty list of ``{"path": [...], "value": ...}`` or ``{"path": [...], "delete": true}``."""
    if not isinstance(raw, list) or not 0 < len(raw) <= MAX_EDITS:
        raise ChaosRequestError(f"edits: expected a list of 1 to {MAX_EDITS} edits, got {raw!r}")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping) or set(item) - {"path", "value", "delete"} or "path" not in item:
            raise ChaosRequestError(f'edits[{i}]: expected {{"path": [...], "value": ...}} or {{"path": [...], "delete": true}}')
        path = item["path"]
        if not isinstance(path, list) or not path or not all(isinstance(p, str) or (isinstance(p, int) and not isinstance(p, bool)) for p in path):
            raise ChaosRequestError(f"edits[{i}].path: expected a non-empty list of keys and indexes, got {path!r}")
        delete = item.get("delete", False)
        if not isinstance(delete, bool) or (delete and "value" in item) or (not delete and "value" not in item):
            raise ChaosRequestError(f'edits[{i}]: give either "value" or "delete": true')
        out.append(Edit(tuple(path), item.get("value"), delete))
    return tuple(out)


def _number(body: Mapping[str, Any], name: str, default: float | None = None, *, low: float = 0.0, high: float = MAX_DURATION_S) -> float:
    raw = body.get(name, default)
    if raw is None:
        raise ChaosRequestError(f"{name}: required")
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw) or not low <= raw <= high:
        raise ChaosRequestError(f"{name}: expected a number from {low:g} to {high:g}, got {raw!r}")
    return float(raw)


def parse_fault(body: Any, fault_id: int) -> ChaosFault:
    """Validate a ``POST /_chaos/faults`` body into a fault (not started)."""
    if not isinstance(body, Mapping):
        raise ChaosRequestError("expected a JSON object")
    unknown = set(body) - {"kind", "duration_s", "trigger", "after_orders", "latency_ms", "fill_ratio", "status", "hang_s",
                           "endpoint", "info_type", "edits", "count"}
    if unknown:
        raise ChaosRequestError(f"unknown field(s): {', '.join(sorted(unknown))}")
    kind = body.get("kind")
    if kind not in KINDS:
        raise ChaosRequestError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    trigger = body.get("trigger", "now")
    if trigger not in TRIGGERS:
        raise ChaosRequestError(f"trigger: expected one of {', '.join(TRIGGERS)}, got {trigger!r}")
    fault = ChaosFault(fault_id, kind, _number(body, "duration_s", low=0.001), trigger)
    after = body.get("after_orders", 0)
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise ChaosRequestError(f"after_orders: expected a non-negative integer, got {after!r}")
    if after and trigger != "order":
        raise ChaosRequestError('after_orders: only with trigger "order"')
    fault.after_orders = after
    if kind == "latency":
        fault.latency_ms = int(_number(body, "latency_ms", low=1, high=600_000))
    if kind == "partial_fills":
        raw = body.get("fill_ratio")
        try:
            ratio = Decimal(raw) if isinstance(raw, str) else None
        except InvalidOperation:
            ratio = None
        if ratio is None or not ratio.is_finite() or not 0 <= ratio < 1:
            raise ChaosRequestError(f'fill_ratio: expected a decimal string in [0, 1), e.g. "0.3", got {raw!r}')
        fault.fill_ratio = ratio
    if kind == "5xx":
        status = body.get("status", 503)
        if status not in SERVER_ERRORS:
            raise ChaosRequestError(f"status: expected 502 or 503, got {status!r}")
        fault.status = int(status)
    if kind == "timeout_after_accept":
        fault.hang_s = _number(body, "hang_s", DEFAULT_HANG_S, low=0.0)
    if kind == "corrupt":
        endpoint = body.get("endpoint")
        if not isinstance(endpoint, str) or not endpoint.startswith("/") or endpoint.startswith("/_chaos"):
            raise ChaosRequestError(f'endpoint: expected a URL path such as "/fapi/v1/depth", got {endpoint!r}')
        info_type = body.get("info_type")
        if info_type is not None and not isinstance(info_type, str):
            raise ChaosRequestError(f"info_type: expected a string, got {info_type!r}")
        fault.endpoint, fault.info_type, fault.edits = endpoint, info_type, parse_edits(body.get("edits"))
        fault.count = int(_number(body, "count", 1, low=1, high=MAX_CORRUPT_COUNT))
    else:
        stray = {"endpoint", "info_type", "edits", "count"} & set(body)
        if stray:
            raise ChaosRequestError(f"{', '.join(sorted(stray))}: only with kind corrupt")
    return fault


@dataclass
class Chaos:
    """Faults posted over HTTP, and the venue's log of every order it received."""

    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    faults: list[ChaosFault] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def add(self, body: Any) -> ChaosFault:
        """Post a fault: started now (``trigger: now``) or armed until the venue's next orders."""
        fault = parse_fault(body, next(self._ids))
        if fault.trigger == "now":
            fault.started_at = self.monotonic()
        self.faults.append(fault)
        return fault

    def clear(self) -> int:
        """Remove every fault; return how many there were."""
        n = len(self.faults)
        self.faults.clear()
        return n

    def listing(self) -> list[dict[str, Any]]:
        """The faults still armed or active (finished ones are dropped)."""
        now = self.monotonic()
        self.faults = [f for f in self.faults if not f.over(now)]
        return [f.json(now) for f in self.faults]

    def order_arrived(self) -> None:
        """Count one order received by the venue; start the armed faults it triggers."""
        now = self.monotonic()
        for fault in self.faults:
            if fault.started_at is None:
                fault.orders_seen += 1
                if fault.orders_seen > fault.after_orders:
                    fault.started_at = now

    def active(self, kind: str) -> ChaosFault | None:
        """The active fault of ``kind`` (the latest posted), if any."""
        now = self.monotonic()
        found = [f for f in self.faults if f.kind == kind and f.active(now)]
        return found[-1] if found else None

    def latency(self) -> float:
        """Seconds added before an answer: the sum of the active latency faults."""
        now = self.monotonic()
        return sum(f.latency_ms for f in self.faults if f.kind == "latency" and f.active(now)) / 1000

    def corruption(self, path: str, info_type: str | None) -> ChaosFault | None:
        """The active corrupt fault (the latest posted) for an answer to ``path`` (and ``info_type``), counting it as used."""
        now = self.monotonic()
        found = [
            f for f in self.faults
            if f.kind == "corrupt" and f.active(now) and f.endpoint == path and (f.info_type is None or f.info_type == info_type)
        ]
        if not found:
            return None
        found[-1].count -= 1
        return found[-1]

    def fill_ratio(self) -> Decimal | None:
        """The smallest share of an order allowed to fill now, if a partial-fill fault is active."""
        now = self.monotonic()
        ratios = [f.fill_ratio for f in self.faults if f.kind == "partial_fills" and f.active(now) and f.fill_ratio is not None]
        return min(ratios) if ratios else None

    def record_order(self, account: str, client_id: str, market: str, side: str, size: Decimal, status: str, reason: str | None = None) -> None:
        """Log an order the venue received, with what became of it."""
        entry: dict[str, Any] = {
            "seq": len(self.orders) + 1,
            "time": datetime.fromtimestamp(self.wall(), tz=UTC).isoformat(timespec="milliseconds"),
            "account": account, "client_id": client_id, "market": market, "side": side, "size": str(size), "status": status,
        }
        if reason:
            entry["reason"] = reason
        for fault in ("timeout_after_accept", "partial_fills"):
            if self.active(fault) is not None:
                entry.setdefault("faults", []).append(fault)
        self.orders.append(entry)


def combined_ratio(*ratios: Decimal | None) -> Decimal | None:
    """The smallest of the fill ratios set (None when none is)."""
    found = [r for r in ratios if r is not None]
    return min(found) if found else None
