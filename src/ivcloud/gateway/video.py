"""``$video/up`` (ivcloud's video signalling, docs/device-protocol.md) → services, with the
``$thing`` conventions: replies resolve the cloud's waiting request; requests go to the
service's handler of their method and get ``<method>_reply`` on ``$video/down``. A malformed
request gets 406 (with ``msg``); a malformed reply, or a message without a readable
clientToken, only a log line — answering a reply could start a reply loop."""

from __future__ import annotations

import structlog

from ivcloud.protocol import video_signal as vs
from ivcloud.services.devices import DeviceRecord
from ivcloud.services.ports import Downlink
from ivcloud.services.video_signal import VideoSignalService

log = structlog.get_logger("ivcloud.gateway")


async def video_up(
    downlink: Downlink, video: VideoSignalService, rec: DeviceRecord, payload: bytes
) -> None:
    topic = vs.video_topic("down", rec.product_id, rec.device_name)
    try:
        msg = vs.parse_message(payload)
    except vs.SignalError as exc:
        log.info("video_message_rejected", client_id=rec.client_id, error=str(exc))
        if exc.answerable:
            body = vs.encode_reply(
                exc.method or "unknown",
                exc.client_token,
                vs.INVALID,
                "invalid message",
                msg=str(exc),
            )
            await downlink.publish(rec.client_id, topic, body)
        return
    if msg.is_reply:
        video.on_reply(rec, msg)
        return
    reply = await video.on_request(rec, msg)
    body = vs.encode_reply(msg.method, msg.client_token, reply.code, reply.status, reply.data)
    await downlink.publish(rec.client_id, topic, body)
