"""The XP2P request vocabulary a camera serves (spec device-protocol.md §7.4, §7.7; app-api.md
§6): request text → typed request, or :class:`Xp2pRequestError`.

An app reaches a camera through a tunnel (Tencent's XP2P, ivcloud's WebRTC data channel or
its relay) and speaks HTTP-like requests and query-string commands over it::

    ipc.flv?action=live&channel=0&quality=high            → LiveRequest (FLV stream)
    ipc.flv?action=playback&start_time=…&end_time=…       → PlaybackRequest (FLV from SD card)
    ipc.flv?action=download&file_name=…&offset=…          → DownloadRequest (raw file bytes)
    voice?channel=0&calltype=audio                        → VoiceRequest (talk, app → device)
    action=inner_define&channel=0&cmd=get_device_st&…     → InnerDefine (built-in commands)
    action=user_define&channel=0&cmd=ptz_left             → UserDefine (device-defined)

The parser is the transport-neutral half: the same text arrives whether the tunnel is a data
channel or a relayed WebSocket, and the device must never crash on what an app sends, so
arbitrary text yields a typed request or an :class:`Xp2pRequestError` (``status`` 404 "bad
request" or 406 "unsupported", the codes the ``get_device_st`` reply uses) and nothing else.

Accepted forms of the text: a bare query (the raw P2P interface hands devices just the
query), ``<path>?<query>`` where the last path segment names the resource (``ipc.flv``,
``voice``; anything before it — ``/``, ``ipc.p2p.com/``, ``http://XP2P….xnet/ipc.p2p.com/`` —
is the dummy host the app SDKs prepend) and an HTTP request line ``GET <target> HTTP/1.1``.

Decoding rules chosen here: parameters are ``key=value`` split on ``&``, values
percent-decoded as UTF-8 (``+`` stays ``+``), duplicate keys refused, unknown keys ignored
(the app SDKs add internal ones such as ``_token``, ``_peername``, ``_protocol``). One
exception: a ``user_define`` ``cmd`` whose value starts with ``{`` runs to the end of the
text, because Tencent's LianLian mini-program appends ``JSON.stringify(command)`` without
URL-encoding it, and its JSON may contain ``&`` and ``=``. ``channel`` defaults to 0
(an IPC) when absent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import cast
from urllib.parse import unquote_to_bytes

from ivcloud.protocol.jsontext import BadJson, loads_strict
from ivcloud.protocol.xp2p_types import *  # noqa: F403
from ivcloud.protocol.xp2p_types import (
    INNER_COMMANDS,
    MAX_CHANNEL,
    MAX_OFFSET,
    MAX_REQUEST_CHARS,
    MAX_UNIX_S,
    MAX_USER_ARGS,
    MIN_PLAYBACK_SECONDS,
    QUALITY_RES_TYPES,
    BadRequest,
    CallType,
    DeviceStQuery,
    DownloadRequest,
    FileListQuery,
    InnerDefine,
    InnerParams,
    LianLianCommand,
    LiveRequest,
    MonthQuery,
    NoParams,
    NvrListQuery,
    PlaybackRequest,
    Quality,
    RecordIndexQuery,
    Request,
    SeekQuery,
    StreamInfo,
    StreamType,
    TalkFormat,
    Unsupported,
    UserDefine,
    VoiceRequest,
    Xp2pRequestError,
)
from ivcloud.protocol.xp2p_types import __all__ as __all__

# The whole vocabulary is re-exported so callers name types and parser from one module; its
# list of names lives only in xp2p_types (the star import binds them, importing that module's
# ``__all__`` under its own name is how mypy learns they are exported from here too).
__all__ = [*__all__, "parse_lianlian", "parse_request"]

_KEY = re.compile(r"[A-Za-z0-9_.\-]{1,32}")
_URL_SAFE = re.compile(r"(?:[A-Za-z0-9\-._~]|%[0-9A-Fa-f]{2})*")
_REQUESTER = re.compile(r"[A-Za-z0-9._\-]{1,64}")
_DIGITS = re.compile(r"[0-9]{1,16}")
_REQUEST_LINE = re.compile(r"(?:GET|POST) (\S+)(?: HTTP/1\.[01])?")
_BARE_QUERY = re.compile(r"[A-Za-z0-9_.\-]{1,32}=")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# -- parsing -----------------------------------------------------------------------------


def parse_request(text: str) -> Request:
    """Parse one request or command; raises :class:`Xp2pRequestError` (only)."""
    if len(text) > MAX_REQUEST_CHARS:
        raise BadRequest(f"request longer than {MAX_REQUEST_CHARS} characters")
    resource, query = _split_target(text.strip())
    raw = _split_query(query)
    params = {key: _decode(key, value) for key, value in raw.items()}
    if resource == "voice":
        return _voice(params)
    action = params.get("action")
    if action is None:
        raise BadRequest("missing action")
    if resource == "ipc.flv" and action in ("live", "playback", "download"):
        return _stream(action, params, raw)
    if resource == "" and action in ("live", "playback", "download"):
        return _stream(action, params, raw)  # the raw P2P interface passes just the query
    try:
        if action == "inner_define":
            return _inner(params)
        if action == "user_define":
            return _user(params)
    except Xp2pRequestError as exc:
        exc.command = True
        raise
    raise Unsupported(f"unsupported action {action[:64]!r}")


def _split_target(text: str) -> tuple[str, str]:
    line = _REQUEST_LINE.fullmatch(text)
    if line:
        text = line.group(1)
    if _BARE_QUERY.match(text):
        path, query = "", text  # starts "key=": a bare query (its JSON may hold a "?")
    else:
        path, _, query = text.partition("?")
    for scheme in ("http://", "https://"):
        if path.startswith(scheme):
            path = path[len(scheme) :]
    resource = path.rstrip("/").rsplit("/", 1)[-1]
    if resource not in ("", "ipc.flv", "voice"):
        raise BadRequest(f"unknown resource {resource[:64]!r}")
    return resource, query


def _split_query(query: str) -> dict[str, str]:
    """Raw (still percent-encoded) values by key."""
    out: dict[str, str] = {}
    rest = query
    while rest:
        if rest.startswith("cmd={"):
            part, rest = rest, ""  # LianLian JSON, not URL-encoded: runs to the end
        else:
            part, _, rest = rest.partition("&")
        if not part:
            continue  # tolerate "a=1&&b=2" and a trailing "&"
        key, eq, value = part.partition("=")
        if not _KEY.fullmatch(key):
            raise BadRequest(f"bad parameter name {key[:32]!r}")
        if not eq:
            raise BadRequest(f"parameter {key!r} has no value")
        if key in out:
            raise BadRequest(f"parameter {key!r} given twice")
        out[key] = value
    return out


def _decode(key: str, value: str) -> str:
    """Percent-decode as UTF-8; raw JSON (LianLian) is taken as it is, since decoding would
    alter ``%xx`` inside its strings."""
    try:
        decoded = value if value.startswith("{") else unquote_to_bytes(value).decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        raise BadRequest(f"parameter {key!r} is not UTF-8") from None
    if _CONTROL.search(decoded):
        raise BadRequest(f"parameter {key!r} contains control characters")
    return decoded


def _int(params: Mapping[str, str], key: str, lo: int, hi: int, cmd: str | None = None) -> int:
    value = params.get(key)
    if value is None:
        raise BadRequest(f"missing {key}", cmd=cmd)
    if not _DIGITS.fullmatch(value) or not lo <= int(value) <= hi:
        raise BadRequest(f"{key} must be an integer in {lo}..{hi}", cmd=cmd)
    return int(value)


def _opt_int(
    params: Mapping[str, str], key: str, lo: int, hi: int, cmd: str | None = None
) -> int | None:
    return None if params.get(key) in (None, "") else _int(params, key, lo, hi, cmd)


def _channel(params: Mapping[str, str], cmd: str | None = None) -> int:
    if params.get("channel") in (None, ""):
        return 0
    return _int(params, "channel", 0, MAX_CHANNEL, cmd)


def _quality(params: Mapping[str, str], cmd: str | None = None) -> Quality:
    value = params.get("quality") or "standard"
    if value not in QUALITY_RES_TYPES:
        raise BadRequest("quality must be standard, high or super", cmd=cmd)
    return cast(Quality, value)


def _crypto(params: Mapping[str, str]) -> bool:
    value = params.get("_crypto", "on")
    if value not in ("on", "off"):
        raise BadRequest("_crypto must be off (or on)")
    return value == "on"


def _info(params: Mapping[str, str], raw: Mapping[str, str]) -> StreamInfo:
    user_args = raw.get("user_args")
    if user_args is not None and (
        len(user_args) > MAX_USER_ARGS or not _URL_SAFE.fullmatch(user_args)
    ):
        raise BadRequest(f"user_args must be URL-safe and at most {MAX_USER_ARGS} bytes")
    requester = params.get("requester")
    if requester is not None and not _REQUESTER.fullmatch(requester):
        raise BadRequest("requester must be 1..64 of [A-Za-z0-9._-]")
    req_id = params.get("req_id")
    if req_id is not None and not _REQUESTER.fullmatch(req_id):
        raise BadRequest("req_id must be 1..64 of [A-Za-z0-9._-]")
    return StreamInfo(params.get("user_args"), requester, req_id)


def _times(
    params: Mapping[str, str], cmd: str | None, *, required: bool
) -> tuple[int | None, int | None]:
    if required:
        start: int | None = _int(params, "start_time", 0, MAX_UNIX_S, cmd)
        end: int | None = _int(params, "end_time", 0, MAX_UNIX_S, cmd)
    else:
        start = _opt_int(params, "start_time", 0, MAX_UNIX_S, cmd)
        end = _opt_int(params, "end_time", 0, MAX_UNIX_S, cmd)
    if start is not None and end is not None and end - start < MIN_PLAYBACK_SECONDS:
        raise BadRequest(
            f"start_time and end_time must be at least {MIN_PLAYBACK_SECONDS} s apart", cmd=cmd
        )
    return start, end


def _stream(action: str, params: Mapping[str, str], raw: Mapping[str, str]) -> Request:
    channel = _channel(params)
    crypto = _crypto(params)
    if action == "live":
        return LiveRequest(channel, _quality(params), crypto, _info(params, raw))
    if action == "playback":
        start, end = _times(params, None, required=True)
        assert start is not None and end is not None
        kind = _opt_int(params, "type", 0, MAX_UNIX_S)
        return PlaybackRequest(channel, start, end, kind, crypto, _info(params, raw))
    name = params.get("file_name", "")
    if not name or len(name) > 255 or name in (".", "..") or any(c in name for c in "/\\"):
        raise BadRequest("file_name must be a plain file name of 1..255 characters")
    return DownloadRequest(channel, name, _int(params, "offset", 0, MAX_OFFSET), crypto)


def _voice(params: Mapping[str, str]) -> VoiceRequest:
    calltype = params.get("calltype") or "audio"
    if calltype not in ("audio", "video"):
        raise BadRequest("calltype must be audio or video")
    fmt = params.get("format") or "flv"
    if fmt not in ("flv", "adts", "pcm"):
        raise BadRequest("format must be flv, adts or pcm")
    return VoiceRequest(
        _channel(params), cast(CallType, calltype), cast(TalkFormat, fmt), _crypto(params)
    )


def _inner(params: Mapping[str, str]) -> InnerDefine:
    cmd = params.get("cmd")
    if not cmd:
        raise BadRequest("missing cmd")
    if cmd not in INNER_COMMANDS:
        raise Unsupported(f"unsupported inner_define command {cmd[:64]!r}", cmd=cmd[:64])
    channel = _channel(params, cmd)
    return InnerDefine(cmd, channel, _inner_params(cmd, params))


def _inner_params(cmd: str, params: Mapping[str, str]) -> InnerParams:
    if cmd == "get_device_st":
        kind = (params.get("type") or "").strip("()")  # the Android doc sends "type=(live)"
        if kind not in ("live", "voice", "playback"):
            raise BadRequest("type must be live, voice or playback", cmd=cmd)
        return DeviceStQuery(cast(StreamType, kind), _quality(params, cmd))
    if cmd == "get_record_index":
        start, end = _times(params, cmd, required=False)
        return RecordIndexQuery(start, end, _opt_int(params, "type", 0, MAX_UNIX_S, cmd))
    if cmd == "get_month_record":
        value = params.get("time", "")
        if len(value) != 6 or not value.isascii() or not value.isdigit():
            raise BadRequest("time must be yyyymm", cmd=cmd)
        year, month = int(value[:4]), int(value[4:])
        if year < 1970 or not 1 <= month <= 12:
            raise BadRequest("time must be yyyymm", cmd=cmd)
        return MonthQuery(year, month)
    if cmd == "get_file_list":
        start, end = _times(params, cmd, required=False)
        file_type = _opt_int(params, "file_type", 0, 1, cmd)
        return FileListQuery(start, end, 0 if file_type is None else file_type)
    if cmd == "playback_seek":
        progress = _opt_int(params, "progress", 0, MAX_OFFSET, cmd)
        when = _opt_int(params, "time", 0, MAX_UNIX_S, cmd)
        if (progress is None) == (when is None):
            raise BadRequest("playback_seek needs progress=<ms> or time=<unix s>", cmd=cmd)
        return SeekQuery(progress, when)
    if cmd == "get_nvr_list":
        return NvrListQuery(params.get("nvr") or None)
    return NoParams()


def _user(params: Mapping[str, str]) -> UserDefine:
    cmd = params.get("cmd")
    if not cmd:
        raise BadRequest("missing cmd")
    channel = _channel(params, cmd[:64])
    lianlian = parse_lianlian(cmd) if cmd.startswith("{") else None
    return UserDefine(cmd, channel, lianlian)


def parse_lianlian(text: str) -> LianLianCommand:
    """The LianLian JSON command form; :class:`BadRequest` if it is not one."""
    try:
        doc = loads_strict(text)
    except (BadJson, RecursionError):
        raise BadRequest("user_define cmd starts with '{' but is not JSON") from None
    if not isinstance(doc, dict):
        raise BadRequest("user_define JSON must be an object")
    topic = doc.get("topic")
    if not isinstance(topic, str) or not topic:
        raise BadRequest("user_define JSON needs a string topic")
    message_id = doc.get("message_id")
    if isinstance(message_id, bool) or not isinstance(message_id, int | float | str | None):
        raise BadRequest("message_id must be a number or a string", cmd=topic)
    data = doc.get("data", {})
    if not isinstance(data, dict):
        raise BadRequest("user_define JSON data must be an object", cmd=topic)
    extra = {k: v for k, v in doc.items() if k not in ("topic", "message_id", "data")}
    return LianLianCommand(topic, message_id, data, extra)
