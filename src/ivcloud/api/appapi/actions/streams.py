"""Live-view stream URLs (an ivcloud extension of the App API; docs/app-api.md).

``IvcloudDescribeStreamUrls`` mints the caller's signed, expiring hub URLs for one device's
stream. Access as for control (a share is enough); any other device, or one that does not
exist, is ``NoPermission``. Whether the device is online is checked when a URL is opened
(the device is then asked to push), not here: a URL can be minted ahead of time."""

from __future__ import annotations

from typing import Any

from ivcloud.api.appapi.actions.devices import device_param
from ivcloud.api.appapi.registry import ActionRegistry, Call
from ivcloud.protocol.appapi import INVALID_PARAMETER_VALUE, AppApiError, int_param, str_param
from ivcloud.protocol.stream_urls import StreamKey
from ivcloud.protocol.video_signal import MAX_CHANNEL, QUALITIES
from ivcloud.services.access import Access

DEFAULT_EXPIRE_S = 3600
MIN_EXPIRE_S = 60
MAX_EXPIRE_S = 24 * 3600


def register(reg: ActionRegistry) -> None:
    @reg.action("IvcloudDescribeStreamUrls", "token")
    async def describe_stream_urls(call: Call) -> dict[str, Any]:
        rec = await device_param(call, Access.SHARED)
        channel = int_param(call.params, "Channel", default=0, min=0, max=MAX_CHANNEL)
        quality = str_param(call.params, "Quality", required=False, max_len=16) or "standard"
        ttl = int_param(
            call.params,
            "ExpireSeconds",
            default=DEFAULT_EXPIRE_S,
            min=MIN_EXPIRE_S,
            max=MAX_EXPIRE_S,
        )
        for known in QUALITIES:
            if quality == known:
                key = StreamKey(rec.product_id, rec.device_name, channel, known)
                return call.instance.streams.viewer_urls(call.me.user_id, key, ttl).to_api()
        raise AppApiError(INVALID_PARAMETER_VALUE, "Quality must be standard, high or super")
