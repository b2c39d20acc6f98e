"""The Python App SDK against a real server: re-login on InvalidAccessToken, typed errors,
push events mapped to the SDK's event names."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from ivcloud.app import Ivcloud
from ivcloud.client.app_sdk import AppClient, push_event
from ivcloud.protocol.appapi import INVALID_ACCESS_TOKEN, AppApiError
from tests.appclient import create_app, make_user


async def test_relogin_once_on_invalid_token(server: Ivcloud, admin: httpx.AsyncClient) -> None:
    creds = await create_app(admin)
    assert server.endpoints is not None
    logins = 0

    async def get_token() -> str:
        nonlocal logins
        logins += 1
        _, token = await make_user(server, creds, f"user{logins}")
        return token

    async with AppClient(server.endpoints.http_url, get_access_token=get_token) as app:
        first = await app.request_api("AppGetUser")
        assert first["Data"]["NickName"] == "user1"
        assert app.access_token is not None
        await server.users.revoke(app.access_token)
        again = await app.request_api("AppGetUser")
        assert again["Data"]["NickName"] == "user2"
        assert logins == 2


async def test_typed_errors_without_a_way_to_relogin(
    server: Ivcloud, admin: httpx.AsyncClient
) -> None:
    assert server.endpoints is not None
    async with AppClient(server.endpoints.http_url, access_token="stale") as app:
        with pytest.raises(AppApiError) as err:
            await app.request_api("AppGetUser")
    assert err.value.code == INVALID_ACCESS_TOKEN
    async with AppClient(server.endpoints.http_url) as app:
        with pytest.raises(AppApiError) as err:
            await app.request_signed("AppGetToken")
    assert err.value.code == "AuthFailure.SecretIdNotFound"


def frame(type_: str, sub: str, payload: dict[str, object]) -> dict[str, object]:
    return {
        "push": True,
        "action": "DeviceChange",
        "params": {
            "Time": "2023-07-13T14:19:48+08:00",
            "Type": type_,
            "SubType": sub,
            "Topic": "$thing/up/property/P/D",
            "Seq": 1689229188406,
            "DeviceId": "P/D",
            "Payload": base64.b64encode(json.dumps(payload).encode() + b"\0").decode(),
        },
    }


@pytest.mark.parametrize(
    ("type_", "sub", "payload", "event", "arg"),
    [
        (
            "Property",
            "Report",
            {"method": "report", "params": {"a": 1}},
            "ws_report",
            {"deviceId": "P/D", "deviceData": {"a": {"Value": 1, "LastUpdate": 1689229188406}}},
        ),
        (
            "Property",
            "Push",
            {"method": "control", "params": {"b": 2}},
            "ws_control",
            {"deviceId": "P/D", "deviceData": {"b": {"Value": 2, "LastUpdate": 1689229188406}}},
        ),
        ("StatusChange", "Online", {}, "ws_status_change", {"deviceId": "P/D", "deviceStatus": 1}),
        ("StatusChange", "Offline", {}, "ws_status_change", {"deviceId": "P/D", "deviceStatus": 0}),
        (
            "Event",
            "Report",
            {"method": "event_post", "eventId": "x"},
            "ws_event_report",
            {"deviceId": "P/D", "Payload": {"method": "event_post", "eventId": "x"}},
        ),
        (
            "StatusChange",
            "Unbind",
            {"method": "unbind"},
            "ws_device_unbind",
            {"deviceId": "P/D", "Payload": {"method": "unbind"}},
        ),
    ],
)
def test_push_frames_map_to_sdk_events(
    type_: str, sub: str, payload: dict[str, object], event: str, arg: dict[str, object]
) -> None:
    assert push_event(frame(type_, sub, payload)) == (event, arg)


def test_unknown_frames_map_to_nothing() -> None:
    assert push_event({"action": "Other"}) is None
    assert push_event(frame("Gateway", "bind", {})) is None


async def test_unknown_event_name_is_refused() -> None:
    app = AppClient("http://127.0.0.1:9")
    with pytest.raises(ValueError, match="unknown event"):
        app.on("ws_nope", lambda e: None)
    await app.close()
