"""Fuzz the App API over real HTTP (hypothesis): random Actions with random, wrongly typed,
nested and huge parameters, on every URL variant.  Whatever arrives, the answer is HTTP 200
with the ``{"code","msg","data"}`` envelope, ``code`` 0 or -1000, and never ``InternalError``
(app-api.md §1.4, §1.5).  The WebSocket gets the same treatment with random frames (§3.3).

The server runs as a real ``ivcloud serve`` process (the test bodies are synchronous, so they
cannot share an event loop with an in-process server).  It holds an app, a product with a
thing model, a bound device ``d1`` and an unbound ``d2``, and a WeChat user whose family
holds ``d1``; the real ids are mixed into the random parameters so the fuzz gets past the
parameter checks into the actions."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from ivcloud.api.appapi.actions import build_registry
from ivcloud.protocol.appapi import sign
from ivcloud.protocol.push import SERVER_ERROR_MESSAGE
from tests.api.serve_support import serve
from tests.models import SENSOR_MODEL
from tests.rawdevice import RawDevice

BASE = "/api/exploreropen"
SIGN_ACTIONS = build_registry().names("sign")
TOKEN_ACTIONS = build_registry().names("token")
ALL_ACTIONS = build_registry().names()
OPEN_ID = "fuzz-openid"
VALID_TOKEN = "<the user's valid token>"

FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@dataclass
class Live:
    url: str
    http: httpx.Client
    app_key: str
    app_secret: str
    pid: str
    secret: str  # d1's DeviceSecret
    mqtt_host: str
    mqtt_port: int
    token: str = ""
    family_id: str = ""

    @property
    def device_id(self) -> str:
        return f"{self.pid}/d1"

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws/explorer?uin=fuzz&cId=x"


# --- talking to the server -------------------------------------------------------------------

_nonce = itertools.count(int(time.time()))


def envelope(resp: httpx.Response, sent: bytes) -> dict[str, Any]:
    """The invariants every answer keeps; the failure message carries the request."""
    where = f"{resp.request.url.path}?{resp.request.url.query.decode()} body={sent[:600]!r}"
    assert resp.status_code == 200, f"HTTP {resp.status_code} for {where}: {resp.text[:300]}"
    doc = strict_json(resp.text)
    assert isinstance(doc, dict) and set(doc) == {"code", "msg", "data"}, (where, doc)
    assert type(doc["code"]) is int and doc["code"] in (0, -1000), (where, doc)
    assert isinstance(doc["msg"], str) and isinstance(doc["data"], dict), (where, doc)
    assert isinstance(doc["data"].get("RequestId"), str), (where, doc)
    if doc["code"] == 0:
        assert "Error" not in doc["data"], (where, doc)
    else:
        error = doc["data"]["Error"]
        assert isinstance(error["Code"], str) and isinstance(error["Message"], str), (where, doc)
        assert error["Code"] != "InternalError", f"InternalError for {where}: {doc}"
    return doc


def _no_constants(name: str) -> None:
    raise AssertionError(f"{name} is not JSON: JS JSON.parse would throw")


def strict_json(text: str) -> Any:
    """Parsed as JS ``JSON.parse`` would: no NaN/Infinity."""
    return json.loads(text, parse_constant=_no_constants)


def post(live: Live, path: str, body: bytes) -> dict[str, Any]:
    try:
        resp = live.http.post(path, content=body, headers={"Content-Type": "application/json"})
    except httpx.TransportError as exc:  # e.g. the server reset the connection
        raise AssertionError(f"{exc!r} for {path} body={body[:600]!r}") from exc
    return envelope(resp, body)


#: The server reads at most this much of a body (``router.MAX_BODY``); beyond it there is no
#: RequestId to echo.
MAX_BODY = 256 * 1024


def assert_echoed(request_id: object, body: bytes, doc: dict[str, Any]) -> None:
    """``data.RequestId`` echoes the client's (§1.5) whenever the body could be read."""
    if isinstance(request_id, str) and len(request_id) <= 128 and len(body) <= MAX_BODY:
        # Compared as UTF-16, as a JS client sees them: Python joins an escaped surrogate
        # pair into one code point when parsing, JS keeps two code units — the same string.
        echoed = doc["data"]["RequestId"]
        assert _utf16(echoed) == _utf16(request_id), (body[:300], doc)


def _utf16(text: str) -> bytes:
    return text.encode("utf-16-le", "surrogatepass")


def signed_body(live: Live, action: str, **params: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "Action": action,
        "RequestId": "fuzz",
        "AppKey": live.app_key,
        "Timestamp": int(time.time()),
        "Nonce": next(_nonce),
        **params,
    }
    body["Signature"] = sign(live.app_secret, body)
    return body


