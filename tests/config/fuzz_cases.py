"""A deterministic generator of mutated strategy files (the corpus of ``test_config_fuzz``).

Every shipped example in ``config/`` is mutated in two ways:

* **labelled** cases: a known break (a required key dropped, a wrong type, a number out of its
  domain, a lookalike character, a duplicate, a secret pasted where it does not belong, a bind
  address ``run`` refuses, a mode the fuses do not fit, ...) with the field the error must name;
* **random** cases (``random.Random`` with a fixed seed): a random leaf replaced by a value from a
  pool of junk, or a random key dropped; these may be accepted or refused, but never crash,
  hang or echo a secret.

Plus file-level attacks on each example: alias bombs (top level and nested), a recursive alias,
5,000-deep nesting, NUL bytes, bytes that are not UTF-8, an oversized file and truncations.
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# Secret-shaped values the cases paste into wrong fields; none may ever appear in any output.
WALLET_KEY = "0x5ec2b8c3f1d94a6e7b0c2d4f6a8e1b3c5d7f9a0b2c4e6d8f1a3b5c7d9e0f2a4b"
BARE_HEX_KEY = "9a0b2c4e6d8f1a3b5c7d9e0f2a4b5ec2b8c3f1d94a6e7b0c2d4f6a8e1b3c5d7f"
API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
API_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
SECRETS = (WALLET_KEY, BARE_HEX_KEY, API_KEY, API_SECRET)

CYRILLIC = str.maketrans({"B": "\u0412", "E": "\u0415", "T": "\u0422", "C": "\u0421", "H": "\u041d", "a": "\u0430", "e": "\u0435", "o": "\u043e", "c": "\u0441", "i": "\u0456"})

JUNK: tuple[Any, ...] = (
    None, True, False, 0, -1, 10**30, "1e400", "-1e400", "1e999999", "1e-999999", float("nan"), float("inf"),
    "NaN", "Infinity", "", " ", "lots", "99999999999d", "-5s", "0s", [], {}, [1, 2], {"a": 1}, "\u0412TC",
    "0.1" * 50, "x" * 5000, WALLET_KEY, API_KEY, "::::", "0.0.0.0:9465", "\u200b", "1_000", "0x" + "f" * 40,
)


@dataclass(frozen=True)
class Case:
    """One file to check: its bytes, and for a labelled break a regex its error must match."""

    name: str
    content: bytes
    expect: str | None  # None: may be accepted; otherwise refused with a message matching this


def path_regex(*parts: str | int) -> str:
    """A regex for how the loader names ``parts`` (``fuses[0](binance).max_share``)."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += rf"\[{part}\](\([^)]*\))?"
        else:
            out += (r"\." if out else "") + re.escape(part)
    return out + r"(\W|$)"


def _dump(data: Any) -> bytes:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000).encode("utf-8")


def _set(data: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(data)
    node: Any = out
    for part in path[:-1]:
        if isinstance(node, dict) and part not in node:
            node[part] = {}
        node = node[part]
    node[path[-1]] = value
    return out


def _drop(data: dict[str, Any], path: tuple[str | int, ...]) -> dict[str, Any]:
    out = copy.deepcopy(data)
    node: Any = out
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]
    return out


