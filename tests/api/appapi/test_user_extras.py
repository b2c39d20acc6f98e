"""User settings, XG tokens, feedback and global config (spec §2.1) over real HTTP, with
the console API and CLI the maker uses, every rejection code, and another user's ids."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from typer.testing import CliRunner, Result

from ivcloud.app import Ivcloud
from ivcloud.cli import app as cli_app
from ivcloud.services.feedback import DAILY_LIMIT
from ivcloud.services.user_settings import DEFAULTS
from ivcloud.services.xg_tokens import MAX_PER_USER
from tests.appclient import AppApiClient, AppCreds, create_app, error_code, make_user, ok_data


@pytest.fixture
async def creds(admin: httpx.AsyncClient) -> AppCreds:
    return await create_app(admin)


@pytest.fixture
def client(appclient: httpx.AsyncClient, creds: AppCreds) -> AppApiClient:
    return AppApiClient(appclient, creds)


async def test_settings_defaults_partial_update_and_isolation(
    server: Ivcloud, client: AppApiClient, creds: AppCreds
) -> None:
    _, alice = await make_user(server, creds, "alice")
    _, bob = await make_user(server, creds, "bob")
    got = ok_data(await client.tokenapi(alice, "AppGetUserSetting"))
    assert got["UserSetting"] == DEFAULTS
    assert isinstance(got["UserSetting"]["EnableDeviceMessagePush"], int)
    ok_data(await client.tokenapi(alice, "AppUpdateUserSetting", TemperatureUnit="F"))
    ok_data(await client.tokenapi(alice, "AppUpdateUserSetting", Region="Asia/Shanghai"))
    ok_data(
        await client.tokenapi(
            alice,
            "AppUpdateUserSetting",
            EnableWechatPush=1,
            EnableDeviceMessagePush=0,
            EnableFamilyMessagePush="0",
            EnableNotifyMessagePush=1,
        )
    )
    setting = ok_data(await client.tokenapi(alice, "AppGetUserSetting"))["UserSetting"]
    assert setting == {
        "EnableWechatPush": 1,
        "EnableDeviceMessagePush": 0,
        "EnableFamilyMessagePush": 0,
        "EnableNotifyMessagePush": 1,
        "TemperatureUnit": "F",
        "Region": "Asia/Shanghai",
    }
    # bob's settings are his own: alice's changes are not visible to him
    assert ok_data(await client.tokenapi(bob, "AppGetUserSetting"))["UserSetting"] == DEFAULTS


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, "ErrorRequiredParamNotFound"),
        ({"TemperatureUnit": "K"}, "InvalidParameterValue"),
        ({"EnableWechatPush": 3}, "InvalidParameterValue"),
        ({"EnableWechatPush": True}, "InvalidParameter"),
        ({"Region": "not a zone"}, "InvalidParameterValue"),
    ],
)
async def test_bad_settings_are_refused_and_change_nothing(
    server: Ivcloud, client: AppApiClient, creds: AppCreds, params: dict[str, object], code: str
) -> None:
    _, alice = await make_user(server, creds)
    ok_data(await client.tokenapi(alice, "AppUpdateUserSetting", TemperatureUnit="F"))
    assert error_code(await client.tokenapi(alice, "AppUpdateUserSetting", **params)) == code
    setting = ok_data(await client.tokenapi(alice, "AppGetUserSetting"))["UserSetting"]
    assert setting == DEFAULTS | {"TemperatureUnit": "F"}


async def test_xg_tokens_bind_unbind_bounded_and_per_user(
    server: Ivcloud, client: AppApiClient, creds: AppCreds
) -> None:
    alice_id, alice = await make_user(server, creds, "alice")
    bob_id, bob = await make_user(server, creds, "bob")
    ios = {"Platform": "ios", "Agent": "ios"}
    ok_data(await client.tokenapi(alice, "AppBindXgToken", Token="phone-1", **ios))
    ok_data(await client.tokenapi(alice, "AppBindXgToken", Token="phone-1", **ios))  # idempotent
    ok_data(await client.tokenapi(alice, "AppBindXgToken", Token="phone-2"))
    assert sorted(await server.xg_tokens.tokens(alice_id)) == [("phone-1", "ios"), ("phone-2", "")]
    # bob cannot remove alice's token: his unbind touches only his own (none)
    ok_data(await client.tokenapi(bob, "AppUnBindXgToken", Token="phone-1"))
    assert len(await server.xg_tokens.tokens(alice_id)) == 2
    assert await server.xg_tokens.tokens(bob_id) == []
    ok_data(await client.tokenapi(alice, "AppUnBindXgToken", Token="phone-1", **ios))
    assert await server.xg_tokens.tokens(alice_id) == [("phone-2", "")]
    for i in range(MAX_PER_USER + 3):
        ok_data(await client.tokenapi(alice, "AppBindXgToken", Token=f"t-{i:02d}"))
    kept = [t for t, _ in await server.xg_tokens.tokens(alice_id)]
    assert len(kept) == MAX_PER_USER and f"t-{MAX_PER_USER + 2:02d}" in kept
    assert error_code(await client.tokenapi(alice, "AppBindXgToken")) == (
        "ErrorRequiredParamNotFound"
    )
    bad = await client.tokenapi(alice, "AppBindXgToken", Token="has space")
    assert error_code(bad) == "InvalidParameterValue"
    bad = await client.tokenapi(alice, "AppBindXgToken", Token="x" * 300)
    assert error_code(bad) == "InvalidParameterValue"


async def test_feedback_is_stored_listed_for_the_maker_and_bounded(
    server: Ivcloud, client: AppApiClient, creds: AppCreds, admin: httpx.AsyncClient
) -> None:
    alice_id, alice = await make_user(server, creds, "alice")
    sent = {
        "Type": "advise",
        "Desc": "the door lock app freezes on the live view",
        "Contact": "13800138000",
        "LogUrl": "https://cos.example/a.png,https://cos.example/b.png",
    }
    ok_data(await client.tokenapi(alice, "AppUserFeedBack", **sent))
    ok_data(await client.tokenapi(alice, "AppUserFeedBack", Desc="second message, no extras"))
    resp = await admin.get("/feedback", params={"AppId": creds.app_id, "Limit": 1})
    assert resp.status_code == 200, resp.text
    page = resp.json()
    assert page["Total"] == 2 and len(page["Feedback"]) == 1
    newest = page["Feedback"][0]
    assert newest["Desc"] == "second message, no extras" and newest["Type"] == "advise"
    resp = await admin.get("/feedback", params={"AppId": creds.app_id, "Offset": 1})
    first = resp.json()["Feedback"][0]
    assert first["UserID"] == alice_id and first["Contact"] == "13800138000"
    assert first["LogUrl"] == ["https://cos.example/a.png", "https://cos.example/b.png"]
    other = await admin.get("/feedback", params={"AppId": "no-such-app"})
    assert other.json() == {"Total": 0, "Feedback": []}
    assert (await admin.get("/feedback", params={"Limit": 1000})).status_code == 400

    for params, code in [
        ({}, "ErrorRequiredParamNotFound"),
        ({"Desc": "   "}, "InvalidParameterValue"),
        ({"Desc": "x" * 2001}, "InvalidParameterValue"),
        ({"Desc": "ok text", "LogUrl": "file:///etc/passwd"}, "InvalidParameterValue"),
        ({"Desc": "ok text", "Contact": "c" * 129}, "InvalidParameterValue"),
    ]:
        assert error_code(await client.tokenapi(alice, "AppUserFeedBack", **params)) == code
    for _ in range(DAILY_LIMIT - 2):
        ok_data(await client.tokenapi(alice, "AppUserFeedBack", Desc="again and again"))
    over = await client.tokenapi(alice, "AppUserFeedBack", Desc="one too many")
    assert error_code(over) == "LimitExceeded"
    assert (await admin.get("/feedback")).json()["Total"] == DAILY_LIMIT


async def test_feedback_needs_a_token(client: AppApiClient) -> None:
    denied = await client.tokenapi("not-a-token", "AppUserFeedBack", Desc="hello there")
    assert error_code(denied) == "InvalidParameterValue.InvalidAccessToken"


async def test_global_config_set_by_the_maker_read_by_the_app(
    server: Ivcloud, client: AppApiClient, creds: AppCreds, admin: httpx.AsyncClient
) -> None:
    zones = json.dumps([{"TZ": "Asia/Shanghai", "Title": "China"}])
    resp = await admin.put(f"/apps/{creds.app_id}/config/RegionListEN", json={"Value": zones})
    assert resp.status_code == 200, resp.text
    await admin.put(f"/apps/{creds.app_id}/config/Other", json={"Value": "v"})
    # the iOS/Android apps send Keys as one string and read Configs[0].Value
    got = ok_data(await client.appapi("AppGetGlobalConfig", Keys="RegionListEN"))
    assert got["Configs"] == [{"Key": "RegionListEN", "Value": zones}]
    got = ok_data(
        await client.appapi("AppGetGlobalConfig", Keys=["Other", "Unset", "RegionListEN"])
    )
    assert [c["Key"] for c in got["Configs"]] == ["Other", "RegionListEN"]  # unset: omitted
    # another app's config is not visible through this app's AppKey
    other = AppApiClient(client.http, await create_app(admin))
    assert ok_data(await other.appapi("AppGetGlobalConfig", Keys="RegionListEN"))["Configs"] == []
    assert error_code(await client.appapi("AppGetGlobalConfig")) == "ErrorRequiredParamNotFound"
    assert error_code(await client.appapi("AppGetGlobalConfig", Keys=7)) == "InvalidParameter"
    assert error_code(await client.appapi("AppGetGlobalConfig", Keys="a b")) == (
        "InvalidParameterValue"
    )
    # appapi only: unsigned calls are refused
    _, token = await make_user(server, creds)
    assert error_code(await client.tokenapi(token, "AppGetGlobalConfig", Keys="x")) == (
        "InvalidAction"
    )
    assert (
        await admin.put(f"/apps/{creds.app_id}/config/bad key", json={"Value": "v"})
    ).status_code == 400
    assert (await admin.put("/apps/nope/config/K", json={"Value": "v"})).status_code == 404
    assert (await admin.delete(f"/apps/{creds.app_id}/config/Other")).status_code == 204
    assert (await admin.delete(f"/apps/{creds.app_id}/config/Other")).status_code == 404
    listed = (await admin.get(f"/apps/{creds.app_id}/config")).json()
    assert listed == {"Configs": [{"Key": "RegionListEN", "Value": zones}]}


async def cli(server: Ivcloud, *args: str) -> Result:
    """The CLI is synchronous (httpx): run it off the event loop serving its requests."""
    return await asyncio.to_thread(
        CliRunner().invoke, cli_app, [*args, "--data-dir", str(server.settings.data_dir)]
    )


async def test_cli_sets_config_and_lists_feedback(
    server: Ivcloud, client: AppApiClient, creds: AppCreds
) -> None:
    res = await cli(server, "app", "config", "set", creds.app_id, "Banner", "hello")
    assert res.exit_code == 0, res.output
    got = ok_data(await client.appapi("AppGetGlobalConfig", Keys="Banner"))
    assert got["Configs"] == [{"Key": "Banner", "Value": "hello"}]
    res = await cli(server, "app", "config", "list", creds.app_id)
    assert res.exit_code == 0 and "Banner" in res.output, res.output
    _, alice = await make_user(server, creds)
    ok_data(await client.tokenapi(alice, "AppUserFeedBack", Desc="cli can read this"))
    res = await cli(server, "app", "feedback", "--app", creds.app_id, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["Feedback"][0]["Desc"] == "cli can read this"
    res = await cli(server, "app", "config", "unset", creds.app_id, "Banner")
    assert res.exit_code == 0, res.output
    assert ok_data(await client.appapi("AppGetGlobalConfig", Keys="Banner"))["Configs"] == []