def appapi(live: Live, action: str, **params: Any) -> dict[str, Any]:
    return post(live, BASE + "/appapi", json.dumps(signed_body(live, action, **params)).encode())


def tokenapi(live: Live, action: str, **params: Any) -> dict[str, Any]:
    body = {"Action": action, "RequestId": "fuzz", "AccessToken": live.token, **params}
    return post(live, BASE + "/tokenapi", json.dumps(body).encode())


def ok(doc: dict[str, Any]) -> dict[str, Any]:
    assert doc["code"] == 0, doc
    data: dict[str, Any] = doc["data"]
    return data


async def _report_bind_token(live: Live, token: str) -> None:
    async with RawDevice(live.mqtt_host, live.mqtt_port, live.pid, "d1", live.secret) as dev:
        reply = await dev.request(
            "service", {"method": "app_bind_token", "clientToken": "t", "params": {"token": token}}
        )
        assert reply["code"] == 0, reply


def ensure_state(live: Live) -> None:
    """Undo what a random call may have destroyed: a valid token, a family, d1 in it."""
    if tokenapi(live, "AppGetUser")["code"] != 0:
        data = ok(appapi(live, "AppGetTokenByWeiXin", WxOpenID=OPEN_ID, NickName="fuzz"))
        live.token = data["Data"]["Token"]
    listed = tokenapi(live, "AppGetFamilyDeviceList", FamilyId=live.family_id, Limit=50)
    if listed["code"] != 0:
        live.family_id = ok(tokenapi(live, "AppCreateFamily", Name="fuzz"))["Data"]["FamilyId"]
        listed = tokenapi(live, "AppGetFamilyDeviceList", FamilyId=live.family_id, Limit=50)
    if live.device_id in {d["DeviceId"] for d in ok(listed)["DeviceList"]}:
        return
    # d1 may still sit in another family of the user (moved there by a random call).
    families = ok(tokenapi(live, "AppGetFamilyList", Limit=100))["FamilyList"]
    for family in families:
        tokenapi(
            live, "AppDeleteDeviceInFamily", FamilyId=family["FamilyId"], DeviceId=live.device_id
        )
    token = ok(tokenapi(live, "AppCreateDeviceBindToken"))["Token"]
    asyncio.run(_report_bind_token(live, token))
    ok(
        tokenapi(
            live,
            "AppTokenBindDeviceFamily",
            Token=token,
            ProductId=live.pid,
            DeviceName="d1",
            FamilyId=live.family_id,
            RoomId="0",
        )
    )


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    cheap_passwords = {
        "IVCLOUD_PASSWORD_HASH_TIME_COST": "1",
        "IVCLOUD_PASSWORD_HASH_MEMORY_KIB": "8",
        "IVCLOUD_PASSWORD_HASH_PARALLELISM": "1",
    }
    with serve(tmp_path_factory.mktemp("appfuzz"), **cheap_passwords) as served:
        url, endpoints = served.url, served.endpoints
        with httpx.Client(
            base_url=url + "/api/console/v1",
            timeout=30,
            headers={"Authorization": f"Bearer {served.admin_token}"},
        ) as admin:
            resp = admin.post("/products", json={"Name": "fuzz", "Category": "watch"})
            assert resp.status_code == 201, resp.text
            pid = resp.json()["ProductId"]
            resp = admin.put(f"/products/{pid}/thing-model", json=SENSOR_MODEL)
            assert resp.status_code == 200, resp.text
            secrets = {}
            for dn in ("d1", "d2"):
                resp = admin.post(f"/products/{pid}/devices", json={"DeviceName": dn})
                assert resp.status_code == 201, resp.text
                secrets[dn] = resp.json()["DeviceSecret"]
            resp = admin.post("/apps", json={"Name": "fuzz app"})
            assert resp.status_code == 201, resp.text
            app = resp.json()
            assert admin.put(f"/apps/{app['AppId']}/products/{pid}").status_code == 200
        with httpx.Client(base_url=url, timeout=60) as http:
            state = Live(
                url,
                http,
                app["AppKey"],
                app["AppSecret"],
                pid,
                secrets["d1"],
                endpoints["mqtt_host"],
                int(endpoints["mqtt_port"]),
            )
            ensure_state(state)  # logs in, creates the family, binds d1 through MQTT
            yield state


# --- strategies ------------------------------------------------------------------------------

