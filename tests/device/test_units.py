"""Pieces of the device SDK that need no server: back-off, addresses, bind retries, the
lost-cancel guard; and one check over real sockets that logs never carry the secret."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import httpx
import pytest

from ivcloud.app import Ivcloud
from ivcloud.device import OK, BrokerAddress, DeviceInfo, IvDevice, link
from ivcloud.device.rpc import reply_code
from ivcloud.device.types import ERR_FAIL, ERR_TIMEOUT, backoff_delay, reraise_lost_cancel
from ivcloud.protocol.credentials import sign_password
from tests.device.support import sdk_device
from tests.helpers import Provisioned, provision


def test_backoff_doubles_from_one_second_to_sixty_with_jitter() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(n, rng=rng) for n in range(10)]
    for n, d in enumerate(delays):
        base = min(60.0, 2.0**n)
        assert base <= d <= min(60.0, base * 1.25)
    assert delays[-1] == 60.0 or delays[-1] >= 60.0 * 0.999
    assert backoff_delay(10_000, rng=rng) == 60.0
    # Jitter: two devices that failed together do not retry together.
    assert len({backoff_delay(3, rng=rng) for _ in range(20)}) > 1


def test_ws_url_parsing() -> None:
    a = BrokerAddress.from_ws_url("ws://127.0.0.1:8080/mqtt")
    assert (a.host, a.port, a.transport, a.ws_path, a.tls) == (
        "127.0.0.1",
        8080,
        "websockets",
        "/mqtt",
        False,
    )
    b = BrokerAddress.from_ws_url("wss://iot.example.com")
    assert (b.port, b.ws_path, b.tls) == (443, "/mqtt", True)
    with pytest.raises(ValueError):
        BrokerAddress.from_ws_url("http://example.com/mqtt")


def test_reply_code() -> None:
    assert reply_code(None) == ERR_TIMEOUT
    assert reply_code({"code": 0}) == OK
    assert reply_code({"code": "406"}) == 406
    assert reply_code({"code": "-4"}) == -4
    assert reply_code({}) == OK
    assert reply_code({"code": True}) == ERR_FAIL


async def test_send_bind_info_retries_until_a_reply(monkeypatch: pytest.MonkeyPatch) -> None:
    dev = IvDevice()
    replies: list[dict[str, Any] | None] = [None, None, {"code": 0}]
    calls: list[tuple[str, dict[str, Any], float | None]] = []

    async def fake_thing(
        channel: str, doc: dict[str, Any], timeout_s: float | None
    ) -> dict[str, Any] | None:
        calls.append((channel, doc, timeout_s))
        return replies.pop(0)

    monkeypatch.setattr(dev, "_thing", fake_thing)
    assert await dev.send_bind_info("tok", interval=0.01) == OK
    assert [c[0] for c in calls] == ["service"] * 3
    assert calls[0][1] == {"method": "app_bind_token", "params": {"token": "tok"}}
    replies[:] = [None, None, None]
    calls.clear()
    assert await dev.send_bind_info("tok", interval=0.01) == ERR_TIMEOUT
    assert len(calls) == 3


async def test_reraise_lost_cancel() -> None:
    swallowed = asyncio.Event()
    outcome: list[str] = []

    async def victim() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            swallowed.set()  # what 3.11's wait_for does when a result races the cancel
        try:
            reraise_lost_cancel()
        except asyncio.CancelledError:
            outcome.append("re-raised")
            raise

    task = asyncio.create_task(victim())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert swallowed.is_set() and outcome == ["re-raised"]


async def test_logs_never_contain_the_secret_or_password(
    server: Ivcloud,
    admin: httpx.AsyncClient,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The SDK's own loggers at full verbosity: structlog (stdout) and aiomqtt/paho ("mqtt").
    # Server-side library loggers are out of scope here (aiosqlite at DEBUG prints SQL
    # parameters, device secrets included).
    caplog.set_level(logging.DEBUG, logger="mqtt")
    passwords: list[str] = []

    def spy(secret: str, username: str, algorithm: Any = "hmacsha256") -> str:
        pw = sign_password(secret, username, algorithm)
        passwords.append(pw)
        return pw

    monkeypatch.setattr(link, "sign_password", spy)
    dev: Provisioned = await provision(admin, "camera", "camera", "logcam")
    wrong = Provisioned(dev.product_id, dev.device_name, "d3Jvbmctc2VjcmV0LXh4eA==")
    async with sdk_device(server, dev, wait_online=10) as good:
        assert await good.property_report({"record_enable": 1}) == OK
    async with sdk_device(server, wrong, wait_online=0.5):
        pass
    out = capsys.readouterr()
    text = out.out + out.err + caplog.text
    # The capture does see the SDK's log lines, both structlog's and paho's.
    assert "device_connected" in text
    assert any(r.name == "mqtt" and "CONNECT" in r.getMessage() for r in caplog.records)
    assert dev.secret not in text and wrong.secret not in text
    assert len(passwords) >= 2
    # Nor the HMAC password: it is as good as the secret until the username expires.
    assert not any(pw.split(";")[0] in text for pw in passwords)


def test_device_info_repr_has_no_secret_field() -> None:
    assert "device_secret" not in repr(DeviceInfo("P", "D", "c2VjcmV0"))
