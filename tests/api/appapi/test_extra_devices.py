"""AppSigBindDeviceInFamily, AppGetMultiDeviceBindTokenState, AppReportDataAsDevice,
AppApiPublishMessage, AppGetProductInfo and AppGetProductsConfig over real HTTP, each with
its error codes and an authorization attack with another user's (or app's) ids."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from ivcloud.app import Ivcloud
from tests.appclient import AppApiClient, AppCreds, create_app, error_code, make_user, ok_data
from tests.helpers import Provisioned, provision_custom
from tests.models import SENSOR_MODEL
from tests.rawdevice import device_for

NO_PERMISSION = "InvalidParameterValue.NoPermission"
SIG_FAILURE = "InvalidParameterValue.SignatureFailure"
EXPIRED = "InvalidParameterValue.TokenIsExpire"
NOT_LINKED = "UnauthorizedOperation.APPNoPermissionToStudioProduct"


def device_signature(
    secret: str, pid: str, dn: str, ts: int, conn_id: str, method: str = "hmacsha1"
) -> str:
    """Computed here from spec §2.3, independently of the server's code."""
    text = f"DeviceName={dn}&DeviceTimestamp={ts}&ProductId={pid}&ConnId={conn_id}"
    digest = hashlib.sha1 if method == "hmacsha1" else hashlib.sha256
    return hmac.new(base64.b64decode(secret), text.encode(), digest).hexdigest()


@dataclass
class World:
    server: Ivcloud
    admin: httpx.AsyncClient
    client: AppApiClient
    creds: AppCreds
    sensor: Provisioned  # linked, not bound to any family
    ids: dict[str, str]  # name -> user id
    tokens: dict[str, str]  # name -> AccessToken
    families: dict[str, str]  # alice's and bob's own families

    async def call(self, who: str, action: str, **params: Any) -> dict[str, Any]:
        return await self.client.tokenapi(self.tokens[who], action, **params)

    @property
    def dev(self) -> dict[str, str]:
        return {"ProductId": self.sensor.product_id, "DeviceName": self.sensor.device_name}

    @property
    def device_id(self) -> str:
        return f"{self.sensor.product_id}/{self.sensor.device_name}"

    def sig_params(
        self,
        *,
        ts: int | None = None,
        method: str = "hmacsha1",
        secret: str | None = None,
        conn_id: str = "cOnN1",
    ) -> dict[str, Any]:
        ts = int(time.time()) if ts is None else ts
        sig = device_signature(
            secret or self.sensor.secret,
            self.sensor.product_id,
            self.sensor.device_name,
            ts,
            conn_id,
            method,
        )
        return {
            **self.dev,
            "DeviceTimestamp": ts,
            "ConnId": conn_id,
            "Signature": sig,
            "BindType": "wifi_sign",
            "SignMethod": method,
        }

    async def sig_bind(self, who: str = "alice", **params: Any) -> dict[str, Any]:
        body = {"FamilyId": self.families.get(who, self.families["alice"]), "RoomId": "0", **params}
        return await self.call(who, "AppSigBindDeviceInFamily", **body)

    async def bind_to_alice(self) -> None:
        user = await self.server.users.get(self.ids["alice"])
        rec = await self.server.devices.get(self.sensor.product_id, self.sensor.device_name)
        await self.server.families.bind_device(user, self.families["alice"], "0", rec)


@pytest.fixture
async def w(server: Ivcloud, admin: httpx.AsyncClient, appclient: httpx.AsyncClient) -> World:
    sensor = await provision_custom(admin, SENSOR_MODEL, "dev1")
    creds = await create_app(admin, sensor.product_id)
    client = AppApiClient(appclient, creds)
    ids: dict[str, str] = {}
    tokens: dict[str, str] = {}
    for name in ("alice", "bob", "carol", "dave"):
        ids[name], tokens[name] = await make_user(server, creds, name)
    families = {}
    for name in ("alice", "bob"):
        data = ok_data(await client.tokenapi(tokens[name], "AppCreateFamily", Name=name))
        families[name] = data["Data"]["FamilyId"]
    return World(server, admin, client, creds, sensor, ids, tokens, families)


