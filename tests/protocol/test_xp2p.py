"""The XP2P request vocabulary: the spec's examples parse to typed requests, bad input to
404/406 errors (and never to another exception, whatever the text), replies are the spec's
exact texts, and the app SDK's error catalogue carries the seed's codes and log lines."""

from __future__ import annotations

import contextlib
import json
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivcloud.protocol.errors import ProtocolError
from ivcloud.protocol.xp2p import (
    BadRequest,
    DeviceStQuery,
    DownloadRequest,
    FileListQuery,
    InnerDefine,
    LianLianCommand,
    LiveRequest,
    MonthQuery,
    NoParams,
    NvrListQuery,
    PlaybackRequest,
    RecordIndexQuery,
    ResType,
    SeekQuery,
    StreamInfo,
    Unsupported,
    UserDefine,
    VoiceRequest,
    Xp2pRequestError,
    parse_request,
)
from ivcloud.protocol.xp2p_errors import (
    CATALOGUE,
    XP2P_ERR_DETECT_NOTREADY,
    XP2P_ERR_GET_XP2PINFO,
    XP2P_ERR_P2P_ININED,
    XP2P_ERR_REQUEST_FAIL,
    XP2P_ERR_TIMEOUT,
    XP2P_ERR_VERSION,
    XP2P_ERR_XP2PINFO_RULE,
    by_name,
    log_line,
    lookup,
)
from ivcloud.protocol.xp2p_replies import (
    FileInfo,
    NvrChannel,
    RecordSpan,
    device_st_reply,
    error_reply,
    file_list_reply,
    lianlian_reply,
    month_bitmask,
    month_days,
    month_record_reply,
    nvr_list_reply,
    progress_reply,
    record_index_reply,
    status_reply,
)

# -- the spec's requests -----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "ipc.flv?action=live&channel=0&quality=high",
        "/ipc.flv?action=live&channel=0&quality=high",
        "ipc.p2p.com/ipc.flv?action=live&channel=0&quality=high",
        "http://XP2Pk3fS3onCsgGaQJCinTCtfw==%2.4.46.xnet/ipc.p2p.com/ipc.flv?action=live&channel=0&quality=high",
        "GET /ipc.flv?action=live&channel=0&quality=high HTTP/1.1",
        "action=live&channel=0&quality=high",  # the raw P2P interface: just the query
    ],
)
def test_live_request_in_every_form(text: str) -> None:
    req = parse_request(text)
    assert req == LiveRequest(0, "high")
    assert isinstance(req, LiveRequest) and req.res_type is ResType.SD


def test_live_request_options() -> None:
    req = parse_request(
        "ipc.flv?action=live&channel=3&quality=super&_crypto=off&user_args=a%20b-c"
        "&requester=wxmp-ios&_token=secret&_peername=p&req_id=r1&_protocol=tcp&_port=9"
    )
    assert req == LiveRequest(3, "super", False, StreamInfo("a b-c", "wxmp-ios", "r1"))
    assert parse_request("ipc.flv?action=live") == LiveRequest(0, "standard")


def test_playback_download_voice() -> None:
    assert parse_request(
        "ipc.flv?action=playback&channel=0&start_time=1767225600&end_time=1767225605&type=2"
    ) == PlaybackRequest(0, 1767225600, 1767225605, 2)
    assert parse_request(
        "ipc.flv?action=download&channel=0&file_name=rec_1_2_0.flv&offset=1024&_crypto=off"
    ) == DownloadRequest(0, "rec_1_2_0.flv", 1024, False)
    assert parse_request("voice?channel=0") == VoiceRequest(0, "audio", "flv")
    assert parse_request("voice?channel=1&calltype=video&format=adts") == VoiceRequest(
        1, "video", "adts"
    )


