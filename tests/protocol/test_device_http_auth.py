"""The device HTTP ``Authorization: IvDevice …`` header: what a device sends verifies, any
change to what it covers is refused, the parser never raises anything but its own error,
and the time window is bounded on both sides."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivcloud.protocol import device_http_auth as dha

SECRET = base64.b64encode(b"0123456789abcdef").decode()
OTHER = base64.b64encode(b"fedcba9876543210").decode()
NOW = 1_800_000_000
TARGET = "/api/device/v1/cs/segments?channel=0&start_ms=1&end_ms=2&init=ab"
SKEW = 300

names = st.from_regex(r"[A-Za-z0-9:_\-.@]{1,48}", fullmatch=True)
pids = st.from_regex(r"[A-Z0-9]{10}", fullmatch=True)


def header(body: bytes = b"body", *, expires: int = NOW + 60, target: str = TARGET) -> str:
    return dha.authorization_header(SECRET, "ABCDEFGHIJ", "cam-1", "PUT", target, body, expires)


def check(
    value: str,
    *,
    secret: str = SECRET,
    method: str = "PUT",
    target: str = TARGET,
    body: bytes = b"body",
    now: int = NOW,
) -> None:
    auth = dha.parse_authorization(value)
    dha.verify(auth, secret, method, target, dha.body_digest(body), now, clock_skew_s=SKEW)


def test_signed_request_verifies_and_parses_back() -> None:
    value = header()
    assert value.startswith("IvDevice pid=ABCDEFGHIJ,dn=cam-1,expires=")
    auth = dha.parse_authorization(value)
    assert (auth.product_id, auth.device_name, auth.expires) == ("ABCDEFGHIJ", "cam-1", NOW + 60)
    check(value)


def test_string_to_sign_is_documented_format() -> None:
    sha = dha.body_digest(b"")
    assert sha == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    text = dha.string_to_sign("PUT", "/x?a=1", "P1", "d-1", 7, sha)
    assert text == f"PUT\n/x?a=1\nP1/d-1\n7\n{sha}"


@pytest.mark.parametrize(
    "change",
    [
        {"secret": OTHER},
        {"method": "POST"},
        {"target": TARGET.replace("start_ms=1", "start_ms=0")},
        {"target": TARGET + "&extra=1"},
        {"body": b"bodY"},
        {"body": b""},
    ],
)
def test_anything_covered_changes_the_signature(change: dict[str, object]) -> None:
    with pytest.raises(dha.DeviceAuthRejected, match="bad signature"):
        check(header(), **change)  # type: ignore[arg-type]


def test_claiming_another_device_is_refused() -> None:
    """Naming another device breaks the signature even under the same secret (the server
    checks with the named device's secret, which differs anyway)."""
    for value in (header().replace("dn=cam-1", "dn=cam-2"), header().replace("=ABCDEFGHIJ", "=X")):
        with pytest.raises(dha.DeviceAuthRejected):
            check(value)


@pytest.mark.parametrize(
    ("expires", "ok"),
    [
        (NOW - SKEW, True),
        (NOW - SKEW - 1, False),
        (NOW + dha.MAX_LIFETIME_S + SKEW, True),
        (NOW + dha.MAX_LIFETIME_S + SKEW + 1, False),
    ],
)
def test_time_window_is_bounded_both_ways(expires: int, ok: bool) -> None:
    value = header(expires=expires)
    if ok:
        check(value)
    else:
        with pytest.raises(dha.DeviceAuthRejected, match="expired or not yet valid"):
            check(value)


def test_signature_is_checked_before_the_clock() -> None:
    """Someone without the secret never learns that a request was merely stale."""
    value = header(expires=NOW - 10_000)
    with pytest.raises(dha.DeviceAuthRejected, match="bad signature"):
        check(value, secret=OTHER)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "Bearer abc",
        "IvDevice",
        "IvDevice ",
        "ivdevice pid=A,dn=b,expires=1,sig=" + "0" * 64,
        "IvDevice pid=A,dn=b,expires=1",
        "IvDevice pid=A,dn=b,expires=1,sig=" + "0" * 63,
        "IvDevice pid=A,dn=b,expires=1,sig=" + "G" * 64,
        "IvDevice pid=A,pid=B,expires=1,sig=" + "0" * 64,
        "IvDevice pid=A,dn=b,expires=1,sig=" + "0" * 64 + ",x=1",
        "IvDevice pid=A,dn=b c,expires=1,sig=" + "0" * 64,
        "IvDevice pid=A,dn=b,expires=-1,sig=" + "0" * 64,
        "IvDevice pid=A,dn=b,expires=1,sig=" + "0" * 64 + "x" * 500,
        "IvDevice pid=Ä,dn=b,expires=1,sig=" + "0" * 64,
    ],
)
def test_malformed_headers(value: str | None) -> None:
    with pytest.raises(dha.MalformedDeviceAuth):
        dha.parse_authorization(value)


