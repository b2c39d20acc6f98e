"""``$gateway/operation`` parsing, the bind signature and the answers (spec §6.2), checked
against the official Python SDK's shapes (``hub/services/gateway/gateway.py``) and fuzzed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivcloud.protocol import gateway_ops as ops

SECRET = base64.b64encode(b"0123456789abcdef").decode()  # what the console hands out
NOW = 1_700_000_000


def sdk_payload(ptype: str, pid: str, name: str, secret: str | None = None, **bind: Any) -> bytes:
    """``Gateway.__build_session_payload`` of tencent-iot-device 1.0.0, restated."""
    if ptype in ("online", "offline", "unbind"):
        doc: dict[str, Any] = {
            "type": ptype,
            "payload": {"devices": [{"product_id": pid, "device_name": name}]},
        }
    elif ptype == "bind":
        assert secret is not None
        nonce = bind.get("random", 12345)
        timestamp = bind.get("timestamp", NOW)
        text = "%s%s;%d;%d" % (pid, name, nonce, timestamp)  # noqa: UP031 - the SDK's format
        sig = base64.b64encode(
            hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha1).digest()
        ).decode()
        doc = {
            "type": ptype,
            "payload": {
                "devices": [
                    {
                        "product_id": pid,
                        "device_name": name,
                        "signature": sig,
                        "random": nonce,
                        "timestamp": timestamp,
                        "signmethod": "hmacsha1",
                        "authtype": "psk",
                    }
                ]
            },
        }
    else:
        doc = {"type": ptype}
    return json.dumps(doc).encode()


@pytest.mark.parametrize("ptype", ["online", "offline", "unbind"])
def test_sdk_session_messages_parse(ptype: str) -> None:
    op = ops.parse_operation(sdk_payload(ptype, "ABCDEFGHIJ", "sub1"))
    assert op.type == ptype
    assert op.devices == (ops.DeviceEntry("ABCDEFGHIJ", "sub1"),)
    assert op.devices[0].client_id == "ABCDEFGHIJsub1"


def test_sdk_describe_parses() -> None:
    assert ops.parse_operation(sdk_payload("describe_sub_devices", "", "")) == ops.GatewayOp(
        "describe_sub_devices"
    )


def test_sdk_bind_parses_and_verifies() -> None:
    op = ops.parse_operation(sdk_payload("bind", "ABCDEFGHIJ", "sub1", SECRET))
    [entry] = op.devices
    assert entry.error == ops.OK
    assert entry.proof is not None
    assert (entry.proof.random, entry.proof.timestamp) == ("12345", str(NOW))
    assert ops.check_bind(entry, SECRET, NOW) == ops.OK


def test_signature_key_is_the_literal_base64_text() -> None:
    """Unlike MQTT passwords, the key is the secret's text, not its decoded bytes."""
    text = "ABCDEFGHIJsub1;7;%d" % NOW  # noqa: UP031
    decoded_key_sig = base64.b64encode(
        hmac.new(base64.b64decode(SECRET), text.encode(), hashlib.sha1).digest()
    ).decode()
    literal = ops.sign_bind(SECRET, "ABCDEFGHIJ", "sub1", 7, NOW)
    assert literal != decoded_key_sig
    assert (
        literal
        == base64.b64encode(
            hmac.new(SECRET.encode(), text.encode(), hashlib.sha1).digest()
        ).decode()
    )
    wrong = ops.DeviceEntry(
        "ABCDEFGHIJ",
        "sub1",
        proof=ops.BindProof(decoded_key_sig, "7", str(NOW), "hmacsha1", "psk"),
    )
    assert ops.check_bind(wrong, SECRET, NOW) == ops.SIGNATURE_FAILED


def _entry(
    sig: str, *, method: str = "hmacsha1", ts: int = NOW, auth: str = "psk"
) -> ops.DeviceEntry:
    return ops.DeviceEntry(
        "ABCDEFGHIJ", "sub1", proof=ops.BindProof(sig, "99", str(ts), method, auth)
    )


def test_hmacsha256_variant() -> None:
    sig = ops.sign_bind(SECRET, "ABCDEFGHIJ", "sub1", 99, NOW, "hmacsha256")
    assert len(base64.b64decode(sig)) == 32
    assert ops.check_bind(_entry(sig, method="hmacsha256"), SECRET, NOW) == ops.OK
    # The same signature claimed as SHA-1 does not verify.
    assert ops.check_bind(_entry(sig, method="hmacsha1"), SECRET, NOW) == ops.SIGNATURE_FAILED


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda s: s[:-2] + ("A=" if s[-2] != "A" else "B="), ops.SIGNATURE_FAILED),
        (lambda s: "not base64!!", ops.SIGNATURE_FAILED),
        (lambda s: "", ops.SIGNATURE_FAILED),
    ],
)
def test_bad_signatures(mutate: Any, expected: int) -> None:
    sig = ops.sign_bind(SECRET, "ABCDEFGHIJ", "sub1", 99, NOW)
    assert ops.check_bind(_entry(mutate(sig)), SECRET, NOW) == expected


