"""``Xp2pClient``: the app SDK's XP2P client, shaped like Tencent's XP2P app SDK
(``startServiceWithXp2pInfo``, ``delegateHttpFlv``, ``getCommandRequestWithAsync`` /
``postCommandRequestSync``, ``runSendService`` / ``dataSend`` / ``stopSendService``,
``stopService``, ``destroy``) over ivcloud's P2P (WebRTC) and hub paths::

    async with AppClient(url, access_token=token) as app, Xp2pClient(app) as xp2p:
        info = await xp2p.start_service("P/cam01", xp2p_info)   # the device's _sys_xp2p_info
        url = xp2p.delegate_http_flv("P/cam01") + "ipc.flv?action=live&channel=0&quality=high"
        # hand url to ffplay / VLC / PyAV; xp2p.chosen_path("P/cam01") → "direct"|"turn"|"hub"
        st = "action=inner_define&channel=0&cmd=get_device_st&type=live"
        reply = await xp2p.send_command("P/cam01", st)   # '[{"status":"0","appConnectNum":"1"}]'
        talk = await xp2p.start_voice("P/cam01", fmt="pcm", sample_rate=16000)
        await talk.write(pcm_bytes); await xp2p.stop_voice("P/cam01")
        await xp2p.stop_service("P/cam01")

Ids are the App API's ``DeviceId`` (``ProductId/DeviceName``). Failures raise
:class:`~ivcloud.client.xp2p_errors.Xp2pError` with the XP2P code (−1000…−1020) and log the
seed's line for it. What each path does and when is in :mod:`ivcloud.client.xp2p_session`;
the local HTTP server in :mod:`ivcloud.client.xp2p_proxy`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import structlog

from ivcloud.client.app_sdk import AppClient
from ivcloud.client.p2p import AppPeer
from ivcloud.client.xp2p_cloud import Xp2pCloud
from ivcloud.client.xp2p_errors import (
    Xp2pError,
    Xp2pInfoError,
    Xp2pParamError,
    Xp2pServiceStateError,
    logged,
    seed_line,
)
from ivcloud.client.xp2p_proxy import LocalProxy
from ivcloud.client.xp2p_session import EventCallback, P2PState, PeerFactory, Xp2pService
from ivcloud.client.xp2p_upstream import Path
from ivcloud.client.xp2p_voice import VoiceStream
from ivcloud.protocol import xp2p_errors as codes
from ivcloud.protocol import xp2p_info as info_format
from ivcloud.protocol.av.aac import SAMPLE_RATES
from ivcloud.protocol.xp2p import parse_request
from ivcloud.protocol.xp2p_types import InnerDefine, UserDefine, Xp2pRequestError

__all__ = ["PATHS", "ServiceInfo", "Xp2pClient"]

log = structlog.get_logger("ivcloud.client.xp2p")

PATHS = ("p2p", "hub")
#: What ``The xp2p_device_sdk is low…`` asks for: an info with the WebRTC flag.
P2P_MIN_VERSION = f"{info_format.PREFIX} with flag w"


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    """A started service: ``url`` is :meth:`Xp2pClient.delegate_http_flv`'s base URL;
    ``online`` the device's presence when it started."""

    device_id: str
    xp2p_info: str
    url: str
    paths: tuple[str, ...]
    online: bool