def test_spaces_after_commas_and_any_order_are_accepted() -> None:
    sig = "a" * 64
    auth = dha.parse_authorization(f"IvDevice sig={sig}, expires=5, dn=d.1@x, pid=P1")
    assert auth == dha.DeviceAuth("P1", "d.1@x", 5, sig)


@given(st.text(max_size=600))
def test_parser_raises_only_its_own_error(value: str) -> None:
    try:
        auth = dha.parse_authorization(value)
    except dha.MalformedDeviceAuth:
        return
    assert len(auth.signature) == 64


fields = st.lists(
    st.tuples(
        st.sampled_from(["pid", "dn", "expires", "sig", "x", ""]),
        st.text(alphabet="aA0f-,= .@:", max_size=70),
    ),
    max_size=6,
)


@given(fields)
def test_parser_on_near_miss_field_lists(items: list[tuple[str, str]]) -> None:
    """Whatever the field list, a header either parses into four well-formed values or is
    refused as malformed."""
    value = "IvDevice " + ",".join(f"{k}={v}" for k, v in items)
    try:
        auth = dha.parse_authorization(value)
    except dha.MalformedDeviceAuth:
        return
    assert sorted(k for k, _ in items) == ["dn", "expires", "pid", "sig"]
    assert auth.expires >= 0 and len(auth.signature) == 64


@given(
    pids,
    names,
    st.integers(min_value=0, max_value=10**12 - 1),
    st.binary(max_size=256),
    st.from_regex(r"/[A-Za-z0-9/_.\-]{0,40}(\?[A-Za-z0-9=&_]{0,40})?", fullmatch=True),
    st.sampled_from(["PUT", "POST", "GET"]),
)
def test_round_trip(pid: str, dn: str, expires: int, body: bytes, target: str, method: str) -> None:
    value = dha.authorization_header(SECRET, pid, dn, method, target, body, expires)
    auth = dha.parse_authorization(value)
    assert (auth.product_id, auth.device_name, auth.expires) == (pid, dn, expires)
    dha.verify(auth, SECRET, method, target, dha.body_digest(body), expires, clock_skew_s=0)
    with pytest.raises(dha.DeviceAuthRejected):
        dha.verify(
            auth, SECRET, method, target, dha.body_digest(body + b"x"), expires, clock_skew_s=0
        )


def test_secret_that_is_not_base64_is_a_rejection_not_a_crash() -> None:
    auth = dha.parse_authorization(header())
    with pytest.raises(dha.DeviceAuthRejected):
        dha.verify(
            auth, "not base64!", "PUT", TARGET, dha.body_digest(b"body"), NOW, clock_skew_s=1
        )


def test_device_side_refuses_to_sign_malformed_values() -> None:
    with pytest.raises(dha.MalformedDeviceAuth):
        dha.authorization_header(SECRET, "PID", "bad,name", "PUT", "/x", b"", 1)
    with pytest.raises(dha.MalformedDeviceAuth):
        dha.authorization_header(SECRET, "PID", "dn", "put", "/x", b"", 1)
    with pytest.raises(dha.MalformedDeviceAuth):
        dha.authorization_header(SECRET, "PID", "dn", "PUT", "x", b"", 1)
