"""The XP2P app SDK's error codes −1000…−1020 and their log lines (the seed manual's
"错误码" table and its "解决方案" section), for the Python app SDK.

Apps written against Tencent's XP2P SDK branch on these numbers and their support staff
search logs for these lines, so ivcloud's app SDK returns the same codes and logs the same
text for the same situation. Names are the seed's (``XP2P_ERR_*``, typos such as
``ININED`` and ``MEMERY`` included, since code greps for them); the older GitHub doc spells
them without underscores (``XP2PERRINITPRM``) and calls −1006 ``XP2PERRERROR`` and −1017
``XP2PERRCLOUDEMOTY`` — :func:`by_name` accepts those spellings too.

Log lines are templates: ``{id}`` is the app's id for the device (the seed's example is
``cam01``), ``{xp2p_info}``, ``{version}`` and ``{state}`` are filled by the caller
(the seed writes ``$xp2p_info``, ``$version``, ``state:0``). The seed's text extraction lost
leading characters of some lines ("quest xp2p_info…", "emote xp2pinfo…"); the lines here are
the complete ones of the upstream Markdown table, which the seed's fragments match. Two
lines' codes are not stated in the seed and are inferred from their wording:
"create AudioStream application failed" → −1008, "create AudioStream request failed" → −1009.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "CATALOGUE",
    "XP2P_ERR_APPLICATION",
    "XP2P_ERR_CLIENT_NULL",
    "XP2P_ERR_CLOUD_EMPTY",
    "XP2P_ERR_DETECT_NOTREADY",
    "XP2P_ERR_ENCRYPT",
    "XP2P_ERR_GET_XP2PINFO",
    "XP2P_ERR_INIT_PRM",
    "XP2P_ERR_JSON_PARSE",
    "XP2P_ERR_NEW_MEMERY",
    "XP2P_ERR_NONE",
    "XP2P_ERR_P2P_ININED",
    "XP2P_ERR_P2P_UNININ",
    "XP2P_ERR_PROXY_INIT",
    "XP2P_ERR_PROXY_LISTEN",
    "XP2P_ERR_REQUEST",
    "XP2P_ERR_REQUEST_FAIL",
    "XP2P_ERR_SERVICE_NOTRUN",
    "XP2P_ERR_TIMEOUT",
    "XP2P_ERR_UNINIT",
    "XP2P_ERR_VERSION",
    "XP2P_ERR_XP2PINFO_DECRYPT",
    "XP2P_ERR_XP2PINFO_RULE",
    "Xp2pErrorCode",
    "by_name",
    "log_line",
    "lookup",
]

XP2P_ERR_NONE: Final = 0
XP2P_ERR_INIT_PRM: Final = -1000
XP2P_ERR_GET_XP2PINFO: Final = -1001
XP2P_ERR_PROXY_INIT: Final = -1002
XP2P_ERR_UNINIT: Final = -1003
XP2P_ERR_ENCRYPT: Final = -1004
XP2P_ERR_TIMEOUT: Final = -1005
XP2P_ERR_REQUEST_FAIL: Final = -1006
XP2P_ERR_VERSION: Final = -1007
XP2P_ERR_APPLICATION: Final = -1008
XP2P_ERR_REQUEST: Final = -1009
XP2P_ERR_DETECT_NOTREADY: Final = -1010
XP2P_ERR_P2P_ININED: Final = -1011
XP2P_ERR_P2P_UNININ: Final = -1012
XP2P_ERR_NEW_MEMERY: Final = -1013
XP2P_ERR_XP2PINFO_RULE: Final = -1014
XP2P_ERR_XP2PINFO_DECRYPT: Final = -1015
XP2P_ERR_PROXY_LISTEN: Final = -1016
XP2P_ERR_CLOUD_EMPTY: Final = -1017
XP2P_ERR_JSON_PARSE: Final = -1018
XP2P_ERR_SERVICE_NOTRUN: Final = -1019
XP2P_ERR_CLIENT_NULL: Final = -1020


@dataclass(frozen=True, slots=True)
class Xp2pErrorCode:
    """One row of the table: ``meaning_zh`` is the seed's text, ``meaning`` its English;
    ``log_lines`` the templates the SDK logs when it returns this code."""

    code: int
    name: str
    meaning: str
    meaning_zh: str
    log_lines: tuple[str, ...] = ()


_ROWS = (
    (XP2P_ERR_NONE, "XP2P_ERR_NONE", "success", "成功。", ()),
    (XP2P_ERR_INIT_PRM, "XP2P_ERR_INIT_PRM", "a required argument is empty", "入参为空。", ()),
    (
        XP2P_ERR_GET_XP2PINFO,
        "XP2P_ERR_GET_XP2PINFO",
        "the SDK's request for the device's XP2P info failed",
        "SDK 内部请求 XP2P info 失败。",
        (
            "request xp2p_info failed, errmsg:empty reply from cloud",
            "request xp2p_info failed, errmsg:parse reply error",
        ),
    ),
    (
        XP2P_ERR_PROXY_INIT,
        "XP2P_ERR_PROXY_INIT",
        "the local P2P proxy could not be initialised",
        "本地 P2P 代理初始化失败。",
        ("remote xp2pinfo is invalid", "proxy listen failed!", "cannot listen a port"),
    ),
    (
        XP2P_ERR_UNINIT,
        "XP2P_ERR_UNINIT",
        "the data receive/send service is not initialised",
        "数据接收或发送服务未初始化。",
        ("connot found request with service:AudioStream", "application is invalid"),
    ),
    (XP2P_ERR_ENCRYPT, "XP2P_ERR_ENCRYPT", "data encryption failed", "数据加密失败。", ()),
    (XP2P_ERR_TIMEOUT, "XP2P_ERR_TIMEOUT", "request timed out", "请求超时。", ()),
    (XP2P_ERR_REQUEST_FAIL, "XP2P_ERR_REQUEST_FAIL", "request error", "请求错误。", ()),
    (
        XP2P_ERR_VERSION,
        "XP2P_ERR_VERSION",
        "the device's SDK version is too old",
        "设备版本过低。",
        ("The xp2p_device_sdk is low, Please upgrade the device version to at least {version}",),
    ),
    (
        XP2P_ERR_APPLICATION,
        "XP2P_ERR_APPLICATION",
        "the service application could not be initialised",
        "服务 application 初始化失败。",
        ("create AudioStream application failed",),
    ),
    (
        XP2P_ERR_REQUEST,
        "XP2P_ERR_REQUEST",
        "the service request could not be initialised",
        "服务 request 初始化失败。",
        ("create AudioStream request failed",),
    ),
    (
        XP2P_ERR_DETECT_NOTREADY,
        "XP2P_ERR_DETECT_NOTREADY",
        "P2P detection has not finished",
        "P2P 探测未完成。",
        ("p2p detect is not ready, state:{state}",),
    ),
    (
        XP2P_ERR_P2P_ININED,
        "XP2P_ERR_P2P_ININED",
        "P2P for this id is already initialised",
        "当前 id 对应的 P2P 已完成初始化。",
        ("p2p service is running with id:{id}, please stop it first",),
    ),
    (
        XP2P_ERR_P2P_UNININ,
        "XP2P_ERR_P2P_UNININ",
        "P2P for this id is not initialised",
        "当前 id 对应的 P2P 未初始化。",
        ("p2p service is not running with id:{id}, please run it first",),
    ),
    (XP2P_ERR_NEW_MEMERY, "XP2P_ERR_NEW_MEMERY", "out of memory", "内存申请失败。", ()),
    (
        XP2P_ERR_XP2PINFO_RULE,
        "XP2P_ERR_XP2PINFO_RULE",
        "the XP2P info has the wrong format",
        "获取到的 XP2P info 格式错误。",
        ("remote xp2p_info rule wrong:{xp2p_info}",),
    ),
    (
        XP2P_ERR_XP2PINFO_DECRYPT,
        "XP2P_ERR_XP2PINFO_DECRYPT",
        "the XP2P info could not be decoded",
        "获取到的 XP2P info 解码失败。",
        ("decrypt xp2p_info error",),
    ),
    (
        XP2P_ERR_PROXY_LISTEN,
        "XP2P_ERR_PROXY_LISTEN",
        "the local proxy could not listen on a port",
        "本地代理监听端口失败。",
        (),
    ),
    (
        XP2P_ERR_CLOUD_EMPTY,
        "XP2P_ERR_CLOUD_EMPTY",
        "the cloud returned no data",
        "云端返回空数据。",
        (),
    ),
    (XP2P_ERR_JSON_PARSE, "XP2P_ERR_JSON_PARSE", "JSON parsing failed", "JSON 解析失败。", ()),
    (
        XP2P_ERR_SERVICE_NOTRUN,
        "XP2P_ERR_SERVICE_NOTRUN",
        "no service is running for this id",
        "当前 id 对应的服务没有在运行。",
        (),
    ),
    (
        XP2P_ERR_CLIENT_NULL,
        "XP2P_ERR_CLIENT_NULL",
        "no client found for this id",
        "从 map 中取出的 client 为空。",
        (),
    ),
)

CATALOGUE: Final[dict[int, Xp2pErrorCode]] = {
    code: Xp2pErrorCode(code, name, meaning, zh, lines) for code, name, meaning, zh, lines in _ROWS
}
_BY_NAME: Final[dict[str, Xp2pErrorCode]] = {e.name: e for e in CATALOGUE.values()}
_ALIASES: Final = {"XP2PERRERROR": XP2P_ERR_REQUEST_FAIL, "XP2PERRCLOUDEMOTY": XP2P_ERR_CLOUD_EMPTY}


def lookup(code: int) -> Xp2pErrorCode | None:
    """The row for a code, ``None`` for codes outside the table."""
    return CATALOGUE.get(code)


def by_name(name: str) -> Xp2pErrorCode | None:
    """By the seed's name (``XP2P_ERR_TIMEOUT``) or the GitHub doc's (``XP2PERRTIMEOUT``)."""
    if name in _ALIASES:
        return CATALOGUE[_ALIASES[name]]
    row = _BY_NAME.get(name)
    if row is None:
        row = next((e for e in CATALOGUE.values() if e.name.replace("_", "") == name), None)
    return row


def log_line(code: int, index: int = 0, **fields: str) -> str:
    """The ``index``-th log line of ``code`` with its placeholders filled, e.g.
    ``log_line(XP2P_ERR_P2P_ININED, id="cam01")`` →
    ``p2p service is running with id:cam01, please stop it first``.

    Raises ``KeyError`` for a code without log lines or a missing field."""
    row = CATALOGUE[code]
    if not row.log_lines:
        raise KeyError(f"XP2P error {code} has no log line")
    return row.log_lines[index].format(**fields)
