"""Families, rooms, members and where a device sits (spec §2.8, §2.3).

Authorization is checked here too (through :class:`AccessService`), not only in the
actions, so every caller of a mutating method gets the same rules: admins manage the
family, its rooms and members; members view, place and rename devices.  A device is in at
most one family; room ``"0"`` is the default room.  Invitations are ``ShareToken`` rows of
kind ``"family"``: a link token (no recipient) may be used by several users until it
expires, an in-app invite (``to_user_id``) only by its recipient."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ivcloud.bus.events import DeviceBindingChanged
from ivcloud.services.access import ROLE_ADMIN, ROLE_MEMBER, AccessService
from ivcloud.services.app_graph import AppGraph
from ivcloud.services.devices import DeviceRecord, DeviceService
from ivcloud.services.errors import Conflict, Forbidden, InvalidInput
from ivcloud.services.family_types import (
    FamilyInfo,
    MemberInfo,
    Placement,
    ProductNotLinked,
    RoomInfo,
    TokenExpired,
    TokenNotExist,
)
from ivcloud.services.messages import Invitation, InviteHook
from ivcloud.services.ports import Bus, Clock
from ivcloud.services.share_tokens import add_share_token
from ivcloud.services.users import UserInfo
from ivcloud.store.schema import Device
from ivcloud.store.schema_app import (
    DeviceShare,
    Family,
    FamilyDevice,
    FamilyMember,
    Room,
    ShareToken,
    User,
)

DEFAULT_ROOM = "0"
INVITE_TTL_MS = 24 * 3600 * 1000
NAME_MAX = 64
ADDRESS_MAX = 255


def _name(value: str, what: str = "Name") -> str:
    value = value.strip()
    if not 1 <= len(value) <= NAME_MAX:
        raise InvalidInput(f"{what} must be 1-{NAME_MAX} characters")
    return value


def _address(value: str) -> str:
    if len(value) > ADDRESS_MAX:
        raise InvalidInput(f"Address must be at most {ADDRESS_MAX} characters")
    return value


class FamilyService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        access: AccessService,
        devices: DeviceService,
        clock: Clock,
        bus: Bus,
        graph: AppGraph,
    ) -> None:
        self._sessions = sessions
        self._graph = graph
        self._access = access
        self._devices = devices
        self._clock = clock
        self._bus = bus
        #: The message centre's hook: an in-app invite also becomes the invitee's message.
        self.on_invite: InviteHook | None = None

    def _announce(self, product_id: str, device_name: str, bound: bool, family_id: str) -> None:
        self._bus.publish(
            DeviceBindingChanged(product_id, device_name, bound, family_id, self._clock.now_ms())
        )

    # --- families ----------------------------------------------------------------------

    async def create_family(self, user: UserInfo, name: str, address: str = "") -> str:
        now = self._clock.now_ms()
        family_id = "f_" + secrets.token_hex(12)
        async with self._graph.writing(self._sessions) as s:
            s.add(
                Family(
                    family_id=family_id,
                    app_id=user.app_id,
                    name=_name(name),
                    address=_address(address),
                    created_ms=now,
                    updated_ms=now,
                )
            )
            await s.flush()
            s.add(
                FamilyMember(
                    family_id=family_id, user_id=user.user_id, role=ROLE_ADMIN, joined_ms=now
                )
            )
        return family_id

    async def modify_family(
        self, user: UserInfo, family_id: str, name: str | None, address: str | None
    ) -> None:
        await self._access.require_family(user, family_id, admin=True)
        values: dict[str, Any] = {"updated_ms": self._clock.now_ms()}
        if name is not None:
            values["name"] = _name(name)
        if address is not None:
            values["address"] = _address(address)
        async with self._graph.writing(self._sessions) as s:
            await s.execute(update(Family).where(Family.family_id == family_id).values(**values))

    async def delete_family(self, user: UserInfo, family_id: str, name: str | None) -> None:
        """Admin only.  ``name``, when given, must be the family's name (a confirmation
        guard against deleting the wrong family).  Bound devices are released and their
        device shares revoked."""
        await self._access.require_family(user, family_id, admin=True)
        async with self._graph.writing(self._sessions) as s:
            row = await s.get(Family, family_id)
            if row is None:
                raise Forbidden("no permission for this family")
            if name is not None and name != row.name:
                raise InvalidInput("Name does not match the family's name")
            device_ids = select(FamilyDevice.device_id).where(FamilyDevice.family_id == family_id)
            released = (
                await s.execute(
                    select(Device.product_id, Device.device_name).where(Device.id.in_(device_ids))
                )
            ).all()
            await s.execute(delete(DeviceShare).where(DeviceShare.device_id.in_(device_ids)))
            await s.delete(row)
        for product_id, device_name in released:
            self._announce(product_id, device_name, False, family_id)

    async def list_families(
        self, user: UserInfo, offset: int, limit: int
    ) -> tuple[int, list[FamilyInfo]]:
        """The user's families in join order (the SDK's ``"default"`` is the first)."""
        rooms = (
            select(func.count())
            .select_from(Room)
            .where(Room.family_id == Family.family_id)
            .scalar_subquery()
        )
        where = (FamilyMember.user_id == user.user_id, Family.app_id == user.app_id)
        async with self._sessions() as s:
            total = await s.scalar(
                select(func.count())
                .select_from(FamilyMember)
                .join(Family, Family.family_id == FamilyMember.family_id)
                .where(*where)
            )
            rows = (
                await s.execute(
                    select(Family, FamilyMember.role, rooms)
                    .join(FamilyMember, FamilyMember.family_id == Family.family_id)
                    .where(*where)
                    .order_by(FamilyMember.joined_ms, Family.family_id)
                    .offset(offset)
                    .limit(limit)
                )
            ).all()
        return int(total or 0), [
            FamilyInfo(
                f.family_id, f.name, f.address, int(role), int(n), f.created_ms, f.updated_ms
            )
            for f, role, n in rows
        ]

    async def first_family(self, user: UserInfo) -> str | None:
        _, families = await self.list_families(user, 0, 1)
        return families[0].family_id if families else None

    async def describe_family(self, user: UserInfo, family_id: str) -> FamilyInfo:
        role = await self._access.family_role(user, family_id)
        if role is None:
            raise Forbidden("no permission for this family")
        async with self._sessions() as s:
            f = await s.get(Family, family_id)
            n = await s.scalar(
                select(func.count()).select_from(Room).where(Room.family_id == family_id)
            )
        if f is None:
            raise Forbidden("no permission for this family")
        return FamilyInfo(
            f.family_id, f.name, f.address, role, int(n or 0), f.created_ms, f.updated_ms
        )

    # --- rooms -------------------------------------------------------------------------

    async def create_room(self, user: UserInfo, family_id: str, name: str) -> str:
        await self._access.require_family(user, family_id, admin=True)
        now = self._clock.now_ms()
        room_id = "r_" + secrets.token_hex(12)
        async with self._graph.writing(self._sessions) as s:
            s.add(
                Room(
                    room_id=room_id,
                    family_id=family_id,
                    name=_name(name),
                    created_ms=now,
                    updated_ms=now,
                )
            )
        return room_id

    async def _require_room(self, s: AsyncSession, family_id: str, room_id: str) -> Room:
        room = await s.get(Room, room_id)
        if room is None or room.family_id != family_id:
            raise Forbidden("no permission for this room")
        return room

    async def room_exists(self, family_id: str, room_id: str) -> bool:
        family = await self._graph.family(family_id)
        return family is not None and room_id in family.rooms

    async def modify_room(self, user: UserInfo, family_id: str, room_id: str, name: str) -> None:
        await self._access.require_family(user, family_id, admin=True)
        async with self._graph.writing(self._sessions) as s:
            room = await self._require_room(s, family_id, room_id)
            room.name = _name(name)
            room.updated_ms = self._clock.now_ms()

    async def delete_room(self, user: UserInfo, family_id: str, room_id: str) -> None:
        """Devices of a deleted room move to the default room."""
        await self._access.require_family(user, family_id, admin=True)
        async with self._graph.writing(self._sessions) as s:
            room = await self._require_room(s, family_id, room_id)
            await s.execute(
                update(FamilyDevice)
                .where(FamilyDevice.family_id == family_id, FamilyDevice.room_id == room_id)
                .values(room_id=DEFAULT_ROOM, updated_ms=self._clock.now_ms())
            )
            await s.delete(room)

    async def list_rooms(
        self, user: UserInfo, family_id: str, offset: int, limit: int
    ) -> tuple[int, list[RoomInfo]]:
        """Created rooms only; the default room ``"0"`` is implicit (clients show it as
        "all"/"default" on their own)."""
        await self._access.require_family(user, family_id, admin=False)
        count = (
            select(func.count())
            .select_from(FamilyDevice)
            .where(FamilyDevice.room_id == Room.room_id)
            .scalar_subquery()
        )
        async with self._sessions() as s:
            total = await s.scalar(
                select(func.count()).select_from(Room).where(Room.family_id == family_id)
            )
            rows = (
                await s.execute(
                    select(Room, count)
                    .where(Room.family_id == family_id)
                    .order_by(Room.created_ms, Room.room_id)
                    .offset(offset)
                    .limit(limit)
                )
            ).all()
        return int(total or 0), [
            RoomInfo(r.room_id, r.name, int(n), r.created_ms, r.updated_ms) for r, n in rows
        ]

    # --- members -----------------------------------------------------------------------

    async def list_members(
        self, user: UserInfo, family_id: str, offset: int, limit: int
    ) -> tuple[int, list[MemberInfo]]:
        await self._access.require_family(user, family_id, admin=False)
        async with self._sessions() as s:
            total = await s.scalar(
                select(func.count())
                .select_from(FamilyMember)
                .where(FamilyMember.family_id == family_id)
            )
            rows = (
                await s.execute(
                    select(User.user_id, User.nick_name, User.avatar, FamilyMember.role)
                    .join(FamilyMember, FamilyMember.user_id == User.user_id)
                    .where(FamilyMember.family_id == family_id)
                    .order_by(FamilyMember.role.desc(), FamilyMember.joined_ms, User.user_id)
                    .offset(offset)
                    .limit(limit)
                )
            ).all()
        return int(total or 0), [MemberInfo(u, n, a, int(r)) for u, n, a, r in rows]

    async def delete_member(self, user: UserInfo, family_id: str, member_id: str) -> None:
        await self._access.require_family(user, family_id, admin=True)
        if member_id == user.user_id:
            raise InvalidInput("the admin cannot remove itself; delete the family instead")
        async with self._graph.writing(self._sessions) as s:
            row = await s.get(FamilyMember, (family_id, member_id))
            if row is None:
                raise Forbidden("no permission for this member")
            await s.delete(row)

    async def exit_family(self, user: UserInfo, family_id: str) -> None:
        role = await self._access.family_role(user, family_id)
        if role is None:
            raise Forbidden("no permission for this family")
        if role == ROLE_ADMIN:
            raise InvalidInput("the admin cannot leave the family; delete it instead")
        async with self._graph.writing(self._sessions) as s:
            await s.execute(
                delete(FamilyMember).where(
                    FamilyMember.family_id == family_id, FamilyMember.user_id == user.user_id
                )
            )

    async def invite(
        self, user: UserInfo, family_id: str, to_user_id: str | None = None
    ) -> tuple[str, int]:
        """A family invitation token and its expiry (ms); admin only.  With ``to_user_id``
        (in-app invite) the recipient must be a user of the same app."""
        await self._access.require_family(user, family_id, admin=True)
        async with self._graph.writing(self._sessions) as s:
            token, expires_ms = await add_share_token(
                s,
                kind="family",
                sender=user,
                family_id=family_id,
                now_ms=self._clock.now_ms(),
                ttl_ms=INVITE_TTL_MS,
                to_user_id=to_user_id,
            )
            if to_user_id is not None and self.on_invite is not None:
                await self.on_invite(s, Invitation("family", user, to_user_id, family_id, token))
            return token, expires_ms

    async def join(self, user: UserInfo, token: str) -> str:
        """Join the family of an invitation; joining a family twice is a no-op.  Returns
        the family id."""
        now = self._clock.now_ms()
        async with self._graph.writing(self._sessions) as s:
            row = await s.get(ShareToken, token)
            family = None if row is None else await s.get(Family, row.family_id)
            if (
                row is None
                or row.kind != "family"
                or family is None
                or family.app_id != user.app_id
                or (row.to_user_id is not None and row.to_user_id != user.user_id)
            ):
                raise TokenNotExist("the share token does not exist")
            if row.expires_ms <= now or (row.to_user_id is not None and row.used_ms):
                raise TokenExpired("the share token has expired")
            if await s.get(FamilyMember, (row.family_id, user.user_id)) is None:
                s.add(
                    FamilyMember(
                        family_id=row.family_id,
                        user_id=user.user_id,
                        role=ROLE_MEMBER,
                        joined_ms=now,
                    )
                )
            row.used_ms = now
            return row.family_id

    # --- device placement --------------------------------------------------------------

    async def bind_device(
        self, user: UserInfo, family_id: str, room_id: str, rec: DeviceRecord, alias: str = ""
    ) -> None:
        """Put a device into a family (room ``""``/``"0"`` = default room).  The user must
        be a member; the product must be linked to the user's app; a device already in a
        family is a :class:`Conflict` (it must be deleted from there first)."""
        await self._access.require_family(user, family_id, admin=False)
        if not await self._access.product_linked(user, rec.product_id):
            raise ProductNotLinked("the device's product is not linked to this app")
        room_id = room_id or DEFAULT_ROOM
        now = self._clock.now_ms()
        try:
            async with self._graph.writing(self._sessions) as s:
                if room_id != DEFAULT_ROOM:
                    await self._require_room(s, family_id, room_id)
                if await s.get(FamilyDevice, rec.id) is not None:
                    raise Conflict("the device is already bound to a family")
                s.add(
                    FamilyDevice(
                        device_id=rec.id,
                        family_id=family_id,
                        room_id=room_id,
                        alias_name=alias[:NAME_MAX],
                        bound_by=user.user_id,
                        created_ms=now,
                        updated_ms=now,
                    )
                )
        except IntegrityError:
            raise Conflict("the device is already bound to a family") from None
        self._announce(rec.product_id, rec.device_name, True, family_id)

    async def unbind_device(self, rec: DeviceRecord) -> None:
        """Release a device from its family and revoke its shares (a new owner starts
        clean).  Authorization is the caller's (``Access.ADMIN`` on the device)."""
        async with self._graph.writing(self._sessions) as s:
            family_id = await s.scalar(
                select(FamilyDevice.family_id).where(FamilyDevice.device_id == rec.id)
            )
            await s.execute(delete(DeviceShare).where(DeviceShare.device_id == rec.id))
            await s.execute(delete(FamilyDevice).where(FamilyDevice.device_id == rec.id))
        if family_id is not None:
            self._announce(rec.product_id, rec.device_name, False, family_id)

    async def device_family(self, rec: DeviceRecord) -> str | None:
        return await self._graph.device_family(rec.id)

    async def placement(self, rec: DeviceRecord) -> Placement | None:
        family_id = await self._graph.device_family(rec.id)
        family = None if family_id is None else await self._graph.family(family_id)
        if family is None:
            return None
        return next((p for p in family.placements if p.device_id == rec.id), None)

    async def family_devices_json(
        self, family_id: str, room_id: str | None, offset: int, limit: int
    ) -> tuple[int, str]:
        """``(Total, DeviceList JSON)`` of one page of a family's devices (``room_id`` None
        = all rooms), in binding order, from the in-memory graph.  Authorization is the
        caller's."""
        family = await self._graph.family(family_id)
        if family is None:
            return 0, "[]"
        return family.page_json(room_id, offset, limit)

    async def _member_placement(self, user: UserInfo, rec: DeviceRecord) -> Placement:
        info = await self.placement(rec)
        if info is None or await self._access.family_role(user, info.family_id) is None:
            raise Forbidden("no permission for this device")
        return info

    async def set_alias(self, user: UserInfo, rec: DeviceRecord, alias: str) -> None:
        """Rename a device; any member of its family may."""
        await self._member_placement(user, rec)
        async with self._graph.writing(self._sessions) as s:
            await s.execute(
                update(FamilyDevice)
                .where(FamilyDevice.device_id == rec.id)
                .values(alias_name=_name(alias, "AliasName"), updated_ms=self._clock.now_ms())
            )

    async def set_room(
        self, user: UserInfo, family_id: str, rec: DeviceRecord, room_id: str
    ) -> None:
        """Move a device to another room of its family; any member may."""
        info = await self._member_placement(user, rec)
        if info.family_id != family_id:
            raise Forbidden("no permission for this device")
        room_id = room_id or DEFAULT_ROOM
        async with self._graph.writing(self._sessions) as s:
            if room_id != DEFAULT_ROOM:
                await self._require_room(s, family_id, room_id)
            await s.execute(
                update(FamilyDevice)
                .where(FamilyDevice.device_id == rec.id)
                .values(room_id=room_id, updated_ms=self._clock.now_ms())
            )