def _labelled(stem: str, data: dict[str, Any]) -> Iterator[Case]:
    mode = data.get("mode", "demo")
    fuses = data["fuses"]

    def case(label: str, mutated: dict[str, Any], *expect: str | int) -> Case:
        return Case(f"{stem}:{label}", _dump(mutated), path_regex(*expect))

    for key in ("version", "vault", "fuses", "assets"):
        yield case(f"drop-{key}", _drop(data, (key,)), key)
    yield case("drop-nav", _drop(data, ("vault", "nav")), "vault", "nav")
    for value, label in (("1e400", "1e400"), ("-5", "negative"), (float("nan"), "nan"), ("0", "zero"),
                         ("1e999999", "1e999999"), (True, "bool"), ([1], "list"), ("lots", "word"), ("1e15", "1e15")):
        yield case(f"nav-{label}", _set(data, ("vault", "nav"), value), "vault", "nav")
    yield case("nav-unquoted-1e400", _set(data, ("vault", "nav"), 1e300 * 1e300), "vault", "nav")
    yield case("version-2", _set(data, ("version",), 2), "version")
    yield case("mode-unknown", _set(data, ("mode",), "yolo"), "mode")
    yield case("entry-1e400", _set(data, ("thresholds", "entry_min_net_apr"), "1e400"), "thresholds", "entry_min_net_apr")
    yield case("entry-11", _set(data, ("thresholds", "entry_min_net_apr"), "11"), "thresholds", "entry_min_net_apr")
    yield case("exit-minus-5", _set(data, ("thresholds", "exit_min_net_apr"), "-5"), "thresholds", "exit_min_net_apr")
    yield case("exit-above-entry", _set(_set(data, ("thresholds", "entry_min_net_apr"), "0.01"), ("thresholds", "exit_min_net_apr"), "0.5"),
               "thresholds")
    for field in ("holding_period",):
        yield case(f"{field}-overflow", _set(data, ("thresholds", field), "99999999999d"), "thresholds", field)
    for section, field in (("risk", "max_data_age"), ("execution", "order_timeout"), ("margin", "check_every"), ("pnl", "rebalance_every")):
        yield case(f"{field}-overflow", _set(data, (section, field), "99999999999d"), section, field)
        yield case(f"{field}-negative", _set(data, (section, field), "-5s"), section, field)
        yield case(f"{field}-junk", _set(data, (section, field), "soon"), section, field)
        yield case(f"{field}-huge-number", _set(data, (section, field), 10**30), section, field)
    yield case("leg-retries-bool", _set(data, ("execution", "leg_retries"), True), "execution", "leg_retries")
    yield case("leg-retries-string", _set(data, ("execution", "leg_retries"), "3"), "execution", "leg_retries")
    yield case("leg-retries-huge", _set(data, ("execution", "leg_retries"), 10**6), "execution", "leg_retries")
    yield case("order-notional-dust", _set(data, ("risk", "max_order_notional"), "1e-9"), "risk", "max_order_notional")
    yield case("unhedged-notional-zero", _set(data, ("risk", "max_unhedged_notional"), "0"), "risk", "max_unhedged_notional")
    yield case("idle-buffer-2", _set(data, ("idle_buffer",), "2"), "idle_buffer")
    yield case("delta-tolerance-nan", _set(data, ("delta_tolerance",), ".nan"), "delta_tolerance")
    yield case("typo-key", _set(data, ("idle_bufer",), "0.1"), "idle_bufer")
    yield case("assets-duplicate", _set(data, ("assets",), [*data["assets"], data["assets"][0]]), "assets")
    yield case("asset-cyrillic", _set(data, ("assets", 0), data["assets"][0].translate(CYRILLIC)), "assets", 0)
    yield case("asset-zero-width", _set(data, ("assets", 0), data["assets"][0] + "\u200b"), "assets", 0)
    yield case("base-asset-cyrillic", _set(data, ("vault", "base_asset"), "US\u0421"), "vault", "base_asset")
    yield case("vault-name-secret", _set(data, ("vault", "name"), WALLET_KEY), "vault", "name")
    yield case("control-public", _set(data, ("control", "address"), "0.0.0.0:9465"), "control", "address") if mode != "backtest" else \
        case("control-junk", _set(data, ("control", "address"), "nowhere"), "control", "address")
    yield case("metrics-junk", _set(data, ("metrics", "address"), "::::"), "metrics", "address")
    yield case("control-token-inline", _set(data, ("control", "token"), API_KEY), "control", "token")
    yield case("control-token-env-is-a-key", _set(data, ("control", "token"), {"env": API_KEY}), "control", "token")
    yield case("journal-nul", _set(data, ("journal", "path"), "var/a\x00b.db"), "journal", "path")
    if "market" in data:
        yield case("market-price-negative", _set(data, ("market", "assets", data["assets"][0], "price"), "-1"),
                   "market", "assets", data["assets"][0], "price")
        yield case("market-seed-bool", _set(data, ("market", "seed"), True), "market", "seed")
        yield case("market-step-overflow", _set(data, ("market", "step"), "99999999999d"), "market", "step")
    other = {"demo": "live", "backtest": "live", "live": "demo", "paper": "demo"}[mode]
    yield case(f"mode-{other}", _set(data, ("mode",), other), *(("market",) if other == "demo" and "market" not in data else ("fuses", 0)))
    for i, fuse in enumerate(fuses):
        tag = f"fuse{i}"
        for key in ("name", "kind", "venue", "max_share"):
            yield case(f"{tag}-drop-{key}", _drop(data, ("fuses", i, key)), "fuses", i, key)
        yield case(f"{tag}-max-share-2", _set(data, ("fuses", i, "max_share"), "2"), "fuses", i, "max_share")
        yield case(f"{tag}-leverage-1000", _set(data, ("fuses", i, "max_leverage"), "1000"), "fuses", i, "max_leverage")
        yield case(f"{tag}-leverage-zero", _set(data, ("fuses", i, "max_leverage"), "0"), "fuses", i, "max_leverage")
        yield case(f"{tag}-enabled-yes", _set(data, ("fuses", i, "enabled"), "yes"), "fuses", i, "enabled")
        yield case(f"{tag}-venue-cyrillic", _set(data, ("fuses", i, "venue"), fuse["venue"].translate(CYRILLIC) + "\u0430"),
                   "fuses", i, "venue")
        yield case(f"{tag}-venue-secret", _set(data, ("fuses", i, "venue"), BARE_HEX_KEY), "fuses", i, "venue")
        yield case(f"{tag}-name-secret", _set(data, ("fuses", i, "name"), BARE_HEX_KEY), "fuses", i, "name")
        yield case(f"{tag}-wallet-address-is-a-key", _set(data, ("fuses", i, "credentials", "wallet_address"), WALLET_KEY),
                   "fuses", i, "credentials", "wallet_address")
        yield case(f"{tag}-api-key-inline", _set(data, ("fuses", i, "credentials", "api_key"), API_KEY),
                   "fuses", i, "credentials", "api_key")
        yield case(f"{tag}-secret-env-is-a-key", _set(data, ("fuses", i, "credentials", "secret"), {"env": API_SECRET}),
                   "fuses", i, "credentials", "secret")
        yield case(f"{tag}-api-url-colons", _set(data, ("fuses", i, "api_url"), "::::"), "fuses", i, "api_url")
        yield case(f"{tag}-api-url-userinfo", _set(data, ("fuses", i, "api_url"), f"https://u:{API_SECRET}@x.example"), "fuses", i, "api_url")
        yield case(f"{tag}-rebalance-overflow", _set(data, ("fuses", i, "rebalance_every"), "99999999999d"), "fuses", i, "rebalance_every")
        yield case(f"{tag}-sim-fee-half", _set(data, ("fuses", i, "sim", "taker_fee"), "0.5"), "fuses", i, "sim", "taker_fee")
        yield case(f"{tag}-sim-levels-bool", _set(data, ("fuses", i, "sim", "levels"), True), "fuses", i, "sim", "levels")
        listed = "markets" if fuse.get("markets") else "assets"
        items = fuse[listed]
        yield case(f"{tag}-{listed}-duplicate", _set(data, ("fuses", i, listed), [*items, items[0]]), "fuses", i, listed)
        yield case(f"{tag}-{listed}-cyrillic", _set(data, ("fuses", i, listed, 0), items[0].translate(CYRILLIC)), "fuses", i, listed, 0)
        if fuse["kind"] in ("cex", "perp_dex") and mode in ("live", "paper"):
            yield case(f"{tag}-venue-unknown", _set(data, ("fuses", i, "venue"), "gateio"), "fuses", i, "venue")
            yield case(f"{tag}-kind-swapped", _set(data, ("fuses", i, "kind"), "perp_dex" if fuse["kind"] == "cex" else "cex"),
                       "fuses", i)
        if fuse["kind"] == "lending" and fuse.get("venue") != "sim":
            yield case(f"{tag}-chain-id-bool", _set(data, ("fuses", i, "chain_id"), True), "fuses", i, "chain_id")
            yield case(f"{tag}-rpc-url-junk", _set(data, ("fuses", i, "rpc_url"), "localhost"), "fuses", i, "rpc_url")


