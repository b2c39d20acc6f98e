"""Device management and control Actions (spec §2.3 and §2.4).

Every device is resolved through ``AccessService.require_device`` with the level the action
needs (view/control: a share is enough; rename/move: family member; delete: family admin),
so an id the caller cannot reach — or that does not exist — is always ``NoPermission``."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import structlog

from ivcloud.api.appapi.actions.families import family_id_param
from ivcloud.api.appapi.registry import ActionRegistry, Call
from ivcloud.protocol import trtc_call
from ivcloud.protocol.appapi import (
    INVALID_PARAMETER,
    INVALID_PARAMETER_VALUE,
    REQUIRED_PARAM_NOT_FOUND,
    AppApiError,
    device_ref,
    json_string_field,
    offset_limit,
    str_param,
)
from ivcloud.protocol.errors import ValidationFailed
from ivcloud.protocol.jsontext import RawJson
from ivcloud.services.access import Access
from ivcloud.services.control import new_client_token
from ivcloud.services.devices import DeviceRecord
from ivcloud.services.errors import DeviceOffline, Forbidden, InvalidInput, NotFound

log = structlog.get_logger("ivcloud.appapi.devices")

MAX_IDS = 100
#: Background AppCallDeviceActionAsync calls; held so they are not garbage-collected.
_background: set[asyncio.Task[None]] = set()


def _string_list(call: Call, name: str) -> list[str]:
    """A required JSON array of strings (``ProductIds``, ``DeviceIds``)."""
    value = call.params.get(name)
    if value is None or value == []:
        raise AppApiError(REQUIRED_PARAM_NOT_FOUND, f"missing parameter {name}")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AppApiError(INVALID_PARAMETER, f"{name} must be an array of strings")
    if len(value) > MAX_IDS:
        raise AppApiError(INVALID_PARAMETER_VALUE, f"{name} has more than {MAX_IDS} items")
    return list(dict.fromkeys(value))


async def device_param(call: Call, need: Access) -> DeviceRecord:
    """The device named by ``DeviceId`` or ``ProductId``+``DeviceName``, if reachable."""
    pid, dn = device_ref(call.params)
    return await call.instance.access.require_device(call.me, pid, dn, need)


async def _in_family(call: Call, rec: DeviceRecord, family_id: str) -> None:
    if await call.instance.families.device_family(rec) != family_id:
        raise Forbidden("the device is not in this family")


def _run_in_background(
    call: Call, rec: DeviceRecord, action_id: str, params: Any, token: str
) -> None:
    async def run() -> None:
        try:
            await call.instance.control.action(rec, action_id, params, client_token=token)
        except Exception as exc:  # nobody awaits this task: log instead
            log.info("async_action_failed", action=action_id, error=str(exc))

    task = asyncio.create_task(run())
    _background.add(task)
    task.add_done_callback(_background.discard)


async def product_api(call: Call, product_id: str) -> dict[str, Any]:
    """A product as ``AppGetProducts`` describes it (``DataTemplate`` is a JSON string)."""
    products = call.instance.products
    info = await products.get(product_id)
    try:
        template = json.dumps(await products.thing_model_json(product_id))
    except NotFound:
        template = ""
    model = await products.thing_model(product_id)
    services = ["TRTC"] if model is not None and trtc_call.supports_calls(model) else []
    return {
        "ProductId": info.product_id,
        "Name": info.name,
        "Description": info.description,
        "DataTemplate": template,
        "AppTemplate": "",
        "NetType": info.net_type,
        "Services": services,
        "ProductType": 0,
        "UpdateTime": info.created_ms // 1000,
    }


def register(reg: ActionRegistry) -> None:
    @reg.action("AppGetProducts", "token")
    async def get_products(call: Call) -> dict[str, Any]:
        """Only products linked to the caller's app; any other id is ``NoPermission``."""
        ids = _string_list(call, "ProductIds")
        linked = set(await call.instance.access.product_ids(call.me))
        if any(pid not in linked for pid in ids):
            raise Forbidden("no permission for this product")
        products = [await product_api(call, pid) for pid in ids]
        return {"Products": products}

    @reg.action("AppGetFamilyDeviceList", "token")
    async def family_device_list(call: Call) -> dict[str, Any]:
        """``RoomId`` absent or ``""`` = every room, ``"0"`` = the default room."""
        family_id = await family_id_param(call)
        await call.instance.access.require_family(call.me, family_id, admin=False)
        room_id = str_param(call.params, "RoomId", required=False, max_len=40)
        known = room_id is None or room_id == "0"
        if not known and not await call.instance.families.room_exists(family_id, room_id or ""):
            raise Forbidden("no permission for this room")
        offset, limit = offset_limit(call.params, default_limit=20, max_limit=100)
        total, items = await call.instance.families.family_devices_json(
            family_id, room_id, offset, limit
        )
        return {"DeviceList": RawJson(items), "Total": total}

    @reg.action("AppGetDeviceStatuses", "token")
    async def device_statuses(call: Call) -> dict[str, Any]:
        """``Online`` 1 = online (what clients read; the doc comment says the opposite)."""
        statuses = []
        for device_id in _string_list(call, "DeviceIds"):
            pid, dn = device_ref({"DeviceId": device_id})
            rec = await call.instance.access.require_device(call.me, pid, dn, Access.SHARED)
            statuses.append(
                {
                    "DeviceId": device_id,
                    "ProductId": pid,
                    "DeviceName": dn,
                    "Online": 1 if rec.online else 0,
                }
            )
        return {"DeviceStatuses": statuses}

    @reg.action("AppUpdateDeviceInFamily", "token")
    async def update_device(call: Call) -> dict[str, Any]:
        rec = await device_param(call, Access.MEMBER)
        alias = str_param(call.params, "AliasName", max_len=64)
        await call.instance.families.set_alias(call.me, rec, alias)
        return {}

    @reg.action("AppGetDeviceInFamily", "token")
    async def get_device(call: Call) -> dict[str, Any]:
        rec = await device_param(call, Access.MEMBER)
        family_id = await family_id_param(call)
        info = await call.instance.families.placement(rec)
        if info is None or info.family_id != family_id:
            raise Forbidden("the device is not in this family")
        return {"Data": {**info.to_api(), "Online": 1 if rec.online else 0}}

    @reg.action("AppModifyFamilyDeviceRoom", "token")
    async def move_device(call: Call) -> dict[str, Any]:
        rec = await device_param(call, Access.MEMBER)
        family_id = await family_id_param(call)
        room_id = str_param(call.params, "RoomId", required=False, max_len=40) or "0"
        await call.instance.families.set_room(call.me, family_id, rec, room_id)
        return {}

    @reg.action("AppDeleteDeviceInFamily", "token")
    async def delete_device(call: Call) -> dict[str, Any]:
        rec = await device_param(call, Access.ADMIN)
        await _in_family(call, rec, await family_id_param(call))
        await call.instance.families.unbind_device(rec)
        return {}

    @reg.action("AppControlDeviceData", "token")
    async def control(call: Call) -> dict[str, Any]:
        rec = await device_param(call, Access.SHARED)
        data = json_string_field(call.params, "Data")
        await call.instance.control.control(rec, data)
        return {}

    @reg.action("AppCallDeviceActionSync", "token")
    async def action_sync(call: Call) -> dict[str, Any]:
        rec = await device_param(call, Access.SHARED)
        action_id = str_param(call.params, "ActionId", max_len=64)
        params = json_string_field(call.params, "InputParams", required=False)
        result = await call.instance.control.action(rec, action_id, params)
        return {
            "ClientToken": result.client_token,
            "Status": "succ" if result.code == 0 else (result.status or "fail"),
            "OutputParams": json.dumps(result.response),
        }

    @reg.action("AppCallDeviceActionAsync", "token")
    async def action_async(call: Call) -> dict[str, Any]:
        """Validates and checks presence now (so those errors reach the caller), then
        lets the action run in the background and answers at once."""
        rec = await device_param(call, Access.SHARED)
        action_id = str_param(call.params, "ActionId", max_len=64)
        params = json_string_field(call.params, "InputParams", required=False)
        model = await call.instance.products.require_model(rec.product_id)
        try:
            model.validate_action_input(action_id, params)
        except ValidationFailed as exc:
            raise InvalidInput(str(exc)) from None
        if not call.instance.downlink.is_connected(rec.client_id):
            raise DeviceOffline(f"device {rec.product_id}/{rec.device_name} is offline")
        token = new_client_token()
        _run_in_background(call, rec, action_id, params, token)
        return {"ClientToken": token, "Status": "sent"}
