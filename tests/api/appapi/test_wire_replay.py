"""Replays of what real clients put on the wire (app-api.md §1.2, §1.3, §3.2, §4.4), byte for
byte, and checks of the answers against what those clients parse (§1.4, §3.3).

The recorded bodies are kept verbatim as text; only the values a test cannot know in advance
(``ACCESS_TOKEN_ABC``, ``u_123``, ``PID123``, ``f_1``) are substituted, so key order, JSON
types and separators are exactly the recorded ones."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from ivcloud.app import Ivcloud
from ivcloud.protocol.appapi import sign
from tests.api.appapi.family_support import FAMILY_DEVICE_FIELDS, FAMILY_LIST_FIELDS
from tests.appclient import AppCreds, create_app, make_user
from tests.helpers import Provisioned, poll, provision_custom
from tests.models import SENSOR_MODEL
from tests.rawdevice import RawDevice, device_for

TOKENAPI = "/api/exploreropen/tokenapi"
APPAPI = "/api/exploreropen/appapi"
JSON = "application/json"
ANDROID_JSON = "application/json;charset=UTF-8"

#: SENSOR_MODEL plus the ``power_switch`` property the recorded control body sets.
SWITCH_MODEL: dict[str, Any] = {
    **SENSOR_MODEL,
    "properties": [
        *SENSOR_MODEL["properties"],
        {
            "id": "power_switch",
            "name": "switch",
            "mode": "rw",
            "define": {"type": "bool", "mapping": {"0": "off", "1": "on"}},
        },
    ],
}

# --- recorded HTTP traffic (§1.2, §4.4), verbatim -------------------------------------------

SDK_GET_USER = (
    "/api/exploreropen/tokenapi?uin=unknown&cmd=AppGetUser",
    '{"RegionId":1,"Platform":"weapp","Action":"AppGetUser","RequestId":"@hE4xBVr3",'
    '"AccessToken":"ACCESS_TOKEN_ABC"}',
)
SDK_FAMILY_LIST = (
    "/api/exploreropen/tokenapi?uin=u_123&cmd=AppGetFamilyList",
    '{"RegionId":1,"Offset":0,"Limit":100,"Platform":"weapp","Action":"AppGetFamilyList",'
    '"RequestId":"bbAJADA@pb","AccessToken":"ACCESS_TOKEN_ABC"}',
)
SDK_FAMILY_DEVICE_LIST = (
    "/api/exploreropen/tokenapi?uin=u_123&cmd=AppGetFamilyDeviceList",
    '{"RegionId":1,"FamilyId":"f_1","Platform":"weapp","Action":"AppGetFamilyDeviceList",'
    '"RequestId":"FCFH5mhQTn","AccessToken":"ACCESS_TOKEN_ABC"}',
)
SDK_CONTROL = (
    "/api/exploreropen/tokenapi?uin=u_123&cmd=AppControlDeviceData",
    '{"RegionId":1,"DeviceId":"PID123/dev1","Data":"{\\"power_switch\\":1}","Platform":"weapp",'
    '"Action":"AppControlDeviceData","RequestId":"NhZ6fVeF_9","AccessToken":"ACCESS_TOKEN_ABC"}',
)

# --- recorded WebSocket frames (§3.2), verbatim ----------------------------------------------

SDK_ACTIVE_PUSH = (
    '{"action":"ActivePush","reqId":"imDfxQEbB9","params":{"DeviceIds":["PID123/dev1",'
    '"PID123/dev2"],"Platform":"weapp","AccessToken":"ACCESS_TOKEN_ABC","AppKey":"testAppKey",'
    '"RegionId":1}}'
)
SDK_HEARTBEAT = (
    '{"action":"YunApi","reqId":"eXS69XMJVQ","params":{"Action":"AppDeviceTraceHeartBeat",'
    '"ActionParams":{"Platform":"weapp","RequestId":"eXS69XMJVQ","AccessToken":"ACCESS_TOKEN_ABC",'
    '"DeviceIds":["PID123/dev1","PID123/dev2"]}}}'
)
ANDROID_HELLO = '{"action":"Hello","reqId":1}'

#: The shortid alphabet of the SDK's RequestIds (§1.2): ``0-9 a-z A-Z - _ $ @ # %``.
SHORTIDS = ["@hE4xBVr3", "bbAJADA@pb", "NhZ6fVeF_9", "$#%@-_$#%@", "a$b#c%d@e", "#9-Z_x$%"]


@dataclass
class Home:
    """One app, one user with one family holding two devices ``PID/dev1`` and ``PID/dev2``
    of a product whose model has ``power_switch``."""

    server: Ivcloud
    http: httpx.AsyncClient
    creds: AppCreds
    dev1: Provisioned
    dev2: Provisioned
    user_id: str
    token: str
    family_id: str

    @property
    def pid(self) -> str:
        return self.dev1.product_id

    def fill(self, recorded: str) -> str:
        """A recorded text with this home's real token, user, product and family."""
        return (
            recorded.replace("ACCESS_TOKEN_ABC", self.token)
            .replace("u_123", self.user_id)
            .replace('"PID123/', f'"{self.pid}/')
            .replace('"f_1"', f'"{self.family_id}"')
        )

    async def post(self, path: str, body: str | bytes, content_type: str = JSON) -> dict[str, Any]:
        raw = body.encode() if isinstance(body, str) else body
        resp = await self.http.post(path, content=raw, headers={"Content-Type": content_type})
        return parsed_like_a_client(resp)

    async def replay(self, recorded: tuple[str, str]) -> dict[str, Any]:
        path, body = recorded
        return await self.post(self.fill(path), self.fill(body))