class Xp2pClient:
    """XP2P services for one app user (``app``, not closed here). ``timeout`` bounds the
    P2P connect and every request's wait; ``on_event(device_id, event, detail)`` hears
    ``detect_ready`` (path), ``detect_error``, ``disconnect`` and ``path`` (chosen path
    changed). ``peer_factory`` builds the WebRTC peer from the ICE servers (e.g. to force
    TURN); ``cloud`` replaces the App API calls (a test's stand-in for the P2P half)."""

    def __init__(
        self,
        app: AppClient,
        *,
        proxy_host: str = "127.0.0.1",
        proxy_port: int = 0,
        timeout: float = 15.0,
        peer_factory: PeerFactory | None = None,
        on_event: EventCallback | None = None,
        cloud: Xp2pCloud | None = None,
    ) -> None:
        self.app = app
        self.timeout = timeout
        self._cloud = cloud or Xp2pCloud(app)
        self._proxy = LocalProxy(proxy_host, proxy_port)
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout, read=30.0))
        self._peer_factory = peer_factory or self._default_peer
        self._on_event = on_event
        self._services: dict[str, tuple[Xp2pService, ServiceInfo]] = {}
        self._starting: set[str] = set()

    def _default_peer(self, ice_servers: Sequence[Mapping[str, Any]]) -> AppPeer:
        return AppPeer(ice_servers, video=False, audio=False, request_timeout=self.timeout)

    async def __aenter__(self) -> Xp2pClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.destroy()

    # -- services ---------------------------------------------------------------------------

    async def start_service(
        self,
        device_id: str,
        xp2p_info: str,
        *,
        paths: Sequence[str] = PATHS,
        timeout: float | None = None,  # noqa: ASYNC109 -- bounds the background connect
    ) -> ServiceInfo:
        """Start a device's service: check ``xp2p_info`` is the device's current one
        (``IvcloudDescribeP2PParams``), route it in the local proxy and start connecting
        P2P in the background. −1000 empty or unknown arguments, −1011 already running,
        −1014 not an XP2P info, −1007 a device without WebRTC and P2P the only path, −1001
        the cloud refused or has no info for the device (``api_code``
        ``InvalidParameterValue.NoPermission`` for another user's device), −1002 the info is
        not the device's current one (outdated: its P2P agent restarted), or the proxy
        cannot listen."""
        if not device_id or not xp2p_info:
            raise logged(
                Xp2pParamError(codes.XP2P_ERR_INIT_PRM, "device_id and xp2p_info are required"),
                device_id=device_id,
            )
        chosen = tuple(dict.fromkeys(paths))
        if not chosen or not set(chosen) <= set(PATHS):
            raise logged(
                Xp2pParamError(codes.XP2P_ERR_INIT_PRM, "paths must be some of 'p2p', 'hub'"),
                device_id=device_id,
            )
        if device_id in self._services or device_id in self._starting:
            raise logged(
                Xp2pServiceStateError(
                    codes.XP2P_ERR_P2P_ININED, seed_line(codes.XP2P_ERR_P2P_ININED, id=device_id)
                ),
                device_id=device_id,
            )
        chosen = self._check_info(device_id, xp2p_info, chosen)
        self._starting.add(device_id)
        try:
            await self._proxy.start()
            params = await self._cloud.p2p_params(device_id)
            if params.xp2p_info != xp2p_info:
                raise logged(
                    Xp2pInfoError(codes.XP2P_ERR_PROXY_INIT, seed_line(codes.XP2P_ERR_PROXY_INIT)),
                    device_id=device_id,
                )
            service = Xp2pService(
                device_id,
                params,
                self._cloud,
                self._http,
                paths=chosen,
                timeout=self.timeout if timeout is None else timeout,
                peer_factory=self._peer_factory,
                on_event=self._on_event,
            )
            url = self._proxy.add(service)
            info = ServiceInfo(device_id, xp2p_info, url, chosen, params.online)
            self._services[device_id] = (service, info)
            service.start()
        finally:
            self._starting.discard(device_id)
        log.info("xp2p service started", device_id=device_id, paths=",".join(chosen))
        return info

    @staticmethod
    def _check_info(device_id: str, xp2p_info: str, paths: tuple[str, ...]) -> tuple[str, ...]:
        """−1014 for a value that is not an XP2P info (ivcloud's format,
        :mod:`ivcloud.protocol.xp2p_info`); a device without WebRTC sessions (no ``w``
        flag) is −1007 when P2P is the only path, else served by the hub alone."""
        try:
            info = info_format.parse_xp2p_info(xp2p_info)
        except info_format.Xp2pInfoError:
            shown = ascii(xp2p_info[:80])[1:-1]
            raise logged(
                Xp2pInfoError(
                    codes.XP2P_ERR_XP2PINFO_RULE,
                    seed_line(codes.XP2P_ERR_XP2PINFO_RULE, xp2p_info=shown),
                ),
                device_id=device_id,
            ) from None
        if "p2p" not in paths or info.has("w"):
            return paths
        low = logged(
            Xp2pInfoError(
                codes.XP2P_ERR_VERSION, seed_line(codes.XP2P_ERR_VERSION, version=P2P_MIN_VERSION)
            ),
            device_id=device_id,
        )
        if "hub" not in paths:
            raise low
        return ("hub",)

    def _service(self, device_id: str) -> Xp2pService:
        entry = self._services.get(device_id)
        if entry is None:
            raise logged(
                Xp2pServiceStateError(
                    codes.XP2P_ERR_P2P_UNININ, seed_line(codes.XP2P_ERR_P2P_UNININ, id=device_id)
                ),
                device_id=device_id,
            )
        return entry[0]

    def delegate_http_flv(self, device_id: str) -> str:
        """The proxy's base URL for the device; append ``ipc.flv?action=…``."""
        self._service(device_id)
        return self._services[device_id][1].url

    def chosen_path(self, device_id: str) -> Path | None:
        """``"direct"`` / ``"turn"`` (P2P up), ``"hub"`` (the hub won a live race while
        P2P was not up), ``None`` (undecided yet)."""
        return self._service(device_id).chosen_path

    def p2p_state(self, device_id: str) -> P2PState:
        return self._service(device_id).state

    async def wait_p2p(self, device_id: str) -> Path:
        """Wait until the P2P tunnel is up (the SDK's "detect ready"); its path. −1010 when
        it failed or is not enabled for this service."""
        peer = await self._service(device_id).wait_p2p()
        return peer.selected_path() or "direct"

    async def send_command(self, device_id: str, cmd: str) -> str:
        """An ``inner_define`` / ``user_define`` command; the device's reply text. Over P2P
        when it is up, else relayed by the cloud (``IvcloudXp2pCommand``)."""
        service = self._service(device_id)
        try:
            if not isinstance(parse_request(cmd), InnerDefine | UserDefine):
                raise Xp2pRequestError("streams and talk are not commands")
        except Xp2pRequestError as exc:
            if not exc.command:  # a malformed command still goes: the device answers it
                raise logged(
                    Xp2pParamError(codes.XP2P_ERR_INIT_PRM, f"not a command: {exc}"),
                    device_id=device_id,
                ) from None
        return await service.command(cmd)

    async def start_voice(
        self, device_id: str, channel: int = 0, fmt: str = "aac", sample_rate: int = 16000
    ) -> VoiceStream:
        """Start talking to the device over P2P (waits for the tunnel while it is being
        set up). See :mod:`ivcloud.client.xp2p_voice` for ``fmt``. −1010 without the tunnel,
        −1009 the device refused (``status``: 1 someone else talks, 406 no speaker), −1008
        the tunnel failed."""
        service = self._service(device_id)
        valid_rate = sample_rate in SAMPLE_RATES if fmt == "aac" else 8000 <= sample_rate <= 48000
        if fmt not in ("aac", "pcm") or not valid_rate or not 0 <= channel <= 64:
            raise logged(
                Xp2pParamError(codes.XP2P_ERR_INIT_PRM, "fmt aac|pcm, a valid rate, channel 0..64"),
                device_id=device_id,
            )
        return await service.start_voice(channel, fmt, sample_rate)

    async def stop_voice(self, device_id: str) -> None:
        """End the talk upload; −1003 when none is running."""
        await self._service(device_id).stop_voice()

    async def stop_service(self, device_id: str) -> None:
        """End the device's service: its proxy URLs stop working and open responses end,
        talk stops, the P2P session closes on the device. −1019 when none runs."""
        entry = self._services.pop(device_id, None)
        if entry is None:
            raise logged(
                Xp2pServiceStateError(
                    codes.XP2P_ERR_SERVICE_NOTRUN, f"no service is running with id:{device_id}"
                ),
                device_id=device_id,
            )
        service, info = entry
        await self._proxy.remove(info.url)
        await service.close()
        log.info("xp2p service stopped", device_id=device_id)

    async def destroy(self) -> None:
        """Stop every service and the proxy (the ``AppClient`` stays open). Idempotent."""
        for device_id in list(self._services):
            with contextlib.suppress(Xp2pError):  # logged
                await self.stop_service(device_id)
        await self._proxy.close()
        await self._http.aclose()