@pytest.mark.parametrize(
    ("text", "params"),
    [
        (
            "action=inner_define&channel=0&cmd=get_device_st&type=voice&quality=high",
            DeviceStQuery("voice", "high"),
        ),
        # The Android SDK doc's example literally sends "type=(live)".
        (
            "action=inner_define&channel=0&cmd=get_device_st&type=(live)&quality=high",
            DeviceStQuery("live", "high"),
        ),
        ("action=inner_define&channel=0&cmd=get_record_index", RecordIndexQuery()),
        (
            "action=inner_define&channel=0&cmd=get_record_index&start_time=100&end_time=105&type=0",
            RecordIndexQuery(100, 105, 0),
        ),
        ("action=inner_define&channel=0&cmd=get_month_record&time=202601", MonthQuery(2026, 1)),
        (
            "action=inner_define&channel=0&cmd=get_file_list&start_time=0&end_time=99&file_type=1",
            FileListQuery(0, 99, 1),
        ),
        ("action=inner_define&channel=0&cmd=playback_pause", NoParams()),
        ("action=inner_define&channel=0&cmd=playback_seek&progress=1500", SeekQuery(1500, None)),
        (
            "action=inner_define&channel=0&cmd=playback_seek&time=1767225600",
            SeekQuery(None, 1767225600),
        ),
        ("action=inner_define&cmd=get_nvr_list&nvr=box1", NvrListQuery("box1")),
    ],
)
def test_inner_define_commands(text: str, params: object) -> None:
    req = parse_request(text)
    assert isinstance(req, InnerDefine) and req.params == params and req.channel == 0


def test_user_define_plain_and_lianlian() -> None:
    assert parse_request("action=user_define&channel=0&cmd=ptz_left") == UserDefine("ptz_left", 0)
    # LianLian appends JSON.stringify(...) unencoded: "&" and "%20" inside must survive.
    doc = {
        "topic": "upgrade",
        "message_id": 7,
        "data": {"url": "https://x/fw.bin?a=1&b=%20", "md5": "9D9F", "fileSize": 3137536},
    }
    text = "action=user_define&channel=0&cmd=" + json.dumps(doc, separators=(",", ":"))
    req = parse_request(text)
    assert isinstance(req, UserDefine)
    assert req.lianlian == LianLianCommand("upgrade", 7, doc["data"])  # type: ignore[arg-type]
    # URL-encoded JSON works as well; extra top-level fields are kept.
    encoded = quote(json.dumps({"topic": "bind_status", "status": "success", "message_id": "m1"}))
    req = parse_request(f"action=user_define&channel=0&cmd={encoded}")
    assert isinstance(req, UserDefine) and req.lianlian is not None
    assert req.lianlian.message_id == "m1" and req.lianlian.extra == {"status": "success"}


@pytest.mark.parametrize(
    ("text", "error", "cmd"),
    [
        ("ipc.flv?action=playback&channel=0&start_time=100&end_time=104", BadRequest, None),
        ("ipc.flv?action=playback&channel=0&start_time=100", BadRequest, None),
        ("ipc.flv?action=live&quality=ultra", BadRequest, None),
        ("ipc.flv?action=live&channel=65", BadRequest, None),
        ("ipc.flv?action=live&channel=-1", BadRequest, None),
        ("ipc.flv?action=live&user_args=" + "a" * 1025, BadRequest, None),
        ("ipc.flv?action=live&user_args=a b", BadRequest, None),
        ("ipc.flv?action=live&channel=0&channel=1", BadRequest, None),
        ("ipc.flv?action=live&_crypto=maybe", BadRequest, None),
        ("ipc.flv?action=live&requester=%00", BadRequest, None),
        ("ipc.flv?action=download&file_name=../etc/passwd&offset=0", BadRequest, None),
        ("ipc.flv?action=download&file_name=a.flv", BadRequest, None),
        ("ipc.flv?channel=0", BadRequest, None),
        ("index.html?action=live", BadRequest, None),
        ("ipc.flv?action=live-mjpg&channel=0", Unsupported, None),
        ("action=inner_define&cmd=get_device_st&type=stream", BadRequest, "get_device_st"),
        ("action=inner_define&cmd=get_month_record&time=202613", BadRequest, "get_month_record"),
        ("action=inner_define&channel=0&cmd=playback_seek", BadRequest, "playback_seek"),
        ("action=inner_define&channel=0&cmd=playback_ff&speed=2", Unsupported, "playback_ff"),
        ("action=inner_define&channel=0", BadRequest, None),
        ("action=user_define&channel=0&cmd={not json", BadRequest, None),
        ('action=user_define&channel=0&cmd={"message_id":1}', BadRequest, None),
        ("voice?calltype=fax", BadRequest, None),
        ("action=live&%FF=1", BadRequest, None),
        ("ipc.flv?action=live&user_args=%FF", BadRequest, None),
    ],
)
def test_bad_requests(text: str, error: type[Xp2pRequestError], cmd: str | None) -> None:
    with pytest.raises(error) as info:
        parse_request(text)
    assert info.value.cmd == cmd
    assert info.value.status == (404 if error is BadRequest else 406)
    assert str(info.value)  # a clear message for the log