def parsed_like_a_client(resp: httpx.Response) -> dict[str, Any]:
    """What every client does with an answer (§1.4): HTTP 200, a JSON object body (UTF-8) with
    exactly ``code`` (a JSON number), ``msg`` (string) and ``data`` (object)."""
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].split(";")[0].strip() == JSON
    doc = json.loads(resp.content.decode("utf-8"))
    assert isinstance(doc, dict) and set(doc) == {"code", "msg", "data"}, doc
    assert type(doc["code"]) is int, doc  # not "0", not false
    assert isinstance(doc["msg"], str) and isinstance(doc["data"], dict), doc
    if doc["code"] == 0:
        assert "Error" not in doc["data"], doc  # the SDK would resolve an error otherwise
    else:
        error = doc["data"]["Error"]
        assert isinstance(error["Code"], str) and isinstance(error["Message"], str), doc
    return doc


def sdk_result(doc: dict[str, Any]) -> dict[str, Any]:
    """``requestTokenApi.js``: resolve with ``data`` when ``code`` is 0."""
    assert doc["code"] == 0, doc
    data: dict[str, Any] = doc["data"]
    return data


def sdk_rejection(doc: dict[str, Any]) -> dict[str, str]:
    """``requestTokenApi.js``: reject ``{code: Error.Code, msg: Error.Message}``."""
    assert doc["code"] != 0, doc
    return {"code": doc["data"]["Error"]["Code"], "msg": doc["data"]["Error"]["Message"]}


async def make_home(server: Ivcloud, admin: httpx.AsyncClient, http: httpx.AsyncClient) -> Home:
    dev1 = await provision_custom(admin, SWITCH_MODEL, "dev1")
    resp = await admin.post(f"/products/{dev1.product_id}/devices", json={"DeviceName": "dev2"})
    assert resp.status_code == 201, resp.text
    dev2 = Provisioned(dev1.product_id, "dev2", resp.json()["DeviceSecret"])
    creds = await create_app(admin, dev1.product_id)
    user_id, token = await make_user(server, creds, "owner")
    user = await server.users.get(user_id)
    family_id = await server.families.create_family(user, "Home")
    for p in (dev1, dev2):
        rec = await server.devices.get(p.product_id, p.device_name)
        await server.families.bind_device(user, family_id, "0", rec)
    return Home(server, http, creds, dev1, dev2, user_id, token, family_id)


@pytest.fixture
async def home(server: Ivcloud, admin: httpx.AsyncClient, appclient: httpx.AsyncClient) -> Home:
    return await make_home(server, admin, appclient)


# --- mini-program SDK over HTTP (§1.2, §4.4) -------------------------------------------------


async def test_sdk_app_get_user(home: Home) -> None:
    data = sdk_result(await home.replay(SDK_GET_USER))
    assert data == {
        "RequestId": "@hE4xBVr3",
        "Data": {
            "UserID": home.user_id,
            "NickName": "owner",
            "Avatar": "",
            "CountryCode": "",
            "PhoneNumber": "",
            "Email": "",
            "WxOpenID": "",
            "HasPassword": 0,
            "HasWxOpenID": 0,
        },
    }


