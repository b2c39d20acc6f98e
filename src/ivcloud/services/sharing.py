"""Device sharing (spec app-api §2.7): an admin of the device's family shares one device with
a user outside the family, who then has ``Access.SHARED`` — view and control, but not
delete, share or manage (enforced by :class:`~ivcloud.services.access.AccessService`,
which reads the ``device_shares`` rows written here).

Share tokens (``share_tokens`` rows of kind ``"device"``) are one-shot and valid for
:data:`SHARE_TTL_MS` (24 h — the real TTL is unconfirmed; a day lets the recipient open a
WeChat share card later the same day). A token is only honoured while the device is still in
the family it was shared from and its creator is still that family's admin, so removing a
device or demoting an admin silently voids outstanding tokens. Every invalid case (unknown,
expired, used, another app's, addressed to someone else, stale) is the same
``InvalidShareDeviceToken`` so token values cannot be probed."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ivcloud.protocol import appapi_errors as codes
from ivcloud.services.access import ROLE_ADMIN, Access, AccessService
from ivcloud.services.app_graph import AppGraph
from ivcloud.services.devices import DeviceRecord
from ivcloud.services.errors import Conflict, Forbidden, InvalidInput, NotFound
from ivcloud.services.messages import Invitation, InviteHook
from ivcloud.services.ports import Clock
from ivcloud.services.share_tokens import add_share_token
from ivcloud.services.users import UserInfo
from ivcloud.store.schema import Device
from ivcloud.store.schema_app import DeviceShare, FamilyDevice, FamilyMember, ShareToken, User

SHARE_TTL_MS = 24 * 3600 * 1000
CONTEXT_MAX = 1024


class InvalidShareToken(InvalidInput):
    code = codes.INVALID_SHARE_DEVICE_TOKEN


class UserNotExists(NotFound):
    code = codes.USER_NOT_EXISTS


class SharingService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        access: AccessService,
        clock: Clock,
        graph: AppGraph,
    ) -> None:
        self._sessions = sessions
        self._graph = graph
        self._access = access
        self._clock = clock
        #: The message centre's hook: an in-app invite also becomes the invitee's message.
        self.on_invite: InviteHook | None = None

    # --- issuing -------------------------------------------------------------------------

    async def _admin_device(self, user: UserInfo, pid: str, dn: str) -> tuple[DeviceRecord, str]:
        rec = await self._access.require_device(user, pid, dn, Access.ADMIN)
        async with self._sessions() as s:
            family_id = await s.scalar(
                select(FamilyDevice.family_id).where(FamilyDevice.device_id == rec.id)
            )
        if family_id is None:
            raise Forbidden("no permission for this device")
        return rec, family_id

    async def create_token(
        self,
        user: UserInfo,
        family_id: str | None,
        pid: str,
        dn: str,
        context: str = "",
        to_user_id: str | None = None,
    ) -> tuple[str, int]:
        """A share token and its expiry (ms). Admin of the device's family only;
        ``family_id``, when given, must be that family. ``to_user_id`` addresses the token
        to one user (in-app invite)."""
        rec, device_family = await self._admin_device(user, pid, dn)
        if family_id is not None and family_id != device_family:
            raise Forbidden("the device is not in this family")
        if len(context) > CONTEXT_MAX:
            raise InvalidInput(f"TokenContext must be at most {CONTEXT_MAX} characters")
        if to_user_id == user.user_id:
            raise InvalidInput("a device cannot be shared with oneself")
        async with self._graph.writing(self._sessions) as s:
            token, expires_ms = await add_share_token(
                s,
                kind="device",
                sender=user,
                family_id=device_family,
                now_ms=self._clock.now_ms(),
                ttl_ms=SHARE_TTL_MS,
                to_user_id=to_user_id,
                device_id=rec.id,
                context=context,
            )
            if to_user_id is not None and self.on_invite is not None:
                invite = Invitation("device", user, to_user_id, device_family, token, rec.id)
                await self.on_invite(s, invite)
            return token, expires_ms

    # --- redeeming -----------------------------------------------------------------------

    async def _token(self, s: AsyncSession, user: UserInfo, token: str) -> ShareToken:
        """The token if it is a live device share token the user may see; the sender and
        the accepted recipient may still see it once used."""
        row = await s.get(ShareToken, token)
        if row is None or row.kind != "device" or row.device_id is None:
            raise InvalidShareToken("invalid share device token")
        sender = await s.get(User, row.from_user_id)
        placed = await s.get(FamilyDevice, row.device_id)
        role = await s.scalar(
            select(FamilyMember.role).where(
                FamilyMember.family_id == row.family_id,
                FamilyMember.user_id == row.from_user_id,
            )
        )
        party = user.user_id in (row.from_user_id, row.to_user_id)
        if (
            sender is None
            or sender.app_id != user.app_id
            or placed is None
            or placed.family_id != row.family_id
            or role != ROLE_ADMIN
            or row.expires_ms <= self._clock.now_ms()
            or (row.to_user_id is not None and not party)
            or (row.used_ms is not None and not party)
        ):
            raise InvalidShareToken("invalid share device token")
        return row

    async def describe(self, user: UserInfo, token: str) -> dict[str, Any]:
        """``ShareDeviceTokenInfo``; ``UserId``/``UserNick``/``BindTime`` stay empty until
        the token is accepted."""
        async with self._sessions() as s:
            row = await self._token(s, user, token)
            sender = await s.get(User, row.from_user_id)
            sharee = None if row.used_ms is None else await s.get(User, row.to_user_id or "")
            device = await s.get(Device, row.device_id)
            placed = await s.get(FamilyDevice, row.device_id)
        assert sender is not None and device is not None
        return {
            "FromUserId": sender.user_id,
            "FromUserNick": sender.nick_name,
            "UserId": sharee.user_id if sharee else "",
            "UserNick": sharee.nick_name if sharee else "",
            "ProductId": device.product_id,
            "DeviceName": device.device_name,
            "AliasName": placed.alias_name if placed else "",
            "IconUrl": "",
            "BindTime": (row.used_ms or 0) // 1000,
            "ExpireTime": row.expires_ms // 1000,
            "CreateTime": row.created_ms // 1000,
        }

    async def accept(self, user: UserInfo, token: str, pid: str, dn: str) -> None:
        """``AppBindUserShareDevice``: the token must name this device; the user gains
        ``Access.SHARED``. A user who already reaches the device through its family
        cannot also hold a share (``Conflict``)."""
        now = self._clock.now_ms()
        async with self._graph.writing(self._sessions) as s:
            row = await self._token(s, user, token)
            device = await s.get(Device, row.device_id)
            if (
                row.used_ms is not None
                or device is None
                or (device.product_id, device.device_name) != (pid, dn)
            ):
                raise InvalidShareToken("invalid share device token")
            device_id = device.id
        if not await self._access.product_linked(user, pid):
            raise InvalidShareToken("invalid share device token")
        async with self._graph.writing(self._sessions) as s:
            member = await s.scalar(
                select(FamilyMember.role).where(
                    FamilyMember.family_id == row.family_id,
                    FamilyMember.user_id == user.user_id,
                )
            )
            if member is not None:
                raise Conflict("the user is already a member of the device's family")
            taken = await s.execute(
                update(ShareToken)
                .where(ShareToken.token == token, ShareToken.used_ms.is_(None))
                .values(used_ms=now, to_user_id=user.user_id)
            )
            assert isinstance(taken, CursorResult)
            if not taken.rowcount:
                raise InvalidShareToken("invalid share device token")
            if await s.get(DeviceShare, (device_id, user.user_id)) is None:
                s.add(
                    DeviceShare(
                        device_id=device_id,
                        user_id=user.user_id,
                        from_user_id=row.from_user_id,
                        created_ms=now,
                    )
                )

    # --- sharee side ---------------------------------------------------------------------

    async def shared_devices(
        self, user: UserInfo, offset: int, limit: int
    ) -> tuple[int, list[dict[str, Any]]]:
        """``AppListUserShareDevices``: devices shared *to* the user (DeviceEntity items;
        ``UserID`` is the sharer), restricted to products linked to the user's app."""
        linked = await self._access.product_ids(user)
        where = (DeviceShare.user_id == user.user_id, Device.product_id.in_(linked))
        async with self._sessions() as s:
            total = await s.scalar(
                select(func.count())
                .select_from(DeviceShare)
                .join(Device, Device.id == DeviceShare.device_id)
                .where(*where)
            )
            rows = (
                await s.execute(
                    select(DeviceShare, Device.product_id, Device.device_name, FamilyDevice)
                    .join(Device, Device.id == DeviceShare.device_id)
                    .outerjoin(FamilyDevice, FamilyDevice.device_id == Device.id)
                    .where(*where)
                    .order_by(DeviceShare.created_ms, Device.id)
                    .offset(offset)
                    .limit(limit)
                )
            ).all()
        return int(total or 0), [
            {
                "DeviceId": f"{pid}/{dn}",
                "ProductId": pid,
                "DeviceName": dn,
                "AliasName": fd.alias_name if fd else "",
                "UserID": share.from_user_id,
                "FamilyId": fd.family_id if fd else "",
                "RoomId": fd.room_id if fd else "",
                "IconUrl": "",
                "DeviceType": 0,
                "CreateTime": share.created_ms // 1000,
                "UpdateTime": share.created_ms // 1000,
            }
            for share, pid, dn, fd in rows
        ]

    async def remove_mine(self, user: UserInfo, pid: str, dn: str) -> None:
        """``AppRemoveUserShareDevice``: the sharee drops a device shared to them."""
        rec = await self._access.require_device(user, pid, dn, Access.SHARED)
        if not await self._delete_share(rec, user.user_id):
            raise Forbidden("the device is not shared with this user")

    # --- admin side ----------------------------------------------------------------------

    async def share_users(
        self, user: UserInfo, pid: str, dn: str, offset: int, limit: int
    ) -> tuple[int, list[dict[str, Any]]]:
        """``AppListShareDeviceUsers``: who the device is shared with (admin only)."""
        rec, _ = await self._admin_device(user, pid, dn)
        async with self._sessions() as s:
            total = await s.scalar(
                select(func.count()).select_from(DeviceShare).where(DeviceShare.device_id == rec.id)
            )
            rows = (
                await s.execute(
                    select(User, DeviceShare.created_ms)
                    .join(DeviceShare, DeviceShare.user_id == User.user_id)
                    .where(DeviceShare.device_id == rec.id)
                    .order_by(DeviceShare.created_ms, User.user_id)
                    .offset(offset)
                    .limit(limit)
                )
            ).all()
        return int(total or 0), [
            {
                "UserID": u.user_id,
                "CountryCode": u.country_code or "",
                "PhoneNumber": u.phone or "",
                "NickName": u.nick_name,
                "Avatar": u.avatar,
                "BindTime": created // 1000,
            }
            for u, created in rows
        ]

    async def remove_user(self, user: UserInfo, pid: str, dn: str, remove_user_id: str) -> None:
        """``AppRemoveShareDeviceUser``: the admin revokes one sharee."""
        rec, _ = await self._admin_device(user, pid, dn)
        if not await self._delete_share(rec, remove_user_id):
            raise InvalidInput("the device is not shared with this user")

    async def _delete_share(self, rec: DeviceRecord, user_id: str) -> bool:
        async with self._graph.writing(self._sessions) as s:
            result = await s.execute(
                delete(DeviceShare).where(
                    DeviceShare.device_id == rec.id, DeviceShare.user_id == user_id
                )
            )
        assert isinstance(result, CursorResult)
        return bool(result.rowcount)
