"""Playback URLs: a signed playlist URL verifies only for its device, window and expiry;
``parse_video_url`` reads back what apps build from ``VideoURL`` and refuses the rest."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivcloud.protocol.cs_urls import BadVideoUrl, CsUrls, parse_video_url, playlist_path
from ivcloud.protocol.signing import BadSignedUrl

KEY = b"k" * 32
NOW = 1_800_000_000
urls = CsUrls(KEY, "http://cloud.example:8080/")


def _query(signed: str) -> dict[str, str]:
    return dict(p.split("=", 1) for p in signed.split("?", 1)[1].split("&"))


def test_video_url_is_the_playlist_without_a_window() -> None:
    assert urls.video_url("PID0000001", "cam-1") == (
        "http://cloud.example:8080/api/cs/v1/PID0000001/cam-1/timeshift.m3u8"
    )


def test_signed_playlist_verifies_for_exactly_its_window() -> None:
    signed = urls.sign_playlist("P1", "cam-1", 100, 200, NOW + 60)
    assert signed.startswith(
        "/api/cs/v1/P1/cam-1/timeshift.m3u8?starttime_epoch=100&endtime_epoch=200&expires="
    )
    q = _query(signed)
    urls.verify_playlist("P1", "cam-1", 100, 200, q["expires"], q["sign"], NOW)
    for pid, dn, start, end in (
        ("P2", "cam-1", 100, 200),
        ("P1", "cam-2", 100, 200),
        ("P1", "cam-1", 99, 200),
        ("P1", "cam-1", 100, 201),
    ):
        with pytest.raises(BadSignedUrl, match="bad signature"):
            urls.verify_playlist(pid, dn, start, end, q["expires"], q["sign"], NOW)
    with pytest.raises(BadSignedUrl, match="expired"):
        urls.verify_playlist("P1", "cam-1", 100, 200, q["expires"], q["sign"], NOW + 61)
    with pytest.raises(BadSignedUrl, match="bad signature"):
        urls.verify_playlist("P1", "cam-1", 100, 200, str(NOW + 999), q["sign"], NOW)
    other = CsUrls(b"x" * 32, "http://h")
    with pytest.raises(BadSignedUrl):
        other.verify_playlist("P1", "cam-1", 100, 200, q["expires"], q["sign"], NOW)


def test_path_signatures_do_not_cross_over() -> None:
    signed = urls.sign("/api/cs/v1/P1/cam-1/seg/5.mp4", NOW + 60)
    q = _query(signed)
    urls.verify("/api/cs/v1/P1/cam-1/seg/5.mp4", q["expires"], q["sign"], NOW)
    with pytest.raises(BadSignedUrl):
        urls.verify("/api/cs/v1/P1/cam-1/seg/6.mp4", q["expires"], q["sign"], NOW)
    with pytest.raises(BadSignedUrl):
        urls.verify("/api/cs/v1/P1/cam-2/seg/5.mp4", q["expires"], q["sign"], NOW)


@pytest.mark.parametrize(
    "url",
    [
        "http://h/api/cs/v1/P1/cam-1/timeshift.m3u8?starttime_epoch=1&endtime_epoch=2",
        "https://h:9/prefix/api/cs/v1/P1/cam-1/timeshift.m3u8?endtime_epoch=2&starttime_epoch=1",
        "/api/cs/v1/P1/cam-1/timeshift.m3u8?starttime_epoch=1&endtime_epoch=2&expires=5&sign=ab",
    ],
)
def test_parse_video_url(url: str) -> None:
    window = parse_video_url(url)
    assert (window.product_id, window.device_name, window.start_s, window.end_s) == (
        "P1",
        "cam-1",
        1,
        2,
    )


@pytest.mark.parametrize(
    "url",
    [
        "",
        "http://h/api/cs/v1/P1/cam-1/timeshift.m3u8",
        "http://h/api/cs/v1/P1/cam-1/timeshift.m3u8?starttime_epoch=2&endtime_epoch=2",
        "http://h/api/cs/v1/P1/cam-1/timeshift.m3u8?starttime_epoch=3&endtime_epoch=2",
        "http://h/api/cs/v1/P1/cam-1/timeshift.m3u8?starttime_epoch=-1&endtime_epoch=2",
        "http://h/api/cs/v1/P1/cam-1/timeshift.m3u8?starttime_epoch=1&endtime_epoch=2&x=1",
        "http://h/api/cs/v1/P1/cam-1/timeshift.m3u8?starttime_epoch=1&starttime_epoch=1",
        "http://h/api/cs/v1/P1/cam 1/timeshift.m3u8?starttime_epoch=1&endtime_epoch=2",
        "http://h/api/cs/v1/P1/a/b/timeshift.m3u8?starttime_epoch=1&endtime_epoch=2",
        "http://h/api/cs/v1/P1/cam-1/other.m3u8?starttime_epoch=1&endtime_epoch=2",
        "ftp://h/api/cs/v1/P1/cam-1/timeshift.m3u8?starttime_epoch=1&endtime_epoch=2",
        "http://h/api/cs/v1/P1/cam-1/timeshift.m3u8?starttime_epoch=1&endtime_epoch=2#x",
        "http://h/api/cs/v1/P1/cam-1/timeshift.m3u8?starttime_epoch=1&endtime_epoch=2\n",
        "http://h/api/cs/v1/P1/cam-1/timeshift.m3u8?starttime_epoch=1&endtime_epoch=" + "9" * 12,
        "http://h/" + "a" * 3000,
    ],
)
def test_bad_video_urls(url: str) -> None:
    with pytest.raises(BadVideoUrl):
        parse_video_url(url)


@given(st.text(max_size=200))
def test_parser_raises_only_its_own_error(text: str) -> None:
    try:
        window = parse_video_url(text)
    except BadVideoUrl:
        return
    assert window.start_s < window.end_s


@given(
    st.from_regex(r"[A-Z0-9]{10}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9:_\-.@]{1,48}", fullmatch=True),
    st.integers(min_value=0, max_value=10**10),
    st.integers(min_value=1, max_value=10**6),
)
def test_round_trip_through_video_url(pid: str, dn: str, start: int, length: int) -> None:
    built = (
        f"http://h{playlist_path(pid, dn)}?starttime_epoch={start}&endtime_epoch={start + length}"
    )
    window = parse_video_url(built)
    assert (window.product_id, window.device_name) == (pid, dn)
    assert (window.start_s, window.end_s) == (start, start + length)
    signed = urls.sign_playlist(pid, dn, start, start + length, NOW + 1)
    assert parse_video_url("http://h" + signed) == window
