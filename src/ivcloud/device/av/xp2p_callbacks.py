"""The ``iv_avt_*`` callbacks of the IoT Video device API (spec device-protocol.md §7.4), as
the Python device SDK exposes them: what a camera implements so the XP2P service can tell it
about viewers, talk and commands. A real camera and the simulator integrate the same way.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import structlog

__all__ = ["Callback", "Notify", "Xp2pCallbacks", "call_quietly"]

log = structlog.get_logger("ivcloud.device.xp2p")

Callback = Callable[..., Any]


class Notify(IntEnum):
    """``iv_avt_notify_cb`` events."""

    PEER_READY = 0
    STUN_CONNECT_FAIL = 1
    NETWORK_ERROR = 2
    PEER_ADDR_CHANGED = 3
    SEND_BUF_LOW = 4
    SEND_BUF_WARN = 5
    SEND_BUF_HIGH = 6
    LOCAL_NET_READY = 7
    LINK_DISCONNECTED = 8
    CLIENT_SEND_CLOSED = 9


@dataclass
class Xp2pCallbacks:
    """The ``iv_avt_*`` callbacks (spec §7.4), plain or coroutine functions; all optional.

    ==================================================  ======================================
    ``iv_avt_*``                                        here
    ==================================================  ======================================
    ``start_real_play_cb(visitor, ch, res, args)``      ``on_start_real_play(visitor, channel,
                                                        res_type, StreamInfo)`` (res PB for
                                                        playback)
    ``stop_real_play_cb(visitor, ch, res)``             ``on_stop_real_play(visitor, channel,
                                                        res_type)``
    ``start_recv_stream_cb(visitor, ch, type, info)``   ``on_talk_start(visitor, channel,
                                                        calltype)``
    ``recv_stream_cb(visitor, ch, type, stream)``       ``on_talk_audio(visitor, channel, codec,
                                                        frame)`` — ``"aac"`` (ADTS) or
                                                        ``"pcm"`` (s16le mono)
    ``stop_recv_stream_cb(visitor, ch, type)``          ``on_talk_stop(visitor, channel)``
    ``recv_command_cb(USR_DATA, visitor, ch, …)``       ``on_user_command(visitor, channel,
                                                        cmd) -> reply text``
    ``notify_cb(event, visitor, ch, res)``              ``on_notify(Notify, visitor)``
    ==================================================  ======================================

    Live frames are not pushed through a callback: the device gives a ``SourceFactory``
    and the service pulls from it (one encoder shared by all viewers). Without
    ``on_talk_audio`` talk is unsupported (406); without ``on_user_command`` so are
    ``user_define`` commands.
    """

    on_start_real_play: Callback | None = None
    on_stop_real_play: Callback | None = None
    on_talk_start: Callback | None = None
    on_talk_audio: Callback | None = None
    on_talk_stop: Callback | None = None
    on_user_command: Callable[[str, int, str], str | Awaitable[str]] | None = None
    on_notify: Callback | None = None


async def call_quietly(fn: Callback | None, *args: Any) -> None:
    """Run a notification callback; a failing callback is logged, never fatal to a stream."""
    if fn is None:
        return
    try:
        result = fn(*args)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("xp2p_callback_failed", callback=getattr(fn, "__name__", repr(fn)))
