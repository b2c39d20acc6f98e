"""Gateway sub-devices at the MQTT edge (device-protocol spec §6.2).

After a successful ``online``, a gateway's connection speaks for the sub-device: it may
publish on the sub-device's up-topics (dispatched as the sub-device's own messages) and
subscribe to its down-topics, and cloud → sub-device traffic (``Downlink.publish`` with the
sub-device's ClientId) goes out on the gateway's connection.  ``offline``, ``unbind`` (by the
gateway or the app) and the gateway's disconnection take those rights away at once.

:class:`SubDeviceRoutes` is that state: sub-device ClientId → the gateway's ClientId, plus
the filters each sub-device was granted on the gateway's connection (removed with the route,
so nothing keeps flowing).  ``protocol.topics`` stays a pure static ACL; the session asks
this table only when the static ACL says no, and the lookups are O(1) (a topic names its
device in fixed levels, so there is no scan over the gateway's sub-devices).  Routes are
keyed by ClientId, not by connection: a gateway's second connection replaces the first and
the server drops the first one's routes before the new one runs (so it must ``online`` its
sub-devices again, as the SDKs do after every reconnect).

:class:`GatewayOperations` handles what a gateway publishes on ``$gateway/operation/{P}/{D}``
and answers on ``$gateway/operation/result/{P}/{D}``; the decisions are
``services.gateways.GatewayService``'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import structlog

from ivcloud.gateway.contracts import DeviceIdentity
from ivcloud.protocol import gateway_ops as ops
from ivcloud.protocol.topics import may_publish, may_subscribe
from ivcloud.services.devices import DeviceRecord
from ivcloud.services.gateways import GatewayService
from ivcloud.services.ports import Downlink

if TYPE_CHECKING:
    from ivcloud.gateway.session import Session

log = structlog.get_logger("ivcloud.gateway")

#: A gateway never speaks for a sub-device on these (no nested gateways).
_NEVER_FOR_SUBS: Final = ("$gateway/",)


@dataclass(slots=True)
class _Route:
    identity: DeviceIdentity
    filters: set[str] = field(default_factory=set)


class SubDeviceRoutes:
    """Which gateway connection carries which sub-device; implements the services'
    ``SubDeviceRouter`` port.  The MQTT server hands it its live sessions
    (:meth:`use_sessions`)."""

    def __init__(self) -> None:
        self._gateway_of: dict[str, str] = {}  # sub ClientId -> gateway ClientId
        self._routes: dict[str, dict[str, _Route]] = {}  # gateway ClientId -> sub -> route
        self._sessions: Mapping[str, Session] = {}

    def use_sessions(self, sessions: Mapping[str, Session]) -> None:
        self._sessions = sessions

    # -- SubDeviceRouter --------------------------------------------------------------

    def attach(self, gateway_client_id: str, product_id: str, device_name: str) -> bool:
        if gateway_client_id not in self._sessions:
            return False
        sub = DeviceIdentity(product_id, device_name)
        current = self._gateway_of.get(sub.client_id)
        if current == gateway_client_id:
            return True
        if current is not None:
            self.detach(sub.client_id)
        self._gateway_of[sub.client_id] = gateway_client_id
        self._routes.setdefault(gateway_client_id, {})[sub.client_id] = _Route(sub)
        return True

    def detach(self, sub_client_id: str) -> str | None:
        gateway = self._gateway_of.pop(sub_client_id, None)
        if gateway is None:
            return None
        routes = self._routes.get(gateway, {})
        route = routes.pop(sub_client_id, None)
        if not routes:
            self._routes.pop(gateway, None)
        session = self._sessions.get(gateway)
        if route is not None and session is not None:
            for topic_filter in route.filters:
                session.out.unsubscribe(topic_filter)
        return gateway

    def gateway_of(self, sub_client_id: str) -> str | None:
        return self._gateway_of.get(sub_client_id)

    # -- used by the server and the sessions ---------------------------------------------

    def session_for(self, sub_client_id: str) -> Session | None:
        """The live gateway connection a sub-device is routed through (delivery)."""
        gateway = self._gateway_of.get(sub_client_id)
        return None if gateway is None else self._sessions.get(gateway)

    def drop_gateway(self, gateway_client_id: str) -> list[DeviceIdentity]:
        """Forget every route through a gateway whose connection ended (or was replaced);
        the sub-devices that were routed.  Their filters went with the connection."""
        routes = self._routes.pop(gateway_client_id, {})
        for sub_client_id in routes:
            self._gateway_of.pop(sub_client_id, None)
        return [route.identity for route in routes.values()]

    def sub_count(self, gateway_client_id: str) -> int:
        return len(self._routes.get(gateway_client_id, ()))

    def _candidates(self, gateway_client_id: str, topic: str) -> list[_Route]:
        routes = self._routes.get(gateway_client_id)
        if not routes or topic.startswith(_NEVER_FOR_SUBS):
            return []
        levels = topic.split("/")
        # Where a topic names its device: {P}/{D} last ($thing, $ota, $sys …), at levels
        # 2-3 ($rrpc/{txd,rxd}/{P}/{D}/{id}), or first (custom {P}/{D}/…).
        keys = {"".join(levels[-2:]), "".join(levels[2:4]), "".join(levels[:2])}
        return [routes[k] for k in keys if k in routes]

    def publisher(self, gateway_client_id: str, topic: str) -> DeviceIdentity | None:
        """The sub-device a gateway may publish ``topic`` for, if any."""
        for route in self._candidates(gateway_client_id, topic):
            sub = route.identity
            if may_publish(sub.product_id, sub.device_name, topic):
                return sub
        return None

    def subscribe(self, gateway_client_id: str, topic_filter: str) -> bool:
        """Whether a gateway may subscribe to ``topic_filter`` for one of its online
        sub-devices (recorded, so the filter goes away with the route)."""
        for route in self._candidates(gateway_client_id, topic_filter):
            sub = route.identity
            if may_subscribe(sub.product_id, sub.device_name, topic_filter):
                route.filters.add(topic_filter)
                return True
        return False


class GatewayOperations:
    """``$gateway/operation`` → :class:`GatewayService` → ``$gateway/operation/result``.
    Called by the dispatcher for the gateway device's own topic."""

    def __init__(self, service: GatewayService, downlink: Downlink) -> None:
        self._service = service
        self._downlink = downlink

    async def on_operation(self, gateway: DeviceRecord, payload: bytes) -> None:
        try:
            op = ops.parse_operation(payload)
        except ops.GatewayOpError as exc:
            log.info("gateway_op_rejected", client_id=gateway.client_id, error=str(exc))
            await self._answer(gateway, ops.error_reply(exc.op_type))
            return
        if op.type == ops.CHANGE:  # the gateway's acknowledgement of a change
            log.info("gateway_change_ack", client_id=gateway.client_id, result=op.result)
            return
        if op.type == ops.DESCRIBE:
            devices = await self._service.sub_devices(gateway)
            await self._answer(gateway, ops.describe_reply(devices))
            return
        step = {
            ops.BIND: self._service.bind,
            ops.UNBIND: self._service.unbind,
            ops.ONLINE: self._service.online,
            ops.OFFLINE: self._service.offline,
        }[op.type]
        results = []
        for entry in op.devices:
            code = await step(gateway, entry)
            results.append((entry.product_id, entry.device_name, code))
        log.info(
            "gateway_op",
            client_id=gateway.client_id,
            type=op.type,
            results=[f"{p}/{d}:{c}" for p, d, c in results],
        )
        await self._answer(gateway, ops.result_reply(op.type, results))

    async def _answer(self, gateway: DeviceRecord, body: bytes) -> None:
        topic = ops.down_topic(gateway.product_id, gateway.device_name)
        await self._downlink.publish(gateway.client_id, topic, body)
