"""``AppSecureAddDeviceInFamily`` (spec §2.3): bind by scanning the device's QR code.

The apps send the scanned ``DeviceSignature`` as is; its format is ivcloud's
(:mod:`ivcloud.protocol.bind_qr`; the console's ``…/bind-code`` and ``ivcloud device
bind-code`` make one).  Checks in this order, so nothing is learnt before the caller is
entitled to it: the caller must be a member of ``FamilyId`` (else ``NoPermission``); a code
that is not ivcloud's format, names an unknown device, or whose MAC does not verify answers
``InvalidParameterValue.SignatureFailure`` (the same for all three, so device names cannot
be probed); the product must be linked to the app; an expired code answers ``TokenIsExpire``;
a device already in a family is ``ResourceInUse`` (remove it there first).  On success the
device gets the legacy ``bind_device`` notice and the answer carries the family-list item as
``AppDeviceInfo`` and ``Data``, like ``AppSigBindDeviceInFamily``."""

from __future__ import annotations

from typing import Any

from ivcloud.api.appapi.actions.extra_devices import DEVICE_SIGNATURE_FAILURE
from ivcloud.api.appapi.actions.families import family_id_param
from ivcloud.api.appapi.registry import ActionRegistry, Call
from ivcloud.protocol.appapi import TOKEN_IS_EXPIRE, AppApiError, str_param
from ivcloud.protocol.bind_qr import MAX_LENGTH, BindSignatureError, parse_signature
from ivcloud.services.family_types import ProductNotLinked


def register(reg: ActionRegistry) -> None:
    @reg.action("AppSecureAddDeviceInFamily", "token")
    async def secure_add(call: Call) -> dict[str, Any]:
        family_id = await family_id_param(call)
        room_id = str_param(call.params, "RoomId", required=False, max_len=40) or "0"
        text = str_param(call.params, "DeviceSignature", max_len=MAX_LENGTH)
        await call.instance.access.require_family(call.me, family_id, admin=False)
        try:
            sig = parse_signature(text)
        except BindSignatureError:
            raise AppApiError(DEVICE_SIGNATURE_FAILURE, "the device code is not valid") from None
        rec = await call.instance.devices.find(sig.product_id, sig.device_name)
        if rec is None or not sig.verify(rec.secret):
            raise AppApiError(DEVICE_SIGNATURE_FAILURE, "the device code is not valid")
        if not await call.instance.access.product_linked(call.me, rec.product_id):
            raise ProductNotLinked("the device's product is not linked to this app")
        if sig.expired(call.instance.clock.now_ms() // 1000):
            raise AppApiError(TOKEN_IS_EXPIRE, "the device code has expired")
        await call.instance.families.bind_device(call.me, family_id, room_id, rec)
        await call.instance.app_binding.notify_bound(rec, family_id)
        placed = await call.instance.families.placement(rec)
        info = placed.to_api() if placed is not None else {}
        return {"AppDeviceInfo": info, "Data": info}