def test_wrong_secret_fails() -> None:
    other = base64.b64encode(b"fedcba9876543210").decode()
    sig = ops.sign_bind(other, "ABCDEFGHIJ", "sub1", 99, NOW)
    assert ops.check_bind(_entry(sig), SECRET, NOW) == ops.SIGNATURE_FAILED


@pytest.mark.parametrize(("method", "auth"), [("hmacmd5", "psk"), ("hmacsha1", "certificate")])
def test_unsupported_method_or_auth_type_is_804(method: str, auth: str) -> None:
    sig = ops.sign_bind(SECRET, "ABCDEFGHIJ", "sub1", 99, NOW)
    assert ops.check_bind(_entry(sig, method=method, auth=auth), SECRET, NOW) == 804


@pytest.mark.parametrize("skew", [-ops.BIND_WINDOW_S - 1, ops.BIND_WINDOW_S + 1])
def test_timestamp_outside_the_window_is_805(skew: int) -> None:
    ts = NOW + skew
    sig = ops.sign_bind(SECRET, "ABCDEFGHIJ", "sub1", 99, ts)
    assert ops.check_bind(_entry(sig, ts=ts), SECRET, NOW) == ops.SIGNATURE_EXPIRED
    # Inside the window it is fine.
    edge = NOW + (ops.BIND_WINDOW_S if skew > 0 else -ops.BIND_WINDOW_S)
    sig = ops.sign_bind(SECRET, "ABCDEFGHIJ", "sub1", 99, edge)
    assert ops.check_bind(_entry(sig, ts=edge), SECRET, NOW) == ops.OK


def test_an_old_forged_signature_is_803_not_805() -> None:
    """Age is only reported for a signature that verified: a guesser learns nothing."""
    assert ops.check_bind(_entry("AAAA", ts=NOW - 10_000), SECRET, NOW) == ops.SIGNATURE_FAILED


def test_string_random_and_timestamp_are_signed_as_sent() -> None:
    sig = ops.sign_bind(SECRET, "ABCDEFGHIJ", "sub1", "0042", str(NOW))
    doc = {
        "type": "bind",
        "payload": {
            "devices": [
                {
                    "product_id": "ABCDEFGHIJ",
                    "device_name": "sub1",
                    "signature": sig,
                    "random": "0042",
                    "timestamp": str(NOW),
                }
            ]
        },
    }
    [entry] = ops.parse_operation(json.dumps(doc).encode()).devices
    assert entry.proof is not None
    assert (entry.proof.signmethod, entry.proof.authtype) == ("hmacsha1", "psk")  # defaults
    assert ops.check_bind(entry, SECRET, NOW) == ops.OK


@pytest.mark.parametrize(
    "item",
    [
        {"device_name": "sub1"},
        {"product_id": "ABCDEFGHIJ"},
        {"product_id": 5, "device_name": "sub1"},
        {"product_id": "ABCDEFGHIJ", "device_name": ""},
        {"product_id": "ABC/EFGHIJ", "device_name": "sub1"},
        {"product_id": "ABCDEFGHIJ", "device_name": "+"},
        {"product_id": "ABCDEFGHIJ", "device_name": "x" * 65},
        "ABCDEFGHIJ/sub1",
    ],
)
def test_bad_device_entries_are_801_and_kept(item: object) -> None:
    good = {"product_id": "ABCDEFGHIJ", "device_name": "ok"}
    doc = {"type": "online", "payload": {"devices": [item, good]}}
    op = ops.parse_operation(json.dumps(doc).encode())
    assert [e.error for e in op.devices] == [ops.BAD_PARAMS, ops.OK]
    assert op.devices[1] == ops.DeviceEntry("ABCDEFGHIJ", "ok")


@pytest.mark.parametrize(
    "extra",
    [
        {},  # no signature at all
        {"signature": "x", "random": -1, "timestamp": NOW},
        {"signature": "x", "random": 1.5, "timestamp": NOW},
        {"signature": "x", "random": True, "timestamp": NOW},
        {"signature": "x", "random": 1, "timestamp": "12a"},
        {"signature": "x", "random": 1, "timestamp": "１２"},  # non-ASCII digits
        {"signature": "x" * 129, "random": 1, "timestamp": NOW},
        {"signature": "x", "random": 1, "timestamp": NOW, "signmethod": 1},
    ],
)
def test_bad_bind_proofs_are_801(extra: dict[str, Any]) -> None:
    item = {"product_id": "ABCDEFGHIJ", "device_name": "sub1", **extra}
    doc = {"type": "bind", "payload": {"devices": [item]}}
    [entry] = ops.parse_operation(json.dumps(doc).encode()).devices
    assert entry.error == ops.BAD_PARAMS
    assert (entry.product_id, entry.device_name) == ("ABCDEFGHIJ", "sub1")