def _leaves(node: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, (*path, i))
    if path:
        yield path


def _random(stem: str, data: dict[str, Any], rng: random.Random, n: int) -> Iterator[Case]:
    paths = sorted(_leaves(data), key=str)
    for k in range(n):
        path = rng.choice(paths)
        if rng.random() < 0.25:
            mutated = _drop(data, path)
            label = f"drop-{'.'.join(map(str, path))}"
        else:
            mutated = _set(data, path, rng.choice(JUNK))
            label = f"junk-{'.'.join(map(str, path))}"
        yield Case(f"{stem}:random{k}-{label}", _dump(mutated), None)


def _textual(stem: str, text: str) -> Iterator[Case]:
    laughs = "lol0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
        f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 10)
    )
    yield Case(f"{stem}:alias-bomb-top", (text + "\n" + laughs).encode(), r":\d+: .*(expands|aliases)")
    nested = "".join("  " + line + "\n" for line in laughs.splitlines())
    yield Case(f"{stem}:alias-bomb-nested", text.replace("\nvault:\n", "\nvault:\n" + nested, 1).encode(), r":\d+: .*(expands|aliases)")
    yield Case(f"{stem}:alias-bomb-in-list", (text + "\nextra: &x [" + ", ".join(["*x"] * 3) + "]\n").encode(), r":\d+: .*recursive alias")
    yield Case(f"{stem}:recursive-alias", (text + "\nloop: &loop {again: *loop}\n").encode(), r":\d+: .*recursive alias")
    yield Case(f"{stem}:deep-lists", (text + "\ndeep: " + "[" * 5000 + "]" * 5000 + "\n").encode(), r":\d+: .*levels deep")
    yield Case(f"{stem}:deep-maps", (text + "\ndeep: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n").encode(), r":\d+: .*levels deep")
    yield Case(f"{stem}:deep-block", (text + "\ndeep:\n" + "".join(" " * (i + 1) + "- \n" for i in range(400))).encode(), r":\d+: ")
    yield Case(f"{stem}:nul-byte", text.replace("vault:", "va\x00ult:", 1).encode(), r":\d+: .*NUL")
    yield Case(f"{stem}:nul-at-end", (text + "\x00").encode(), r":\d+: .*NUL")
    yield Case(f"{stem}:bell-char", text.replace("vault:", "vault\x07:", 1).encode(), r":\d+: .*U\+0007")
    yield Case(f"{stem}:not-utf8", text.encode().replace(b"vault:", b"vault\xff\xfe:", 1), r":\d+: .*not UTF-8")
    yield Case(f"{stem}:oversized", (text + "\n#" + "x" * 400_000 + "\n").encode(), r"at most \d+ bytes")
    yield Case(f"{stem}:only-a-list", b"- 1\n- 2\n", r"top level")
    yield Case(f"{stem}:empty", b"", r"empty")
    yield Case(f"{stem}:tab-indent", text.replace("\n  ", "\n\t", 1).encode(), r":\d+: .*YAML")
    yield Case(f"{stem}:bad-tag", text.replace("vault:", "vault: !!python/object:os.system\n  x:", 1).encode(), r":\d+: ")
    for cut in (0.25, 0.5, 0.75):
        yield Case(f"{stem}:truncated-{cut}", text[: int(len(text) * cut)].encode(), None)


def corpus(config_dir: Path, *, seed: int = 20261203, random_per_file: int = 60) -> list[Case]:
    """Every case for every shipped example, in a fixed order."""
    rng = random.Random(seed)
    cases: list[Case] = []
    for path in sorted(config_dir.glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
        stem = path.stem
        cases.append(Case(f"{stem}:as-shipped", text.encode(), None))
        cases.extend(_labelled(stem, data))
        cases.extend(_random(stem, data, rng, random_per_file))
        cases.extend(_textual(stem, text))
    return cases
