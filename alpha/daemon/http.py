"""The daemon's HTTP surfaces: metrics/health (``/metrics``, ``/healthz``, ``/readyz``) and control.

The control endpoint is bound to localhost only and needs ``Authorization: Bearer <token>``.
Token policy: read from the env var or file named by ``config.control.token``; when neither
holds a token, one is generated and written to ``<journal dir>/control.token`` with mode 0600
(the path is logged, never the token), so a demo works out of the box and ``alpha status``
finds it. A token shorter than 16 characters is refused.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from alpha.config.schema import SecretRef
from alpha.observability.logging import get_logger, register_secret
from alpha.observability.metrics import Metrics

log = get_logger("alpha.http")
MIN_TOKEN_LENGTH = 16


class ControlError(RuntimeError):
    """The control endpoint cannot be started safely."""


class Controls(Protocol):
    """What the control endpoint can ask the daemon."""

    def status(self) -> dict[str, Any]: ...

    def portfolio(self) -> dict[str, Any]: ...

    async def pause(self, reason: str) -> dict[str, Any]: ...

    async def resume(self) -> dict[str, Any]: ...

    async def flatten(self) -> dict[str, Any]: ...


def split_address(address: str) -> tuple[str, int]:
    """Split ``host:port`` (``[::1]:port`` for IPv6)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"address {address!r} is not host:port")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    """Say whether ``host`` names the local machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_token_file(journal_path: Path) -> Path:
    """Where a generated control token is written: beside the journal (``var/`` by default)."""
    return journal_path.parent / "control.token"


def resolve_token(ref: SecretRef, fallback_file: Path) -> tuple[str, str]:
    """Return ``(token, where)``: from ``ref`` if set, else ``fallback_file``, else a new 0600 file."""
    token: str | None = None
    where = ref.describe()
    if ref.env is not None:
        token = os.environ.get(ref.env) or None
    elif ref.file is not None:
        if not ref.file.exists():
            raise ControlError(f"control token file {ref.file} does not exist")
        token = ref.file.read_text(encoding="utf-8").strip() or None
    if token is None and fallback_file.exists():
        token = fallback_file.read_text(encoding="utf-8").strip() or None
        where = f"file:{fallback_file}"
    if token is None:
        token = secrets.token_urlsafe(32)
        fallback_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(fallback_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(token + "\n")
        os.chmod(fallback_file, 0o600)
        where = f"generated file:{fallback_file}"
    if len(token) < MIN_TOKEN_LENGTH:
        raise ControlError(f"control token from {where} is shorter than {MIN_TOKEN_LENGTH} characters")
    register_secret(token)
    return token, where


@dataclass
class Health:
    """What /healthz and /readyz report."""

    alive: Callable[[], bool]
    ready: Callable[[], tuple[bool, str]]


def metrics_app(metrics: Metrics, health: Health) -> web.Application:
    """Build the /metrics, /healthz, /readyz application."""

    async def metrics_handler(_req: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    async def healthz(_req: web.Request) -> web.Response:
        ok = health.alive()
        return web.json_response({"ok": ok}, status=200 if ok else 503)

    async def readyz(_req: web.Request) -> web.Response:
        ok, why = health.ready()
        return web.json_response({"ready": ok, "reason": why}, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


def control_app(controls: Controls, token: str) -> web.Application:
    """Build the authenticated control application (status, portfolio, pause, resume, flatten)."""
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def auth(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return web.json_response({"error": "missing or wrong bearer token"}, status=401)
        return await handler(request)

    async def status(_req: web.Request) -> web.Response:
        return web.json_response(controls.status(), dumps=_dumps)

    async def portfolio(_req: web.Request) -> web.Response:
        return web.json_response(controls.portfolio(), dumps=_dumps)

    async def pause(req: web.Request) -> web.Response:
        reason = "operator"
        if req.can_read_body:
            try:
                body = await req.json()
                reason = str(body.get("reason", reason)) if isinstance(body, dict) else reason
            except json.JSONDecodeError:
                return web.json_response({"error": "body must be JSON"}, status=400)
        return web.json_response(await controls.pause(reason), dumps=_dumps)

    async def resume(_req: web.Request) -> web.Response:
        return web.json_response(await controls.resume(), dumps=_dumps)

    async def flatten(_req: web.Request) -> web.Response:
        return web.json_response(await controls.flatten(), dumps=_dumps)

    app = web.Application(middlewares=[auth])
    app.router.add_get("/status", status)
    app.router.add_get("/portfolio", portfolio)
    app.router.add_post("/pause", pause)
    app.router.add_post("/resume", resume)
    app.router.add_post("/flatten", flatten)
    return app


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=str)


class Servers:
    """Start and stop the two HTTP servers."""

    def __init__(self) -> None:
        self._runners: list[web.AppRunner] = []
        self._reserved: dict[str, socket.socket] = {}
        self.bound: dict[str, tuple[str, int]] = {}

    def reserve(self, name: str, address: str, *, loopback_only: bool = False) -> None:
        """Bind ``address`` for server ``name`` now (``start`` serves on it later).

        Raise ``ControlError`` if the address cannot be bound (in use, not this machine's, not
        loopback when ``loopback_only``): the daemon reserves its ports before it touches the journal.
        """
        host, port = split_address(address)
        if loopback_only and not is_loopback(host):
            raise ControlError(f"the {name} endpoint must bind to localhost, not {host}")
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            # One socket: IPv4 first ("localhost" is 127.0.0.1 for the CLI and the probes).
            family, kind, proto, _, where = min(infos, key=lambda info: info[0] != socket.AF_INET)
            sock = socket.socket(family, kind, proto)
        except OSError as exc:
            raise ControlError(f"the {name} endpoint cannot listen on {address}: {exc.strerror or exc}") from exc
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(where)
            sock.listen(128)
        except OSError as exc:
            sock.close()
            raise ControlError(f"the {name} endpoint cannot listen on {address}: {exc.strerror or exc}") from exc
        sock.setblocking(False)
        self._reserved[name] = sock

    async def start(self, name: str, app: web.Application, address: str, *, loopback_only: bool = False) -> None:
        """Serve ``app`` on ``address`` (on its reserved socket if ``reserve`` bound one)."""
        host, port = split_address(address)
        if loopback_only and not is_loopback(host):
            raise ControlError(f"the {name} endpoint must bind to localhost, not {host}")
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        reserved = self._reserved.pop(name, None)
        site: web.BaseSite = web.SockSite(runner, reserved) if reserved is not None else web.TCPSite(runner, host, port)
        await site.start()
        self._runners.append(runner)
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.bound[name] = (host, sockets[0].getsockname()[1] if sockets else port)
        log.info("http server listening", server=name, host=host, port=self.bound[name][1])

    async def stop(self) -> None:
        """Stop every server, last started first."""
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        for sock in self._reserved.values():  # reserved but never served (start-up stopped early)
            sock.close()
        self._reserved.clear()
