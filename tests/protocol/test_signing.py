"""Expiring signed URLs."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivcloud.protocol.signing import BadSignedUrl, sign_path, verify_path

KEY = b"k" * 32


def _parts(url: str) -> tuple[str, str, str]:
    split = urlsplit(url)
    q = parse_qs(split.query)
    return split.path, q["expires"][0], q["sign"][0]


def test_round_trip() -> None:
    path, expires, sign = _parts(sign_path(KEY, "/ota/firmware/1/fw.bin", 2_000))
    verify_path(KEY, path, expires, sign, now=1_999)
    verify_path(KEY, path, expires, sign, now=2_000)


@pytest.mark.parametrize(
    ("mutate", "now", "fragment"),
    [
        (lambda p, e, s: (p, e, s), 2_001, "expired"),
        (lambda p, e, s: ("/ota/firmware/2/fw.bin", e, s), 0, "bad signature"),
        (lambda p, e, s: (p, "9999", s), 0, "bad signature"),
        (lambda p, e, s: (p, e, "0" * 64), 0, "bad signature"),
        (lambda p, e, s: (p, None, s), 0, "missing"),
        (lambda p, e, s: (p, "-1", s), 0, "missing"),
        (lambda p, e, s: (p, e, None), 0, "missing"),
    ],
)
def test_rejections(mutate, now: int, fragment: str) -> None:  # type: ignore[no-untyped-def]
    path, expires, sign = mutate(*_parts(sign_path(KEY, "/ota/firmware/1/fw.bin", 2_000)))
    with pytest.raises(BadSignedUrl, match=fragment):
        verify_path(KEY, path, expires, sign, now=now)


def test_other_key_is_refused() -> None:
    path, expires, sign = _parts(sign_path(KEY, "/x", 10))
    with pytest.raises(BadSignedUrl):
        verify_path(b"other", path, expires, sign, now=0)


@given(st.text(max_size=30), st.text(max_size=70))
def test_fuzz_never_accepts_garbage(expires: str, sign: str) -> None:
    with pytest.raises(BadSignedUrl):
        verify_path(KEY, "/x", expires, sign, now=0)