# --- AppSigBindDeviceInFamily --------------------------------------------------------------------


@pytest.mark.parametrize("method", ["hmacsha1", "hmacsha256"])
async def test_sig_bind_binds_and_answers_device_info(w: World, method: str) -> None:
    async with device_for(w.server, w.sensor) as device:
        data = ok_data(await w.sig_bind(**w.sig_params(method=method)))
        notice = await device.next("$thing/down/service/{p}/{d}")
    assert notice["method"] == "bind_device"
    assert notice["params"]["FamilyId"] == w.families["alice"]
    info = data["AppDeviceInfo"]
    assert data["Data"] == info
    listed = ok_data(await w.call("alice", "AppGetFamilyDeviceList", FamilyId=w.families["alice"]))[
        "DeviceList"
    ]
    assert listed == [info]
    assert info["DeviceId"] == w.device_id
    assert info["FamilyId"] == w.families["alice"]
    assert info["RoomId"] == "0"
    assert info["UserID"] == w.ids["alice"]


async def test_sig_bind_accepts_device_id_upper_hex_and_defaults(w: World) -> None:
    params = w.sig_params()
    del params["ProductId"], params["DeviceName"], params["BindType"], params["SignMethod"]
    params["Signature"] = params["Signature"].upper()
    ok_data(await w.sig_bind(DeviceId=w.device_id, **params))


async def test_sig_bind_bad_signatures(w: World) -> None:
    good = w.sig_params()
    flipped = ("0" if good["Signature"][0] != "0" else "1") + good["Signature"][1:]
    assert error_code(await w.sig_bind(**{**good, "Signature": flipped})) == SIG_FAILURE
    assert error_code(await w.sig_bind(**{**good, "Signature": "not-hex"})) == SIG_FAILURE
    # signed with another secret, another ConnId than sent, or the other algorithm
    other = base64.b64encode(b"x" * 16).decode()
    assert error_code(await w.sig_bind(**w.sig_params(secret=other))) == SIG_FAILURE
    assert error_code(await w.sig_bind(**{**good, "ConnId": "other"})) == SIG_FAILURE
    assert error_code(await w.sig_bind(**{**good, "SignMethod": "hmacsha256"})) == SIG_FAILURE
    # an unknown device of a linked product answers the same (no probing of names)
    ghost = {**good, "DeviceName": "ghost"}
    assert error_code(await w.sig_bind(**ghost)) == SIG_FAILURE
    # none of those bound anything
    rec = await w.server.devices.get(w.sensor.product_id, w.sensor.device_name)
    assert await w.server.families.device_family(rec) is None


async def test_sig_bind_timestamp_window_and_replay(w: World) -> None:
    now = int(time.time())
    assert error_code(await w.sig_bind(**w.sig_params(ts=now - 400))) == EXPIRED
    assert error_code(await w.sig_bind(**w.sig_params(ts=now + 400))) == EXPIRED
    # age is told only to a holder of the secret: a stale forged signature is a failure
    forged = {**w.sig_params(ts=now - 400), "Signature": "0" * 40}
    assert error_code(await w.sig_bind(**forged)) == SIG_FAILURE
    params = w.sig_params(ts=now - 200)
    ok_data(await w.sig_bind(**params))
    # removed from the family, the same captured signature cannot bind it again
    ok_data(await w.call("alice", "AppDeleteDeviceInFamily", FamilyId=w.families["alice"], **w.dev))
    assert error_code(await w.sig_bind(**params)) == EXPIRED
    ok_data(await w.sig_bind(**w.sig_params(conn_id="fresh")))
    # already in a family
    assert error_code(await w.sig_bind(**w.sig_params(conn_id="third"))) == "ResourceInUse"


