"""AppSecureAddDeviceInFamily (bind by scanning the device's code) and
AppUpdateUserByWeiXin, over real HTTP, each with its error codes and attacks."""

from __future__ import annotations

import time

import httpx

from ivcloud.app import Ivcloud
from ivcloud.protocol.bind_qr import make_signature, signature_from_scan
from tests.appclient import AppApiClient, create_app, error_code, make_user, ok_data
from tests.helpers import provision_custom
from tests.models import SENSOR_MODEL
from tests.rawdevice import device_for

SIG_FAILURE = "InvalidParameterValue.SignatureFailure"


async def test_scan_to_bind(
    server: Ivcloud, admin: httpx.AsyncClient, appclient: httpx.AsyncClient
) -> None:
    cam = await provision_custom(admin, SENSOR_MODEL, "cam1")
    creds = await create_app(admin, cam.product_id)
    client = AppApiClient(appclient, creds)
    _, alice = await make_user(server, creds, "alice")
    _, bob = await make_user(server, creds, "bob")
    fam = ok_data(await client.tokenapi(alice, "AppCreateFamily", Name="home"))["Data"]["FamilyId"]
    bob_fam = ok_data(await client.tokenapi(bob, "AppCreateFamily", Name="b"))["Data"]["FamilyId"]

    resp = await admin.post(f"/products/{cam.product_id}/devices/cam1/bind-code", json={})
    assert resp.status_code == 200, resp.text
    code = resp.json()
    assert code["ExpireAt"] > time.time()
    signature = signature_from_scan(code["QRText"])  # what the app reads from the QR
    assert signature == code["DeviceSignature"]

    async def add(token: str, family: str, sig: str) -> dict[str, object]:
        return await client.tokenapi(
            token, "AppSecureAddDeviceInFamily", FamilyId=family, RoomId="", DeviceSignature=sig
        )

    # Another user's family: refused before the code is even looked at.
    assert error_code(await add(bob, fam, signature)) == "InvalidParameterValue.NoPermission"
    # A tampered, foreign-key or unknown-device code: one answer for all.
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    assert error_code(await add(alice, fam, flipped)) == SIG_FAILURE
    assert error_code(await add(alice, fam, "not a code")) == SIG_FAILURE
    ghost = make_signature(cam.product_id, "ghost", cam.secret, 0)
    assert error_code(await add(alice, fam, ghost)) == SIG_FAILURE
    expired = make_signature(cam.product_id, "cam1", cam.secret, int(time.time()) - 5)
    assert error_code(await add(alice, fam, expired)) == "InvalidParameterValue.TokenIsExpire"

    async with device_for(server, cam) as device:
        data = ok_data(await add(alice, fam, signature))
        notice = await device.next("$thing/down/service/{p}/{d}")
    assert notice["method"] == "bind_device"
    assert data["AppDeviceInfo"] == data["Data"]
    assert data["Data"]["DeviceId"] == f"{cam.product_id}/cam1"
    listed = ok_data(await client.tokenapi(alice, "AppGetFamilyDeviceList", FamilyId=fam))
    assert listed["DeviceList"] == [data["Data"]]
    # Bound now: the same code cannot move it into Bob's family.
    assert error_code(await add(bob, bob_fam, signature)) == "ResourceInUse"


async def test_code_of_a_product_not_linked_to_the_app(
    server: Ivcloud, admin: httpx.AsyncClient, appclient: httpx.AsyncClient
) -> None:
    cam = await provision_custom(admin, SENSOR_MODEL, "cam1")
    creds = await create_app(admin)  # no product linked
    client = AppApiClient(appclient, creds)
    _, alice = await make_user(server, creds, "alice")
    fam = ok_data(await client.tokenapi(alice, "AppCreateFamily", Name="home"))["Data"]["FamilyId"]
    sig = make_signature(cam.product_id, "cam1", cam.secret, 0)
    reply = await client.tokenapi(
        alice, "AppSecureAddDeviceInFamily", FamilyId=fam, DeviceSignature=sig
    )
    assert error_code(reply) == "UnauthorizedOperation.APPNoPermissionToStudioProduct"


async def test_bind_wechat_to_an_account(
    server: Ivcloud, admin: httpx.AsyncClient, appclient: httpx.AsyncClient
) -> None:
    creds = await create_app(admin)
    client = AppApiClient(appclient, creds)
    alice_id, alice = await make_user(server, creds, "alice")
    _, bob = await make_user(server, creds, "bob")
    data = ok_data(await client.tokenapi(alice, "AppUpdateUserByWeiXin", WxOpenID="oWx-alice"))
    assert (data["Data"]["WxOpenID"], data["Data"]["HasWxOpenID"]) == ("oWx-alice", 1)
    # The next WeChat login lands in Alice's account.
    token = ok_data(await client.appapi("AppGetTokenByWeiXin", WxOpenID="oWx-alice"))
    me = ok_data(await client.tokenapi(token["Data"]["Token"], "AppGetUser"))
    assert me["Data"]["UserID"] == alice_id
    taken = await client.tokenapi(bob, "AppUpdateUserByWeiXin", WxOpenID="oWx-alice")
    assert error_code(taken) == "InvalidParameterValue.UserAlreadyExists"
    raw_code = await client.tokenapi(bob, "AppUpdateUserByWeiXin", code="wx-code", busi="x")
    assert error_code(raw_code) == "InvalidParameterValue"
    missing = await client.tokenapi(bob, "AppUpdateUserByWeiXin")
    assert error_code(missing) == "ErrorRequiredParamNotFound"