async def test_sdk_app_get_user_with_a_stale_token_triggers_relogin(home: Home) -> None:
    """The SDK re-logs in when the rejection's code contains ``InvalidAccessToken``."""
    path, body = SDK_GET_USER
    doc = await home.post(path, body)  # ACCESS_TOKEN_ABC left in: not a token of ours
    assert doc["code"] == -1000
    assert doc["data"]["RequestId"] == "@hE4xBVr3"
    assert sdk_rejection(doc)["code"] == "InvalidParameterValue.InvalidAccessToken"


async def test_sdk_app_get_family_list(home: Home) -> None:
    data = sdk_result(await home.replay(SDK_FAMILY_LIST))
    assert set(data) == {"RequestId", "FamilyList", "Total"}
    assert data["RequestId"] == "bbAJADA@pb"
    assert data["Total"] == 1
    [family] = data["FamilyList"]
    assert set(family) == FAMILY_LIST_FIELDS
    assert (family["FamilyId"], family["FamilyName"], family["Role"]) == (home.family_id, "Home", 1)


async def test_sdk_app_get_family_device_list(home: Home) -> None:
    data = sdk_result(await home.replay(SDK_FAMILY_DEVICE_LIST))
    assert set(data) == {"RequestId", "DeviceList", "Total"}
    assert data["RequestId"] == "FCFH5mhQTn"
    assert data["Total"] == 2
    assert [d["DeviceId"] for d in data["DeviceList"]] == [f"{home.pid}/dev1", f"{home.pid}/dev2"]
    for device in data["DeviceList"]:
        assert set(device) == FAMILY_DEVICE_FIELDS
        assert device["ProductId"] == home.pid
        assert device["FamilyId"] == home.family_id
        assert device["UserID"] == home.user_id


async def test_sdk_app_get_family_device_list_with_unresolved_default(home: Home) -> None:
    """Older SDKs (and other clients) send ``FamilyId: "default"`` as is (§2.8)."""
    path, body = SDK_FAMILY_DEVICE_LIST
    data = sdk_result(
        await home.post(
            home.fill(path), home.fill(body).replace(f'"{home.family_id}"', '"default"')
        )
    )
    assert data["Total"] == 2


async def test_sdk_app_control_device_data(home: Home) -> None:
    async with device_for(home.server, home.dev1) as dev:
        await wait_online(home.server, home.dev1)
        data = sdk_result(await home.replay(SDK_CONTROL))
        assert data == {"RequestId": "NhZ6fVeF_9"}
        control = await dev.down("property")
    assert control["method"] == "control"
    assert control["params"] == {"power_switch": 1}
    assert isinstance(control["clientToken"], str) and control["clientToken"]


async def test_control_data_as_object_is_tolerated(home: Home) -> None:
    """``Data`` is a JSON *string* on the wire (§1.2); the object form some hand-written
    clients send is accepted as well (``json_string_field``)."""
    path, body = SDK_CONTROL
    as_object = home.fill(body).replace('"{\\"power_switch\\":1}"', '{"power_switch":1}')
    assert '"Data":{"power_switch":1}' in as_object
    async with device_for(home.server, home.dev1) as dev:
        await wait_online(home.server, home.dev1)
        doc = await home.post(home.fill(path), as_object)
        assert sdk_result(doc) == {"RequestId": "NhZ6fVeF_9"}
        assert (await dev.down("property"))["params"] == {"power_switch": 1}


@pytest.mark.parametrize("request_id", SHORTIDS)
async def test_shortid_request_ids_are_echoed_verbatim(home: Home, request_id: str) -> None:
    path, body = SDK_GET_USER
    replayed = home.fill(body).replace('"@hE4xBVr3"', json.dumps(request_id))
    ok = await home.post(path, replayed)
    assert sdk_result(ok)["RequestId"] == request_id
    bad = await home.post(path, replayed.replace(home.token, "ACCESS_TOKEN_ABC"))
    assert bad["data"]["RequestId"] == request_id


@pytest.mark.parametrize("region", ["1", "ap-guangzhou"])
async def test_region_id_as_string_is_tolerated(home: Home, region: str) -> None:
    """Android/iOS send ``RegionId`` from their region config, string or int (§1.2)."""
    path, body = SDK_GET_USER
    doc = await home.post(path, home.fill(body).replace('"RegionId":1', f'"RegionId":"{region}"'))
    assert sdk_result(doc)["Data"]["UserID"] == home.user_id


