"""The one composition root: builds every part of an ivcloud instance from :class:`Settings`
and owns their start/stop order (database → writer → gateway → HTTP; reverse on stop)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

import structlog
import uvicorn

from ivcloud.api.http import build_http_app
from ivcloud.api.push import PushHub
from ivcloud.bus.memory import InMemoryBus
from ivcloud.config import Settings
from ivcloud.gateway.dispatch import ThingDispatcher
from ivcloud.gateway.server import MqttGateway
from ivcloud.gateway.subdevices import GatewayOperations, SubDeviceRoutes
from ivcloud.media.hub import StreamHub
from ivcloud.media.stun_server import StunServer
from ivcloud.protocol.cs_urls import CsUrls
from ivcloud.protocol.p2p_signal import WEBRTC_CLOSED
from ivcloud.services.access import AccessService
from ivcloud.services.account_cancel import AccountCancellation
from ivcloud.services.accounts import build_accounts
from ivcloud.services.app_binding import AppBindingService
from ivcloud.services.app_graph import AppGraph
from ivcloud.services.apps import AppService
from ivcloud.services.binding import BindingService
from ivcloud.services.cloud_storage import CloudStorageService, CsLimits
from ivcloud.services.cloud_storage_query import CloudStorageQuery
from ivcloud.services.cloud_storage_retention import CloudStorageRetention
from ivcloud.services.control import ControlService
from ivcloud.services.devices import DeviceService
from ivcloud.services.families import FamilyService
from ivcloud.services.feedback import FeedbackService
from ivcloud.services.gateways import GatewayService
from ivcloud.services.global_config import GlobalConfigService
from ivcloud.services.ice import IceService, public_stun_host, stun_url
from ivcloud.services.message_feed import DeviceEventFeed
from ivcloud.services.messages import MessageLimits, MessageService
from ivcloud.services.ota import OtaService
from ivcloud.services.p2p_sessions import P2PSessionService
from ivcloud.services.ports import DownlinkRef, SystemClock
from ivcloud.services.products import ProductService
from ivcloud.services.rtc_calls import RtcCallService, TrtcConfig
from ivcloud.services.sharing import SharingService
from ivcloud.services.streams import StreamService
from ivcloud.services.telemetry import Telemetry
from ivcloud.services.user_settings import UserSettingsService
from ivcloud.services.users import UserService
from ivcloud.services.video_signal import VideoSignalService
from ivcloud.services.writer import BatchWriter
from ivcloud.services.xg_tokens import XgTokenService
from ivcloud.store.db import WalCheckpointer, create_engine, migrate, session_factory
from ivcloud.store.objects import LocalObjectStore

log = structlog.get_logger("ivcloud")


def _read_or_create_secret(path: Path, nbytes: int = 32) -> str:
    """A per-data-directory secret, created once with owner-only permissions."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio turns TCP_NODELAY on for accepted connections only
    # when the listening socket says TCP; without it Nagle delays every response ~40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


@dataclass(frozen=True, slots=True)
class Endpoints:
    http_url: str
    mqtt_host: str
    mqtt_port: int
    mqtt_ws_url: str | None
    stun_url: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "http_url": self.http_url,
            "console_api": self.http_url + "/api/console/v1",
            "openapi": self.http_url + "/docs",
            "mqtt_host": self.mqtt_host,
            "mqtt_port": self.mqtt_port,
            "mqtt_ws_url": self.mqtt_ws_url,
            "stun_url": self.stun_url,
        }