# -- properties --------------------------------------------------------------------------


@given(st.text(max_size=300))
def test_arbitrary_text_never_escapes_as_another_exception(text: str) -> None:
    try:
        req = parse_request(text)
    except Xp2pRequestError as exc:
        assert exc.status in (404, 406)
        assert isinstance(exc, ProtocolError)
    else:
        kinds = (LiveRequest, PlaybackRequest, DownloadRequest, VoiceRequest)
        assert isinstance(req, (*kinds, InnerDefine, UserDefine))


_PARAM_CHARS = st.sampled_from(
    [
        "action",
        "channel",
        "cmd",
        "quality",
        "type",
        "time",
        "start_time",
        "end_time",
        "offset",
        "file_name",
        "progress",
        "user_args",
        "_crypto",
        "calltype",
        "format",
    ]
)
_VALUES = st.one_of(
    st.sampled_from(
        [
            "live",
            "playback",
            "download",
            "inner_define",
            "user_define",
            "get_device_st",
            "get_month_record",
            "playback_seek",
            "get_record_index",
            "0",
            "5",
            "high",
            "off",
            "(live)",
            "{",
            "audio",
            "pcm",
        ]
    ),
    st.text(max_size=12),
    st.integers(-5, 2**40).map(str),
)


@given(
    st.sampled_from(["", "ipc.flv?", "voice?", "/ipc.flv?", "GET /ipc.flv?"]),
    st.lists(st.tuples(_PARAM_CHARS, _VALUES), max_size=8),
)
def test_structured_garbage_is_typed_or_refused(prefix: str, pairs: list[tuple[str, str]]) -> None:
    text = prefix + "&".join(f"{k}={v}" for k, v in pairs)
    with contextlib.suppress(Xp2pRequestError):
        parse_request(text)


@given(
    st.integers(0, 64),
    st.sampled_from(["standard", "high", "super"]),
    st.booleans(),
    st.text(st.characters(codec="utf-8"), max_size=40),
    st.from_regex(r"[A-Za-z0-9._\-]{1,64}", fullmatch=True),
)
def test_live_round_trip(
    channel: int, quality: str, crypto: bool, user_args: str, requester: str
) -> None:
    query = f"action=live&channel={channel}&quality={quality}&requester={requester}"
    if not crypto:
        query += "&_crypto=off"
    encoded = quote(user_args, safe="")
    if len(encoded) <= 1024 and not any(ord(c) < 32 or ord(c) == 127 for c in user_args):
        query += f"&user_args={encoded}"
        expected_args: str | None = user_args
    else:
        expected_args = None
    req = parse_request("ipc.flv?" + query)
    assert req == LiveRequest(channel, quality, crypto, StreamInfo(expected_args, requester))  # type: ignore[arg-type]


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_playback_window_rule(start: int, end: int) -> None:
    text = f"ipc.flv?action=playback&channel=0&start_time={start}&end_time={end}"
    if end - start >= 5:
        assert parse_request(text) == PlaybackRequest(0, start, end)
    else:
        with pytest.raises(BadRequest, match="5 s apart"):
            parse_request(text)