#: Parameter names the actions read (spec §2), so random values hit real parsers.
KNOWN_PARAMS = [
    "FamilyId",
    "DeviceId",
    "ProductId",
    "DeviceName",
    "Data",
    "Offset",
    "Limit",
    "RoomId",
    "Name",
    "Address",
    "Token",
    "ShareDeviceToken",
    "ShareToken",
    "ActionId",
    "InputParams",
    "DeviceIds",
    "ProductIds",
    "FieldName",
    "MinTime",
    "MaxTime",
    "Context",
    "Size",
    "Type",
    "StartTime",
    "EndTime",
    "EventId",
    "AliasName",
    "ToUserID",
    "MemberID",
    "RemoveUserID",
    "TokenContext",
    "NickName",
    "Avatar",
    "CountryCode",
    "PhoneNumber",
    "Email",
    "Password",
    "NewPassword",
    "VerificationCode",
    "WxOpenID",
    "Ssid",
    "TimeStamp",
    "Role",
]

#: Lone UTF-16 surrogates: JS ``JSON.stringify`` writes them as ``\\udXXX`` escapes (ES2019),
#: Python's json reads them back into ``str`` values that cannot be encoded as UTF-8.
lone_surrogates = st.sampled_from(["\udc80", "\ud800", "a\udfffb", "\ud83d", "x\ud83d\ude00\ud83d"])