async def test_sig_bind_parameter_errors(w: World) -> None:
    good = w.sig_params()
    for name in ("DeviceTimestamp", "ConnId", "Signature"):
        params = {k: v for k, v in good.items() if k != name}
        assert error_code(await w.sig_bind(**params)) == "ErrorRequiredParamNotFound"
    assert error_code(await w.sig_bind(**{**good, "BindType": "qr_sign"})) == (
        "InvalidParameterValue"
    )
    assert error_code(await w.sig_bind(**{**good, "SignMethod": "md5"})) == (
        "InvalidParameterValue"
    )
    assert error_code(await w.sig_bind(**{**good, "DeviceTimestamp": "soon"})) == (
        "InvalidParameter"
    )
    assert error_code(await w.call("alice", "AppSigBindDeviceInFamily", **good)) == (
        "ErrorRequiredParamNotFound"
    )  # no FamilyId


async def test_sig_bind_authorization(w: World, admin: httpx.AsyncClient) -> None:
    good = w.sig_params()
    # alice cannot bind into bob's family, even with a valid device signature
    assert error_code(await w.sig_bind("alice", FamilyId=w.families["bob"], **good)) == (
        NO_PERMISSION
    )
    # carol has no family at all; "default" resolves to nothing
    assert error_code(await w.sig_bind("carol", FamilyId="default", **good)) == NO_PERMISSION
    # a device of a product not linked to the app
    stranger = await provision_custom(admin, SENSOR_MODEL, "s1")
    ts = int(time.time())
    sig = device_signature(stranger.secret, stranger.product_id, "s1", ts, "c")
    doc = await w.sig_bind(
        ProductId=stranger.product_id,
        DeviceName="s1",
        DeviceTimestamp=ts,
        ConnId="c",
        Signature=sig,
    )
    assert error_code(doc) == NOT_LINKED
    # and bob's own successful bind is untouched by alice's attempt
    ok_data(await w.sig_bind("bob", **good))


# --- AppGetMultiDeviceBindTokenState -------------------------------------------------------------


async def test_multi_token_state(w: World) -> None:
    token = ok_data(await w.call("alice", "AppCreateDeviceBindToken"))["Token"]
    state = ok_data(await w.call("alice", "AppGetMultiDeviceBindTokenState", Token=token))
    assert state["Data"] == []
    async with device_for(w.server, w.sensor) as device:
        reply = await device.request(
            "service", {"method": "app_bind_token", "clientToken": "t", "params": {"token": token}}
        )
        assert reply["code"] == 0
    state = ok_data(await w.call("alice", "AppGetMultiDeviceBindTokenState", Token=token))
    assert state["Data"] == [
        {"ProductId": w.sensor.product_id, "DeviceName": w.sensor.device_name, "State": 2}
    ]
    single = ok_data(await w.call("alice", "AppGetDeviceBindTokenState", Token=token))
    assert single["Data"] == state["Data"][0]
    # errors as AppGetDeviceBindTokenState
    assert error_code(await w.call("bob", "AppGetMultiDeviceBindTokenState", Token=token)) == (
        NO_PERMISSION
    )
    assert (
        error_code(await w.call("alice", "AppGetMultiDeviceBindTokenState", Token="0" * 32))
        == "InvalidParameterValue.TokenNotExist"
    )
    assert error_code(await w.call("alice", "AppGetMultiDeviceBindTokenState")) == (
        "ErrorRequiredParamNotFound"
    )


# --- AppReportDataAsDevice -----------------------------------------------------------------------


async def test_report_as_device_is_stored(w: World) -> None:
    await w.bind_to_alice()
    ts = int(time.time() * 1000) - 5000
    data = ok_data(
        await w.call(
            "alice",
            "AppReportDataAsDevice",
            DeviceId=w.device_id,
            Data=json.dumps({"power": True, "brightness": 30}),
            TimeStamp=ts,
        )
    )
    assert json.loads(data["Data"]) == {
        "brightness": {"Value": 30, "LastUpdate": ts},
        "power": {"Value": 1, "LastUpdate": ts},
    }
    # stored: visible at once through AppGetDeviceData and the history
    latest = json.loads(
        ok_data(await w.call("alice", "AppGetDeviceData", DeviceId=w.device_id))["Data"]
    )
    assert latest["power"] == {"Value": 1, "LastUpdate": ts}
    history = ok_data(
        await w.call(
            "alice",
            "AppGetDeviceDataHistory",
            **w.dev,
            FieldName="brightness",
            MinTime=ts - 1,
            MaxTime=ts + 1,
        )
    )
    assert [r["Value"] for r in history["Results"]] == ["30"]
    # without TimeStamp: now
    before = int(time.time() * 1000)
    data = ok_data(
        await w.call("alice", "AppReportDataAsDevice", DeviceId=w.device_id, Data='{"label":"hi"}')
    )
    assert json.loads(data["Data"])["label"]["LastUpdate"] >= before


