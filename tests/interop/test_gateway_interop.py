"""Interop: the official Python device SDK's gateway (``tencent-iot-device`` 1.0.0) against a
real ivcloud — bind a sub-device with the SDK's own signature, bring it online, report as the
sub-device through the gateway, receive a console control and an App API ``change`` for it.

Same set-up as ``test_tencent_sdk.py`` (separate venv, subprocess, JSON lines); the driver is
``gateway_driver.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from ivcloud.app import Ivcloud
from tests.appclient import AppApiClient, create_app, make_user, ok_data
from tests.gateway_kit import device_doc, provision_gateway, provision_subs
from tests.helpers import Provisioned, poll
from tests.interop.test_tencent_sdk import base_cfg, run_driver

pytestmark = pytest.mark.interop

DRIVER = Path(__file__).with_name("gateway_driver.py")
REPORT = {"power_switch": 1, "brightness": 42, "temperature": 21.5}
CONTROL = {"brightness": 77}


def _cfg(server: Ivcloud, gw: Provisioned, sub: Provisioned) -> dict[str, Any]:
    sub_cfg = {"product_id": sub.product_id, "device_name": sub.device_name, "secret": sub.secret}
    return {**base_cfg(server, gw.product_id, gw.device_name, gw.secret), "sub": sub_cfg}


async def test_official_sdk_gateway_binds_reports_and_is_controlled(
    server: Ivcloud, admin: httpx.AsyncClient, appclient: httpx.AsyncClient, tmp_path: Path
) -> None:
    gw = await provision_gateway(admin)
    sub, other = await provision_subs(admin, "sub1", "sub2")
    resp = await admin.get(f"/products/{sub.product_id}/thing-model")
    assert resp.status_code == 200, resp.text
    # The App API side: the gateway sits in Alice's family.
    creds = await create_app(admin, gw.product_id, sub.product_id)
    user_id, token = await make_user(server, creds, "alice")
    user = await server.users.get(user_id)
    family_id = await server.families.create_family(user, "home")
    gw_rec = await server.devices.find(gw.product_id, gw.device_name)
    assert gw_rec is not None
    await server.families.bind_device(user, family_id, "0", gw_rec)
    app = AppApiClient(appclient, creds)

    cfg = _cfg(server, gw, sub)
    cfg["thing_model"] = resp.json()
    cfg["steps"] = [
        {"do": "gateway_init"},
        {"do": "bind", "label": "wrong_secret", "device_name": other.device_name},
        {"do": "bind", "label": "ok"},
        {"do": "describe"},
        {"do": "wait_gateway_msg", "type": "change"},
        {"do": "online"},
        {"do": "as_sub"},
        {"do": "subscribe"},
        {"do": "template_setup"},
        {"do": "report", "label": "valid", "params": REPORT},
        {"do": "report", "label": "invalid", "params": {"brightness": 101}},
        {"do": "wait_control", "code": 0, "status": "ok"},
        {"do": "offline"},
        {"do": "unbind"},
    ]
    async with run_driver(cfg, tmp_path, DRIVER) as drv:
        assert (await drv.expect("connack"))["rc"] == 0
        init = await drv.expect("gateway_init")
        assert init["granted"] in (0, 1), drv.transcript()
        assert (await drv.expect("bind", label="wrong_secret"))["rc"] != 0
        assert (await drv.expect("bind", label="ok"))["rc"] == 0, drv.transcript()
        described = await drv.expect("describe")
        assert described["rc"] == 0
        assert described["devices"] == [[sub.product_id, sub.device_name]]

        # The app puts the bound sub-device into the family: the SDK receives "change".
        await drv.expect("waiting", what="gateway change")
        data = ok_data(
            await app.tokenapi(
                token,
                "AppBindSubDeviceInFamily",
                GatewayProductId=gw.product_id,
                GatewayDeviceName=gw.device_name,
                ProductId=sub.product_id,
                DeviceName=sub.device_name,
            )
        )
        assert data["AppDeviceInfo"]["FamilyId"] == family_id
        seen = await drv.expect("gateway_seen")
        assert seen["payload"] == {
            "type": "change",
            "payload": {
                "status": 1,
                "devices": [{"product_id": sub.product_id, "device_name": sub.device_name}],
            },
        }

        assert (await drv.expect("online"))["rc"] == 0, drv.transcript()
        subscribed = await drv.expect("subscribed")
        assert all(q in (0, 1) for q in subscribed["granted"]), drv.transcript()
        assert (await device_doc(admin, sub))["Online"] == 1

        ok = await drv.expect("report_reply", label="valid")
        assert ok["code"] == 0, drv.transcript()
        bad = await drv.expect("report_reply", label="invalid")
        assert (bad["code"], bad["status"]) == (406, "checkReportData fail")
        props = (await device_doc(admin, sub))["Properties"]
        assert {k: v["Value"] for k, v in props.items()} == REPORT

        # A console control for the sub-device reaches the SDK through the gateway.
        await drv.expect("waiting", what="control")
        resp = await admin.post(
            f"/products/{sub.product_id}/devices/{sub.device_name}/control",
            json={"Params": CONTROL, "WaitSeconds": 5},
        )
        result = resp.json()
        control = await drv.expect("control")
        assert control["params"] == CONTROL
        assert control["clientToken"] == result["ClientToken"]
        assert (result["Delivered"], result["Code"]) == (True, 0), drv.transcript()

        assert (await drv.expect("offline"))["rc"] == 0, drv.transcript()
        assert (await drv.expect("unbind"))["rc"] == 0, drv.transcript()
        await drv.expect("done")
        assert await drv.until_exit() == 0, drv.transcript()

        # Every $gateway answer the SDK got had the shape its parser indexes.
        for line in drv.seen("gateway_msg"):
            msg = line["payload"]
            assert isinstance(msg["payload"]["devices"], list), msg
            if msg["type"] in ("bind", "online", "offline", "unbind"):
                assert set(msg["payload"]["devices"][0]) == {"product_id", "device_name", "result"}
        sent = [line for line in drv.seen("gateway_sent")]
        assert {line["topic"] for line in sent} == {
            f"$gateway/operation/{gw.product_id}/{gw.device_name}"
        }
        binds = [line["payload"] for line in sent if line["payload"]["type"] == "bind"]
        assert len(binds) == 2
        accepted = binds[1]["payload"]["devices"][0]
        assert set(accepted) == {
            "product_id",
            "device_name",
            "signature",
            "random",
            "timestamp",
            "signmethod",
            "authtype",
        }
        assert (accepted["signmethod"], accepted["authtype"]) == ("hmacsha1", "psk")
        assert [line["payload"]["type"] for line in sent] == [
            "bind",
            "bind",
            "describe_sub_devices",
            "online",
            "offline",
            "unbind",
        ]

    await poll(lambda: device_doc(admin, sub), lambda d: d["Online"] == 0)
    await poll(lambda: device_doc(admin, gw), lambda d: d["Online"] == 0)
