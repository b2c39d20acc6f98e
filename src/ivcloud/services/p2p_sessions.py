"""P2P live view, the cloud's part: what an app needs to open a WebRTC session with a camera,
the offer/answer exchange over the device's ``$video`` channel, and XP2P commands relayed
when no session is up (docs/live-video.md, "P2P sessions through the cloud").

The cloud never touches media. It hands the app its ICE servers (TURN credentials minted for
that user) and the device's ``_sys_xp2p_info``; relays the app's SDP offer to the device with
ICE servers minted for the device and an opaque *visitor* id standing for the user (devices
never see user ids); and returns the device's answer. From then on the two peers talk
directly (or through TURN).

Sessions are remembered per user and device so that a user can close only their own, at
most ``max_sessions_per_user`` are open per user (an abandoned app cannot make the cloud
forget the bound: the device reports ``webrtc_closed`` when its peer ends, and every session
of a device that goes offline is dropped — the device closes its peers then too).

Errors (mapped once by the App API edge): ``InvalidInput`` for a bad offer or command (or
one the device cannot answer), ``DeviceOffline`` / ``DeviceTimeout``, :class:`P2PRefused`
carrying the device's XP2P status (e.g. 405 too many viewers), :class:`TooManySessions`,
``NotFound`` for a session that is not the caller's, :class:`P2PFailed` otherwise.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

import structlog

from ivcloud.bus.events import BusEvent, DeviceOnline
from ivcloud.protocol import p2p_signal as ps
from ivcloud.protocol import video_signal as vs
from ivcloud.protocol.errors import ProtocolError
from ivcloud.protocol.xp2p import (
    DownloadRequest,
    LiveRequest,
    PlaybackRequest,
    VoiceRequest,
    Xp2pRequestError,
    parse_request,
)
from ivcloud.services.devices import DeviceRecord
from ivcloud.services.errors import (
    DeviceOffline,
    InvalidInput,
    NotFound,
    ServiceError,
)
from ivcloud.services.ice import IceService
from ivcloud.services.ports import Clock, Downlink
from ivcloud.services.telemetry import Telemetry
from ivcloud.services.users import UserInfo
from ivcloud.services.video_signal import SignalReply, VideoSignalService

__all__ = [
    "XP2P_INFO_PROP",
    "P2PFailed",
    "P2PParams",
    "P2PRefused",
    "P2PSession",
    "P2PSessionService",
    "TooManySessions",
]

log = structlog.get_logger("ivcloud.p2p")

XP2P_INFO_PROP = "_sys_xp2p_info"
_STREAMS = (LiveRequest, PlaybackRequest, DownloadRequest, VoiceRequest)


class P2PFailed(ServiceError):
    """The device answered with an error, or with something that is not an answer."""

    code = "FailedOperation"


class P2PRefused(ServiceError):
    """The device refused; ``status`` is its XP2P status (405 too many viewers, 406
    unsupported, 404 bad request, 1 refused). The message reads ``device refused: status
    <n> (<reason>)`` so App API clients can recover the status."""

    code = "FailedOperation.DeviceRefused"

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"device refused: status {status} ({reason})")
        self.status = status


class TooManySessions(ServiceError):
    code = "LimitExceeded.P2PSessions"


@dataclass(frozen=True, slots=True)
class P2PParams:
    ice_servers: list[dict[str, Any]]
    xp2p_info: str
    online: bool

    def to_api(self) -> dict[str, Any]:
        return {
            "IceServers": self.ice_servers,
            "Xp2pInfo": self.xp2p_info,
            "Online": 1 if self.online else 0,
        }


@dataclass(frozen=True, slots=True)
class P2PSession:
    session_id: str
    user_id: str
    device_id: int
    product_id: str
    device_name: str
    channel: int
    quality: vs.Quality
    created_ms: int


class P2PSessionService:
    def __init__(
        self,
        signals: VideoSignalService,
        ice: IceService,
        telemetry: Telemetry,
        downlink: Downlink,
        clock: Clock,
        *,
        visitor_key: bytes,
        answer_timeout_s: float = 10.0,
        command_timeout_s: float = 5.0,
        max_sessions_per_user: int = 16,
    ) -> None:
        if max_sessions_per_user < 1:
            raise ValueError("max_sessions_per_user must be at least 1")
        self._signals = signals
        self._ice = ice
        self._telemetry = telemetry
        self._downlink = downlink
        self._clock = clock
        self._key = visitor_key
        self.answer_timeout_s = answer_timeout_s
        self.command_timeout_s = command_timeout_s
        self.max_sessions_per_user = max_sessions_per_user
        self._sessions: dict[str, P2PSession] = {}
        self._by_user: dict[str, set[str]] = {}
        self._by_device: dict[tuple[str, str], set[str]] = {}
        self._pending: dict[str, int] = {}  # offers in flight per user (count against the bound)

    # -- identities -------------------------------------------------------------------------

    def visitor(self, user: UserInfo) -> str:
        """The opaque id a device knows the user by: stable per user (so the device can tie
        a relayed command to the user's session), meaningless without the instance key."""
        msg = f"p2p-visitor\x00{user.app_id}\x00{user.user_id}".encode()
        return "v" + hmac.new(self._key, msg, hashlib.sha256).hexdigest()[:24]

    def _now_s(self) -> int:
        return self._clock.now_ms() // 1000

    # -- the App API's use-cases ------------------------------------------------------------

    async def params(self, user: UserInfo, rec: DeviceRecord) -> P2PParams:
        """ICE servers for this user's peer, the device's latest ``_sys_xp2p_info`` (``""``
        if it never reported one) and whether it is online."""
        latest = (await self._telemetry.latest(rec)).get(XP2P_INFO_PROP)
        info = latest.value if latest is not None and isinstance(latest.value, str) else ""
        servers = self._ice.ice_servers(f"app-{self.visitor(user)}", self._now_s())
        return P2PParams(servers, info, rec.online)

    async def connect(
        self,
        user: UserInfo,
        rec: DeviceRecord,
        offer_sdp: str,
        *,
        channel: int = 0,
        quality: vs.Quality = "standard",
    ) -> tuple[str, str]:
        """Relay the app's offer; ``(session id, answer SDP)``."""
        try:
            offer = ps.check_offer(offer_sdp)
        except ps.SdpError as exc:
            raise InvalidInput(str(exc)) from None
        uid = user.user_id
        if len(self._by_user.get(uid, ())) + self._pending.get(uid, 0) >= (
            self.max_sessions_per_user
        ):
            raise TooManySessions(
                f"at most {self.max_sessions_per_user} P2P sessions per user; close one first"
            )
        session_id = "p2p-" + secrets.token_hex(12)
        params = ps.webrtc_offer_params(
            session_id,
            offer,
            self._ice.ice_servers(f"dev-{rec.id}", self._now_s()),
            self.visitor(user),
            channel,
            quality,
        )
        self._pending[uid] = self._pending.get(uid, 0) + 1
        try:
            reply = await self._signals.request(
                rec, ps.WEBRTC_OFFER, params, timeout_s=self.answer_timeout_s
            )
        finally:
            self._pending[uid] -= 1
            if not self._pending[uid]:
                del self._pending[uid]
        self._check(reply, "the device could not answer the offer")
        try:
            answer = ps.parse_answer_data(reply.data)
        except ps.SdpError as exc:
            raise P2PFailed(f"the device sent no valid answer: {exc}") from None
        if not self._downlink.is_connected(rec.client_id):  # went offline meanwhile
            raise DeviceOffline(f"device {rec.product_id}/{rec.device_name} went offline")
        session = P2PSession(
            session_id,
            uid,
            rec.id,
            rec.product_id,
            rec.device_name,
            channel,
            quality,
            self._clock.now_ms(),
        )
        self._sessions[session_id] = session
        self._by_user.setdefault(uid, set()).add(session_id)
        self._by_device.setdefault((rec.product_id, rec.device_name), set()).add(session_id)
        log.info("p2p_session_open", device=rec.client_id, session=session_id[:12])
        return session_id, answer

    async def close(self, user: UserInfo, rec: DeviceRecord, session_id: str) -> None:
        """End one of the caller's sessions on that device (``NotFound`` for any other id).
        The cloud forgets it at once; the device is told if it is reachable."""
        session = self._sessions.get(session_id)
        if session is None or session.user_id != user.user_id or session.device_id != rec.id:
            raise NotFound("no such P2P session")
        self._forget(session)
        try:
            reply = await self._signals.request(
                rec, ps.WEBRTC_CLOSE, {"session": session_id}, timeout_s=self.command_timeout_s
            )
            log.info("p2p_session_closed", device=rec.client_id, code=reply.code)
        except ServiceError as exc:  # offline: its peers are gone; timeout: they end alone
            log.info("p2p_close_not_delivered", device=rec.client_id, error=str(exc))

    async def command(self, user: UserInfo, rec: DeviceRecord, text: str) -> str:
        """Relay a command (``inner_define`` / ``user_define``) to the device over MQTT;
        its reply text. Stream requests are refused: they need a P2P session or the hub."""
        try:
            request = parse_request(text)
        except Xp2pRequestError as exc:
            if not exc.command:  # the device would only refuse it too
                raise InvalidInput(f"not an XP2P command: {exc}") from None
            request = None  # a malformed command: the device answers in its reply shape
        if isinstance(request, _STREAMS):
            raise InvalidInput(
                "stream requests (ipc.flv, voice) go over a P2P session or the stream hub"
            )
        reply = await self._signals.request(
            rec,
            ps.XP2P_COMMAND,
            {"visitor": self.visitor(user), "request": text},
            timeout_s=self.command_timeout_s,
        )
        self._check(reply, "the device could not run the command")
        try:
            return ps.parse_command_reply(reply.data)
        except ProtocolError as exc:
            raise P2PFailed(str(exc)) from None

    def sessions(self, user_id: str) -> list[P2PSession]:
        """The user's open sessions (oldest first)."""
        found = (self._sessions[s] for s in self._by_user.get(user_id, ()))
        return sorted(found, key=lambda s: (s.created_ms, s.session_id))

    # -- device side and presence -----------------------------------------------------------

    async def on_device_closed(self, rec: DeviceRecord, msg: vs.SignalMessage) -> SignalReply:
        """``webrtc_closed`` from a device: its peer ended (viewer gone, never connected)."""
        try:
            session_id, reason = ps.parse_webrtc_closed(msg)
        except vs.SignalError as exc:
            return SignalReply(vs.INVALID, f"invalid params: {exc}")
        session = self._sessions.get(session_id)
        if session is None or session.device_id != rec.id:
            return SignalReply(vs.OK, "not open")
        self._forget(session)
        log.info("p2p_session_ended", device=rec.client_id, reason=reason)
        return SignalReply(vs.OK, "forgotten")

    def on_bus_event(self, event: BusEvent) -> None:
        """Bus listener: a device that went offline has closed its peers."""
        if not isinstance(event, DeviceOnline) or event.online:
            return
        for session_id in list(self._by_device.get((event.product_id, event.device_name), ())):
            self._forget(self._sessions[session_id])

    # -- internals --------------------------------------------------------------------------

    def _check(self, reply: SignalReply, what: str) -> None:
        if reply.ok:
            return
        if reply.code == ps.REFUSED:
            status = ps.parse_refusal(reply.data)
            raise P2PRefused(status if status is not None else 1, reply.status[:200])
        if reply.code == vs.INVALID:
            raise InvalidInput(f"{what}: {reply.status[:200]}")
        if reply.code == vs.NOT_FOUND:
            raise P2PFailed("the device does not support P2P sessions")
        raise P2PFailed(f"{what} ({reply.code} {reply.status[:200]})")

    def _forget(self, session: P2PSession) -> None:
        sid = session.session_id
        self._sessions.pop(sid, None)
        mine = self._by_user.get(session.user_id)
        if mine is not None:
            mine.discard(sid)
            if not mine:
                del self._by_user[session.user_id]
        device_key = (session.product_id, session.device_name)
        theirs = self._by_device.get(device_key)
        if theirs is not None:
            theirs.discard(sid)
            if not theirs:
                del self._by_device[device_key]
