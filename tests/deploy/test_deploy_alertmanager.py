"""Alertmanager: the shipped configuration renders, passes ``amtool check-config``, routes as documented,
and the real Alertmanager delivers an alert to a local webhook and a local Slack-shaped endpoint.

deploy/alertmanager/render.sh is run for real (with ALERTMANAGER_BIN=true it only renders). The
delivery test starts Debian's ``prometheus-alertmanager`` on 127.0.0.1 with the rendered file,
posts an alert to its API and waits for the POSTs on an aiohttp receiver. Telegram cannot be
reached from here (its API is on the internet), so it is checked by routing only.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import ClientSession, web

REPO = Path(__file__).resolve().parents[2]
AM = REPO / "deploy" / "alertmanager"
COMPOSE = REPO / "deploy" / "compose.yaml"
WEBHOOK_TOKEN = "webhook-bearer-for-the-test-0123456789"
TELEGRAM_TOKEN = "123456789:AAH-test_token"

amtool = pytest.mark.skipif(shutil.which("amtool") is None, reason="amtool missing: `make system-deps` installs prometheus-alertmanager")
binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_secrets(directory: Path, *, webhook: str = "http://127.0.0.1:9/alerts", slack: str = "http://127.0.0.1:9/slack") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, value in {
        "webhook-url": webhook,
        "webhook-token": WEBHOOK_TOKEN,
        "slack-webhook-url": slack,
        "telegram-bot-token": TELEGRAM_TOKEN,
        "telegram-chat-id": "-1001234567",
    }.items():
        (directory / name).write_text(value + "\n")
    return directory


def render(secrets: Path, out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ALERTMANAGER_SECRETS": str(secrets), "ALERTMANAGER_CONFIG": str(out), "ALERTMANAGER_BIN": "true"}
    return subprocess.run(["sh", str(AM / "render.sh")], env=env, capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture
def rendered(tmp_path: Path) -> Path:
    out = tmp_path / "rendered" / "alertmanager.yml"
    result = render(write_secrets(tmp_path / "secrets"), out)
    assert result.returncode == 0, result.stderr
    return out


def test_the_template_holds_no_secret_and_render_fills_every_placeholder(rendered: Path, tmp_path: Path) -> None:
    template = (AM / "alertmanager.yml").read_text()
    assert "__WEBHOOK_URL__" in template and "__TELEGRAM_BOT_TOKEN__" in template
    assert "api_url_file: __SECRETS__/slack-webhook-url" in template  # read by Alertmanager itself
    text = rendered.read_text()
    assert "__" not in text.split("receivers:", 1)[1]
    assert TELEGRAM_TOKEN in text and f"{tmp_path}/secrets/webhook-token" in text
    assert WEBHOOK_TOKEN not in text  # the bearer token stays in its file
    assert oct(rendered.stat().st_mode & 0o777) == "0o600"


@amtool
def test_amtool_check_config_passes_on_the_shipped_configuration(rendered: Path) -> None:
    result = subprocess.run(["amtool", "check-config", str(rendered)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "3 receivers" in result.stdout


@amtool
@pytest.mark.parametrize(
    ("labels", "receivers"),
    [(["alertname=AlphaKillSwitchEngaged", "severity=critical"], "webhook,slack,telegram"),
     (["alertname=AlphaTradingPaused", "severity=warning"], "webhook,slack")],
)
def test_routes_send_every_alert_to_webhook_and_slack_and_critical_ones_to_telegram(rendered: Path, labels: list[str], receivers: str) -> None:
    result = subprocess.run(
        ["amtool", "config", "routes", "test", f"--config.file={rendered}", *labels], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == receivers


def test_render_refuses_a_secret_that_is_not_a_plain_value(tmp_path: Path) -> None:
    secrets = write_secrets(tmp_path / "secrets")
    (secrets / "telegram-bot-token").write_text("123|s/x/y/\n")
    result = render(secrets, tmp_path / "out.yml")
    assert result.returncode == 2
    assert "telegram-bot-token" in result.stderr and "123|" not in result.stderr
    assert not (tmp_path / "out.yml").exists()


def test_a_missing_secret_is_named_and_the_rest_still_renders(tmp_path: Path) -> None:
    secrets = write_secrets(tmp_path / "secrets")
    (secrets / "telegram-bot-token").unlink()
    result = render(secrets, tmp_path / "out.yml")
    assert result.returncode == 0
    assert "no secret telegram-bot-token" in result.stderr
    assert 'url: "http://127.0.0.1:9/alerts"' in (tmp_path / "out.yml").read_text()


def test_compose_and_prometheus_are_wired_to_alertmanager() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    am = compose["services"]["alertmanager"]
    assert am["entrypoint"] == ["/bin/sh", "/etc/alertmanager/render.sh"]
    assert am["image"].endswith(":v0.25.0}")  # the version amtool here validates
    assert "./alertmanager:/etc/alertmanager:ro" in am["volumes"]
    assert any(v.endswith(":/run/secrets/alertmanager:ro") for v in am["volumes"])
    assert "alertmanager" in compose["services"]["prometheus"]["depends_on"]
    prom = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    assert prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    k8s = yaml.safe_load((REPO / "deploy" / "prometheus" / "kubernetes-scrape.yml").read_text())
    assert k8s["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alpha-alertmanager:9093"]


@pytest.mark.skipif(binary is None, reason="alertmanager missing: `make system-deps` installs prometheus-alertmanager")
async def test_real_alertmanager_delivers_an_alert_to_the_webhook_and_slack(tmp_path: Path) -> None:
    got: dict[str, list[tuple[dict[str, str], Any]]] = {"webhook": [], "slack": []}
    arrived = asyncio.Event()

    async def receive(request: web.Request) -> web.Response:
        got[request.match_info["kind"]].append((dict(request.headers), await request.json()))
        if got["webhook"] and got["slack"]:
            arrived.set()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{kind}", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    out = tmp_path / "rendered" / "alertmanager.yml"
    secrets = write_secrets(tmp_path / "secrets", webhook=f"http://127.0.0.1:{port}/webhook", slack=f"http://127.0.0.1:{port}/slack")
    assert render(secrets, out).returncode == 0
    config = yaml.safe_load(out.read_text())
    config["route"]["group_wait"] = "1s"  # the shipped 30s only slows the test down
    out.write_text(yaml.safe_dump(config))
    am_port = free_port()
    log = (tmp_path / "alertmanager.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        str(binary), f"--config.file={out}", f"--storage.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{am_port}",
        "--cluster.listen-address=", stdout=log, stderr=subprocess.STDOUT,
    )
    alert = {
        "labels": {"alertname": "AlphaTradingPaused", "severity": "warning", "instance": "a:9464", "reason": "operator"},
        "annotations": {"summary": "Trading on a:9464 has been paused (operator) for 15 minutes", "description": "paused",
                        "runbook_url": "deploy/docs/runbook.md#alphatradingpaused"},
    }
    try:
        async with ClientSession() as http:
            for _ in range(300):  # up to a minute for the API to come up on a loaded machine
                try:
                    async with http.post(f"http://127.0.0.1:{am_port}/api/v2/alerts", json=[alert]) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                await asyncio.sleep(0.2)
            else:
                pytest.fail("alertmanager API did not answer: " + (tmp_path / "alertmanager.log").read_text()[-2000:])
            await asyncio.wait_for(arrived.wait(), timeout=90)
    finally:
        proc.terminate()
        await proc.wait()
        log.close()
        await runner.cleanup()
    headers, body = got["webhook"][0]
    assert headers["Authorization"] == f"Bearer {WEBHOOK_TOKEN}"
    assert body["status"] == "firing" and body["receiver"] == "webhook"
    (sent,) = body["alerts"]
    assert sent["labels"]["alertname"] == "AlphaTradingPaused" and sent["labels"]["reason"] == "operator"
    _, slack = got["slack"][0]
    assert slack["attachments"][0]["title"] == "[WARNING] AlphaTradingPaused"
    assert "Trading on a:9464 has been paused (operator)" in slack["attachments"][0]["text"]
