"""The "scan to bind" device code: format, MAC, expiry, and what apps extract from a scan."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivcloud.protocol.bind_qr import (
    BindSignatureError,
    make_signature,
    parse_signature,
    qr_text,
    signature_from_scan,
)

SECRET = base64.b64encode(b"0123456789abcdef").decode()
OTHER = base64.b64encode(b"fedcba9876543210").decode()


def test_round_trip_and_mac() -> None:
    text = make_signature("ABCDEFGHIJ", "cam_01", SECRET, 1_800_000_000)
    sig = parse_signature(text)
    assert (sig.product_id, sig.device_name, sig.expires) == ("ABCDEFGHIJ", "cam_01", 1_800_000_000)
    assert sig.verify(SECRET)
    assert not sig.verify(OTHER)
    assert not sig.expired(1_800_000_000) and sig.expired(1_800_000_001)
    assert not parse_signature(make_signature("P", "d", SECRET, 0)).expired(2**39)


def test_a_changed_payload_no_longer_verifies() -> None:
    text = make_signature("ABCDEFGHIJ", "cam_01", SECRET, 0)
    prefix, _, mac = text.split(".")
    forged_doc = json.dumps({"p": "ABCDEFGHIJ", "d": "cam_02", "e": 0}).encode()
    forged_body = base64.urlsafe_b64encode(forged_doc).decode().rstrip("=")
    assert not parse_signature(f"{prefix}.{forged_body}.{mac}").verify(SECRET)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "IVB1",
        "IVB1.e30." + "0" * 64,  # {} names no device
        "IVB2.e30." + "0" * 64,
        "IVB1.!!!." + "0" * 64,
        "IVB1.e30." + "0" * 63,
        "IVB1." + base64.urlsafe_b64encode(b'{"p":"P","d":"d","e":-1}').decode() + "." + "0" * 64,
        "IVB1." + base64.urlsafe_b64encode(b'{"p":"P","d":"d","e":true}').decode() + "." + "0" * 64,
        "IVB1." + base64.urlsafe_b64encode(b"[1]").decode() + "." + "0" * 64,
        "é" * 10,
    ],
)
def test_malformed_codes_are_refused(text: str) -> None:
    with pytest.raises(BindSignatureError):
        parse_signature(text)


@given(st.text(max_size=600))
def test_parser_never_raises_anything_else(text: str) -> None:
    try:
        sig = parse_signature(text)
    except BindSignatureError:
        return
    assert sig.product_id and sig.device_name and sig.expires >= 0 and len(sig.mac) == 64


@given(
    st.from_regex(r"[A-Z0-9]{10}", fullmatch=True),
    # Device names as the console accepts them (letters, digits, _-.:@; up to 48).
    st.from_regex(r"[A-Za-z0-9_\-.:@]{1,48}", fullmatch=True),
    st.integers(0, 2**40 - 1),
)
def test_any_device_round_trips(pid: str, dn: str, expires: int) -> None:
    sig = parse_signature(make_signature(pid, dn, SECRET, expires))
    assert (sig.product_id, sig.device_name, sig.expires) == (pid, dn, expires)
    assert sig.verify(SECRET)


def test_what_apps_extract_from_a_scan() -> None:
    text = make_signature("ABCDEFGHIJ", "cam_01", SECRET, 0)
    assert signature_from_scan(qr_text(text, "https://iv.example.com/")) == text
    assert signature_from_scan(json.dumps({"Signature": text})) == text
    assert signature_from_scan("hello") is None