# --- Android / iOS over HTTP (§1.1, §1.2) ----------------------------------------------------


def android_token_body(token: str, action: str, **params: Any) -> bytes:
    """Android's tokenapi body: the common params plus the extras it adds (§1.2)."""
    body = {
        "Platform": "android",
        "Agent": "android",
        "lang": "zh-CN",
        "RegionId": "1",
        **params,
        "Action": action,
        "RequestId": str(uuid.uuid4()),
        "AccessToken": token,
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


@pytest.mark.parametrize("path", [TOKENAPI + "/", TOKENAPI])
async def test_android_tokenapi_trailing_slash_and_charset(home: Home, path: str) -> None:
    raw = android_token_body(home.token, "AppGetUser")
    data = sdk_result(await home.post(path, raw, ANDROID_JSON))
    assert data["RequestId"] == json.loads(raw)["RequestId"]
    assert data["Data"]["UserID"] == home.user_id
    raw = android_token_body(
        home.token, "AppGetFamilyDeviceList", FamilyId=home.family_id, RoomId="", Offset=0, Limit=50
    )
    data = sdk_result(await home.post(path, raw, ANDROID_JSON))
    assert data["Total"] == 2


async def test_android_control_with_product_id_and_device_name(home: Home) -> None:
    async with device_for(home.server, home.dev2) as dev:
        await wait_online(home.server, home.dev2)
        raw = android_token_body(
            home.token,
            "AppControlDeviceData",
            ProductId=home.pid,
            DeviceName="dev2",
            Data='{"power_switch":0,"brightness":7}',
        )
        sdk_result(await home.post(TOKENAPI + "/", raw, ANDROID_JSON))
        control = await dev.down("property")
    assert control["params"] == {"power_switch": 0, "brightness": 7}


# --- the signed appapi (§1.3) ----------------------------------------------------------------

EXAMPLE_SECRET = "testAppSecret"  # the spec's worked example
EXAMPLE_STRING = (
    "Action=AppGetToken&AppKey=testAppKey&CountryCode=86&Nonce=1234&Password=p@ss word"
    "&PhoneNumber=13800000000&RequestId=req-1&Timestamp=1700000000&Type=phone"
)
EXAMPLE_SIGNATURE = "9njMPUtyVcCxMvv5psgfwF3ty9w="
PASSWORD = "p@ss word"  # the spec's worked example


def js(value: object) -> str:
    """``${value}`` for the scalar JSON values clients sign."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def canonical(params: Mapping[str, object], *, drop_empty: bool) -> str:
    """§1.3 written out independently of the server: sorted by code unit, no encoding.
    ``drop_empty`` is MPDEMO's filter: ``v !== undefined && !!String(v)`` (``null`` stays,
    as ``"null"``)."""
    pairs = [(k, js(v)) for k, v in params.items() if k != "Signature"]
    if drop_empty:
        pairs = [(k, v) for k, v in pairs if v != ""]
    pairs.sort(key=lambda kv: kv[0].encode("utf-16-be"))
    return "&".join(f"{k}={v}" for k, v in pairs)


def hmac_b64(secret: str, text: str) -> str:
    digest = hmac.new(secret.encode(), text.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def example_params(app_key: str, timestamp: int, nonce: int, **extra: object) -> dict[str, object]:
    """The worked example's parameters, in the order a client would build them."""
    return {
        "Action": "AppGetToken",
        "RequestId": "req-1",
        "AppKey": app_key,
        "Timestamp": timestamp,
        "Nonce": nonce,
        "Type": "phone",
        "CountryCode": "86",
        "PhoneNumber": "13800000000",
        "Password": PASSWORD,
        **extra,
    }


def test_worked_example_signature() -> None:
    params = example_params("testAppKey", 1_700_000_000, 1234)
    assert canonical(params, drop_empty=False) == EXAMPLE_STRING
    assert hmac_b64(EXAMPLE_SECRET, EXAMPLE_STRING) == EXAMPLE_SIGNATURE
    assert sign(EXAMPLE_SECRET, params) == EXAMPLE_SIGNATURE


@pytest.fixture
async def phone_user(home: Home) -> str:
    """A user of the home's app with the worked example's phone number and password."""
    hashed = await home.server.accounts.passwords.hash(PASSWORD)
    user = await home.server.users.create(
        home.creds.app_id, country_code="86", phone="13800000000", password_hash=hashed
    )
    return user.user_id