scalars = st.one_of(
    st.none(),
    lone_surrogates,
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(),  # NaN and ±Infinity included: Python's json writes and reads them
    st.text(max_size=30),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
deep = st.integers(min_value=1, max_value=3000).map(lambda n: "[" * n + "]" * n)
huge = st.builds(
    lambda ch, n: ch * n,
    st.sampled_from(["x", "é", "\U0001f600", "\x00", "/", "\\", '"', "0"]),
    st.integers(min_value=200, max_value=120_000),
)


def param_values(live: Live) -> st.SearchStrategy[Any]:
    real = st.builds(lambda: live.family_id) | st.sampled_from(
        [  # the family may be replaced
            "default",
            live.device_id,
            f"{live.pid}/d2",
            live.pid,
            "d1",
            "d2",
            "0",
            "",
            " ",
            "/",
            f"{live.pid}/",
            "/d1",
            "a/b/c",
            "-1",
            "99999999999999999999",
            "1e3",
            '{"power":1}',
            '{"brightness":101}',
            '{"power":true}',
            '{"label":"123456789"}',
            "{}",
            "[]",
            "null",
            '{"nope":1}',
            '{"power":NaN}',
            "NaN",
            '{"times":2}',
            [live.device_id],
            [live.pid],
            [live.device_id] * 3,
        ]
    )
    return st.one_of(
        real,
        scalars,
        json_values,
        st.builds(json.dumps, json_values),  # a JSON *string*, as Data/InputParams are
        huge,
        deep,  # deeply nested JSON text, for the fields that hold JSON strings
    )


def random_params(live: Live) -> st.SearchStrategy[dict[str, Any]]:
    names = st.one_of(
        st.sampled_from(KNOWN_PARAMS), st.text(min_size=1, max_size=12), lone_surrogates
    )
    return st.dictionaries(names, param_values(live), max_size=6)


request_ids = st.one_of(st.just("fuzz-rid"), st.text(max_size=20), scalars, json_values)


def encode(body: dict[str, Any]) -> bytes:
    # ensure_ascii keeps lone surrogates as \\udXXX escapes; allow_nan writes NaN/Infinity,
    # both of which Python's json (the server's parser) reads back.
    return json.dumps(body).encode()


#: Actions after which the world may need repair (tokens revoked, family or device gone).
_READ_ONLY = ("AppGet", "AppList", "AppDescribe", "AppCheck", "AppFind")


def after(live: Live, action: object, doc: dict[str, Any]) -> None:
    if doc["code"] == 0 and not (isinstance(action, str) and action.startswith(_READ_ONLY)):
        ensure_state(live)


def exchange(live: Live, path: str, body: dict[str, Any], action: object) -> None:
    """POST ``body`` to ``path`` (``action``: the Action it asks for, in the body or the
    URL): the answer is the §1.5 envelope echoing the RequestId, and the shared state is put
    back if the call may have changed it."""
    raw = encode(body)
    doc = post(live, path, raw)
    assert_echoed(body.get("RequestId"), raw, doc)
    after(live, action, doc)


# --- the properties ----------------------------------------------------------------------------


def test_appapi_random_actions_and_params(live: Live) -> None:
    @given(
        action=st.sampled_from(ALL_ACTIONS) | st.text(max_size=20),
        params=random_params(live),
        request_id=request_ids,
        variant=st.sampled_from(["body", "slash", "path", "path-only", "cmd-only"]),
        signature=st.sampled_from(["valid", "valid", "valid", "bogus", "absent"]),
        timestamp=st.sampled_from(["now", "now", "now", "string", "float", "huge", "text"]),
    )
    @settings(FUZZ, max_examples=140)
    def check(
        action: str,
        params: dict[str, Any],
        request_id: object,
        variant: str,
        signature: str,
        timestamp: str,
    ) -> None:
        now = int(time.time())
        stamp: object = {
            "now": now,
            "string": str(now),
            "float": now + 0.5,
            "huge": 2**70,
            "text": "yesterday",
        }[timestamp]
        body: dict[str, Any] = {
            "Action": action,
            "RequestId": request_id,
            "AppKey": live.app_key,
            "Timestamp": stamp,
            "Nonce": next(_nonce),
            **params,
        }
        path = BASE + "/appapi"
        safe = action if isinstance(action, str) else ""
        if variant == "slash":
            path += "/"
        elif variant == "path":  # any text as a path segment ("/" would make it two)
            path += "/" + quote(safe.replace("/", ""), safe="")
        elif variant == "path-only" and safe.isalnum():
            body.pop("Action")
            path += "/" + safe
        elif variant == "cmd-only":
            body.pop("Action")
            path += "?" + urlencode({"uin": "u", "cmd": safe})
        if signature == "valid":
            body["Signature"] = sign(live.app_secret, body)
        elif signature == "bogus":
            body["Signature"] = "AAAAAAAAAAAAAAAAAAAAAAAAAAA="
        exchange(live, path, body, action)

    check()


def test_tokenapi_random_actions_and_params(live: Live) -> None:
    @given(
        action=st.sampled_from(TOKEN_ACTIONS)
        | st.sampled_from(SIGN_ACTIONS)
        | st.text(max_size=20),
        params=random_params(live),
        request_id=request_ids,
        variant=st.sampled_from(["plain", "plain", "slash", "query"]),
        access_token=st.just(VALID_TOKEN) | scalars,
    )
    @settings(FUZZ, max_examples=220)
    def check(
        action: str, params: dict[str, Any], request_id: object, variant: str, access_token: object
    ) -> None:
        token = live.token if access_token == VALID_TOKEN else access_token
        body = {"Action": action, "RequestId": request_id, **params, "AccessToken": token}
        query = "?" + urlencode({"uin": "u_1", "cmd": action})
        path = BASE + "/tokenapi" + {"plain": "", "slash": "/", "query": query}[variant]
        exchange(live, path, body, action)

    check()


def test_random_bytes_never_yield_a_non_200(live: Live) -> None:
    @given(
        body=st.binary(max_size=3000) | huge.map(lambda s: s.encode("utf-8", "surrogatepass")),
        path=st.sampled_from(
            [
                BASE + "/appapi",
                BASE + "/appapi/AppGetToken",
                BASE + "/tokenapi",
                BASE + "/tokenapi/?cmd=AppGetUser",
            ]
        ),
        content_type=st.sampled_from(
            [
                "application/json",
                "text/plain",
                "application/x-www-form-urlencoded",
                "application/json;charset=UTF-8",
            ]
        ),
    )
    @settings(FUZZ, max_examples=60)
    def check(body: bytes, path: str, content_type: str) -> None:
        resp = live.http.post(path, content=body, headers={"Content-Type": content_type})
        doc = envelope(resp, body)
        assert doc["code"] == -1000, doc

    check()


def test_websocket_random_frames_always_get_one_reply(live: Live) -> None:
    """Each text frame gets exactly one reply of the §3.3 shape; the generic ``-1`` failure
    with the documented message means an exception inside the server."""
    frames = st.fixed_dictionaries(
        {},
        optional={
            "action": st.sampled_from(["ActivePush", "YunApi", "Hello"]) | json_values,
            "reqId": st.one_of(
                st.text(max_size=12), st.integers(), lone_surrogates, st.floats(), json_values
            ),
            "params": st.one_of(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "AccessToken": st.sampled_from([live.token, "", "nope"])
                        | lone_surrogates
                        | json_values,
                        "DeviceIds": st.lists(
                            st.sampled_from([live.device_id, "x/y", "/", ""]) | json_values,
                            max_size=4,
                        )
                        | json_values,
                        "Action": st.sampled_from(["AppDeviceTraceHeartBeat", "AppGetUser"])
                        | json_values,
                        "ActionParams": random_params(live) | json_values,
                        "RequestId": json_values,
                    },
                ),
                json_values,
            ),
        },
    ).map(json.dumps) | st.text(max_size=50)

    @given(frame=frames)
    @settings(FUZZ, max_examples=80)
    def check(frame: str) -> None:
        with ws_connect(live.ws_url, max_size=None) as ws:  # one per example: self-contained
            ws.send(frame)
            try:
                text = ws.recv(timeout=10)
            except ConnectionClosed as exc:
                raise AssertionError(f"connection dropped ({exc}) after frame {frame!r}") from exc
        reply = strict_json(str(text))
        assert set(reply) == {"error", "error_message", "data", "reqId"}, (frame, reply)
        assert reply["error"] in ("", "-1"), (frame, reply)
        assert isinstance(reply["data"], dict), (frame, reply)
        assert reply["error_message"] != SERVER_ERROR_MESSAGE, (frame, reply)
        data_error = reply["data"].get("Response", {}).get("Error", {})
        assert data_error.get("Code") != "InternalError", (frame, reply)

    check()


