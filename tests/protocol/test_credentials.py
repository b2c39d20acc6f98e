"""MQTT key-mode credentials (device-protocol.md §1.2–1.3)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivcloud.protocol.credentials import (
    MqttUsername,
    decode_device_secret,
    generate_connid,
    generate_device_secret,
    generate_product_id,
    make_username,
    parse_username,
    sign_password,
    verify_password,
)
from ivcloud.protocol.errors import BadSignature, CredentialError, CredentialExpired

SECRET = "MTIzNDU2Nzg5MGFiY2RlZg=="  # b"1234567890abcdef"
OTHER_SECRET = "ZmVkY2JhMDk4NzY1NDMyMQ=="
NOW = 1_732_780_800
USERNAME = f"ABCDEFGHIJlock01;21010406;a1B2c;{NOW + 3600}"


def test_parse_username() -> None:
    user = parse_username(USERNAME)
    assert user == MqttUsername("ABCDEFGHIJlock01", "21010406", "a1B2c", NOW + 3600)
    assert (user.product_id, user.device_name) == ("ABCDEFGHIJ", "lock01")


def test_parse_username_keeps_empty_appid_and_connid() -> None:
    assert parse_username("Xdev;;;0") == MqttUsername("Xdev", "", "", 0)


@pytest.mark.parametrize(
    ("username", "pattern"),
    [
        ("", r"1 ';'-separated fields, expected 4"),
        ("a;b;c", r"3 ';'-separated fields"),
        ("a;b;c;1;2", r"5 ';'-separated fields"),
        (";b;c;1", r"empty client id"),
        ("a;b;c;", r"expiry is not a decimal"),
        ("a;b;c;12x", r"expiry is not a decimal"),
        ("a;b;c;-1", r"expiry is not a decimal"),
        ("a;b;c;+1", r"expiry is not a decimal"),
        ("a;b;c; 1", r"expiry is not a decimal"),
        ("a;b;c;١٢", r"expiry is not a decimal"),  # non-ASCII digits
        ("a;b;c;" + "9" * 21, r"at most 20 digits"),
        (None, r"must be a string, got NoneType"),
        (b"a;b;c;1", r"must be a string, got bytes"),
    ],
)
def test_parse_username_malformed(username: Any, pattern: str) -> None:
    with pytest.raises(CredentialError, match=pattern):
        parse_username(username)


@given(st.text(max_size=40) | st.builds(";".join, st.lists(st.text(max_size=8), max_size=6)))
def test_parse_username_only_raises_credential_error(username: str) -> None:
    try:
        user = parse_username(username)
    except CredentialError:
        return
    assert user.client_id and user.expiry >= 0
    assert f"{user.client_id};{user.sdkappid};{user.connid};" in username


@pytest.mark.parametrize("algorithm", ["hmacsha1", "hmacsha256"])
def test_sign_and_verify_round_trip(algorithm: Any) -> None:
    password = sign_password(SECRET, USERNAME, algorithm)
    token, _, suffix = password.partition(";")
    assert suffix == algorithm
    assert re.fullmatch(r"[0-9a-f]+", token)
    verify_password(SECRET, USERNAME, password, NOW)
    verify_password(SECRET, USERNAME, password.encode(), NOW)


def test_sign_matches_spec_recipe() -> None:
    digest = hmac.new(base64.b64decode(SECRET), USERNAME.encode(), hashlib.sha1).hexdigest()
    assert sign_password(SECRET, USERNAME, "hmacsha1") == digest + ";hmacsha1"
    assert sign_password(SECRET, USERNAME).endswith(";hmacsha256")


def test_verify_is_case_insensitive() -> None:
    token, _, suffix = sign_password(SECRET, USERNAME).partition(";")
    verify_password(SECRET, USERNAME, f"{token.upper()};{suffix}", NOW)
    verify_password(SECRET, USERNAME, f"{token};HMACSHA256", NOW)


def test_wrong_secret() -> None:
    password = sign_password(OTHER_SECRET, USERNAME)
    with pytest.raises(BadSignature, match="does not match"):
        verify_password(SECRET, USERNAME, password, NOW)


def test_signature_covers_the_exact_username() -> None:
    password = sign_password(SECRET, USERNAME)
    other = USERNAME.replace("a1B2c", "zzzzz")
    with pytest.raises(BadSignature):
        verify_password(SECRET, other, password, NOW)


def test_client_id_check_is_left_to_the_caller() -> None:
    # A correctly signed username of *another* client id verifies here; the gateway compares
    # parse_username(u).client_id with the CONNECT ClientId itself.
    username = f"ZZZZZZZZZZother;12010126;abcde;{NOW}"
    verify_password(SECRET, username, sign_password(SECRET, username), NOW)
    assert parse_username(username).client_id == "ZZZZZZZZZZother"


def test_expired() -> None:
    username = f"ABCDEFGHIJlock01;12010126;abcde;{NOW - 1}"
    password = sign_password(SECRET, username)
    with pytest.raises(CredentialExpired, match=f"expired at {NOW - 1}"):
        verify_password(SECRET, username, password, NOW)
    verify_password(SECRET, username, password, NOW - 1)  # expiry == now is still valid


def test_expired_with_bad_signature_is_bad_signature() -> None:
    username = f"ABCDEFGHIJlock01;12010126;abcde;{NOW - 1}"
    with pytest.raises(BadSignature):
        verify_password(SECRET, username, sign_password(OTHER_SECRET, username), NOW)


def test_13_digit_millisecond_expiry_is_accepted() -> None:
    # tencent-iot-device 1.0.0 puts the current time in milliseconds in the expiry field.
    username = f"ABCDEFGHIJlock01;21010406;abcde;{NOW * 1000}"
    verify_password(SECRET, username, sign_password(SECRET, username, "hmacsha1"), NOW)


def test_c_sdk_max_expiry_is_accepted() -> None:
    username = f"ABCDEFGHIJlock01;21010406;abcde;{0x7FFFFFFF}"
    verify_password(SECRET, username, sign_password(SECRET, username), NOW)


GOOD = sign_password(SECRET, USERNAME)


@pytest.mark.parametrize(
    ("username", "password", "pattern"),
    [
        (None, GOOD, "malformed username"),
        ("a;b;c", GOOD, "malformed username"),
        (USERNAME, None, "password is missing"),
        (USERNAME, b"\xff\xfe", "not ASCII"),
        (USERNAME, "", "does not end in"),
        (USERNAME, GOOD.partition(";")[0], "does not end in"),
        (USERNAME, GOOD.replace("hmacsha256", "hmacmd5"), "does not end in"),
        (USERNAME, GOOD.replace("hmacsha256", "hmacsha1"), "not 40 hex digits"),
        (USERNAME, GOOD[:-12] + ";hmacsha256", "not 64 hex digits"),
        (USERNAME, "g" * 64 + ";hmacsha256", "not 64 hex digits"),
        (USERNAME, "é" * 64 + ";hmacsha256", "not 64 hex digits"),
        (USERNAME, GOOD + ";hmacsha256", "not 64 hex digits"),
        (USERNAME, " " + GOOD, "not 64 hex digits"),
    ],
)
def test_malformed_credentials(username: Any, password: Any, pattern: str) -> None:
    with pytest.raises(BadSignature, match=pattern):
        verify_password(SECRET, username, password, NOW)


@given(password=st.text(max_size=80) | st.binary(max_size=80))
def test_verify_random_password_only_raises_bad_signature(password: str | bytes) -> None:
    with pytest.raises(BadSignature):
        verify_password(SECRET, USERNAME, password, NOW)


@pytest.mark.parametrize("secret", ["", "!!!!", "QQ", "QQ==\n"])
def test_bad_stored_secret(secret: str) -> None:
    with pytest.raises(CredentialError):
        decode_device_secret(secret)
    with pytest.raises(CredentialError):
        verify_password(secret, USERNAME, GOOD, NOW)


def test_sign_unknown_algorithm() -> None:
    with pytest.raises(ValueError, match="unknown algorithm"):
        sign_password(SECRET, USERNAME, "hmacmd5")  # type: ignore[arg-type]


def test_make_username() -> None:
    username = make_username("ABCDEFGHIJ", "lock01", now=NOW, connid="a1B2c")
    assert username == f"ABCDEFGHIJlock01;12010126;a1B2c;{NOW + 3600}"
    assert make_username("P", "d", now=10, ttl=0, sdkappid="21010406", connid="x") == (
        "Pd;21010406;x;10"
    )
    verify_password(SECRET, username, sign_password(SECRET, username), NOW + 3600)
    with pytest.raises(CredentialExpired):
        verify_password(SECRET, username, sign_password(SECRET, username), NOW + 3601)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"product_id": "A;B"},
        {"device_name": "d;"},
        {"connid": ";"},
        {"sdkappid": "1;2"},
        {"product_id": ""},
        {"device_name": ""},
        {"now": -1},
        {"ttl": -5},
    ],
)
def test_make_username_rejects_bad_parts(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"product_id": "P", "device_name": "d", "now": 0, "connid": "c"}
    args.update(kwargs)
    with pytest.raises(CredentialError):
        make_username(**args)


def test_generate_device_secret() -> None:
    secrets_ = {generate_device_secret() for _ in range(50)}
    assert len(secrets_) == 50
    for s in secrets_:
        assert len(base64.b64decode(s, validate=True)) == 16
        assert decode_device_secret(s)


def test_generate_product_id() -> None:
    ids = {generate_product_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(r"[A-Z0-9]{10}", i) for i in ids)


def test_generate_connid() -> None:
    assert re.fullmatch(r"[A-Za-z0-9]{5}", generate_connid())
