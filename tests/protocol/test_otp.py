"""Lock temporary passwords: RFC 4226 HOTP over 30 s steps (device-protocol.md §9)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivcloud.protocol.errors import CredentialError
from ivcloud.protocol.otp import hotp, lock_temp_password, verify_lock_temp_password

RFC_KEY = b"12345678901234567890"
RFC_SECRET = base64.b64encode(RFC_KEY).decode()
# RFC 4226 Appendix D.
RFC_CODES = [
    "755224",
    "287082",
    "359152",
    "969429",
    "338314",
    "254676",
    "287922",
    "162583",
    "399871",
    "520489",
]


@pytest.mark.parametrize(("counter", "code"), list(enumerate(RFC_CODES)))
def test_rfc4226_vectors(counter: int, code: str) -> None:
    assert hotp(RFC_KEY, counter) == code


def test_digits() -> None:
    # RFC 6238 Appendix B, SHA-1, T = 59 s (counter 1), 8 digits.
    assert hotp(RFC_KEY, 1, digits=8) == "94287082"
    assert hotp(RFC_KEY, 0, digits=1) == "4"
    assert len(hotp(RFC_KEY, 0, digits=10)) == 10


def test_zero_padding() -> None:
    codes = [hotp(b"k", c) for c in range(2000)]
    assert all(len(c) == 6 and c.isdigit() for c in codes)
    assert any(c.startswith("0") for c in codes)


@pytest.mark.parametrize(
    ("counter", "digits"), [(-1, 6), (2**64, 6), (0, 0), (0, 11)], ids=["neg", "big", "d0", "d11"]
)
def test_hotp_bad_arguments(counter: int, digits: int) -> None:
    with pytest.raises(ValueError):
        hotp(RFC_KEY, counter, digits)


def test_lock_temp_password_uses_30s_steps() -> None:
    for counter, code in enumerate(RFC_CODES):
        assert lock_temp_password(RFC_SECRET, counter * 30) == code
        assert lock_temp_password(RFC_SECRET, counter * 30 + 29) == code
    assert lock_temp_password(RFC_SECRET, 59, digits=8) == "94287082"
    assert lock_temp_password(RFC_SECRET, 120, period=60) == RFC_CODES[2]


def test_lock_temp_password_matches_spec_reference() -> None:
    # The reference function of device-protocol.md §9, at a realistic time.
    import hashlib
    import hmac

    secret = "MTIzNDU2Nzg5MGFiY2RlZg=="
    ts = 1_732_780_800
    mac = hmac.new(base64.b64decode(secret), (ts // 30).to_bytes(8, "big"), hashlib.sha1).digest()
    off = mac[-1] & 0x0F
    code = int.from_bytes(mac[off : off + 4], "big") & 0x7FFFFFFF
    assert lock_temp_password(secret, ts) == str(code % 10**6).zfill(6)


@pytest.mark.parametrize("secret", ["not base64!", "", "QQ"])
def test_bad_secret(secret: str) -> None:
    with pytest.raises(CredentialError):
        lock_temp_password(secret, 0)


def test_bad_time_arguments() -> None:
    with pytest.raises(ValueError):
        lock_temp_password(RFC_SECRET, -1)
    with pytest.raises(ValueError):
        lock_temp_password(RFC_SECRET, 0, period=0)
    with pytest.raises(ValueError):
        verify_lock_temp_password(RFC_SECRET, "755224", 0, window=-1)


def test_verify_window() -> None:
    now = 5 * 30 + 10  # counter 5
    assert verify_lock_temp_password(RFC_SECRET, RFC_CODES[5], now) == 5
    assert verify_lock_temp_password(RFC_SECRET, RFC_CODES[4], now) == 4
    assert verify_lock_temp_password(RFC_SECRET, RFC_CODES[6], now) == 6
    assert verify_lock_temp_password(RFC_SECRET, RFC_CODES[3], now) is None
    assert verify_lock_temp_password(RFC_SECRET, RFC_CODES[7], now) is None
    assert verify_lock_temp_password(RFC_SECRET, RFC_CODES[3], now, window=2) == 3
    assert verify_lock_temp_password(RFC_SECRET, RFC_CODES[4], now, window=0) is None
    assert verify_lock_temp_password(RFC_SECRET, RFC_CODES[5], now, window=0) == 5


def test_verify_at_epoch_does_not_go_negative() -> None:
    assert verify_lock_temp_password(RFC_SECRET, RFC_CODES[0], 0) == 0
    assert verify_lock_temp_password(RFC_SECRET, RFC_CODES[1], 0) == 1


@pytest.mark.parametrize("code", ["", "75522", "7552240", "75522a", "７５５２２４", " 755224"])
def test_verify_rejects_malformed_codes(code: str) -> None:
    assert verify_lock_temp_password(RFC_SECRET, code, 0) is None


def test_verify_other_digits() -> None:
    assert verify_lock_temp_password(RFC_SECRET, "94287082", 59, digits=8) == 1


@given(ts=st.integers(30, 2**40), skew=st.integers(-30, 30))
def test_code_verifies_within_30s_skew(ts: int, skew: int) -> None:
    code = lock_temp_password(RFC_SECRET, ts)
    counter = verify_lock_temp_password(RFC_SECRET, code, ts + skew)
    assert counter is not None and abs(counter - ts // 30) <= 1
