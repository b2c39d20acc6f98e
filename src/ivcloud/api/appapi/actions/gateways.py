"""Gateway sub-device Actions of spec §2.3 (DOC/43155, DOC/48129); the rules are
``services.gateways.GatewayService``'s.

``AppBindSubDeviceInFamily`` (tokenapi: ``GatewayProductId``, ``GatewayDeviceName``,
``ProductId``, ``DeviceName``)
    Puts a sub-device *that the gateway has bound* (``$gateway/operation`` ``bind`` with the
    sub-device's signature — the proof of possession) into the gateway's family, default room,
    and sends ``change`` status 1 to the gateway.  The caller must be a family member of the
    gateway; a sub-device that does not exist, is not bound to that gateway, or that the
    caller cannot otherwise see is ``NoPermission``; its product not linked to the app is
    ``UnauthorizedOperation.APPNoPermissionToStudioProduct``; in another family already is
    ``ResourceInUse``; already in this family is success (a retry).  Answer: the family-list
    item as ``Data.AppDeviceInfo`` (DOC/43155's example) and ``AppDeviceInfo``.

``AppGetGatewayBindDeviceList`` (tokenapi: ``GatewayProductId``, ``GatewayDeviceName``,
optional ``ProductId`` filter, ``Offset``, ``Limit`` ≤ 100)
    The gateway's sub-devices (products linked to the app only), in binding order, ``Total``.
    Visible to anyone who can see the gateway (a share is enough).  Items carry ``DeviceId``,
    ``ProductId``, ``DeviceName``, ``AliasName``, ``IconUrl`` and ``BindStatus`` (1 = in the
    gateway's family, 0 = not yet); for a family member those in the family are the full
    ``AppGetFamilyDeviceList`` item plus ``BindStatus``.
"""

from __future__ import annotations

from typing import Any, Final

from ivcloud.api.appapi.registry import ActionRegistry, Call
from ivcloud.protocol.appapi import (
    INVALID_PARAMETER,
    AppApiError,
    device_ref,
    offset_limit,
    str_param,
)

_ID_MAX: Final = 48


def _gateway_ref(call: Call) -> tuple[str, str]:
    pid = str_param(call.params, "GatewayProductId", max_len=_ID_MAX)
    dn = str_param(call.params, "GatewayDeviceName", max_len=_ID_MAX)
    if "/" in pid or "/" in dn:
        raise AppApiError(INVALID_PARAMETER, "GatewayProductId/GatewayDeviceName is malformed")
    return pid, dn


def register(reg: ActionRegistry) -> None:
    @reg.action("AppBindSubDeviceInFamily", "token")
    async def bind_sub_device(call: Call) -> dict[str, Any]:
        gateway_pid, gateway_dn = _gateway_ref(call)
        pid, dn = device_ref(call.params)
        info = await call.instance.gateway_subdevices.bind_in_family(
            call.me, gateway_pid, gateway_dn, pid, dn
        )
        return {"Data": {"AppDeviceInfo": info}, "AppDeviceInfo": info}

    @reg.action("AppGetGatewayBindDeviceList", "token")
    async def gateway_device_list(call: Call) -> dict[str, Any]:
        gateway_pid, gateway_dn = _gateway_ref(call)
        product_id = str_param(call.params, "ProductId", required=False, max_len=_ID_MAX)
        offset, limit = offset_limit(call.params, default_limit=20, max_limit=100)
        total, items = await call.instance.gateway_subdevices.list_for_user(
            call.me, gateway_pid, gateway_dn, product_id, offset, limit
        )
        return {"DeviceList": items, "Total": total}
