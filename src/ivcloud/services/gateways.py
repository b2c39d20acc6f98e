"""Gateway sub-devices (device-protocol spec §6.2, app-api spec §2.3): the topology (which
gateway a sub-device is bound to), sub-device presence through a gateway, and the app side.

Two ways in:

* the gateway itself, over ``$gateway/operation`` (bind with the sub-device's signature,
  unbind, online, offline, describe).  Those methods answer the spec's per-device ``result``
  codes (``protocol.gateway_ops``): each device of a message has its own outcome, so they are
  results, not exceptions;
* the app: :meth:`GatewayService.bind_in_family` puts a sub-device that its gateway has bound
  into the gateway's family (Tencent's ``AppBindSubDeviceInFamily`` is documented as "bind a
  sub-device *already bound to the gateway* into the family": the gateway's bind is the proof
  of possession, as a bind token or a device signature is for other devices) and tells the
  gateway (``change`` status 1); :meth:`list_for_user` lists a gateway's sub-devices.  These
  raise :mod:`ivcloud.services.errors` like every app-side use-case.

Which connection carries a sub-device is the device edge's business (the MQTT gateway keeps
a route table); this service reaches it through the :class:`SubDeviceRouter` port.  A
sub-device that leaves its family leaves its gateway too (``change`` status 0), and a gateway
that leaves a family takes its sub-devices of that family with it — both heard as
``DeviceBindingChanged`` on the bus, whoever caused them.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final, Protocol

import structlog
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ivcloud.bus.events import BusEvent, DeviceBindingChanged, EntityRemoved
from ivcloud.protocol import gateway_ops as ops
from ivcloud.services.access import Access, AccessService
from ivcloud.services.devices import DeviceRecord, DeviceService
from ivcloud.services.errors import Forbidden, InvalidInput
from ivcloud.services.families import FamilyService
from ivcloud.services.family_types import ProductNotLinked
from ivcloud.services.ports import Clock, Downlink
from ivcloud.services.users import UserInfo
from ivcloud.store.schema import Device
from ivcloud.store.schema_gateway import GatewaySubdevice

log = structlog.get_logger("ivcloud.gateways")

#: Sub-devices one gateway may have bound (a bind beyond it answers 808).
MAX_SUBDEVICES: Final = 1000


class SubDeviceRouter(Protocol):
    """What this service needs from the device edge: which gateway connection carries a
    sub-device's traffic (implemented by ``gateway.subdevices.SubDeviceRoutes``)."""

    def attach(self, gateway_client_id: str, product_id: str, device_name: str) -> bool:
        """Route the sub-device through the gateway's connection; ``False`` if the gateway
        is not connected."""
        ...

    def detach(self, sub_client_id: str) -> str | None:
        """Stop routing the sub-device; the gateway's ClientId it was routed through."""
        ...

    def gateway_of(self, sub_client_id: str) -> str | None: ...


