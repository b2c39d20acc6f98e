"""Account cancellation (``AppUserCancelAccount``): the user and everything that is only
theirs goes at once.

Order matters: the sessions are revoked first (the revocation listeners end the push
subscriptions built on them, and no other request of this user gets through while the rest
runs); then every family the user is the only admin of is deleted through
:meth:`FamilyService.delete_family` — the same use-case as ``AppDeleteFamily``, so its
devices are released, their shares revoked and each device gets ``unbind_device`` (the
``DeviceBindingChanged`` listeners); then, in one graph write, the user leaves the other
families, the device shares they gave or received go, and the ``users`` row is deleted —
the database cascades the rest (tokens, bind tokens, share tokens, settings, XG tokens;
feedback keeps its text with ``UserID`` cleared).  The phone/email is free again, so the
same person can register anew with a verification code.

The official apps say cancellation takes effect after 7 days unless the user logs in
again; ivcloud does it at once (documented in docs/app-api.md)."""

from __future__ import annotations

import structlog
from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ivcloud.bus.events import EntityRemoved
from ivcloud.services.access import ROLE_ADMIN
from ivcloud.services.app_graph import AppGraph
from ivcloud.services.families import FamilyService
from ivcloud.services.ports import Bus
from ivcloud.services.users import UserInfo, UserService
from ivcloud.store.schema_app import DeviceShare, FamilyMember, ShareToken, User

log = structlog.get_logger("ivcloud.accounts")


class AccountCancellation:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        users: UserService,
        families: FamilyService,
        graph: AppGraph,
        bus: Bus,
    ) -> None:
        self._sessions = sessions
        self._users = users
        self._families = families
        self._graph = graph
        self._bus = bus

    async def cancel(self, user: UserInfo) -> None:
        await self._users.revoke_all(user.user_id)
        for family_id in await self._sole_admin_families(user.user_id):
            await self._families.delete_family(user, family_id, None)
        async with self._graph.writing(self._sessions) as s:
            await s.execute(delete(FamilyMember).where(FamilyMember.user_id == user.user_id))
            await s.execute(
                delete(DeviceShare).where(
                    or_(
                        DeviceShare.user_id == user.user_id,
                        DeviceShare.from_user_id == user.user_id,
                    )
                )
            )
            await s.execute(delete(ShareToken).where(ShareToken.to_user_id == user.user_id))
            await s.execute(delete(User).where(User.user_id == user.user_id))
        await self._users.revoke_all(user.user_id)  # drops a cache entry a racing call added
        self._bus.publish(EntityRemoved("user", user.user_id))
        log.info("account_cancelled", user_id=user.user_id, app_id=user.app_id)

    async def _sole_admin_families(self, user_id: str) -> list[str]:
        """Families where this user is an admin and no one else is."""
        async with self._sessions() as s:
            mine = (
                await s.scalars(
                    select(FamilyMember.family_id).where(
                        FamilyMember.user_id == user_id, FamilyMember.role == ROLE_ADMIN
                    )
                )
            ).all()
            shared = set(
                (
                    await s.scalars(
                        select(FamilyMember.family_id).where(
                            FamilyMember.family_id.in_(mine),
                            FamilyMember.role == ROLE_ADMIN,
                            FamilyMember.user_id != user_id,
                        )
                    )
                ).all()
            )
        return [f for f in mine if f not in shared]