# -- replies -----------------------------------------------------------------------------


def test_reply_texts_match_the_spec() -> None:
    assert device_st_reply(0, 2) == '[{"status":"0","appConnectNum":"2"}]'
    assert record_index_reply([RecordSpan(0, 100, 160), RecordSpan(1, 200, 260)]) == (
        '{"video_list":[{"type":0,"start_time":"100","end_time":"160"},'
        '{"type":1,"start_time":"200","end_time":"260"}]}'
    )
    assert month_record_reply([8, 14]) == '{"video_list":"8320"}'
    assert status_reply(0) == '{"status":"0"}'
    assert progress_reply(0, 1500) == '{"status":"0","progress":"1500"}'
    assert nvr_list_reply([NvrChannel("cam1", 1, False)]) == (
        '[{"DeviceName":"cam1","Channel":"1","Online":"0"}]'
    )
    assert file_list_reply([FileInfo(0, "rec.flv", 10, 100, 160)]) == (
        '{"file_list":[{"file_type":0,"file_name":"rec.flv","file_size":10,'
        '"begin_time_s":100,"end_time_s":160,"extra_info":{}}]}'
    )


def test_lianlian_reply_round_trip() -> None:
    req = parse_request(
        'action=user_define&channel=0&cmd={"topic":"ptz","message_id":3,"data":{"cmd":"ptz_up_press"}}'
    )
    assert isinstance(req, UserDefine) and req.lianlian is not None
    text = lianlian_reply(req.lianlian, apex="no", current_x=1)
    assert text == (
        '{"confirmation_topic":"ptz","result":"0","apex":"no","current_x":1,"message_id":3}'
    )


def test_error_replies_take_the_command_shape() -> None:
    with pytest.raises(Xp2pRequestError) as info:
        parse_request("action=inner_define&channel=0&cmd=get_device_st&type=x")
    assert error_reply(info.value, app_connect_num=1) == '[{"status":"404","appConnectNum":"1"}]'
    with pytest.raises(Xp2pRequestError) as info:
        parse_request("action=inner_define&channel=0&cmd=format_sd")
    assert error_reply(info.value) == '{"status":"406"}'


@given(st.sets(st.integers(1, 31)))
def test_month_bitmask_round_trip(days: set[int]) -> None:
    mask = month_bitmask(days)
    assert month_days(mask) == sorted(days)
    assert 0 <= mask < 2**31


# -- the app SDK's error catalogue -------------------------------------------------------


def test_error_catalogue_is_complete() -> None:
    assert set(CATALOGUE) == {0, *range(-1020, -999)}
    assert lookup(-1005) is not None and lookup(-1005).name == "XP2P_ERR_TIMEOUT"  # type: ignore[union-attr]
    assert lookup(-999) is None
    assert by_name("XP2PERRTIMEOUT") is CATALOGUE[XP2P_ERR_TIMEOUT]
    assert by_name("XP2PERRERROR") is CATALOGUE[XP2P_ERR_REQUEST_FAIL]
    assert by_name("XP2P_ERR_NOPE") is None


def test_log_lines_of_the_seed() -> None:
    assert log_line(XP2P_ERR_P2P_ININED, id="cam01") == (
        "p2p service is running with id:cam01, please stop it first"
    )
    assert log_line(XP2P_ERR_GET_XP2PINFO, 1) == (
        "request xp2p_info failed, errmsg:parse reply error"
    )
    assert log_line(XP2P_ERR_XP2PINFO_RULE, xp2p_info="XP2Pabc") == (
        "remote xp2p_info rule wrong:XP2Pabc"
    )
    assert log_line(XP2P_ERR_VERSION, version="2.4.0").endswith("to at least 2.4.0")
    assert log_line(XP2P_ERR_DETECT_NOTREADY, state="0") == "p2p detect is not ready, state:0"
    with pytest.raises(KeyError):
        log_line(XP2P_ERR_TIMEOUT)
