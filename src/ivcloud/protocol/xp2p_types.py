"""Typed XP2P requests and their errors (the vocabulary of spec device-protocol.md §7.7 and
app-api.md §6): what :func:`ivcloud.protocol.xp2p.parse_request` produces. Kept apart from
the parser so device, app SDK and tunnel code can name the types without the parsing rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Final, Literal

from ivcloud.protocol.errors import ProtocolError

__all__ = [
    "INNER_COMMANDS",
    "MAX_CHANNEL",
    "MAX_REQUEST_CHARS",
    "MAX_USER_ARGS",
    "MIN_PLAYBACK_SECONDS",
    "QUALITY_RES_TYPES",
    "ST_ACCEPT",
    "ST_BAD_REQUEST",
    "ST_REFUSE",
    "ST_TOO_MANY",
    "ST_UNSUPPORTED",
    "BadRequest",
    "DeviceStQuery",
    "DownloadRequest",
    "FileListQuery",
    "InnerDefine",
    "InnerParams",
    "LianLianCommand",
    "LiveRequest",
    "MonthQuery",
    "NoParams",
    "NvrListQuery",
    "PlaybackRequest",
    "Quality",
    "RecordIndexQuery",
    "Request",
    "ResType",
    "SeekQuery",
    "StreamInfo",
    "TalkFormat",
    "Unsupported",
    "UserDefine",
    "VoiceRequest",
    "Xp2pRequestError",
    "res_type_for",
]

Quality = Literal["standard", "high", "super"]
StreamType = Literal["live", "voice", "playback"]
CallType = Literal["audio", "video"]
TalkFormat = Literal["flv", "adts", "pcm"]

# get_device_st statuses (spec §7.7), reused as the status of every refusal.
ST_ACCEPT: Final = 0
ST_REFUSE: Final = 1
ST_BAD_REQUEST: Final = 404
ST_TOO_MANY: Final = 405
ST_UNSUPPORTED: Final = 406

MAX_REQUEST_CHARS: Final = 16 * 1024  # replies ≤16 KB are recommended; requests alike
MAX_USER_ARGS: Final = 1024
MAX_CHANNEL: Final = 64  # iv_sys_init max_channel_num ≤ 64
MIN_PLAYBACK_SECONDS: Final = 5
MAX_UNIX_S: Final = (1 << 32) - 1
MAX_OFFSET: Final = (1 << 53) - 1
INNER_COMMANDS: Final = frozenset(
    {
        "get_nvr_list",
        "get_device_st",
        "get_record_index",
        "get_month_record",
        "get_file_list",
        "playback_pause",
        "playback_resume",
        "playback_seek",
        "playback_progress",
    }
)


class Xp2pRequestError(ProtocolError):
    """A request the device cannot serve. ``status`` is the XP2P status the reply carries
    (404 bad request, 406 unsupported); ``command`` is true for an ``inner_define`` /
    ``user_define`` command (answered with a reply text, where a stream request is refused)
    and ``cmd`` names the command when one was recognised, so the reply can take that
    command's shape."""

    status: int = ST_BAD_REQUEST

    def __init__(self, message: str, *, cmd: str | None = None) -> None:
        super().__init__(message)
        self.cmd = cmd
        self.command = cmd is not None


class BadRequest(Xp2pRequestError):
    """Malformed: missing or invalid parameters (status 404, "错误请求")."""

    status = ST_BAD_REQUEST


class Unsupported(Xp2pRequestError):
    """Well-formed but not something this device does: an unknown action or command
    (status 406, "信令不支持")."""

    status = ST_UNSUPPORTED


class ResType(IntEnum):
    """``video_res_type`` of the ``iv_avt_*`` callbacks (spec §7.4)."""

    FL = 0  # fluency
    SD = 1
    HD = 2
    PB = 3  # playback
    AUDIO = 4


QUALITY_RES_TYPES: Final[dict[str, ResType]] = {
    "standard": ResType.FL,
    "high": ResType.SD,
    "super": ResType.HD,
}