class Ivcloud:
    """One running instance.  ``await start()``, then ``endpoints``; ``await stop()``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.admin_token = settings.admin_token or _read_or_create_secret(settings.admin_token_file)
        url_key = settings.secret_key or _read_or_create_secret(settings.data_dir / "secret-key")
        self.clock = SystemClock()
        self.bus = InMemoryBus()
        self.engine = create_engine(settings.sqlalchemy_url)
        self.sessions = session_factory(self.engine)
        self.objects = LocalObjectStore(settings.objects_dir)
        self.checkpointer = WalCheckpointer(self.engine)
        self.writer = BatchWriter(
            self.engine,
            batch_max=settings.report_batch_max,
            batch_delay_ms=settings.report_batch_delay_ms,
            queue_max=settings.report_queue_max,
        )
        self.products = ProductService(self.sessions, self.clock, self.bus)
        self.devices = DeviceService(
            self.sessions, self.products, self.bus, self.clock, self.writer
        )
        self.telemetry = Telemetry(self.sessions, self.writer, self.bus, self.clock)
        self.binding = BindingService(self.sessions, self.bus, self.clock)
        self.apps = AppService(self.sessions, self.products, self.clock, self.bus)
        self.users = UserService(self.sessions, self.clock)
        # -- app side services (issue 3); each line added by the area's owner ----------
        # (accounts) (families/access) (binding/sharing) (push)
        self.accounts = build_accounts(
            settings, self.users, self.sessions, self.clock, key=url_key.encode()
        )
        self.graph = AppGraph(self.sessions)
        self.bus.listen("entity.removed", self.graph.on_event)
        self.bus.listen("entity.removed", self.devices.on_entity_removed)
        self.access = AccessService(self.sessions, self.devices, self.apps, self.clock, self.graph)
        self.families = FamilyService(
            self.sessions, self.access, self.devices, self.clock, self.bus, self.graph
        )
        self.downlink = DownlinkRef()
        # (binding/sharing) after the downlink: bind_device/unbind_device notices go down it
        self.app_binding = AppBindingService(
            self.sessions, self.devices, self.access, self.families, self.downlink, self.clock
        )
        self.bus.listen("device.binding", self.app_binding.on_binding_changed)
        self.sharing = SharingService(self.sessions, self.access, self.clock, self.graph)
        # (messages) the message centre: invitations, device alerts/faults, maker notices
        self.messages = MessageService(
            self.sessions,
            self.apps,
            self.clock,
            MessageLimits(
                retention_days=settings.message_retention_days,
                max_per_user=settings.message_max_per_user,
                interval_s=settings.message_cleanup_interval_s,
            ),
        )
        self.sharing.on_invite = self.families.on_invite = self.messages.add_invitation
        self.message_feed = DeviceEventFeed(
            self.messages, self.sessions, self.devices, self.apps, self.graph, self.clock
        )
        self.bus.listen("device.event", self.message_feed.on_bus_event)
        self.push = PushHub(self.bus, self.users, self.access, self.clock)
        # (user extras) settings, XG tokens, feedback, global config, account cancellation
        self.user_settings = UserSettingsService(self.sessions, self.clock)
        self.xg_tokens = XgTokenService(self.sessions, self.clock)
        self.feedback = FeedbackService(self.sessions, self.clock)
        self.global_config = GlobalConfigService(self.sessions, self.clock)
        self.account_cancel = AccountCancellation(
            self.sessions, self.users, self.families, self.graph, self.bus
        )
        self.control = ControlService(
            self.sessions,
            self.products,
            self.downlink,
            self.bus,
            self.clock,
            self.writer,
            action_timeout_s=settings.action_timeout_s,
        )
        self.ota = OtaService(
            self.sessions,
            self.products,
            self.devices,
            self.objects,
            self.downlink,
            self.bus,
            self.clock,
            url_key=url_key.encode(),
            base_url=settings.base_url(),
        )
        # (live video) $video signalling; demand-driven uploads into the stream hub
        self.video_signal = VideoSignalService(self.downlink, timeout_s=settings.action_timeout_s)
        self.streams = StreamService(
            self.video_signal,
            self.downlink,
            self.clock,
            url_key=url_key.encode(),
            base_url=settings.base_url(),
            publisher_wait_s=settings.stream_publisher_wait_s,
            linger_s=settings.stream_linger_s,
        )
        self.hub = StreamHub(
            self.streams,
            gop_limit=settings.stream_gop_cache_bytes,
            backlog_limit=settings.stream_viewer_backlog_bytes,
            max_viewers=settings.stream_max_viewers,
        )
        self.streams.sink = self.hub
        self.bus.listen("device.online", self.streams.on_bus_event)
        # (gateway sub-devices) topology + which gateway connection carries a sub-device
        self.subdevice_routes = SubDeviceRoutes()
        self.gateway_subdevices = GatewayService(
            self.sessions,
            self.devices,
            self.access,
            self.families,
            self.subdevice_routes,
            self.downlink,
            self.clock,
        )
        self.bus.listen("device.binding", self.gateway_subdevices.on_binding_changed)
        self.bus.listen("entity.removed", self.gateway_subdevices.on_entity_removed)
        self.dispatcher = ThingDispatcher(
            devices=self.devices,
            products=self.products,
            telemetry=self.telemetry,
            control=self.control,
            ota_service=self.ota,
            binding=self.binding,
            downlink=self.downlink,
            clock=self.clock,
            video=self.video_signal,
            gateway_ops=GatewayOperations(self.gateway_subdevices, self.downlink),
        )
        self.gateway = MqttGateway(
            self.dispatcher,
            max_packet_size=settings.max_packet_size,
            routes=self.subdevice_routes,
        )
        self.downlink.target = self.gateway
        # (live video) STUN listener; ICE server list with minted TURN credentials
        self.stun = StunServer(rate_limit=settings.stun_rate_limit)
        self.ice = IceService.from_settings(settings)
        # (live video) P2P: WebRTC offer/answer and relayed XP2P commands over $video
        self.p2p = P2PSessionService(
            self.video_signal,
            self.ice,
            self.telemetry,
            self.downlink,
            self.clock,
            visitor_key=url_key.encode(),
            answer_timeout_s=settings.p2p_answer_timeout_s,
            command_timeout_s=settings.action_timeout_s,
            max_sessions_per_user=settings.p2p_max_sessions_per_user,
        )
        self.video_signal.handle(WEBRTC_CLOSED, self.p2p.on_device_closed)
        self.bus.listen("device.online", self.p2p.on_bus_event)
        # (TRTC calls) App::IotRTC::*: ring the device, mint room tickets, follow its reports
        self.rtc_calls = RtcCallService(
            TrtcConfig.from_settings(settings),
            self.products,
            self.telemetry,
            self.control,
            self.downlink,
            self.clock,
        )
        self.bus.listen("device.reported", self.rtc_calls.on_bus_event)
        self.bus.listen("device.online", self.rtc_calls.on_bus_event)
        # (cloud storage) device uploads, App API queries, signed playback, retention
        cs_limits = CsLimits(
            retention_days=settings.cloud_storage_retention_days,
            max_segment_bytes=settings.cloud_storage_max_segment_bytes,
            max_thumbnail_bytes=settings.cloud_storage_max_thumbnail_bytes,
            clock_skew_s=settings.cloud_storage_clock_skew_s,
        )
        self.cloud_storage = CloudStorageService(self.sessions, self.objects, self.clock, cs_limits)
        self.cs_query = CloudStorageQuery(
            self.sessions,
            self.clock,
            timezone=settings.cloud_storage_timezone,
            retention_days=settings.cloud_storage_retention_days,
        )
        self.cs_retention = CloudStorageRetention(
            self.sessions,
            self.objects,
            self.clock,
            cs_limits,
            forget_init=self.cloud_storage.forget_init,
            interval_s=settings.cloud_storage_cleanup_interval_s,
        )
        self.cs_urls = CsUrls(url_key.encode(), settings.base_url())
        self.http_app = build_http_app(self, url_key=url_key.encode())
        self._http: uvicorn.Server | None = None
        self._http_task: asyncio.Task[None] | None = None
        self.endpoints: Endpoints | None = None
        self.base_url = settings.base_url()

    async def start(self) -> Endpoints:
        s = self.settings
        await migrate(self.engine)
        self.checkpointer.start()
        await self.devices.reset_presence()
        await self.devices.warm_cache()
        self.writer.start()
        self.message_feed.start()
        self.messages.start()
        await self.gateway.start(s.host, s.mqtt_port, ws_port=s.mqtt_ws_port)
        if s.stun_port is not None:
            await self.stun.start(s.stun_host or s.host, s.stun_port)
            assert self.stun.port is not None
            self.ice.stun_urls = [stun_url(public_stun_host(s), self.stun.port)]
        sock = bind_socket(s.host, s.http_port)
        if s.http_send_buffer_bytes:  # inherited by accepted connections (stream viewers)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, s.http_send_buffer_bytes)
        http_port = sock.getsockname()[1]
        #: Where clients reach this instance (public_url when set): signed links, QR codes.
        self.base_url = s.base_url(http_port)
        self.ota.base_url = self.base_url
        self.streams.base_url = self.base_url
        self.cs_urls.base_url = self.base_url
        self.cs_retention.start()
        config = uvicorn.Config(
            self.http_app,
            log_config=None,
            access_log=False,
            lifespan="off",
            ws="websockets-sansio",
            # Browsers offer permessage-deflate; accepting it would zlib every video message
            # once per viewer (the hub sends the same bytes to all, compressing nothing).
            ws_per_message_deflate=False,
        )
        self._http = uvicorn.Server(config)
        self._http_task = asyncio.create_task(self._http.serve(sockets=[sock]))
        while not self._http.started:
            if self._http_task.done():
                await self._http_task  # surfaces the start-up error
            await asyncio.sleep(0.01)
        display_host = "127.0.0.1" if s.host in ("0.0.0.0", "::") else s.host
        ws_port = self.gateway.ws_port
        self.endpoints = Endpoints(
            http_url=f"http://{display_host}:{http_port}",
            mqtt_host=display_host,
            mqtt_port=self.gateway.port,
            mqtt_ws_url=f"ws://{display_host}:{ws_port}/mqtt" if ws_port else None,
            stun_url=self.ice.stun_urls[0] if self.ice.stun_urls else None,
        )
        (s.data_dir / "server.json").write_text(json.dumps(self.endpoints.to_json(), indent=2))
        log.info("ivcloud_started", **self.endpoints.to_json())
        return self.endpoints

    async def stop(self) -> None:
        await self.hub.close()  # ends streaming responses, or the HTTP server waits for them
        await self.streams.close()
        if self._http is not None:
            self._http.should_exit = True
            if self._http_task is not None:
                await self._http_task
            self._http = None
        await self.stun.stop()
        await self.cs_retention.stop()
        await self.gateway.stop()
        await self.writer.stop()
        await self.message_feed.stop()
        await self.messages.stop()
        await self.checkpointer.stop()
        await self.engine.dispose()
        (self.settings.data_dir / "server.json").unlink(missing_ok=True)
        log.info("ivcloud_stopped")