class _UsedSignatures:
    """Bind signatures already used, until they leave the time window: a signature is not
    tied to a gateway, so one that leaked must not bind the sub-device a second time."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._until: dict[str, int] = {}  # insertion order ≈ expiry order
        self._max = max_entries

    def seen(self, key: str, now_s: int) -> bool:
        while self._until:
            first = next(iter(self._until))
            if self._until[first] >= now_s and len(self._until) <= self._max:
                break
            del self._until[first]
        return key in self._until

    def mark(self, key: str, until_s: int) -> None:
        self._until[key] = until_s


class GatewayService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        devices: DeviceService,
        access: AccessService,
        families: FamilyService,
        router: SubDeviceRouter,
        downlink: Downlink,
        clock: Clock,
        *,
        bind_window_s: int = ops.BIND_WINDOW_S,
    ) -> None:
        self._sessions = sessions
        self._devices = devices
        self._access = access
        self._families = families
        self._router = router
        self._downlink = downlink
        self._clock = clock
        self._window = bind_window_s
        self._used = _UsedSignatures()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- topology -----------------------------------------------------------------------

    async def gateway_id_of(self, sub: DeviceRecord) -> int | None:
        async with self._sessions() as s:
            return await s.scalar(
                select(GatewaySubdevice.gateway_device_id).where(
                    GatewaySubdevice.sub_device_id == sub.id
                )
            )

    async def sub_devices(self, gateway: DeviceRecord) -> list[tuple[str, str]]:
        """``(ProductId, DeviceName)`` of the gateway's sub-devices, in binding order."""
        async with self._sessions() as s:
            rows = await s.execute(
                select(Device.product_id, Device.device_name)
                .join(GatewaySubdevice, GatewaySubdevice.sub_device_id == Device.id)
                .where(GatewaySubdevice.gateway_device_id == gateway.id)
                .order_by(GatewaySubdevice.created_ms, Device.id)
            )
            return [(p, d) for p, d in rows.all()]

    async def _sub(self, gateway: DeviceRecord, entry: ops.DeviceEntry) -> DeviceRecord | None:
        sub = await self._devices.find(entry.product_id, entry.device_name)
        return None if sub is None or sub.id == gateway.id else sub

    # -- the gateway's own operations ($gateway/operation) --------------------------------

    async def bind(self, gateway: DeviceRecord, entry: ops.DeviceEntry) -> int:
        """Bind with the sub-device's signature: 802 unknown device, 803/804/805 signature,
        806 bound to another gateway, 809 already bound here, 808 over the limit."""
        if entry.error:
            return entry.error
        sub = await self._sub(gateway, entry)
        if sub is None:
            return ops.BAD_DEVICE
        now_s = self._clock.now_ms() // 1000
        code = ops.check_bind(entry, sub.secret, now_s, self._window)
        if code:
            return code
        assert entry.proof is not None
        used_key = f"{sub.client_id}/{entry.proof.signature}"
        if self._used.seen(used_key, now_s):
            return ops.SIGNATURE_EXPIRED
        current = await self.gateway_id_of(sub)
        if current is not None:
            return ops.ALREADY_BOUND if current == gateway.id else ops.BOUND_ELSEWHERE
        try:
            async with self._sessions.begin() as s:
                count = await s.scalar(
                    select(func.count())
                    .select_from(GatewaySubdevice)
                    .where(GatewaySubdevice.gateway_device_id == gateway.id)
                )
                if int(count or 0) >= MAX_SUBDEVICES:
                    return ops.FORBIDDEN
                s.add(
                    GatewaySubdevice(
                        sub_device_id=sub.id,
                        gateway_device_id=gateway.id,
                        created_ms=self._clock.now_ms(),
                    )
                )
        except IntegrityError:  # a concurrent bind won
            current = await self.gateway_id_of(sub)
            return ops.ALREADY_BOUND if current == gateway.id else ops.BOUND_ELSEWHERE
        self._used.mark(used_key, entry.proof.timestamp_s + self._window)
        log.info("subdevice_bound", gateway=gateway.client_id, sub=sub.client_id)
        return ops.OK

    async def unbind(self, gateway: DeviceRecord, entry: ops.DeviceEntry) -> int:
        """-1 when the sub-device is not bound to this gateway.  The sub-device stays in its
        family (the app removes it there); it just no longer has a way in."""
        if entry.error:
            return entry.error
        sub = await self._sub(gateway, entry)
        if sub is None:
            return ops.BAD_DEVICE
        if not await self._drop_binding(sub, gateway.id):
            return ops.NOT_BOUND
        await self._route_off(sub)
        log.info("subdevice_unbound", gateway=gateway.client_id, sub=sub.client_id)
        return ops.OK

    async def online(self, gateway: DeviceRecord, entry: ops.DeviceEntry) -> int:
        """Route the (bound) sub-device through this gateway's connection and mark it
        online; -1 when not bound to this gateway, -2 when the gateway's connection is gone."""
        if entry.error:
            return entry.error
        sub = await self._sub(gateway, entry)
        if sub is None:
            return ops.BAD_DEVICE
        if await self.gateway_id_of(sub) != gateway.id:
            return ops.NOT_BOUND
        if not self._router.attach(gateway.client_id, sub.product_id, sub.device_name):
            return ops.SYSTEM_ERROR
        if not sub.online:
            await self._devices.set_presence(sub, True, gateway.last_ip)
        return ops.OK

    async def offline(self, gateway: DeviceRecord, entry: ops.DeviceEntry) -> int:
        if entry.error:
            return entry.error
        sub = await self._sub(gateway, entry)
        if sub is None:
            return ops.BAD_DEVICE
        if await self.gateway_id_of(sub) != gateway.id:
            return ops.NOT_BOUND
        if self._router.gateway_of(sub.client_id) == gateway.client_id:
            await self._route_off(sub)
        return ops.OK

    async def _route_off(self, sub: DeviceRecord) -> None:
        """Take the sub-device's route away; offline unless it is connected on its own."""
        if self._router.detach(sub.client_id) is None:
            return
        if sub.online and not self._downlink.is_connected(sub.client_id):
            await self._devices.set_presence(sub, False)

    async def _drop_binding(self, sub: DeviceRecord, gateway_id: int | None = None) -> bool:
        async with self._sessions.begin() as s:
            query = delete(GatewaySubdevice).where(GatewaySubdevice.sub_device_id == sub.id)
            if gateway_id is not None:
                query = query.where(GatewaySubdevice.gateway_device_id == gateway_id)
            result = await s.execute(query)
        return bool(getattr(result, "rowcount", 0))

    async def notify_change(self, gateway: DeviceRecord, bound: bool, sub: DeviceRecord) -> bool:
        """Cloud-initiated ``change`` down ``$gateway/operation/result`` (best effort: an
        offline gateway learns the topology with ``describe_sub_devices``)."""
        body = ops.change_message(bound, [(sub.product_id, sub.device_name)])
        topic = ops.down_topic(gateway.product_id, gateway.device_name)
        return await self._downlink.publish(gateway.client_id, topic, body, qos=1)

    # -- the app side ---------------------------------------------------------------------

    async def bind_in_family(
        self, user: UserInfo, gateway_pid: str, gateway_dn: str, product_id: str, device_name: str
    ) -> dict[str, Any]:
        """``AppBindSubDeviceInFamily``: the caller must be a member of the gateway's family,
        the sub-device's product linked to the app, and the sub-device bound to this gateway
        (else ``NoPermission``, so other devices cannot be probed or claimed).  The sub-device
        joins the gateway's family (default room; already there = done), the gateway gets
        ``change`` status 1.  Returns the family-list item."""
        gateway = await self._access.require_device(user, gateway_pid, gateway_dn, Access.MEMBER)
        if (gateway_pid, gateway_dn) == (product_id, device_name):
            raise InvalidInput("a gateway cannot be its own sub-device")
        if not await self._access.product_linked(user, product_id):
            raise ProductNotLinked("the sub-device's product is not linked to this app")
        sub = await self._devices.find(product_id, device_name)
        if sub is None or await self.gateway_id_of(sub) != gateway.id:
            raise Forbidden("no permission for this device")
        family_id = await self._families.device_family(gateway)
        if family_id is None:  # left the family since the access check
            raise Forbidden("no permission for this device")
        if await self._families.device_family(sub) != family_id:
            await self._families.bind_device(user, family_id, "0", sub)
        await self.notify_change(gateway, True, sub)
        placed = await self._families.placement(sub)
        return placed.to_api() if placed is not None else {}

    async def list_for_user(
        self,
        user: UserInfo,
        gateway_pid: str,
        gateway_dn: str,
        product_id: str | None,
        offset: int,
        limit: int,
    ) -> tuple[int, list[dict[str, Any]]]:
        """``AppGetGatewayBindDeviceList``: the gateway's sub-devices of products linked to
        the app (optionally one product), in binding order.  ``BindStatus`` 1 = in the
        gateway's family; a family member of the gateway also gets the family-list fields
        of those, anyone else (a share) only the device's ids."""
        gateway = await self._access.require_device(user, gateway_pid, gateway_dn, Access.SHARED)
        member = await self._access.device_access(user, gateway) >= Access.MEMBER
        family_id = await self._families.device_family(gateway)
        linked = set(await self._access.product_ids(user))
        subs = [
            (p, d)
            for p, d in await self.sub_devices(gateway)
            if p in linked and (product_id is None or p == product_id)
        ]
        items: list[dict[str, Any]] = []
        for pid, dn in subs[offset : offset + limit]:
            item: dict[str, Any] = {
                "DeviceId": f"{pid}/{dn}",
                "ProductId": pid,
                "DeviceName": dn,
                "AliasName": "",
                "IconUrl": "",
                "BindStatus": 0,
            }
            rec = await self._devices.find(pid, dn)
            placed = None if rec is None else await self._families.placement(rec)
            if placed is not None and family_id is not None and placed.family_id == family_id:
                item["BindStatus"] = 1
                if member:
                    item = {**placed.to_api(), "BindStatus": 1}
            items.append(item)
        return len(subs), items

    # -- bus listeners ------------------------------------------------------------------

    def on_binding_changed(self, event: BusEvent) -> None:
        """A device left a family: if it is a sub-device its gateway binding ends (the
        gateway gets ``change`` status 0); if it is a gateway, its sub-devices in that
        family leave it too (which comes back here for each of them)."""
        if isinstance(event, DeviceBindingChanged) and not event.bound:
            self._spawn(self._left_family(event.product_id, event.device_name, event.family_id))

    def on_entity_removed(self, event: BusEvent) -> None:
        """A deleted device (or product) cannot be routed any more; the database cascaded
        its topology rows."""
        if not isinstance(event, EntityRemoved):
            return
        if event.kind == "device":
            self._router.detach(event.key)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _left_family(self, product_id: str, device_name: str, family_id: str) -> None:
        rec = await self._devices.find(product_id, device_name)
        if rec is None:
            return
        try:
            gateway_id = await self.gateway_id_of(rec)
            if gateway_id is not None and await self._drop_binding(rec, gateway_id):
                await self._route_off(rec)
                gateway = await self._device_by_id(gateway_id)
                if gateway is not None:
                    await self.notify_change(gateway, False, rec)
                log.info("subdevice_unbound_with_family", sub=rec.client_id)
            for pid, dn in await self.sub_devices(rec):
                sub = await self._devices.find(pid, dn)
                if sub is not None and await self._families.device_family(sub) == family_id:
                    await self._families.unbind_device(sub)
        except Exception:  # a listener task: nobody awaits it
            log.exception("subdevice_family_cleanup_failed", device=rec.client_id)

    async def _device_by_id(self, device_id: int) -> DeviceRecord | None:
        async with self._sessions() as s:
            row = await s.execute(
                select(Device.product_id, Device.device_name).where(Device.id == device_id)
            )
            found = row.first()
        return None if found is None else await self._devices.find(found[0], found[1])