async def test_report_as_device_validation(w: World) -> None:
    await w.bind_to_alice()

    async def report(data: Any, **extra: Any) -> str:
        return error_code(
            await w.call("alice", "AppReportDataAsDevice", DeviceId=w.device_id, Data=data, **extra)
        )

    assert await report('{"brightness": 101}') == "InvalidParameterValue"
    assert await report('{"nope": 1}') == "InvalidParameterValue"
    assert await report("{}") == "InvalidParameterValue"
    assert await report("{bad") == "InvalidParameterValue.InvalidJSON"
    now = int(time.time() * 1000)
    assert await report('{"power":1}', TimeStamp=now // 1000 - 86400 * 2) == (
        "InvalidParameterValue"
    )  # seconds, not ms: out of the window
    assert await report('{"power":1}', TimeStamp=now + 3600_000) == "InvalidParameterValue"
    assert error_code(await w.call("alice", "AppReportDataAsDevice", DeviceId=w.device_id)) == (
        "ErrorRequiredParamNotFound"
    )


async def test_report_as_device_authorization(
    w: World, admin: httpx.AsyncClient, appclient: httpx.AsyncClient
) -> None:
    await w.bind_to_alice()
    alice = await w.server.users.get(w.ids["alice"])
    # carol: member (not admin) of alice's family may report
    token, _ = await w.server.families.invite(alice, w.families["alice"])
    await w.server.families.join(await w.server.users.get(w.ids["carol"]), token)
    ok_data(
        await w.call("carol", "AppReportDataAsDevice", DeviceId=w.device_id, Data='{"power":0}')
    )
    # dave: the device is only shared with him -> may control, not report as the device
    share, _ = await w.server.sharing.create_token(alice, None, *w.dev.values())
    await w.server.sharing.accept(await w.server.users.get(w.ids["dave"]), share, *w.dev.values())
    assert ok_data(await w.call("dave", "AppGetDeviceData", DeviceId=w.device_id))
    assert (
        error_code(
            await w.call("dave", "AppReportDataAsDevice", DeviceId=w.device_id, Data='{"power":1}')
        )
        == NO_PERMISSION
    )
    # bob: no access at all; unknown device
    assert (
        error_code(
            await w.call("bob", "AppReportDataAsDevice", DeviceId=w.device_id, Data='{"power":1}')
        )
        == NO_PERMISSION
    )
    assert (
        error_code(
            await w.call(
                "alice",
                "AppReportDataAsDevice",
                DeviceId=f"{w.sensor.product_id}/ghost",
                Data='{"power":1}',
            )
        )
        == NO_PERMISSION
    )
    # a user of another app that also links this product
    other_creds = await create_app(admin, w.sensor.product_id)
    _, eve = await make_user(w.server, other_creds, "eve")
    doc = await AppApiClient(appclient, other_creds).tokenapi(
        eve, "AppReportDataAsDevice", DeviceId=w.device_id, Data='{"power":1}'
    )
    assert error_code(doc) == NO_PERMISSION
    latest = json.loads(
        ok_data(await w.call("alice", "AppGetDeviceData", DeviceId=w.device_id))["Data"]
    )
    assert latest["power"]["Value"] == 0


# --- AppApiPublishMessage ------------------------------------------------------------------------