# --- what the fuzz found, pinned as plain examples ------------------------------------------
# A lone surrogate is legal in a JSON string escape (``"\udc80"``; JS ``JSON.stringify`` of such
# a string writes exactly that) and Python's json reads it into a ``str`` that cannot be
# encoded as UTF-8: the server must refuse it as a parameter error, not crash.

SURROGATE = "\udc80"

#: (api, Action, the param set to a lone surrogate, the error the client should get)
SURROGATE_CASES = [
    ("tokenapi", "AppGetUser", "RequestId", None),
    ("appapi", "AppGetTokenByWeiXin", "RequestId", None),
    ("tokenapi", "AppGetUser", "AccessToken", "InvalidParameterValue.InvalidAccessToken"),
    ("appapi", "AppGetTokenByWeiXin", "AppKey", "AuthFailure.SecretIdNotFound"),
    ("appapi", "AppGetTokenByWeiXin", "WxOpenID", None),
    ("tokenapi", "AppCreateFamily", "Name", None),
    ("tokenapi", "AppGetFamilyDeviceList", "FamilyId", None),
    ("tokenapi", "AppUpdateUser", "NickName", None),
    ("tokenapi", "AppGetDeviceBindTokenState", "Token", None),
]


@pytest.mark.parametrize(
    ("api", "action", "param", "expected"),
    SURROGATE_CASES,
    ids=[f"{a}-{b}-{c}" for a, b, c, _ in SURROGATE_CASES],
)
def test_lone_surrogate_in_a_string_param(
    live: Live, api: str, action: str, param: str, expected: str | None
) -> None:
    ensure_state(live)
    params: dict[str, Any] = {
        "WxOpenID": "fuzz-other",
        "Name": "n",
        "FamilyId": live.family_id,
        "NickName": "n",
        "Token": "0" * 32,
    }
    if api == "tokenapi":
        body: dict[str, Any] = {
            "Action": action,
            "RequestId": "rid",
            "AccessToken": live.token,
            **params,
        }
        body[param] = SURROGATE
    else:
        body = signed_body(live, action, **params)
        body[param] = SURROGATE
        if param != "AppKey":
            body["Signature"] = sign(live.app_secret, body)
    raw = encode(body)
    assert b"\\udc80" in raw
    doc = post(live, f"{BASE}/{api}", raw)  # 200, envelope, no InternalError
    assert doc["code"] == -1000, doc
    if expected is not None:
        assert doc["data"]["Error"]["Code"] == expected, doc
    if param != "RequestId":
        assert doc["data"]["RequestId"] == body["RequestId"], doc


WS_CASES = [
    '{"reqId":"\\udc80"}',
    '{"action":"Hello","reqId":"\\udc80"}',
    '{"action":"ActivePush","reqId":"a","params":{"AccessToken":"\\udc80","DeviceIds":[]}}',
    '{"action":"YunApi","reqId":"a","params":{"Action":"AppDeviceTraceHeartBeat",'
    '"ActionParams":{"AccessToken":"\\udc80"}}}',
    '{"action":"Hello","reqId":NaN}',
]


@pytest.mark.parametrize("frame", WS_CASES)
def test_websocket_odd_frames_get_a_json_reply(live: Live, frame: str) -> None:
    """Each gets one reply that JS ``JSON.parse`` reads, and not the generic failure that
    stands for an exception inside the server (§3.3)."""
    with ws_connect(live.ws_url) as ws:
        ws.send(frame)
        try:
            text = str(ws.recv(timeout=10))
        except ConnectionClosed as exc:
            raise AssertionError(f"connection dropped ({exc}) after frame {frame!r}") from exc
    reply = strict_json(text)
    assert set(reply) == {"error", "error_message", "data", "reqId"}, reply
    assert reply["error_message"] != SERVER_ERROR_MESSAGE, (frame, reply)
