"""``$ota`` firmware-upgrade messages (spec §5).

``percent`` and ``result_code`` arrive as strings from real SDKs; both strings and integers
are accepted and normalised to integers."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ivcloud.protocol.errors import ProtocolError
from ivcloud.protocol.thing import decode_json_object, encode

VERSION_RE = re.compile(r"^[A-Za-z0-9._\-]{1,32}$")
STATES = ("downloading", "burning", "done", "fail")
RESULT_MESSAGES = {
    -1: "download timeout",
    -2: "file not found",
    -3: "auth or signature expired",
    -4: "md5 mismatch",
    -5: "upgrade failed",
}


class OtaMessageError(ProtocolError):
    """A malformed ``$ota/report`` payload."""


@dataclass(frozen=True, slots=True)
class VersionReport:
    version: str


@dataclass(frozen=True, slots=True)
class ProgressReport:
    version: str
    state: str
    percent: int
    result_code: int
    result_msg: str


def check_version(version: object) -> str:
    if not isinstance(version, str) or not VERSION_RE.match(version):
        raise OtaMessageError("version must be 1-32 characters of A-Z a-z 0-9 . _ -")
    return version


def _int_field(value: object, name: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool):
        raise OtaMessageError(f"{name} must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,10}", value.strip()):
        return int(value)
    raise OtaMessageError(f"{name} must be an integer or a decimal string")


def parse_report(payload: bytes) -> VersionReport | ProgressReport:
    try:
        doc = decode_json_object(payload)
    except ProtocolError as exc:
        raise OtaMessageError(str(exc)) from None
    kind = doc.get("type")
    report = doc.get("report")
    if not isinstance(report, dict):
        raise OtaMessageError("report must be an object")
    if kind == "report_version":
        return VersionReport(check_version(report.get("version")))
    if kind == "report_progress":
        progress = report.get("progress")
        if not isinstance(progress, dict):
            raise OtaMessageError("report.progress must be an object")
        state = progress.get("state")
        if state not in STATES:
            raise OtaMessageError(f"state must be one of {', '.join(STATES)}")
        percent = _int_field(progress.get("percent"), "percent", 0)
        if not 0 <= percent <= 100:
            raise OtaMessageError("percent must be 0-100")
        msg = progress.get("result_msg", "")
        return ProgressReport(
            check_version(report.get("version")),
            str(state),
            percent,
            _int_field(progress.get("result_code"), "result_code", 0),
            msg[:255] if isinstance(msg, str) else "",
        )
    raise OtaMessageError("type must be report_version or report_progress")


def version_reply(version: str) -> bytes:
    return encode(
        {
            "result_code": 0,
            "result_msg": "success",
            "type": "report_version_rsp",
            "version": version,
        }
    )


def update_firmware(version: str, url: str, md5sum: str, file_size: int) -> bytes:
    return encode(
        {
            "type": "update_firmware",
            "version": version,
            "url": url,
            "md5sum": md5sum,
            "file_size": file_size,
        }
    )


def ota_topic(direction: str, product_id: str, device_name: str) -> str:
    """``direction`` is ``report`` (up) or ``update`` (down)."""
    return f"$ota/{direction}/{product_id}/{device_name}"