async def test_publish_message_reaches_the_device(w: World) -> None:
    topic = f"$thing/down/service/{w.sensor.product_id}/{w.sensor.device_name}"
    payload = {"method": "twecall", "params": {"n": 1}}
    async with device_for(w.server, w.sensor) as device:
        for qos in (0, 1):
            ok_data(
                await w.client.appapi(
                    "AppApiPublishMessage",
                    **w.dev,
                    Topic=topic,
                    Payload=json.dumps(payload),
                    Qos=qos,
                )
            )
            assert await device.next("$thing/down/service/{p}/{d}") == payload
        # a topic the device may subscribe to but did not
        custom = f"{w.sensor.product_id}/{w.sensor.device_name}/data"
        assert (
            error_code(
                await w.client.appapi("AppApiPublishMessage", **w.dev, Topic=custom, Payload="x")
            )
            == "FailedOperation"
        )


async def test_publish_message_errors(
    w: World, admin: httpx.AsyncClient, appclient: httpx.AsyncClient
) -> None:
    pid, dn = w.sensor.product_id, w.sensor.device_name
    down = f"$thing/down/property/{pid}/{dn}"

    async def publish(client: AppApiClient | None = None, **params: Any) -> str:
        body = {**w.dev, "Topic": down, "Payload": "{}", **params}
        return error_code(await (client or w.client).appapi("AppApiPublishMessage", **body))

    assert await publish() == "FailedOperation.DeviceOffline"
    # only topics the device itself may subscribe to
    for topic in (
        f"$thing/up/property/{pid}/{dn}",
        f"$thing/down/property/{pid}/other",
        f"{pid}/other/data",
        "$sys/broadcast",
    ):
        assert await publish(Topic=topic) == NO_PERMISSION, topic
    assert await publish(Topic=f"{pid}/{dn}/#") == "InvalidParameterValue"
    assert await publish(Qos=2) == "InvalidParameterValue"
    assert await publish(Topic="") == "ErrorRequiredParamNotFound"
    assert await publish(DeviceName="ghost") == NO_PERMISSION
    # another app (another OEM back end) cannot publish to this app's devices
    other = await provision_custom(admin, SENSOR_MODEL, "o1")
    other_client = AppApiClient(appclient, await create_app(admin, other.product_id))
    assert await publish(other_client) == NO_PERMISSION
    # appapi only
    doc = await w.call("alice", "AppApiPublishMessage", **w.dev, Topic=down, Payload="{}")
    assert error_code(doc) == "InvalidAction"


# --- AppGetProductInfo / AppGetProductsConfig ----------------------------------------------------


async def test_product_info_and_config(w: World, admin: httpx.AsyncClient) -> None:
    pid = w.sensor.product_id
    products = ok_data(await w.call("alice", "AppGetProducts", ProductIds=[pid]))["Products"]
    info = ok_data(await w.call("alice", "AppGetProductInfo", ProductId=pid))["Data"]
    assert info == {**products[0], "Config": "{}"}
    assert json.loads(info["DataTemplate"])["properties"][0]["id"] == "power"
    config = ok_data(await w.call("alice", "AppGetProductsConfig", ProductIds=[pid, pid]))
    assert config["Data"] == [info]
    assert config["Products"] == [info]
    assert json.loads(config["Data"][0]["Config"]) == {}

    stranger = await provision_custom(admin, SENSOR_MODEL, "s1")
    assert (
        error_code(await w.call("alice", "AppGetProductInfo", ProductId=stranger.product_id))
        == NO_PERMISSION
    )
    assert (
        error_code(
            await w.call("alice", "AppGetProductsConfig", ProductIds=[pid, stranger.product_id])
        )
        == NO_PERMISSION
    )
    assert error_code(await w.call("alice", "AppGetProductInfo", ProductId="NOSUCHPROD")) == (
        NO_PERMISSION
    )
    assert error_code(await w.call("alice", "AppGetProductInfo")) == ("ErrorRequiredParamNotFound")
    assert error_code(await w.call("alice", "AppGetProductsConfig", ProductIds=pid)) == (
        "InvalidParameter"
    )
    assert error_code(await w.call("alice", "AppGetProductsConfig", ProductIds=[])) == (
        "ErrorRequiredParamNotFound"
    )
