"""Wire format of the App API message centre (spec §2.1 ``AppGetMessages`` /
``AppDeleteMessage``; docs/app-api.md "Message centre" lists the sources).

Facts this module encodes (sources in docs/app-api.md):

* ``Category``: 1 device, 2 family, 3 notification (DOC 1081/40794; AND ``MessageImpl``).
* Paging is a cursor: the first page sends ``MsgID: ""`` and ``MsgTimestamp: 0``, the next
  one the ``MsgID`` and ``MsgTimestamp`` of the last message shown (AND ``MessageFragment``,
  IOS ``TIoTMessageChildVC``).  The Android app also sends ``Offset`` = messages already
  shown, so ``Offset`` is honoured only when there is no cursor (else pages would skip).
* ``Limit`` at most 100 (DOC 1081/40794); ``Listover`` is a JSON boolean (AND parses it
  as ``Boolean``; iOS ignores it and stops when a page is shorter than ``Limit``).
* ``MsgID`` is a string, though clients and Tencent's own doc example also send it as a
  JSON number; ``MsgTimestamp`` is milliseconds (13 digits; IOS divides by 1000).
* ``Attachments`` is present only on invitations: Android picks the row layout by
  ``Attachments == null``.

Pure functions only: the service turns rows into :class:`MessageView` and calls
:func:`render`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from ivcloud.protocol.appapi import int_param, offset_limit, str_param
from ivcloud.protocol.appapi_errors import INVALID_PARAMETER_VALUE, MSG_ID_INVALID, AppApiError

CATEGORY_DEVICE: Final[int] = 1
CATEGORY_FAMILY: Final[int] = 2
CATEGORY_NOTIFY: Final[int] = 3
CATEGORIES: Final[frozenset[int]] = frozenset({CATEGORY_DEVICE, CATEGORY_FAMILY, CATEGORY_NOTIFY})

#: Device warning (DOC 1081/40794 example: Category 1, "Device Warning"); iOS draws the whole
#: 100-199 range as device messages.
TYPE_DEVICE_ALERT: Final[int] = 100
#: A device ``fault`` event: ivcloud's choice inside the device range [UNCONFIRMED value].
TYPE_DEVICE_FAULT: Final[int] = 101
#: Family invitation; the app accepts with ``AppJoinFamily(ShareToken)`` (IOS
#: ``TIoTMessageInviteCell``, AND ``MessageFragment`` for Category 2).
TYPE_FAMILY_INVITE: Final[int] = 204
#: Maker notice (plain text, no attachment): iOS draws every other type >= 300 as text
#: [UNCONFIRMED value].
TYPE_NOTICE: Final[int] = 300
#: Device share invitation, Category 3; the app accepts with ``AppBindUserShareDevice``
#: (``ProductId``, ``DeviceName`` of the message, ``ShareDeviceToken`` = ``ShareToken``).
TYPE_DEVICE_SHARE_INVITE: Final[int] = 301

LIMIT_MAX: Final[int] = 100
LIMIT_DEFAULT: Final[int] = 20
_MSG_ID = re.compile(r"[0-9]{1,18}")
_TS_MAX: Final[int] = 2**53 - 1  # a JS client cannot send more precisely than this


@dataclass(frozen=True, slots=True)
class MessageQuery:
    """One ``AppGetMessages`` request.  ``cursor`` = ``(MsgTimestamp, MsgID)`` of the last
    message the client holds (strictly older messages follow), ``None`` on a first page."""

    category: int | None
    limit: int
    cursor: tuple[int, int] | None
    offset: int


def parse_msg_id(value: object) -> int:
    """A ``MsgID`` as sent: a decimal string or a JSON integer.  Anything else is
    ``MsgIDInvalid`` (DOC 1081/40795: "illegal message ID")."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or _MSG_ID.fullmatch(value) is None:
        raise AppApiError(MSG_ID_INVALID, "invalid MsgID")
    return int(value)


def parse_query(params: Mapping[str, object]) -> MessageQuery:
    """Read ``Category``, ``Limit``, ``MsgID``, ``MsgTimestamp`` and ``Offset``.

    ``Category`` absent = every category (an ivcloud leniency; the apps always send it).
    A ``MsgID`` with ``MsgTimestamp`` 0/absent has no position and is refused, as is a
    ``MsgTimestamp`` without ``MsgID``."""
    category = int_param(params, "Category", min=CATEGORY_DEVICE, max=CATEGORY_NOTIFY)
    offset, limit = offset_limit(params, default_limit=LIMIT_DEFAULT, max_limit=LIMIT_MAX)
    ts = int_param(params, "MsgTimestamp", default=0, min=0, max=_TS_MAX)
    raw_id = params.get("MsgID")
    has_id = raw_id is not None and raw_id != ""
    if not has_id and ts == 0:
        return MessageQuery(category, limit, None, offset)
    if not has_id or ts == 0:
        raise AppApiError(
            INVALID_PARAMETER_VALUE, "MsgID and MsgTimestamp are sent together or not at all"
        )
    return MessageQuery(category, limit, (ts, parse_msg_id(raw_id)), 0)


def delete_msg_id(params: Mapping[str, object]) -> int:
    """The ``MsgID`` of ``AppDeleteMessage`` (required)."""
    str_param(params, "MsgID", max_len=32)  # missing → ErrorRequiredParamNotFound
    return parse_msg_id(params["MsgID"])


@dataclass(frozen=True, slots=True)
class MessageView:
    """One stored message, as the service reads it."""

    msg_id: int
    user_id: str
    category: int
    msg_type: int
    title: str
    content: str
    ts_ms: int
    from_user_id: str = ""
    product_id: str = ""
    device_name: str = ""
    device_alias: str = ""
    family_id: str = ""
    family_name: str = ""
    share_token: str | None = None


def _create_at(ts_ms: int) -> str:
    """``CreateAt`` as in DOC 1081/40794's example: RFC 3339 UTC, ``2019-11-27T11:52:01.42Z``."""
    dt = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    frac = f"{ts_ms % 1000:03d}".rstrip("0")
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + "Z"


def render(m: MessageView) -> dict[str, Any]:
    """One ``Msgs`` item: every field of DOC 1081/40794's example and AND ``MessageEntity``;
    ``Attachments`` only on invitations."""
    item: dict[str, Any] = {
        "UserID": m.user_id,
        "FromUserID": m.from_user_id,
        "MsgID": str(m.msg_id),
        "Category": m.category,
        "MsgType": m.msg_type,
        "MsgTitle": m.title,
        "MsgContent": m.content,
        "MsgTimestamp": m.ts_ms,
        "ProductId": m.product_id,
        "DeviceName": m.device_name,
        "DeviceAlias": m.device_alias,
        "FamilyId": m.family_id,
        "FamilyName": m.family_name,
        "RelateUserID": "",
        "CreateAt": _create_at(m.ts_ms),
    }
    if m.share_token is not None:
        item["Attachments"] = {"ShareToken": m.share_token}
    return item