async def login_reply(
    home: Home, body: dict[str, object], path: str = APPAPI, content_type: str = JSON
) -> dict[str, Any]:
    raw = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return await home.post(path, raw, content_type)


async def assert_logged_in(
    home: Home, doc: dict[str, Any], user_id: str, request_id: str = "req-1"
) -> None:
    data = sdk_result(doc)
    assert set(data) == {"RequestId", "Data"}
    assert data["RequestId"] == request_id
    assert set(data["Data"]) == {"Token", "ExpireAt"}
    assert type(data["Data"]["ExpireAt"]) is int and data["Data"]["ExpireAt"] > time.time()
    me = sdk_result(
        await home.post(
            TOKENAPI,
            json.dumps(
                {"Action": "AppGetUser", "RequestId": "x", "AccessToken": data["Data"]["Token"]}
            ),
        )
    )
    assert me["Data"]["UserID"] == user_id
    assert (me["Data"]["CountryCode"], me["Data"]["PhoneNumber"]) == ("86", "13800000000")


async def test_worked_example_re_signed_with_the_apps_secret(home: Home, phone_user: str) -> None:
    """The §1.3 body with this app's AppKey/AppSecret and a current Timestamp (the example's
    1700000000 is far outside any replay window)."""
    body = example_params(home.creds.app_key, int(time.time()), 1234)
    body["Signature"] = hmac_b64(home.creds.app_secret, canonical(body, drop_empty=False))
    await assert_logged_in(home, await login_reply(home, body), phone_user)


async def test_drop_empty_canonicalisation_is_accepted(home: Home, phone_user: str) -> None:
    """MPDEMO/P2PDOC leave ``""`` values out of the signed string but still send them."""
    now = int(time.time())
    body = example_params(home.creds.app_key, now, 1235, lang="", Agent="", Platform="weapp")
    text = canonical(body, drop_empty=True)
    assert "lang=" not in text and "Agent=" not in text and "Platform=weapp" in text
    body["Signature"] = hmac_b64(home.creds.app_secret, text)
    await assert_logged_in(home, await login_reply(home, body), phone_user)
    # The same body signed the NODESDK/Android/iOS way (empties kept) is accepted too.
    body = example_params(home.creds.app_key, now, 1236, lang="", Agent="", Platform="weapp")
    body["Signature"] = hmac_b64(home.creds.app_secret, canonical(body, drop_empty=False))
    await assert_logged_in(home, await login_reply(home, body), phone_user)


async def test_drop_empty_keeps_null_as_the_string_null(home: Home, phone_user: str) -> None:
    """MPDEMO's filter is ``v !== undefined && !!String(v)``: ``String(null)`` is ``"null"``,
    so a ``null`` value stays in the signed string while ``""`` values go (§1.3)."""
    body = example_params(home.creds.app_key, int(time.time()), 1237, lang="", Agent=None)
    text = canonical(body, drop_empty=True)
    assert "Agent=null" in text and "lang=" not in text
    body["Signature"] = hmac_b64(home.creds.app_secret, text)
    await assert_logged_in(home, await login_reply(home, body), phone_user)


async def test_url_encoded_signing_is_refused(home: Home, phone_user: str) -> None:
    """No URL-encoding (§1.3): a signature over ``p%40ss+word`` does not match."""
    body = example_params(home.creds.app_key, int(time.time()), 1238)
    text = canonical(body, drop_empty=False).replace(PASSWORD, "p%40ss+word")
    body["Signature"] = hmac_b64(home.creds.app_secret, text)
    doc = await login_reply(home, body)
    assert sdk_rejection(doc)["code"] == "AuthFailure.SignatureFailure"
    assert doc["data"]["RequestId"] == "req-1"


@pytest.mark.parametrize("action_in_body", [True, False])
async def test_android_and_ios_appapi_action_path(
    home: Home, phone_user: str, action_in_body: bool
) -> None:
    """Android/iOS post to ``…/appapi/<Action>`` with the extras they add, all signed; the
    action is taken from the body, else from the path (§1.1, §1.5)."""
    body: dict[str, object] = {
        "Action": "AppGetToken",
        "RequestId": str(uuid.uuid4()),
        "AppKey": home.creds.app_key,
        "Timestamp": int(time.time()),
        "Nonce": 987_654,
        "Platform": "android",
        "Agent": "android",
        "lang": "zh-CN",
        "RegionId": "1",
        "Type": "phone",
        "CountryCode": "86",
        "PhoneNumber": "13800000000",
        "Password": PASSWORD,
    }
    if not action_in_body:
        del body["Action"]
    body["Signature"] = hmac_b64(home.creds.app_secret, canonical(body, drop_empty=False))
    doc = await login_reply(home, body, APPAPI + "/AppGetToken", ANDROID_JSON)
    await assert_logged_in(home, doc, phone_user, str(body["RequestId"]))


