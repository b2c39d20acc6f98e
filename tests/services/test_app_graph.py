"""AppGraph: the in-memory authorization graph is read through, and no write — by the
family and sharing services, or a device/product deletion cascading in the database — leaves
a stale answer behind."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import aiomqtt
import httpx
import pytest

from ivcloud.app import Ivcloud
from ivcloud.services.access import Access
from ivcloud.services.app_graph import AppGraph, FamilySnapshot
from ivcloud.services.devices import DeviceRecord
from ivcloud.services.errors import Forbidden
from ivcloud.services.users import UserInfo
from tests.helpers import Provisioned, provision_custom
from tests.models import SENSOR_MODEL
from tests.rawdevice import device_for


@dataclass
class Home:
    p: Provisioned
    owner: UserInfo
    friend: UserInfo
    family_id: str
    rec: DeviceRecord


@pytest.fixture
async def home(server: Ivcloud, admin: httpx.AsyncClient) -> Home:
    p = await provision_custom(admin, SENSOR_MODEL, "dev1")
    app = await server.apps.create("app")
    await server.apps.link_product(app.app_id, p.product_id)
    owner = await server.users.create(app.app_id, nick_name="owner")
    friend = await server.users.create(app.app_id, nick_name="friend")
    family_id = await server.families.create_family(owner, "Home")
    rec = await server.devices.get(p.product_id, p.device_name)
    await server.families.bind_device(owner, family_id, "", rec)
    return Home(p, owner, friend, family_id, rec)


async def page(server: Ivcloud, family_id: str) -> tuple[int, list[dict[str, object]]]:
    total, text = await server.families.family_devices_json(family_id, None, 0, 100)
    items = json.loads(text)
    assert isinstance(items, list)
    return total, items


async def test_reads_come_from_memory_until_a_write(server: Ivcloud, home: Home) -> None:
    assert await server.access.device_access(home.owner, home.rec) == Access.ADMIN
    loads = server.graph.loads
    for _ in range(5):
        assert await server.access.device_access(home.owner, home.rec) == Access.ADMIN
        assert await server.access.family_role(home.owner, home.family_id) == 1
    assert server.graph.loads == loads  # answered without the database

    await server.families.set_alias(home.owner, home.rec, "front door")
    total, items = await page(server, home.family_id)
    assert total == 1 and items[0]["AliasName"] == "front door"
    assert server.graph.loads > loads


async def test_share_and_unshare_take_effect_at_once(server: Ivcloud, home: Home) -> None:
    assert await server.access.device_access(home.friend, home.rec) == Access.NONE
    token, _ = await server.sharing.create_token(
        home.owner, home.family_id, home.p.product_id, home.p.device_name
    )
    await server.sharing.accept(home.friend, token, home.p.product_id, home.p.device_name)
    assert await server.access.device_access(home.friend, home.rec) == Access.SHARED
    await server.sharing.remove_user(
        home.owner, home.p.product_id, home.p.device_name, home.friend.user_id
    )
    with pytest.raises(Forbidden):
        await server.access.require_device(
            home.friend, home.p.product_id, home.p.device_name, Access.SHARED
        )


class GatedGraph(AppGraph):
    """Holds a family load open until released, so a write can finish in between."""

    def __init__(self, graph: AppGraph) -> None:
        super().__init__(graph._sessions)
        self.loading = asyncio.Event()
        self.release = asyncio.Event()

    async def _load_family(self, family_id: str) -> FamilySnapshot | None:
        snapshot = await super()._load_family(family_id)
        self.loading.set()
        await self.release.wait()
        return snapshot


async def test_a_load_that_raced_a_write_is_not_kept(server: Ivcloud, home: Home) -> None:
    graph = GatedGraph(server.graph)
    racing = asyncio.create_task(graph.family(home.family_id))
    await graph.loading.wait()  # the load has read the database...
    graph.changed()  # ...and a write commits before it returns
    graph.release.set()
    stale = await racing
    assert stale is not None and stale.family_id == home.family_id
    loads = graph.loads
    graph.release.set()
    await graph.family(home.family_id)
    assert graph.loads == loads + 1  # loaded again: the raced result was not cached
    await graph.family(home.family_id)
    assert graph.loads == loads + 1  # and this one was


async def test_deleting_a_device_removes_it_from_the_graph(
    server: Ivcloud, admin: httpx.AsyncClient, home: Home
) -> None:
    assert (await page(server, home.family_id))[0] == 1
    resp = await admin.delete(f"/products/{home.p.product_id}/devices/{home.p.device_name}")
    assert resp.status_code == 204
    assert await page(server, home.family_id) == (0, [])
    # A new device — even one that reuses the name, and maybe the row id — starts unbound.
    resp = await admin.post(
        f"/products/{home.p.product_id}/devices", json={"DeviceName": home.p.device_name}
    )
    assert resp.status_code == 201
    with pytest.raises(Forbidden):
        await server.access.require_device(
            home.owner, home.p.product_id, home.p.device_name, Access.SHARED
        )


async def test_devices_of_a_deleted_product_can_no_longer_connect(
    server: Ivcloud, admin: httpx.AsyncClient, home: Home
) -> None:
    async with device_for(server, home.p):
        pass  # connects while the product exists
    assert (await admin.delete(f"/products/{home.p.product_id}")).status_code == 204
    assert await server.devices.find(home.p.product_id, home.p.device_name) is None
    with pytest.raises(aiomqtt.MqttError):
        async with device_for(server, home.p):
            pass
    assert await page(server, home.family_id) == (0, [])


async def test_concurrent_misses_share_one_load(server: Ivcloud, home: Home) -> None:
    graph = GatedGraph(server.graph)
    waiters = [asyncio.create_task(graph.family(home.family_id)) for _ in range(50)]
    await graph.loading.wait()
    graph.release.set()
    results = await asyncio.gather(*waiters)
    assert graph.loads == 1
    assert all(r is results[0] for r in results)


async def test_waiters_survive_the_loading_request_going_away(
    server: Ivcloud, home: Home
) -> None:
    graph = GatedGraph(server.graph)
    first = asyncio.create_task(graph.family(home.family_id))
    await graph.loading.wait()
    second = asyncio.create_task(graph.family(home.family_id))
    await asyncio.sleep(0)  # second is now waiting on first's load
    first.cancel()
    graph.release.set()
    snapshot = await second
    assert snapshot is not None and snapshot.family_id == home.family_id
    assert first.cancelled()