def res_type_for(quality: Quality) -> ResType:
    """The res type a ``quality`` maps to. Tencent does not publish the mapping (spec §7.7
    "[unconfirmed]"); ivcloud maps by order: standard → FL, high → SD, super → HD."""
    return QUALITY_RES_TYPES[quality]


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What ``iv_avt_req_stream_info_s`` gives a device with a stream request: the app's
    opaque ``user_args`` and who asks (``requester``: app-android, wxmp-ios, …)."""

    user_args: str | None = None
    requester: str | None = None
    req_id: str | None = None


@dataclass(frozen=True, slots=True)
class LiveRequest:
    channel: int
    quality: Quality
    crypto: bool = True
    info: StreamInfo = field(default_factory=StreamInfo)

    @property
    def res_type(self) -> ResType:
        return res_type_for(self.quality)


@dataclass(frozen=True, slots=True)
class PlaybackRequest:
    """``start_time``/``end_time`` in Unix seconds, at least 5 s apart; ``type`` is the
    product-defined record type (absent: any)."""

    channel: int
    start_time: int
    end_time: int
    type: int | None = None
    crypto: bool = True
    info: StreamInfo = field(default_factory=StreamInfo)


@dataclass(frozen=True, slots=True)
class DownloadRequest:
    channel: int
    file_name: str
    offset: int
    crypto: bool = True


@dataclass(frozen=True, slots=True)
class VoiceRequest:
    """Talk audio from the app. ``format`` is an ivcloud extension saying how the bytes
    written after the request are framed: ``flv`` (default; what Tencent's app SDKs and the
    mini-program pusher send: AAC in FLV audio tags), ``adts`` (AAC frames with ADTS
    headers) or ``pcm`` (s16le mono 16 kHz)."""

    channel: int
    calltype: CallType = "audio"
    format: TalkFormat = "flv"
    crypto: bool = True


# -- inner_define parameters -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NoParams:
    """``playback_pause`` / ``playback_resume`` / ``playback_progress``."""


@dataclass(frozen=True, slots=True)
class NvrListQuery:
    nvr: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceStQuery:
    """``get_device_st``: may the app open a stream of ``type`` now?"""

    type: StreamType
    quality: Quality = "standard"


@dataclass(frozen=True, slots=True)
class RecordIndexQuery:
    """``get_record_index``; both times absent = the whole card (the Android SDK's doc sends
    the command with no parameters)."""

    start_time: int | None = None
    end_time: int | None = None
    type: int | None = None


@dataclass(frozen=True, slots=True)
class MonthQuery:
    """``get_month_record&time=yyyymm``."""

    year: int
    month: int


@dataclass(frozen=True, slots=True)
class FileListQuery:
    start_time: int | None = None
    end_time: int | None = None
    file_type: int = 0  # 0 video, 1 picture


@dataclass(frozen=True, slots=True)
class SeekQuery:
    """``playback_seek``: exactly one of ``progress_ms`` (newer doc: ms into the played
    range) and ``time`` (older doc: Unix seconds)."""

    progress_ms: int | None = None
    time: int | None = None


InnerParams = (
    NoParams
    | NvrListQuery
    | DeviceStQuery
    | RecordIndexQuery
    | MonthQuery
    | FileListQuery
    | SeekQuery
)


@dataclass(frozen=True, slots=True)
class InnerDefine:
    cmd: str
    channel: int
    params: InnerParams


@dataclass(frozen=True, slots=True)
class LianLianCommand:
    """The LianLian mini-program's JSON ``user_define`` form
    ``{"topic":…,"message_id":…,"data":{…}}``. ``message_id`` (number or string) is echoed
    in the reply; ``extra`` holds other top-level fields (``user``, ``status``)."""

    topic: str
    message_id: int | float | str | None
    data: Mapping[str, Any]
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UserDefine:
    """A device-defined command (``ptz_left``, a JSON document, anything): ``cmd`` is the
    decoded text handed to the device as is; ``lianlian`` is set when it is the LianLian
    JSON form."""

    cmd: str
    channel: int
    lianlian: LianLianCommand | None = None


Request = LiveRequest | PlaybackRequest | DownloadRequest | VoiceRequest | InnerDefine | UserDefine