@pytest.mark.parametrize(
    ("raw", "op_type"),
    [
        (b"not json", ""),
        (b"[1,2]", ""),
        (b'{"type": 3}', ""),
        (b'{"type": "reboot"}', "reboot"),
        (b'{"type": "online"}', "online"),
        (b'{"type": "online", "payload": {"devices": []}}', "online"),
        (b'{"type": "bind", "payload": {"devices": {}}}', "bind"),
        (b'{"type": "change"}', "change"),
        (b'{"type": "online", "payload": {"devices": [NaN]}}', ""),
    ],
)
def test_unreadable_messages_raise_with_the_claimed_type(raw: bytes, op_type: str) -> None:
    with pytest.raises(ops.GatewayOpError) as info:
        ops.parse_operation(raw)
    assert info.value.op_type == op_type


def test_too_many_devices() -> None:
    devices = [{"product_id": "ABCDEFGHIJ", "device_name": f"d{i}"} for i in range(101)]
    raw = json.dumps({"type": "online", "payload": {"devices": devices}}).encode()
    with pytest.raises(ops.GatewayOpError):
        ops.parse_operation(raw)


def test_change_acknowledgement() -> None:
    assert ops.parse_operation(b'{"type":"change","result":0}') == ops.GatewayOp("change", (), 0)


def test_answers_have_the_documented_shapes() -> None:
    assert json.loads(ops.result_reply("bind", [("P", "d", 806)])) == {
        "type": "bind",
        "payload": {"devices": [{"product_id": "P", "device_name": "d", "result": 806}]},
    }
    assert json.loads(ops.describe_reply([("P", "a"), ("P", "b")])) == {
        "type": "describe_sub_devices",
        "payload": {
            "devices": [
                {"product_id": "P", "device_name": "a"},
                {"product_id": "P", "device_name": "b"},
            ]
        },
    }
    assert json.loads(ops.change_message(True, [("P", "a")])) == {
        "type": "change",
        "payload": {"status": 1, "devices": [{"product_id": "P", "device_name": "a"}]},
    }
    assert json.loads(ops.change_message(False, []))["payload"]["status"] == 0
    assert json.loads(ops.error_reply("online")) == {
        "type": "online",
        "result": 801,
        "payload": {"devices": []},
    }
    assert ops.up_topic("P", "d") == "$gateway/operation/P/d"
    assert ops.down_topic("P", "d") == "$gateway/operation/result/P/d"


# -- property tests ------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_ids = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="/+#\x00"), min_size=1, max_size=64
)


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_gateway_op_error(raw: bytes) -> None:
    try:
        op = ops.parse_operation(raw)
    except ops.GatewayOpError:
        return
    assert op.type in ops.REQUEST_TYPES | {ops.CHANGE}


@given(
    st.sampled_from(["online", "offline", "bind", "unbind", "describe_sub_devices", "change"]),
    st.lists(_json, max_size=5),
    _json,
)
def test_any_document_parses_or_raises(op_type: str, devices: list[Any], result: Any) -> None:
    doc = {"type": op_type, "payload": {"devices": devices}, "result": result}
    try:
        op = ops.parse_operation(json.dumps(doc).encode())
    except ops.GatewayOpError:
        return
    for entry in op.devices:
        assert entry.error in (ops.OK, ops.BAD_PARAMS)
        if entry.error == ops.OK:
            assert entry.product_id and entry.device_name
            assert (entry.proof is not None) == (op_type == "bind")
            assert ops.check_bind(entry, SECRET, NOW) in (
                ops.OK,
                ops.SIGNATURE_FAILED,
                ops.UNSUPPORTED_SIGN_METHOD,
                ops.SIGNATURE_EXPIRED,
            )


@settings(max_examples=200)
@given(
    _ids,
    _ids,
    st.integers(0, 2**31 - 1),
    st.integers(NOW - ops.BIND_WINDOW_S, NOW + ops.BIND_WINDOW_S),
    st.sampled_from(["hmacsha1", "hmacsha256"]),
    st.integers(0, 200),
)
def test_round_trip_signature_verifies_and_any_change_breaks_it(
    pid: str, dn: str, nonce: int, ts: int, method: str, flip: int
) -> None:
    sig = ops.sign_bind(SECRET, pid, dn, nonce, ts, method)
    item = {
        "product_id": pid,
        "device_name": dn,
        "signature": sig,
        "random": nonce,
        "timestamp": ts,
        "signmethod": method,
        "authtype": "psk",
    }
    raw = json.dumps({"type": "bind", "payload": {"devices": [item]}}).encode()
    [entry] = ops.parse_operation(raw).devices
    assert ops.check_bind(entry, SECRET, NOW) == ops.OK
    # Another nonce, or a signature for another device name, does not verify.
    other = ops.DeviceEntry(pid, dn + "x", proof=entry.proof)
    assert ops.check_bind(other, SECRET, NOW) == ops.SIGNATURE_FAILED
    assert entry.proof is not None
    bumped = ops.BindProof(sig, str(nonce + 1 + flip), entry.proof.timestamp, method, "psk")
    assert ops.check_bind(ops.DeviceEntry(pid, dn, proof=bumped), SECRET, NOW) == 803