async def test_appapi_trailing_slash(home: Home, phone_user: str) -> None:
    body = example_params(home.creds.app_key, int(time.time()), 1239)
    body["Signature"] = hmac_b64(home.creds.app_secret, canonical(body, drop_empty=False))
    await assert_logged_in(home, await login_reply(home, body, APPAPI + "/"), phone_user)


# --- WebSocket (§3.2, §3.3, §4.4) ------------------------------------------------------------

WS_PATHS = ["/ws/explorer?uin=u_123&cId=PuyD5y%40VYe", "/iotstudio_v2_weapp_1?uin=u_123"]


def ws_url(home: Home, path: str) -> str:
    assert home.server.endpoints is not None
    return home.server.endpoints.http_url.replace("http://", "ws://") + home.fill(path)


async def exchange(ws: ClientConnection, text: str) -> dict[str, Any]:
    await ws.send(text)
    doc: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
    return doc


def ok_reply(req_id: object, data: dict[str, Any]) -> dict[str, Any]:
    """§3.3: ``error``/``error_message`` empty, ``reqId`` echoed with its JSON type."""
    return {"error": "", "error_message": "", "data": data, "reqId": req_id}


def assert_same_types(reply: dict[str, Any], expected: dict[str, Any]) -> None:
    assert reply == expected
    assert type(reply["reqId"]) is type(expected["reqId"])  # 1 must not come back as "1"


async def wait_online(server: Ivcloud, p: Provisioned) -> None:
    async def online() -> bool:
        rec = await server.devices.find(p.product_id, p.device_name)
        return rec is not None and rec.online

    await poll(online, lambda v: v)


async def assert_report_pushed(ws: ClientConnection, dev: RawDevice, device_id: str) -> None:
    """A report reaches the socket in the shape the SDK decodes (§3.4)."""
    ts = int(time.time() * 1000)
    sent = {
        "method": "report",
        "clientToken": "r-1",
        "timestamp": ts,
        "params": {"power_switch": 1, "brightness": 3},
    }
    assert (await dev.request("property", sent))["code"] == 0
    frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert (frame["push"], frame["action"]) == (True, "DeviceChange")
    params = frame["params"]
    assert (params["Type"], params["SubType"], params["DeviceId"]) == (
        "Property",
        "Report",
        device_id,
    )
    # The SDK: base64-decode, strip NUL bytes, JSON.parse; `new Date(Time)`.
    payload = base64.b64decode(params["Payload"]).replace(b"\0", b"")
    assert json.loads(payload) == sent
    assert abs(datetime.fromisoformat(params["Time"]).timestamp() - ts / 1000) < 1


@pytest.mark.parametrize("path", WS_PATHS)
async def test_sdk_session(home: Home, path: str) -> None:
    """The SDK's session as recorded (§4.4): ActivePush, heartbeat, pushes, close 1005."""
    ids = [f"{home.pid}/dev1", f"{home.pid}/dev2"]
    async with device_for(home.server, home.dev1) as dev:
        await wait_online(home.server, home.dev1)
        ws = await connect(ws_url(home, path))
        try:
            assert_same_types(
                await exchange(ws, home.fill(SDK_ACTIVE_PUSH)),
                ok_reply("imDfxQEbB9", {"deviceIds": ids}),
            )
            assert_same_types(
                await exchange(ws, home.fill(SDK_HEARTBEAT)),
                ok_reply("eXS69XMJVQ", {"Response": {"RequestId": "eXS69XMJVQ"}}),
            )
            assert home.server.push.subscribers(ids[0]) == 1
            await assert_report_pushed(ws, dev, ids[0])
        finally:
            await ws.close(code=None)  # type: ignore[arg-type]  # no status: 1005, as the SDK
    await poll(_subscribers(home, ids[0]), lambda n: n == 0)


def _subscribers(home: Home, device_id: str) -> Any:
    async def count() -> int:
        return home.server.push.subscribers(device_id)

    return count


