"""App API calling convention (spec §1): URL variants, envelope, signature, replay,
tokens — over real HTTP."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from ivcloud.app import Ivcloud
from ivcloud.protocol.appapi import sign
from tests.appclient import AppApiClient, AppCreds, create_app, error_code, make_user, ok_data


@pytest.fixture
async def creds(admin: httpx.AsyncClient) -> AppCreds:
    return await create_app(admin)


@pytest.fixture
def client(appclient: httpx.AsyncClient, creds: AppCreds) -> AppApiClient:
    return AppApiClient(appclient, creds)


def signed(creds: AppCreds, action: str, **extra: object) -> dict[str, object]:
    body: dict[str, object] = {
        "Action": action,
        "RequestId": "r-1",
        "AppKey": creds.app_key,
        "Timestamp": int(time.time()),
        "Nonce": time.time_ns() % 10**9,
        **extra,
    }
    body["Signature"] = sign(creds.app_secret, body)
    return body


@pytest.mark.parametrize(
    "path",
    [
        "/api/exploreropen/tokenapi",
        "/api/exploreropen/tokenapi/",
        "/api/exploreropen/tokenapi?uin=u_1&cmd=AppGetUser",
    ],
)
async def test_tokenapi_url_variants_and_unknown_token(client: AppApiClient, path: str) -> None:
    doc = await client.raw(
        path, {"Action": "AppGetUser", "RequestId": "abc", "AccessToken": "nope"}
    )
    assert doc == {
        "code": -1000,
        "msg": "AccessToken is invalid or expired",
        "data": {
            "Error": {
                "Code": "InvalidParameterValue.InvalidAccessToken",
                "Message": "AccessToken is invalid or expired",
            },
            "RequestId": "abc",
        },
    }


async def test_unknown_action_and_bad_bodies(client: AppApiClient, creds: AppCreds) -> None:
    assert error_code(await client.raw("/api/exploreropen/tokenapi", b"{nope")) == (
        "InvalidParameterValue.InvalidJSON"
    )
    assert error_code(await client.raw("/api/exploreropen/tokenapi", b"[1]")) == (
        "InvalidParameterValue.InvalidJSON"
    )
    doc = await client.raw("/api/exploreropen/appapi", signed(creds, "NoSuchAction"))
    assert error_code(doc) == "InvalidAction"
    assert doc["data"]["RequestId"] == "r-1"


async def test_signature_checks(client: AppApiClient, creds: AppCreds) -> None:
    base = "/api/exploreropen/appapi"
    # A valid signature on an action that needs one passes the gate (then the action runs
    # or, with no such action registered yet, says InvalidAction — never an auth error).
    body = signed(creds, "AppGetToken", Type="phone")
    assert error_code(await client.raw(base, body)) not in (
        "AuthFailure.SignatureFailure",
        "AuthFailure.SecretIdNotFound",
    )
    tampered = dict(signed(creds, "AppGetToken", Type="phone"), Type="email")
    assert error_code(await client.raw(base, tampered)) == "AuthFailure.SignatureFailure"
    unknown = dict(signed(creds, "AppGetToken"), AppKey="unknown")
    assert error_code(await client.raw(base, unknown)) == "AuthFailure.SecretIdNotFound"
    old = signed(creds, "AppGetToken", Timestamp=int(time.time()) - 400)
    assert error_code(await client.raw(base, old)) == "AuthFailure.SignatureExpire"
    replay = signed(creds, "AppGetToken", Nonce=424242)
    first = await client.raw(base + "/AppGetToken", replay)
    assert error_code(first) != "AuthFailure.ReplayAttack"
    assert error_code(await client.raw(base + "/AppGetToken", replay)) == (
        "AuthFailure.ReplayAttack"
    )


async def test_token_call_reaches_the_user(
    server: Ivcloud, client: AppApiClient, creds: AppCreds
) -> None:
    user_id, token = await make_user(server, creds, "alice")
    doc = await client.tokenapi(token, "AppGetUser")
    data = ok_data(doc)
    assert data["RequestId"] == "req-AppGetUser"
    assert data["Data"]["UserID"] == user_id
    assert data["Data"]["NickName"] == "alice"


async def test_never_500(client: AppApiClient) -> None:
    for body in (
        b"",
        b"null",
        json.dumps({"Action": 5}).encode(),
        json.dumps({"Action": "AppGetUser", "AccessToken": ["x"]}).encode(),
    ):
        doc = await client.raw("/api/exploreropen/tokenapi", body)
        assert doc["code"] == -1000
