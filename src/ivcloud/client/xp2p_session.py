"""One device's XP2P service inside the client: its P2P tunnel (connected in the background),
the hub as the other path, and the race between them for live streams.

Why a race: P2P (WebRTC through ICE: host, hole-punched or TURN-relayed) costs the cloud
nothing per viewer but takes a moment to connect and may fail behind hostile NATs; the hub
(the camera's outbound upload fanned out by ivcloud) works whatever the NATs. So while the
tunnel is still being set up, a live request tries both, and **the first path that delivers
a whole FLV tag serves the player**; the loser is cancelled at once (its device stream
stopped). Once the tunnel is up, new live requests go straight over P2P; streams already
running stay where they are (switching mid-stream would break the player's timeline).
Playback, download, talk need the tunnel (the hub carries live only); commands use it when
it is up and the cloud relay (``IvcloudXp2pCommand``) otherwise.

Tunnel states (the ``state`` of the seed's ``p2p detect is not ready, state:N``): 0
detecting, 1 ready, 2 failed or closed, 3 not enabled for this service. A tunnel that
closes (device offline, network change) is not re-dialled: live falls back to the hub; stop
and start the service to try P2P again.

The media of the tunnel is the XP2P data channel only (no WebRTC audio/video tracks): the
player wants FLV (H.264 + AAC) and decoding tracks nobody watches would cost CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from enum import IntEnum
from typing import Any

import httpx
import structlog

from ivcloud.client.p2p import AppPeer, P2PClosed, P2PError, P2PRequestFailed, P2PStream
from ivcloud.client.xp2p_cloud import P2PParams, Xp2pCloud
from ivcloud.client.xp2p_errors import (
    Xp2pError,
    Xp2pP2PUnavailable,
    Xp2pVoiceError,
    logged,
    seed_line,
)
from ivcloud.client.xp2p_upstream import (
    Path,
    Upstream,
    first_success,
    open_hub,
    p2p_failure,
)
from ivcloud.client.xp2p_upstream import prime as prime_upstream
from ivcloud.client.xp2p_voice import VoiceStream, voice_request
from ivcloud.protocol import xp2p_errors as codes

__all__ = ["EventCallback", "P2PState", "PeerFactory", "Xp2pService"]

log = structlog.get_logger("ivcloud.client.xp2p")

PeerFactory = Callable[[Sequence[Mapping[str, Any]]], AppPeer]
EventCallback = Callable[[str, str, str], None]  # (device id, event, detail)


class P2PState(IntEnum):
    DETECTING = 0
    READY = 1
    FAILED = 2
    DISABLED = 3


class Xp2pService:
    """A started service (``Xp2pClient.start_service``); ``paths`` ⊆ {"p2p", "hub"}."""

    def __init__(
        self,
        device_id: str,
        params: P2PParams,
        cloud: Xp2pCloud,
        http: httpx.AsyncClient,
        *,
        paths: Sequence[str],
        timeout: float,
        peer_factory: PeerFactory,
        on_event: EventCallback | None = None,
    ) -> None:
        self.device_id = device_id
        self.params = params
        self.paths = tuple(paths)
        self.timeout = timeout
        self.state = P2PState.DETECTING if "p2p" in self.paths else P2PState.DISABLED
        self.peer: AppPeer | None = None
        self.session_id: str | None = None
        self.voice: VoiceStream | None = None
        self._cloud = cloud
        self._http = http
        self._peer_factory = peer_factory
        self._on_event = on_event
        self._settled = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._hub_chosen = False
        self._chosen: Path | None = None

    # -- the tunnel ------------------------------------------------------------------------

    def start(self) -> None:
        if self.state is P2PState.DETECTING:
            self._task = asyncio.create_task(self._run_tunnel())
        else:
            self._settled.set()

    async def _run_tunnel(self) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await self._connect()
        except (P2PError, Xp2pError, TimeoutError) as exc:
            self.state = P2PState.FAILED
            self._settled.set()
            await self._drop_peer()
            if not isinstance(exc, Xp2pError):  # cloud failures are logged where they occur
                log.warning("p2p connect failed", device_id=self.device_id, error=repr(exc))
            self._emit("detect_error", type(exc).__name__)
            return
        assert self.peer is not None
        self.state = P2PState.READY
        self._settled.set()
        path: Path = self.peer.selected_path() or "direct"
        self._emit("detect_ready", path)
        self._choose(path)
        await self.peer.wait_closed()
        if not self._closing:
            self.state = P2PState.FAILED
            log.warning("p2p tunnel closed", device_id=self.device_id)
            self._emit("disconnect", "tunnel closed")
            await self._drop_peer()
            if self._hub_chosen:
                self._choose("hub")
            else:
                self._chosen = None

    async def _connect(self) -> None:
        self.peer = peer = self._peer_factory(self.params.ice_servers)
        offer = await peer.offer()
        self.session_id, answer = await self._cloud.connect(self.device_id, offer)
        await peer.answer(answer)
        await peer.wait_connected(self.timeout)

    async def _drop_peer(self) -> None:
        peer, session, self.peer, self.session_id = self.peer, self.session_id, None, None
        if peer is not None:
            await peer.close()
        if session is not None:
            await self._cloud.close(self.device_id, session)

    async def wait_p2p(self) -> AppPeer:
        """The connected tunnel, waiting while it is being set up; −1010 (logged) when it
        is not enabled, failed or closed."""
        await self._settled.wait()
        peer = self.peer
        if self.state is P2PState.READY and peer is not None and not peer.closed:
            return peer
        state = P2PState.FAILED if self.state is P2PState.READY else self.state
        raise logged(
            Xp2pP2PUnavailable(
                seed_line(codes.XP2P_ERR_DETECT_NOTREADY, state=str(int(state))), state=int(state)
            ),
            device_id=self.device_id,
        )

    @property
    def p2p_ready(self) -> bool:
        return self.state is P2PState.READY and self.peer is not None and not self.peer.closed

    @property
    def chosen_path(self) -> Path | None:
        """Where a new live request goes now: the tunnel's path once it is up, ``"hub"``
        after the hub won a race (or is the only path and served one), else ``None``."""
        return self._chosen

    def _choose(self, path: Path) -> None:
        if path != self._chosen:
            self._chosen = path
            log.info("xp2p path chosen", device_id=self.device_id, path=path)
            self._emit("path", path)

    def _emit(self, event: str, detail: str) -> None:
        if self._on_event is not None:
            try:
                self._on_event(self.device_id, event, detail)
            except Exception:
                log.exception("xp2p event callback failed", event_name=event)

    # -- streams ---------------------------------------------------------------------------

    async def open_live(self, text: str, channel: int, quality: str) -> Upstream:
        """A live stream for a player: over the tunnel when it is up (the hub if that
        fails, e.g. the device is at its P2P viewer limit: 1-to-N is the hub's job), else
        raced (above)."""
        if self.p2p_ready:
            if "hub" not in self.paths:
                return await self._p2p_upstream(text, prime=True)
            try:
                return await self._p2p_upstream(text, prime=True)
            except Xp2pError:
                pass  # logged; the hub may still serve
            return await self._hub_upstream(channel, quality)
        attempts: dict[asyncio.Task[Upstream], str] = {}
        if self.state is P2PState.DETECTING:
            attempts[asyncio.create_task(self._p2p_upstream(text, prime=True))] = "p2p"
        if "hub" in self.paths:
            attempts[asyncio.create_task(self._hub_upstream(channel, quality))] = "hub"
        if not attempts:
            await self.wait_p2p()  # raises −1010 with the state
        winner = await first_success(attempts)
        if winner.path == "hub":
            self._hub_chosen = True
            if not self.p2p_ready:  # the tunnel may have come up meanwhile
                self._choose("hub")
        return winner

    async def open_p2p(self, text: str) -> Upstream:
        """A tunnel-only stream (playback, download): −1010 without the tunnel."""
        return await self._p2p_upstream(text, prime=False)

    async def _p2p_upstream(self, text: str, *, prime: bool) -> Upstream:
        peer = await self.wait_p2p()
        opening = asyncio.ensure_future(peer.open_stream(text, timeout_s=self.timeout))
        try:
            stream = await asyncio.shield(opening)
        except P2PError as exc:
            raise p2p_failure(exc, self.device_id) from None
        except asyncio.CancelledError:
            # Lost the race (or the player left) while the device was accepting: let the
            # open finish and cancel the stream on the device, or it would keep a viewer
            # slot streaming into an id nobody reads.
            opening.add_done_callback(_close_when_open)
            raise
        path: Path = peer.selected_path() or "direct"
        if not prime:
            return Upstream(path, b"", stream, stream.aclose)
        return await prime_upstream(
            path, stream, stream.aclose, timeout_s=self.timeout, device_id=self.device_id
        )

    async def _hub_upstream(self, channel: int, quality: str) -> Upstream:
        url = await self._cloud.hub_url(self.device_id, channel, quality)
        return await open_hub(self._http, url, timeout_s=self.timeout, device_id=self.device_id)

    # -- commands and talk -----------------------------------------------------------------

    async def command(self, text: str) -> str:
        """Over the tunnel when it is up, else relayed by the cloud."""
        peer = self.peer
        if self.p2p_ready and peer is not None:
            try:
                return await peer.request(text, timeout_s=self.timeout)
            except P2PClosed:
                pass  # the tunnel just went: the relay still works
            except P2PError as exc:
                raise p2p_failure(exc, self.device_id) from None
        return await self._cloud.command(self.device_id, text)

    async def start_voice(self, channel: int, fmt: str, sample_rate: int) -> VoiceStream:
        if self.voice is not None and not self.voice.closed:
            raise logged(
                Xp2pVoiceError(
                    codes.XP2P_ERR_REQUEST,
                    f"{seed_line(codes.XP2P_ERR_REQUEST)}: a voice stream is running",
                ),
                device_id=self.device_id,
            )
        peer = await self.wait_p2p()
        try:
            upload = await peer.start_voice(voice_request(channel), timeout_s=self.timeout)
        except P2PRequestFailed as exc:
            raise logged(
                Xp2pVoiceError(
                    codes.XP2P_ERR_REQUEST, seed_line(codes.XP2P_ERR_REQUEST), status=exc.status
                ),
                device_id=self.device_id,
            ) from None
        except P2PError:
            raise logged(
                Xp2pVoiceError(codes.XP2P_ERR_APPLICATION, seed_line(codes.XP2P_ERR_APPLICATION)),
                device_id=self.device_id,
            ) from None
        self.voice = VoiceStream(upload, device_id=self.device_id, fmt=fmt, sample_rate=sample_rate)
        return self.voice

    async def stop_voice(self) -> None:
        voice, self.voice = self.voice, None
        if voice is None or voice.closed:
            raise logged(
                Xp2pVoiceError(codes.XP2P_ERR_UNINIT, seed_line(codes.XP2P_ERR_UNINIT)),
                device_id=self.device_id,
            )
        await voice.close()

    async def close(self) -> None:
        """End talk, the tunnel and its device session. Idempotent."""
        if self._closing:
            return
        self._closing = True
        self._settled.set()
        if self.voice is not None:
            await self.voice.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._drop_peer()
        self._cloud.forget(self.device_id)


def _close_when_open(opening: asyncio.Future[P2PStream]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        _background.add(task := asyncio.ensure_future(opening.result().aclose()))
        task.add_done_callback(_background.discard)


_background: set[asyncio.Future[None]] = set()
