"""Reply texts of the XP2P commands, exactly as the spec tables show them (device-protocol.md
§7.7; Tencent's "SDK信令说明"): compact JSON, numbers quoted where Tencent quotes them.

===========================  ===============================================================
Command                      Reply
===========================  ===============================================================
``get_device_st``            ``[{"status":"0","appConnectNum":"2"}]``
``get_record_index``         ``{"video_list":[{"type":0,"start_time":"…","end_time":"…"}]}``
                             (``type`` unquoted, the times quoted: as Tencent's doc prints it)
``get_month_record``         ``{"video_list":"8320"}`` — bit (d−1) set ⇔ day d has records
``playback_pause|resume|``   ``{"status":"0"}``
``seek``
``playback_progress``        ``{"status":"0","progress":"<ms>"}``
``get_nvr_list``             ``[{"DeviceName":"…","Channel":"1","Online":"0"}]``
``get_file_list``            **ivcloud's choice** (Tencent's is unpublished), after the C
                             struct ``iv_cm_file_info_s``: ``{"file_list":[{"file_type":0,
                             "file_name":"…","file_size":123,"begin_time_s":…,
                             "end_time_s":…,"extra_info":{…}}]}`` — field names of the
                             struct, integers as JSON numbers, ``extra_info`` as an object
LianLian ``user_define``     ``{"confirmation_topic":<topic>,"result":"0",…,"message_id":…}``
===========================  ===============================================================

A command that fails gets its command's shape when it has one (``get_device_st`` →
``[{"status":"404","appConnectNum":"n"}]``), else ``{"status":"404"}`` / ``{"status":"406"}``
(ivcloud's choice; Tencent documents the codes, not the error replies).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ivcloud.protocol.xp2p import LianLianCommand, Xp2pRequestError

__all__ = [
    "FileInfo",
    "NvrChannel",
    "RecordSpan",
    "device_st_reply",
    "error_reply",
    "file_list_reply",
    "lianlian_reply",
    "month_bitmask",
    "month_days",
    "month_record_reply",
    "nvr_list_reply",
    "progress_reply",
    "record_index_reply",
    "status_reply",
]


def _dumps(doc: Any) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class RecordSpan:
    """One ``video_list`` entry: Unix seconds and the product-defined record type."""

    type: int
    start_time: int
    end_time: int


@dataclass(frozen=True, slots=True)
class FileInfo:
    """``iv_cm_file_info_s``: ``file_type`` 0 video / 1 picture."""

    file_type: int
    file_name: str
    file_size: int
    begin_time_s: int
    end_time_s: int
    extra_info: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NvrChannel:
    device_name: str
    channel: int
    online: bool


def device_st_reply(status: int, app_connect_num: int) -> str:
    return _dumps([{"status": str(status), "appConnectNum": str(app_connect_num)}])


def record_index_reply(spans: Iterable[RecordSpan]) -> str:
    return _dumps(
        {
            "video_list": [
                {"type": s.type, "start_time": str(s.start_time), "end_time": str(s.end_time)}
                for s in spans
            ]
        }
    )


def month_bitmask(days: Iterable[int]) -> int:
    """Bit (d−1) set for every day d (1..31): days 8 and 14 → 8320."""
    mask = 0
    for day in days:
        if not 1 <= day <= 31:
            raise ValueError(f"day {day} outside 1..31")
        mask |= 1 << (day - 1)
    return mask


def month_days(mask: int) -> list[int]:
    """The inverse of :func:`month_bitmask` (for the app side)."""
    return [d for d in range(1, 32) if mask >> (d - 1) & 1]


def month_record_reply(days: Iterable[int]) -> str:
    return _dumps({"video_list": str(month_bitmask(days))})


def status_reply(status: int) -> str:
    return _dumps({"status": str(status)})


def progress_reply(status: int, progress_ms: int) -> str:
    return _dumps({"status": str(status), "progress": str(progress_ms)})


def file_list_reply(files: Iterable[FileInfo]) -> str:
    return _dumps(
        {
            "file_list": [
                {
                    "file_type": f.file_type,
                    "file_name": f.file_name,
                    "file_size": f.file_size,
                    "begin_time_s": f.begin_time_s,
                    "end_time_s": f.end_time_s,
                    "extra_info": dict(f.extra_info),
                }
                for f in files
            ]
        }
    )


def nvr_list_reply(channels: Iterable[NvrChannel]) -> str:
    return _dumps(
        [
            {"DeviceName": c.device_name, "Channel": str(c.channel), "Online": str(int(c.online))}
            for c in channels
        ]
    )


def lianlian_reply(command: LianLianCommand, result: str = "0", **fields: Any) -> str:
    """``{"confirmation_topic":…,"result":"0",<fields>,"message_id":…}``; ``message_id``
    echoed as it came (number or string)."""
    doc: dict[str, Any] = {"confirmation_topic": command.topic, "result": result}
    doc.update(fields)
    doc["message_id"] = command.message_id
    return _dumps(doc)


def error_reply(error: Xp2pRequestError, *, app_connect_num: int = 0) -> str:
    """The reply to a command that could not be served, in its command's shape."""
    if error.cmd == "get_device_st":
        return device_st_reply(error.status, app_connect_num)
    return status_reply(error.status)
