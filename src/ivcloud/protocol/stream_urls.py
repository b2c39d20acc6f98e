"""Signed, expiring URLs of the stream hub: viewer URLs per user, publish URLs per device.

Built on :mod:`ivcloud.protocol.signing` (HMAC over a path and an expiry): the "path" signed
here is a canonical string of the URL path plus the stream's parameters, so a signature
binds everything that selects what is streamed to whom::

    /media/v1/live/{P}/{D}.flv?channel=0&quality=standard&uid=<user id>     viewers
    /media/v1/live/{P}/{D}.mp4?channel=0&quality=standard&uid=<user id>
    /media/v1/publish/{P}/{D}?channel=0&quality=standard                    the device

Changing any of them — another device, channel, quality, user, format, viewer → publisher
— or stretching ``expires`` breaks the signature. Ids are percent-encoded in the canonical
string and the fields are URL-encoded, so no two different tuples share one string. The
values are checked as the signed strings (``channel=00`` is not ``channel=0``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import quote, urlencode

from ivcloud.protocol.signing import BadSignedUrl, sign_path, verify_path
from ivcloud.protocol.video_signal import MAX_CHANNEL, QUALITIES, Quality

__all__ = [
    "LIVE_PREFIX",
    "PUBLISH_PREFIX",
    "BadSignedUrl",
    "LiveFormat",
    "StreamKey",
    "live_path",
    "publish_path",
    "sign_live",
    "sign_publish",
    "verify_live",
    "verify_publish",
]

LIVE_PREFIX: Final = "/media/v1/live"
PUBLISH_PREFIX: Final = "/media/v1/publish"
LiveFormat = Literal["flv", "mp4"]


@dataclass(frozen=True, slots=True)
class StreamKey:
    """One live stream: a device's channel at one quality. The hub keeps one upload per key."""

    product_id: str
    device_name: str
    channel: int = 0
    quality: Quality = "standard"

    @property
    def client_id(self) -> str:
        return self.product_id + self.device_name

    def __str__(self) -> str:
        return f"{self.product_id}/{self.device_name}#{self.channel}/{self.quality}"


def live_path(product_id: str, device_name: str, fmt: LiveFormat) -> str:
    return f"{LIVE_PREFIX}/{_q(product_id)}/{_q(device_name)}.{fmt}"


def publish_path(product_id: str, device_name: str) -> str:
    return f"{PUBLISH_PREFIX}/{_q(product_id)}/{_q(device_name)}"


def _q(value: str) -> str:
    return quote(value, safe="")


def _fields(channel: str, quality: str, uid: str | None) -> list[tuple[str, str]]:
    fields = [("channel", channel), ("quality", quality)]
    if uid is not None:
        fields.append(("uid", uid))
    return fields


def _signature(key: bytes, canonical: str, expires: int) -> str:
    # sign_path returns "<canonical>?expires=<n>&sign=<hex>": the hex digest is the last value.
    return sign_path(key, canonical, expires).rsplit("&sign=", 1)[1]


def _signed_url(path: str, fields: list[tuple[str, str]], key: bytes, expires: int) -> str:
    canonical = f"{path}?{urlencode(fields)}"
    sign = _signature(key, canonical, expires)
    return f"{canonical}&{urlencode({'expires': expires, 'sign': sign})}"


def sign_live(key: bytes, stream: StreamKey, fmt: LiveFormat, user_id: str, expires: int) -> str:
    """Path and query of a viewer URL for ``user_id``, valid until ``expires`` (unix s)."""
    path = live_path(stream.product_id, stream.device_name, fmt)
    fields = _fields(str(stream.channel), stream.quality, user_id)
    return _signed_url(path, fields, key, expires)


def sign_publish(key: bytes, stream: StreamKey, expires: int) -> str:
    """Path and query of the URL a device publishes ``stream`` to."""
    path = publish_path(stream.product_id, stream.device_name)
    return _signed_url(path, _fields(str(stream.channel), stream.quality, None), key, expires)


def verify_live(
    key: bytes,
    product_id: str,
    device_name: str,
    fmt: LiveFormat,
    query: Mapping[str, str],
    now: int,
) -> tuple[StreamKey, str]:
    """The stream and user a viewer URL was signed for; :class:`BadSignedUrl` when it is
    unsigned, tampered with or expired."""
    uid = query.get("uid")
    if not uid:
        raise BadSignedUrl("missing signature")
    return _verify(
        key, live_path(product_id, device_name, fmt), product_id, device_name, query, uid, now
    ), uid


def verify_publish(
    key: bytes, product_id: str, device_name: str, query: Mapping[str, str], now: int
) -> StreamKey:
    path = publish_path(product_id, device_name)
    return _verify(key, path, product_id, device_name, query, None, now)


def _verify(
    key: bytes,
    path: str,
    product_id: str,
    device_name: str,
    query: Mapping[str, str],
    uid: str | None,
    now: int,
) -> StreamKey:
    channel, quality = query.get("channel", ""), query.get("quality", "")
    canonical = f"{path}?{urlencode(_fields(channel, quality, uid))}"
    verify_path(key, canonical, query.get("expires"), query.get("sign"), now)
    # Signed by us, so well-formed unless the key leaked; checked anyway.
    if not (channel.isascii() and channel.isdigit()) or int(channel) > MAX_CHANNEL:
        raise BadSignedUrl("bad channel")
    for known in QUALITIES:
        if quality == known:
            return StreamKey(product_id, device_name, int(channel), known)
    raise BadSignedUrl("bad quality")
