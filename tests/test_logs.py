"""Logs never contain secrets: call sites leave them out (checked on a real device session
with captured log events) and the masking processor is a second line of defence."""

from __future__ import annotations

import logging
import time

import aiomqtt
import httpx
import pytest
from structlog.testing import capture_logs

from ivcloud.app import Ivcloud
from ivcloud.logs import _mask_secrets, configure
from ivcloud.protocol.credentials import make_username, sign_password
from tests.helpers import provision
from tests.rawdevice import RawDevice, device_for


def test_mask_secrets_processor() -> None:
    event = {
        "event": "x",
        "device_secret": "s",
        "password": "p",
        "AdminToken": "t",
        "client_id": "ok",
    }
    assert _mask_secrets(None, "info", event) == {
        "event": "x",
        "device_secret": "***",
        "password": "***",
        "AdminToken": "***",
        "client_id": "ok",
    }


async def test_device_session_logs_carry_no_secret(
    server: Ivcloud, admin: httpx.AsyncClient
) -> None:
    p = await provision(admin, "lock-video", "lock", "lock01")
    assert server.endpoints is not None
    ep = server.endpoints
    username = make_username(p.product_id, p.device_name, now=int(time.time()), connid="x1y2z")
    password = sign_password(p.secret, username)
    with capture_logs() as logs:
        async with device_for(server, p) as dev:
            await dev.request(
                "property", {"method": "report", "clientToken": "a", "params": {"volume": 9}}
            )
            await dev.request(
                "service",
                {
                    "method": "app_bind_token",
                    "clientToken": "b",
                    "params": {"token": "secret-bind-token"},
                },
            )
        bad = RawDevice(
            ep.mqtt_host, ep.mqtt_port, p.product_id, p.device_name, "AAAAAAAAAAAAAAAAAAAAAA=="
        )
        with pytest.raises(aiomqtt.MqttError):
            async with bad:
                pass
    text = repr(logs)
    assert logs, "expected log events"
    for secret in (p.secret, password.split(";")[0], server.admin_token, "secret-bind-token"):
        assert secret not in text


def test_http_client_urls_are_not_logged_at_info() -> None:
    """httpx would log signed media URLs (with their ``sign=``) at INFO."""
    configure("info")
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
    assert logging.getLogger("httpx").isEnabledFor(logging.WARNING)
