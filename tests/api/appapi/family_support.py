"""What several App API test modules need about families: the fields of a family list item
and of a family device list item (spec §2.8, §2.3), and the cast the permission tests share — four
users of one app and a family holding one device: alice owns it (an admin), dave joined it as
a member, bob and carol are outside it (a test may then share the device with one of
them)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from ivcloud.app import Ivcloud
from tests.appclient import AppApiClient, create_app, make_user, ok_data
from tests.helpers import Provisioned

#: Every item of ``AppGetFamilyList``'s ``FamilyList`` has exactly these fields.
FAMILY_LIST_FIELDS = {
    "FamilyId",
    "FamilyName",
    "FamilyType",
    "Address",
    "RoomsNum",
    "Role",
    "CreateTime",
    "UpdateTime",
}

#: Every item of ``AppGetFamilyDeviceList``'s ``DeviceList`` has exactly these fields.
FAMILY_DEVICE_FIELDS = {
    "DeviceId",
    "ProductId",
    "DeviceName",
    "AliasName",
    "UserID",
    "FamilyId",
    "RoomId",
    "IconUrl",
    "DeviceType",
    "CreateTime",
    "UpdateTime",
}


@dataclass
class Household:
    dev: Provisioned
    client: AppApiClient
    ids: dict[str, str]  # name -> UserID
    tokens: dict[str, str]  # name -> AccessToken
    family: str  # alice's FamilyId, holding dev


async def household(
    server: Ivcloud,
    admin: httpx.AsyncClient,
    appclient: httpx.AsyncClient,
    dev: Provisioned,
    alias: str = "",
) -> Household:
    """The household around ``dev`` (its product gets an app of its own); ``alias``: the
    device's name in the family."""
    creds = await create_app(admin, dev.product_id)
    client = AppApiClient(appclient, creds)
    ids: dict[str, str] = {}
    tokens: dict[str, str] = {}
    for name in ("alice", "bob", "carol", "dave"):
        ids[name], tokens[name] = await make_user(server, creds, name)
    family = ok_data(await client.tokenapi(tokens["alice"], "AppCreateFamily", Name="home"))[
        "Data"
    ]["FamilyId"]
    alice = await server.users.get(ids["alice"])
    rec = await server.devices.get(dev.product_id, dev.device_name)
    await server.families.bind_device(alice, family, "0", rec, alias=alias)
    invite = ok_data(await client.tokenapi(tokens["alice"], "AppInviteMember", FamilyId=family))
    ok_data(await client.tokenapi(tokens["dave"], "AppJoinFamily", ShareToken=invite["ShareToken"]))
    return Household(dev, client, ids, tokens, family)
