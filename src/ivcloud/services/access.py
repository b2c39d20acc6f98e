"""Who may do what on the app side: the one place App API authorization is decided.

A user reaches a device through exactly three paths — membership of the family the device
is bound into (admin or member) or a device share — and only if the device's product is
linked to the user's app and the device's family belongs to that app (a share counts only
while the device sits in a family of the user's app).  Everything that is not
reachable, including ids that do not exist, is refused with the same
:class:`~ivcloud.services.errors.Forbidden`, so other users' ids cannot be probed.
"""

from __future__ import annotations

from enum import IntEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ivcloud.services.app_graph import AppGraph
from ivcloud.services.apps import AppService
from ivcloud.services.devices import DeviceRecord, DeviceService
from ivcloud.services.errors import Forbidden, NotFound
from ivcloud.services.ports import Clock
from ivcloud.services.users import UserInfo
from ivcloud.store.schema import Device
from ivcloud.store.schema_app import DeviceShare, Family, FamilyDevice, FamilyMember

ROLE_ADMIN = 1
ROLE_MEMBER = 0


class Access(IntEnum):
    """Ordered levels: a check for ``need`` passes for every level ``>= need``."""

    NONE = 0
    SHARED = 1  # device shared to the user: view + control, not manage
    MEMBER = 2  # member of the device's family: view + control
    ADMIN = 3  # admin of the device's family: also manage / delete / share


class AccessService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        devices: DeviceService,
        apps: AppService,
        clock: Clock,
        graph: AppGraph,
    ) -> None:
        self._sessions = sessions
        self._graph = graph
        self._devices = devices
        self._apps = apps
        self._clock = clock

    async def product_ids(self, user: UserInfo) -> tuple[str, ...]:
        """Products linked to the user's app (an unlinked product is out of reach)."""
        try:
            return (await self._apps.get(user.app_id)).product_ids
        except NotFound:
            return ()

    async def product_linked(self, user: UserInfo, product_id: str) -> bool:
        return product_id in await self.product_ids(user)

    async def device_access(self, user: UserInfo, rec: DeviceRecord) -> Access:
        if not await self.product_linked(user, rec.product_id):
            return Access.NONE
        family_id = await self._graph.device_family(rec.id)
        # A device outside any family is nobody's; a share counts only while the device
        # sits in a family of the user's app.
        family = None if family_id is None else await self._graph.family(family_id)
        if family is None or family.app_id != user.app_id:
            return Access.NONE
        role = family.roles.get(user.user_id)
        if role is not None:
            return Access.ADMIN if role == ROLE_ADMIN else Access.MEMBER
        if user.user_id in await self._graph.sharers(rec.id):
            return Access.SHARED
        return Access.NONE

    async def require_device(
        self, user: UserInfo, product_id: str, device_name: str, need: Access
    ) -> DeviceRecord:
        """The device if the user has at least ``need`` on it; ``Forbidden`` otherwise —
        also for devices that do not exist."""
        rec = await self._devices.find(product_id, device_name)
        if rec is None or await self.device_access(user, rec) < max(need, Access.SHARED):
            raise Forbidden("no permission for this device")
        return rec

    async def visible_devices(self, user: UserInfo) -> list[DeviceRecord]:
        """Devices of the user's families, then devices shared to the user (no duplicates),
        restricted to products linked to the user's app."""
        linked = set(await self.product_ids(user))
        async with self._sessions() as s:
            family_rows = (
                await s.execute(
                    select(Device.product_id, Device.device_name)
                    .join(FamilyDevice, FamilyDevice.device_id == Device.id)
                    .join(FamilyMember, FamilyMember.family_id == FamilyDevice.family_id)
                    .join(Family, Family.family_id == FamilyDevice.family_id)
                    .where(FamilyMember.user_id == user.user_id, Family.app_id == user.app_id)
                    .order_by(FamilyDevice.created_ms, Device.id)
                )
            ).all()
            shared_rows = (
                await s.execute(
                    select(Device.product_id, Device.device_name)
                    .join(DeviceShare, DeviceShare.device_id == Device.id)
                    .join(FamilyDevice, FamilyDevice.device_id == Device.id)
                    .join(Family, Family.family_id == FamilyDevice.family_id)
                    .where(DeviceShare.user_id == user.user_id, Family.app_id == user.app_id)
                    .order_by(DeviceShare.created_ms, Device.id)
                )
            ).all()
        out: list[DeviceRecord] = []
        seen: set[int] = set()
        for pid, dn in [*family_rows, *shared_rows]:
            if pid not in linked:
                continue
            rec = await self._devices.find(pid, dn)
            if rec is not None and rec.id not in seen:
                seen.add(rec.id)
                out.append(rec)
        return out

    async def family_role(self, user: UserInfo, family_id: str) -> int | None:
        """1 admin, 0 member, None when the user is not in the family (or it belongs to
        another app, or does not exist)."""
        family = await self._graph.family(family_id)
        if family is None or family.app_id != user.app_id:
            return None
        return family.roles.get(user.user_id)

    async def require_family(self, user: UserInfo, family_id: str, *, admin: bool) -> None:
        role = await self.family_role(user, family_id)
        if role is None or (admin and role != ROLE_ADMIN):
            raise Forbidden("no permission for this family")
