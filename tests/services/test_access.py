"""AccessService: the access level of each path to a device, and family roles."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest

from ivcloud.app import Ivcloud
from ivcloud.services.access import Access
from ivcloud.services.devices import DeviceRecord
from ivcloud.services.errors import Forbidden
from ivcloud.services.users import UserInfo
from ivcloud.store.schema_app import DeviceShare
from tests.helpers import provision_custom
from tests.models import SENSOR_MODEL


@dataclass
class Setup:
    owner: UserInfo
    member: UserInfo
    friend: UserInfo
    stranger: UserInfo
    family_id: str
    rec: DeviceRecord


@pytest.fixture
async def setup(server: Ivcloud, admin: httpx.AsyncClient) -> Setup:
    p = await provision_custom(admin, SENSOR_MODEL, "dev1")
    app = await server.apps.create("app")
    await server.apps.link_product(app.app_id, p.product_id)
    owner, member, friend, stranger = [
        await server.users.create(app.app_id, nick_name=n)
        for n in ("owner", "member", "friend", "stranger")
    ]
    family_id = await server.families.create_family(owner, "Home")
    token, _ = await server.families.invite(owner, family_id)
    await server.families.join(member, token)
    rec = await server.devices.get(p.product_id, p.device_name)
    await server.families.bind_device(owner, family_id, "", rec)
    async with server.sessions.begin() as s:
        s.add(
            DeviceShare(
                device_id=rec.id, user_id=friend.user_id, from_user_id=owner.user_id, created_ms=1
            )
        )
    return Setup(owner, member, friend, stranger, family_id, rec)


async def test_levels(server: Ivcloud, setup: Setup) -> None:
    access = server.access
    assert await access.device_access(setup.owner, setup.rec) == Access.ADMIN
    assert await access.device_access(setup.member, setup.rec) == Access.MEMBER
    assert await access.device_access(setup.friend, setup.rec) == Access.SHARED
    assert await access.device_access(setup.stranger, setup.rec) == Access.NONE
    assert Access.NONE < Access.SHARED < Access.MEMBER < Access.ADMIN


async def test_require_device(server: Ivcloud, setup: Setup) -> None:
    access, rec = server.access, setup.rec
    assert (
        await access.require_device(setup.owner, rec.product_id, rec.device_name, Access.ADMIN)
        is rec
    )
    assert (
        await access.require_device(setup.friend, rec.product_id, rec.device_name, Access.SHARED)
        is rec
    )
    with pytest.raises(Forbidden):
        await access.require_device(setup.member, rec.product_id, rec.device_name, Access.ADMIN)
    with pytest.raises(Forbidden):
        await access.require_device(setup.friend, rec.product_id, rec.device_name, Access.MEMBER)
    with pytest.raises(Forbidden):  # NONE still needs some access
        await access.require_device(setup.stranger, rec.product_id, rec.device_name, Access.NONE)
    with pytest.raises(Forbidden):  # unknown devices look the same
        await access.require_device(setup.owner, rec.product_id, "ghost", Access.SHARED)


async def test_unlinking_the_product_cuts_access(server: Ivcloud, setup: Setup) -> None:
    await server.apps.unlink_product(setup.owner.app_id, setup.rec.product_id)
    assert await server.access.device_access(setup.owner, setup.rec) == Access.NONE
    assert await server.access.visible_devices(setup.owner) == []


async def test_visible_devices(server: Ivcloud, setup: Setup) -> None:
    for user in (setup.owner, setup.member, setup.friend):
        assert [r.id for r in await server.access.visible_devices(user)] == [setup.rec.id]
    assert await server.access.visible_devices(setup.stranger) == []
    # After unbinding, the share no longer counts either.
    await server.families.unbind_device(setup.rec)
    assert await server.access.visible_devices(setup.friend) == []
    assert await server.access.device_access(setup.friend, setup.rec) == Access.NONE


async def test_family_roles(server: Ivcloud, setup: Setup) -> None:
    access = server.access
    assert await access.family_role(setup.owner, setup.family_id) == 1
    assert await access.family_role(setup.member, setup.family_id) == 0
    assert await access.family_role(setup.stranger, setup.family_id) is None
    assert await access.family_role(setup.owner, "f_ghost") is None
    await access.require_family(setup.owner, setup.family_id, admin=True)
    await access.require_family(setup.member, setup.family_id, admin=False)
    with pytest.raises(Forbidden):
        await access.require_family(setup.member, setup.family_id, admin=True)
    with pytest.raises(Forbidden):
        await access.require_family(setup.stranger, setup.family_id, admin=False)


async def test_deleting_the_family_releases_devices_and_shares(
    server: Ivcloud, setup: Setup
) -> None:
    await server.families.delete_family(setup.owner, setup.family_id, None)
    assert await server.families.device_family(setup.rec) is None
    assert await server.access.device_access(setup.friend, setup.rec) == Access.NONE
    assert await server.access.family_role(setup.member, setup.family_id) is None
