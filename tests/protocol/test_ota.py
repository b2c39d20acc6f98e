"""``$ota`` message parsing and building."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivcloud.protocol import ota


def test_report_version() -> None:
    parsed = ota.parse_report(b'{"type":"report_version","report":{"version":"1.0.0"}}')
    assert parsed == ota.VersionReport("1.0.0")


def test_report_progress_strings_as_real_sdks_send() -> None:
    parsed = ota.parse_report(
        json.dumps(
            {
                "type": "report_progress",
                "report": {
                    "progress": {
                        "state": "fail",
                        "percent": "0",
                        "result_code": "-4",
                        "result_msg": "md5 not match",
                    },
                    "version": "0.2",
                },
            }
        ).encode()
    )
    assert parsed == ota.ProgressReport("0.2", "fail", 0, -4, "md5 not match")


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ({"type": "report_version", "report": {"version": "x" * 33}}, "version"),
        ({"type": "report_version", "report": {}}, "version"),
        ({"type": "report_version"}, "report"),
        ({"type": "other", "report": {}}, "type"),
        ({"type": "report_progress", "report": {"version": "1"}}, "progress"),
        (
            {
                "type": "report_progress",
                "report": {"version": "1", "progress": {"state": "downloading", "percent": "101"}},
            },
            "percent",
        ),
        (
            {
                "type": "report_progress",
                "report": {"version": "1", "progress": {"state": "downloading", "percent": True}},
            },
            "percent",
        ),
        (
            {
                "type": "report_progress",
                "report": {"version": "1", "progress": {"state": "done", "result_code": "abc"}},
            },
            "result_code",
        ),
    ],
)
def test_rejections(doc: dict[str, object], fragment: str) -> None:
    with pytest.raises(ota.OtaMessageError, match=fragment):
        ota.parse_report(json.dumps(doc).encode())


def test_builders() -> None:
    assert json.loads(ota.version_reply("1.0")) == {
        "result_code": 0,
        "result_msg": "success",
        "type": "report_version_rsp",
        "version": "1.0",
    }
    assert json.loads(ota.update_firmware("2", "http://x/f", "a" * 32, 10)) == {
        "type": "update_firmware",
        "version": "2",
        "url": "http://x/f",
        "md5sum": "a" * 32,
        "file_size": 10,
    }


@given(st.binary(max_size=300))
def test_fuzz_bytes(data: bytes) -> None:
    with contextlib.suppress(ota.OtaMessageError):
        ota.parse_report(data)


@given(
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["report_version", "report_progress", "x"]),
            "report": st.dictionaries(
                st.sampled_from(["version", "progress"]),
                st.none()
                | st.text(max_size=40)
                | st.integers()
                | st.dictionaries(
                    st.sampled_from(["state", "percent", "result_code", "result_msg"]),
                    st.none() | st.text(max_size=5) | st.integers(),
                ),
                max_size=2,
            ),
        }
    )
)
def test_fuzz_structured(doc: dict[str, object]) -> None:
    try:
        parsed = ota.parse_report(json.dumps(doc).encode())
    except ota.OtaMessageError:
        return
    assert isinstance(parsed, ota.VersionReport | ota.ProgressReport)