@pytest.mark.parametrize("path", WS_PATHS)
async def test_android_frames(home: Home, path: str) -> None:
    """Android: int reqIds (1 for Hello and ActivePush, 2 for the heartbeat), ``AppKey`` in
    ActivePush and next to the heartbeat's ``Action``, ``Platform:"Android"`` (§3.2)."""
    ids = [f"{home.pid}/dev1", f"{home.pid}/dev2"]
    async with connect(ws_url(home, path)) as ws:
        hello = await exchange(ws, ANDROID_HELLO)
        assert set(hello) == {"error", "error_message", "data", "reqId"}
        assert_same_types(hello, ok_reply(1, {"result": hello["data"]["result"]}))
        active = {
            "action": "ActivePush",
            "reqId": 1,
            "params": {"AppKey": home.creds.app_key, "AccessToken": home.token, "DeviceIds": ids},
        }
        assert_same_types(await exchange(ws, json.dumps(active)), ok_reply(1, {"deviceIds": ids}))
        beat = {
            "action": "YunApi",
            "reqId": 2,
            "params": {
                "Action": "AppDeviceTraceHeartBeat",
                "AppKey": home.creds.app_key,
                "ActionParams": {
                    "Platform": "Android",
                    "AccessToken": home.token,
                    "DeviceIds": ids,
                },
            },
        }
        # No RequestId sent: the documented default answers (§3.3).
        assert_same_types(
            await exchange(ws, json.dumps(beat)),
            ok_reply(2, {"Response": {"RequestId": "rest-client"}}),
        )
        assert home.server.push.subscribers(ids[1]) == 1


@pytest.mark.parametrize("path", WS_PATHS)
async def test_ios_frames(home: Home, path: str) -> None:
    """iOS: ActivePush with only ``AccessToken`` + ``DeviceIds``; the heartbeat carries
    ``AccessToken`` and ``RequestId`` in ``params`` and only ``DeviceIds`` in
    ``ActionParams`` (§3.2)."""
    ids = [f"{home.pid}/dev1"]
    async with device_for(home.server, home.dev1) as dev:
        await wait_online(home.server, home.dev1)
        async with connect(ws_url(home, path)) as ws:
            req = str(uuid.uuid4()).upper()
            active = {
                "action": "ActivePush",
                "reqId": req,
                "params": {"AccessToken": home.token, "DeviceIds": ids},
            }
            assert_same_types(
                await exchange(ws, json.dumps(active)), ok_reply(req, {"deviceIds": ids})
            )
            beat_req, request_id = str(uuid.uuid4()).upper(), str(uuid.uuid4())
            beat = {
                "action": "YunApi",
                "reqId": beat_req,
                "params": {
                    "Action": "AppDeviceTraceHeartBeat",
                    "AccessToken": home.token,
                    "RequestId": request_id,
                    "ActionParams": {"DeviceIds": ids},
                },
            }
            assert_same_types(
                await exchange(ws, json.dumps(beat)),
                ok_reply(beat_req, {"Response": {"RequestId": request_id}}),
            )
            await assert_report_pushed(ws, dev, ids[0])


@pytest.mark.parametrize("path", WS_PATHS)
async def test_sdk_active_push_with_a_stale_token(home: Home, path: str) -> None:
    """A failed ActivePush: the documented error reply and an empty ``deviceIds`` (§3.3)."""
    async with connect(ws_url(home, path)) as ws:
        stale = SDK_ACTIVE_PUSH.replace('"PID123/', f'"{home.pid}/')  # token left unfilled
        reply = await exchange(ws, stale)
        assert reply["error"] == "" and reply["error_message"] == ""
        assert reply["reqId"] == "imDfxQEbB9"
        assert reply["data"]["deviceIds"] == []
        assert reply["data"]["Response"]["Error"]["Code"] == (
            "InvalidParameterValue.InvalidAccessToken"
        )
        assert isinstance(reply["data"]["Response"]["Error"]["Message"], str)
        assert isinstance(reply["data"]["Response"]["RequestId"], str)
        # The documented generic failure shape for a frame that is not understood.
        broken = await exchange(ws, '{"reqId":"imDfxQEbB9"}')
        assert set(broken) == {"error", "error_message", "data", "reqId"}
        assert (broken["error"], broken["data"], broken["reqId"]) == ("-1", {}, "imDfxQEbB9")
        assert isinstance(broken["error_message"], str) and broken["error_message"]
