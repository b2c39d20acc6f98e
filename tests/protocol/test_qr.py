"""Wi-Fi provisioning QR strings (device-protocol.md §8.1)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from ivcloud.protocol.errors import QRFormatError
from ivcloud.protocol.qr import ProvisionQR, encode_provision_qr, parse_provision_qr

SPEC_EXAMPLE = "12Tencent-wifi01l32v3_00d02b0248546d5a5fbf95a5812e4"


def test_spec_example_parses() -> None:
    qr = parse_provision_qr(SPEC_EXAMPLE)
    assert qr == ProvisionQR("Tencent-wifi", "l", "v3_00d02b0248546d5a5fbf95a5812e4")


def test_spec_example_encodes() -> None:
    assert encode_provision_qr("Tencent-wifi", "l", "v3_00d02b0248546d5a5fbf95a5812e4") == (
        SPEC_EXAMPLE
    )


def test_password_not_in_repr() -> None:
    qr = ProvisionQR("net", "hunter2", "tok")
    assert "hunter2" not in repr(qr)


def test_empty_password_and_token() -> None:
    assert encode_provision_qr("net", "", "") == "03net0000"
    assert parse_provision_qr("03net0000") == ProvisionQR("net", "", "")


def test_field_of_99_characters() -> None:
    s = encode_provision_qr("a" * 99, "b" * 99, "c" * 99)
    assert parse_provision_qr(s) == ProvisionQR("a" * 99, "b" * 99, "c" * 99)


def test_lengths_count_characters() -> None:
    s = encode_provision_qr("咖啡店", "密码", "t")
    assert s == "03咖啡店02密码01t"
    assert parse_provision_qr(s) == ProvisionQR("咖啡店", "密码", "t")


def test_byte_counted_string_parses_by_fallback() -> None:
    s = encode_provision_qr("咖啡店", "pässword", "tok", unit="bytes")
    assert s == "09咖啡店09pässword03tok"
    assert parse_provision_qr(s) == ProvisionQR("咖啡店", "pässword", "tok")


def test_character_reading_wins_when_both_parse() -> None:
    # "01é0000" reads as ssid "é" by characters; by bytes it would split é. Characters win.
    assert parse_provision_qr("01é0000") == ProvisionQR("é", "", "")


text_fields = st.text(max_size=99)


@given(ssid=st.text(min_size=1, max_size=99), password=text_fields, token=text_fields)
def test_round_trip_characters(ssid: str, password: str, token: str) -> None:
    s = encode_provision_qr(ssid, password, token)
    assert parse_provision_qr(s) == ProvisionQR(ssid, password, token)


@given(ssid=st.text(min_size=1, max_size=30), password=st.text(max_size=30), token=text_fields)
def test_round_trip_bytes(ssid: str, password: str, token: str) -> None:
    try:
        s = encode_provision_qr(ssid, password, token, unit="bytes")
    except QRFormatError:
        assume(False)
        raise
    qr = parse_provision_qr(s)
    # If the same text also happens to parse by characters, that reading is taken; it must
    # then re-encode to the same string.
    if qr != ProvisionQR(ssid, password, token):
        assert encode_provision_qr(qr.ssid, qr.password, qr.token) == s


@given(st.text(max_size=60))
def test_random_text_only_raises_qr_format_error(s: str) -> None:
    try:
        qr = parse_provision_qr(s)
    except QRFormatError as e:
        assert str(e)
    else:
        assert qr.ssid


@given(st.text(alphabet="0123456789abé", max_size=40))
def test_random_digit_heavy_text(s: str) -> None:
    try:
        qr = parse_provision_qr(s)
    except QRFormatError:
        return
    fields = (qr.ssid, qr.password, qr.token)
    assert s in (encode_provision_qr(*fields), encode_provision_qr(*fields, unit="bytes"))


PARSE_ERRORS: list[tuple[Any, str]] = [
    (b"03net0000", r"^provisioning QR must be a string, got bytes$"),
    (None, r"^provisioning QR must be a string, got NoneType$"),
    ("", r"^provisioning QR string is empty$"),
    ("1", r"^SSID length at offset 0: the string ends \(truncated\)$"),
    ("12Tencent", r"^SSID is 12 characters long but only 7 remain \(truncated\)$"),
    ("03net", r"^password length at offset 5: the string ends \(truncated\)$"),
    ("03net0", r"^password length at offset 5: the string ends \(truncated\)$"),
    ("03net05ab", r"^password is 5 characters long but only 2 remain \(truncated\)$"),
    ("03net00", r"^token length at offset 7: the string ends \(truncated\)$"),
    ("03net0003to", r"^token is 3 characters long but only 2 remain \(truncated\)$"),
    ("03net0000x", r"^1 characters of trailing data after the token \(overlong\)$"),
    (SPEC_EXAMPLE + "\n", r"^1 characters of trailing data"),
    ("x3net0000", r"^SSID length at offset 0: 'x3' is not a 2-digit decimal number$"),
    ("3net0000", r"^SSID length at offset 0: '3n' is not a 2-digit decimal number$"),
    (" 3net0000", r"^SSID length at offset 0: ' 3' is not a 2-digit"),
    ("+3net0000", r"^SSID length at offset 0: '\+3' is not a 2-digit"),
    ("٠٣net0000", r"^SSID length at offset 0: '٠٣' is not a 2-digit"),  # Arabic-Indic digits
    ("03netab00", r"^password length at offset 5: 'ab' is not a 2-digit"),
    ("000000", r"^SSID is empty \(length 00\)$"),
]


@pytest.mark.parametrize(("s", "pattern"), PARSE_ERRORS)
def test_parse_errors(s: Any, pattern: str) -> None:
    with pytest.raises(QRFormatError, match=pattern):
        parse_provision_qr(s)


def test_non_ascii_error_mentions_both_readings() -> None:
    with pytest.raises(QRFormatError) as info:
        parse_provision_qr("05咖啡0000")
    assert str(info.value) == (
        "password length at offset 7: the string ends (truncated)"
        " (counting UTF-8 bytes instead: SSID of 5 bytes splits a UTF-8 character)"
    )


def test_non_ascii_truncated_both_ways() -> None:
    with pytest.raises(QRFormatError, match=r"remain \(truncated\) \(counting UTF-8 bytes"):
        parse_provision_qr("50é")


def test_lone_surrogate_cannot_use_byte_fallback() -> None:
    with pytest.raises(QRFormatError, match="not encodable as UTF-8"):
        parse_provision_qr("05\ud800")


ENCODE_ERRORS: list[tuple[tuple[Any, Any, Any], dict[str, Any], str]] = [
    (("", "p", "t"), {}, r"^SSID is empty$"),
    (("a" * 100, "p", "t"), {}, r"^SSID is 100 characters long, the limit is 99$"),
    (("s", "p" * 100, "t"), {}, r"^password is 100 characters long"),
    (("s", "p", "t" * 100), {}, r"^token is 100 characters long"),
    (("咖" * 34, "p", "t"), {"unit": "bytes"}, r"^SSID is 102 UTF-8 bytes long, the limit is 99$"),
    ((1, "p", "t"), {}, r"^SSID must be a string, got int$"),
    (("s", None, "t"), {}, r"^password must be a string, got NoneType$"),
    (("s", "\udc80", "t"), {"unit": "bytes"}, r"^password is not encodable as UTF-8$"),
]


@pytest.mark.parametrize(("args", "kwargs", "pattern"), ENCODE_ERRORS)
def test_encode_errors(args: tuple[Any, Any, Any], kwargs: dict[str, Any], pattern: str) -> None:
    with pytest.raises(QRFormatError, match=pattern):
        encode_provision_qr(*args, **kwargs)
