"""Metrics/health and control endpoints over real HTTP on loopback."""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from alpha.config.schema import SecretRef
from alpha.daemon.http import ControlError, Health, Servers, control_app, metrics_app, resolve_token
from alpha.observability import logging as alog
from alpha.observability.metrics import Metrics


class FakeControls:
    """A stand-in for the daemon's control surface (the daemon itself is exercised in tests/e2e)."""

    def __init__(self) -> None:
        self.paused = False

    def status(self) -> dict[str, Any]:
        return {"paused": self.paused}

    async def pause(self, reason: str) -> dict[str, Any]:
        self.paused = True
        return {"paused": True, "reason": reason}

    async def resume(self) -> dict[str, Any]:
        self.paused = False
        return {"paused": False}

    async def flatten(self) -> dict[str, Any]:
        return {"flattened": True}


TOKEN = "t" * 24


async def test_control_requires_the_bearer_token() -> None:
    servers = Servers()
    controls = FakeControls()
    await servers.start("control", control_app(controls, TOKEN), "127.0.0.1:0", loopback_only=True)
    host, port = servers.bound["control"]
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://{host}:{port}/status") as r:
                assert r.status == 401
            async with s.post(f"http://{host}:{port}/pause", headers={"Authorization": "Bearer wrong-token-xxxxxxxx"}) as r:
                assert r.status == 401
            assert controls.paused is False
            auth = {"Authorization": f"Bearer {TOKEN}"}
            async with s.post(f"http://{host}:{port}/pause", headers=auth, json={"reason": "maintenance"}) as r:
                assert r.status == 200
                assert (await r.json())["reason"] == "maintenance"
            assert controls.paused is True
            async with s.get(f"http://{host}:{port}/status", headers=auth) as r:
                assert (await r.json()) == {"paused": True}
    finally:
        await servers.stop()


async def test_control_refuses_a_non_loopback_address() -> None:
    servers = Servers()
    with pytest.raises(ControlError, match="localhost"):
        await servers.start("control", control_app(FakeControls(), TOKEN), "0.0.0.0:0", loopback_only=True)


async def test_metrics_health_and_readiness() -> None:
    metrics = Metrics()
    metrics.nav.set(123.5)
    ready = [False]
    servers = Servers()
    await servers.start("metrics", metrics_app(metrics, Health(lambda: True, lambda: (ready[0], "why"))), "127.0.0.1:0")
    host, port = servers.bound["metrics"]
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://{host}:{port}/metrics") as r:
                body = await r.text()
                assert "alpha_vault_nav_usd 123.5" in body
            async with s.get(f"http://{host}:{port}/healthz") as r:
                assert r.status == 200
            async with s.get(f"http://{host}:{port}/readyz") as r:
                assert r.status == 503
            ready[0] = True
            async with s.get(f"http://{host}:{port}/readyz") as r:
                assert r.status == 200
    finally:
        await servers.stop()


def test_token_generated_with_mode_0600_when_none_is_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALPHA_TEST_TOKEN_X", raising=False)
    target = tmp_path / "var" / "control.token"
    token, where = resolve_token(SecretRef(env="ALPHA_TEST_TOKEN_X"), target)
    assert target.read_text().strip() == token
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert "generated" in where
    again, _ = resolve_token(SecretRef(env="ALPHA_TEST_TOKEN_X"), target)
    assert again == token


def test_token_from_env_wins_and_short_tokens_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALPHA_TEST_TOKEN_Y", "e" * 20)
    token, where = resolve_token(SecretRef(env="ALPHA_TEST_TOKEN_Y"), tmp_path / "none")
    assert token == "e" * 20 and where == "env:ALPHA_TEST_TOKEN_Y"
    monkeypatch.setenv("ALPHA_TEST_TOKEN_Y", "short")
    with pytest.raises(ControlError, match="shorter"):
        resolve_token(SecretRef(env="ALPHA_TEST_TOKEN_Y"), tmp_path / "none")


def test_secrets_never_reach_log_lines() -> None:
    out = io.StringIO()
    alog.configure(json=True, stream=out)
    alog.register_secret("s3cr3t-value-abcdef")
    alog.get_logger("t").info("connecting with s3cr3t-value-abcdef", api_key="AKIA-123", fuse="perp")
    line = json.loads(out.getvalue().strip().splitlines()[-1])
    assert "s3cr3t-value-abcdef" not in out.getvalue()
    assert line["api_key"] == "***"
    assert line["fuse"] == "perp"
