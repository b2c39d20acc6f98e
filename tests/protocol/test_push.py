"""Frames of the App API long connection (app-api.md §3), without sockets."""

from __future__ import annotations

import base64
import json

import pytest

from ivcloud.protocol import push


def test_sdk_active_push_frame() -> None:
    frame = push.parse_frame(
        '{"action":"ActivePush","reqId":"imDfxQEbB9","params":{"DeviceIds":'
        '["PID123/dev1","PID123/dev2"],"Platform":"weapp","AccessToken":"ACCESS_TOKEN_ABC",'
        '"AppKey":"testAppKey","RegionId":1}}'
    )
    assert frame.action == "ActivePush"
    assert frame.req_id == "imDfxQEbB9"
    assert frame.access_token() == "ACCESS_TOKEN_ABC"
    assert frame.device_ids() == ["PID123/dev1", "PID123/dev2"]


def test_heartbeat_token_in_action_params_or_params() -> None:
    sdk = push.parse_frame(
        json.dumps(
            {
                "action": "YunApi",
                "reqId": "eXS69XMJVQ",
                "params": {
                    "Action": "AppDeviceTraceHeartBeat",
                    "ActionParams": {
                        "Platform": "weapp",
                        "RequestId": "eXS69XMJVQ",
                        "AccessToken": "T1",
                        "DeviceIds": ["P/d"],
                    },
                },
            }
        )
    )
    ios = push.parse_frame(
        json.dumps(
            {
                "action": "YunApi",
                "reqId": "u-1",
                "params": {
                    "Action": "AppDeviceTraceHeartBeat",
                    "AccessToken": "T2",
                    "RequestId": "r-2",
                    "ActionParams": {"DeviceIds": ["P/d"]},
                },
            }
        )
    )
    assert (sdk.yun_action, sdk.access_token(), sdk.request_id()) == (
        "AppDeviceTraceHeartBeat",
        "T1",
        "eXS69XMJVQ",
    )
    assert (ios.access_token(), ios.request_id(), ios.device_ids()) == ("T2", "r-2", ["P/d"])


def test_device_ids_are_deduplicated_and_malformed_ones_skipped() -> None:
    frame = push.parse_frame(
        json.dumps(
            {
                "action": "ActivePush",
                "params": {
                    "DeviceIds": ["P/a", "P/a", "nope", "/x", "P/", "P/a/b", 7, {"DeviceId": "P/b"}]
                },
            }
        )
    )
    assert frame.req_id is None
    assert frame.device_ids() == ["P/a", "P/b"]


@pytest.mark.parametrize(
    ("text", "req_id"),
    [
        ("not json", None),
        ("[1]", None),
        ('{"reqId":3}', 3),
        ('{"reqId":"x","action":"ActivePush","params":[]}', "x"),
    ],
)
def test_bad_frames(text: str, req_id: object) -> None:
    with pytest.raises(push.FrameError) as info:
        push.parse_frame(text)
    assert info.value.req_id == req_id


def test_replies_echo_req_id_with_its_type() -> None:
    assert json.loads(push.active_push_ok("req0001", ["PID/DN"])) == {
        "error": "",
        "error_message": "",
        "data": {"deviceIds": ["PID/DN"]},
        "reqId": "req0001",
    }
    assert push.heartbeat_ok(2, "rest-client") == (
        '{"error":"","error_message":"","data":{"Response":{"RequestId":"rest-client"}},"reqId":2}'
    )
    assert json.loads(push.server_error("r")) == {
        "error": "-1",
        "error_message": "后台连接出错,请联系管理员",
        "data": {},
        "reqId": "r",
    }
    assert json.loads(push.api_error(1, "C", "m")) == {
        "error": "",
        "error_message": "",
        "data": {"Response": {"Error": {"Code": "C", "Message": "m"}, "RequestId": "rest-client"}},
        "reqId": 1,
    }


def test_device_change_envelope() -> None:
    payload = b'{"method":"report","params":{"a":1}}'
    frame = json.loads(
        push.device_change(
            device_id="PID/DN",
            type_="Property",
            sub_type="Report",
            topic="$thing/up/property/PID/DN",
            payload=payload,
            ts_ms=1689229188406,
        )
    )
    assert frame == {
        "push": True,
        "action": "DeviceChange",
        "params": {
            "Time": "2023-07-13T06:19:48+00:00",
            "Type": "Property",
            "SubType": "Report",
            "Topic": "$thing/up/property/PID/DN",
            "Payload": base64.b64encode(payload).decode(),
            "Seq": 1689229188406,
            "DeviceId": "PID/DN",
        },
    }


def test_rebuilt_payloads() -> None:
    assert json.loads(push.report_payload("t", {"a": 1}, 5)) == {
        "method": "report",
        "clientToken": "t",
        "timestamp": 5,
        "params": {"a": 1},
    }
    assert json.loads(push.event_payload("t", "alarm", "alert", {"level": 1}, 5)) == {
        "method": "event_post",
        "clientToken": "t",
        "version": "1.0",
        "eventId": "alarm",
        "type": "alert",
        "timestamp": 5,
        "params": {"level": 1},
    }
