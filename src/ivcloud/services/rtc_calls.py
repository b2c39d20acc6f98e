"""TRTC audio/video calls between an app user and a device: the use-cases behind
``App::IotRTC::InviteDevice`` / ``CallDevice`` / ``LeavelRoom`` (docs/app-api.md "TRTC calls").

ivcloud is not TRTC: audio and video go through the device maker's own TRTC application. The
cloud does the signalling Tencent's does, over the device's standing MQTT connection:

* **invite** rings the device: a ``control`` with ``_sys_video_call_status`` (or the audio
  one) 1 and the parties. It is *not* queued like other controls — a device that was offline
  must not ring, hours later, for a call that is long over — so an offline device is
  ``DeviceOffline`` at once.
* The device answers by reporting its call status (1 accepted, 0 refused, 2 in the call);
  the ordinary report path pushes that to the apps, which then **join**: TRTC room
  parameters for the app (its user id, a UserSig minted with the maker's key, the call's room)
  and, in the background, the ``_sys_trtc_join_room`` action with the device's own user id
  and ticket, so both enter the same room. A call the device starts (status 1 naming users,
  or nobody = everyone) is read from its latest reports when a user joins.
* **leave** forgets the call and hangs the device up (status 0), as the apps' own hang-up does.

One call per device: while one user's call rings or runs, another user's invite or join is
:class:`DeviceBusy`. A call ends on leave, on the device reporting status 0 (or rejecting the
user in ``_sys_extra_info``), when the device goes offline, or when it times out (ringing:
``ring_timeout_s``; joined: the UserSig lifetime). Every call gets a new random room, so a
ticket holder of an earlier call cannot guess the next one's room.

State is in memory, per instance (like P2P sessions): a restart forgets ivcloud-started calls
(the device's reports still let its party join). The key and the tickets are never logged.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Coroutine
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import structlog

from ivcloud.bus.events import BusEvent, DeviceOnline, DeviceReported
from ivcloud.protocol import thing
from ivcloud.protocol import trtc_call as tc
from ivcloud.protocol.errors import ValidationFailed
from ivcloud.protocol.thingmodel import ThingModel
from ivcloud.protocol.trtc_usersig import mint_user_sig
from ivcloud.services.control import ControlService, new_client_token
from ivcloud.services.devices import DeviceRecord
from ivcloud.services.errors import DeviceOffline, InvalidInput, NotFound, ServiceError
from ivcloud.services.ports import Clock, Downlink
from ivcloud.services.products import ProductService
from ivcloud.services.telemetry import Telemetry
from ivcloud.services.users import UserInfo

if TYPE_CHECKING:
    from ivcloud.config import Settings

__all__ = [
    "DeviceBusy",
    "RoomParams",
    "RtcCall",
    "RtcCallService",
    "TrtcConfig",
    "TrtcNotConfigured",
]

log = structlog.get_logger("ivcloud.rtc_calls")

_REPORTED = (*tc.STATUS_PROPS.values(), tc.USERID_PROP, tc.CALLER_PROP, tc.CALLED_PROP)


class TrtcNotConfigured(ServiceError):
    """No TRTC application is configured (``trtc_sdk_app_id`` / ``trtc_secret_key``)."""

    code = "FailedOperation.TRTCNotConfigured"


class DeviceBusy(ServiceError):
    """The device rings for, or is in, a call with another user."""

    code = "FailedOperation.DeviceBusy"


@dataclass(frozen=True, slots=True)
class TrtcConfig:
    sdk_app_id: int
    secret_key: str = field(repr=False)
    usersig_ttl_s: int = 86400
    ring_timeout_s: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> TrtcConfig | None:
        if settings.trtc_sdk_app_id is None or settings.trtc_secret_key is None:
            return None
        return cls(
            settings.trtc_sdk_app_id,
            settings.trtc_secret_key.get_secret_value(),
            settings.trtc_usersig_ttl_s,
            settings.trtc_ring_timeout_s,
        )


@dataclass(frozen=True, slots=True)
class RtcCall:
    user_id: str
    call_type: int
    room_id: str
    joined: bool
    expires_ms: int


@dataclass(frozen=True, slots=True)
class RoomParams:
    """What the app enters the TRTC room with (``TRTCParams`` on the wire)."""

    sdk_app_id: int
    user_id: str
    user_sig: str = field(repr=False)
    room_id: str = ""

    def to_api(self) -> dict[str, Any]:
        return {
            "SdkAppId": self.sdk_app_id,
            "UserId": self.user_id,
            "UserSig": self.user_sig,
            "StrRoomId": self.room_id,
            "PrivateKey": "",
        }


def _device_id(rec: DeviceRecord) -> str:
    return f"{rec.product_id}/{rec.device_name}"


def _new_room() -> str:
    """A fresh, unguessable TRTC string room id (28 characters)."""
    return "ivc_" + secrets.token_hex(12)


def _refuse_if_busy(user: UserInfo, call: RtcCall | None, reported: tc.ReportedCall | None) -> None:
    """:class:`DeviceBusy` when the device's call — ivcloud's, else the one its reports show
    naming users — is another user's. The same user's own call is no obstacle (a retried
    invite replaces it; a join takes it)."""
    if call is not None:
        if call.user_id != user.user_id:
            raise DeviceBusy("the device is in a call with another user")
    elif reported is not None and reported.parties and user.user_id not in reported.parties:
        raise DeviceBusy("the device is in a call with another user")


def _not_trtc(rec: DeviceRecord, what: str) -> InvalidInput:
    return InvalidInput(f"{_device_id(rec)} is not a TRTC device: its thing model lacks {what}")


class RtcCallService:
    def __init__(
        self,
        config: TrtcConfig | None,
        products: ProductService,
        telemetry: Telemetry,
        control: ControlService,
        downlink: Downlink,
        clock: Clock,
    ) -> None:
        self._config = config
        self._products = products
        self._telemetry = telemetry
        self._control = control
        self._downlink = downlink
        self._clock = clock
        self._calls: dict[tuple[str, str], RtcCall] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- queries --------------------------------------------------------------------------

    def call(self, rec: DeviceRecord) -> RtcCall | None:
        """The device's call, unless it has timed out (then it is forgotten)."""
        key = (rec.product_id, rec.device_name)
        found = self._calls.get(key)
        if found is not None and found.expires_ms <= self._clock.now_ms():
            del self._calls[key]
            return None
        return found

    # -- use-cases ------------------------------------------------------------------------

    async def invite(
        self, user: UserInfo, rec: DeviceRecord, call_type: int, user_agent: str | None
    ) -> RtcCall:
        config = self._require_config()
        model = await self._products.require_model(rec.product_id)
        status_prop = tc.STATUS_PROPS[call_type]
        prop = model.property(status_prop)
        if prop is None or not prop.writable:
            raise _not_trtc(rec, f"a writable {status_prop}")
        if model.action(tc.JOIN_ROOM_ACTION) is None:
            raise _not_trtc(rec, f"the {tc.JOIN_ROOM_ACTION} action")
        self._require_online(rec)
        await self._require_free(user, rec)
        params = tc.call_control(
            call_type,
            tc.RINGING,
            user_id=user.user_id,
            device_id=_device_id(rec),
            user_agent=user_agent,
        )
        clean = self._control_params(model, params)
        now = self._clock.now_ms()
        call = RtcCall(
            user.user_id,
            call_type,
            _new_room(),
            False,
            now + int(config.ring_timeout_s * 1000),
        )
        key = (rec.product_id, rec.device_name)
        self._calls[key] = call
        if not await self._send_control(rec, clean):
            if self._calls.get(key) is call:
                del self._calls[key]
            raise DeviceOffline(f"device {_device_id(rec)} is offline")
        log.info("rtc_invite", device=_device_id(rec), user=user.user_id, call_type=call_type)
        return call

    async def join(self, user: UserInfo, rec: DeviceRecord) -> RoomParams:
        config = self._require_config()
        model = await self._products.require_model(rec.product_id)
        action = model.action(tc.JOIN_ROOM_ACTION)
        if action is None:
            raise _not_trtc(rec, f"the {tc.JOIN_ROOM_ACTION} action")
        self._require_online(rec)
        reported = await self._reported(rec)
        # From here to storing the call nothing awaits: two joins cannot both take it.
        call = self.call(rec)
        _refuse_if_busy(user, call, reported)
        if call is None:
            if reported is None:
                raise NotFound("no call with this device: invite it, or wait for it to call")
            call = RtcCall(user.user_id, reported.call_type, _new_room(), True, 0)
        now = self._clock.now_ms()
        device_uid = tc.device_user_id(rec.product_id, rec.device_name)
        wanted = {p.id for p in action.input}
        inputs = tc.join_room_params(
            config.sdk_app_id, device_uid, self._ticket(config, device_uid, now), call.room_id
        )
        try:
            clean = model.validate_action_input(
                tc.JOIN_ROOM_ACTION, {k: v for k, v in inputs.items() if k in wanted}
            )
        except ValidationFailed as exc:  # never echo the value: it holds the device's ticket
            where = getattr(exc, "path", "") or "its inputs"
            what = f"a {tc.JOIN_ROOM_ACTION} taking the room parameters ({where})"
            raise _not_trtc(rec, what) from None
        call = replace(call, joined=True, expires_ms=now + config.usersig_ttl_s * 1000)
        self._calls[(rec.product_id, rec.device_name)] = call
        self._spawn(self._send_join(rec, clean, call.room_id))
        log.info("rtc_join", device=_device_id(rec), user=user.user_id, room=call.room_id)
        return RoomParams(
            config.sdk_app_id, user.user_id, self._ticket(config, user.user_id, now), call.room_id
        )

    async def leave(self, user: UserInfo, rec: DeviceRecord) -> bool:
        """End the user's call with the device and hang the device up; ``False`` (nothing
        done) when the user is in no call with it — another user's call is left alone."""
        key = (rec.product_id, rec.device_name)
        call = self.call(rec)
        if call is not None:
            if call.user_id != user.user_id:
                return False
            del self._calls[key]
            call_type = call.call_type
        else:
            reported = await self._reported(rec)
            if reported is None or user.user_id not in reported.parties:
                return False
            call_type = reported.call_type
        log.info("rtc_leave", device=_device_id(rec), user=user.user_id)
        model = await self._products.thing_model(rec.product_id)
        prop = None if model is None else model.property(tc.STATUS_PROPS[call_type])
        if model is None or prop is None or not prop.writable:
            return True
        params = tc.call_control(
            call_type, tc.IDLE, user_id=user.user_id, device_id=_device_id(rec), user_agent=None
        )
        await self._send_control(rec, self._control_params(model, params))
        return True

    def on_bus_event(self, event: BusEvent) -> None:
        """Device reports and presence end calls (synchronous, on the report path: O(1))."""
        if not self._calls or not isinstance(event, DeviceReported | DeviceOnline):
            return
        key = (event.product_id, event.device_name)
        call = self._calls.get(key)
        if call is None:
            return
        if isinstance(event, DeviceOnline):
            ended = not event.online
        else:
            status = event.params.get(tc.STATUS_PROPS[call.call_type])
            rejected = tc.reject_user_id(event.params.get(tc.EXTRA_INFO_PROP))
            ended = (status == tc.IDLE and not isinstance(status, bool)) or rejected == call.user_id
        if ended:
            del self._calls[key]
            log.info("rtc_call_ended", device=f"{key[0]}/{key[1]}", user=call.user_id)

    # -- helpers --------------------------------------------------------------------------

    def _require_config(self) -> TrtcConfig:
        if self._config is None:
            raise TrtcNotConfigured(
                "TRTC calls are not configured on this server (trtc_sdk_app_id, trtc_secret_key)"
            )
        return self._config

    def _require_online(self, rec: DeviceRecord) -> None:
        if not self._downlink.is_connected(rec.client_id):
            raise DeviceOffline(f"device {_device_id(rec)} is offline")

    async def _require_free(self, user: UserInfo, rec: DeviceRecord) -> None:
        """The await comes first, so the caller stores its call with no await in between
        (two invites cannot both pass)."""
        reported = await self._reported(rec)
        _refuse_if_busy(user, self.call(rec), reported)

    async def _reported(self, rec: DeviceRecord) -> tc.ReportedCall | None:
        latest = await self._telemetry.latest(rec)
        values = {k: (latest[k].value, latest[k].ts_ms) for k in _REPORTED if k in latest}
        own = tc.device_user_id(rec.product_id, rec.device_name)
        return tc.reported_call(values, _device_id(rec), own)

    @staticmethod
    def _control_params(model: ThingModel, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` restricted to the writable properties the model declares, validated."""
        kept = {}
        for key, value in params.items():
            prop = model.property(key)
            if prop is not None and prop.writable:
                kept[key] = value
        try:
            return model.validate_control(kept)
        except ValidationFailed as exc:
            raise InvalidInput(str(exc)) from None

    async def _send_control(self, rec: DeviceRecord, params: dict[str, Any]) -> bool:
        topic = thing.thing_topic("down", "property", rec.product_id, rec.device_name)
        message = thing.control_message(new_client_token(), params)
        return await self._downlink.publish(rec.client_id, topic, message)

    @staticmethod
    def _ticket(config: TrtcConfig, identifier: str, now_ms: int) -> str:
        return mint_user_sig(
            sdk_app_id=config.sdk_app_id,
            key=config.secret_key,
            identifier=identifier,
            now=now_ms // 1000,
            expire_s=config.usersig_ttl_s,
        )

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_join(self, rec: DeviceRecord, params: dict[str, Any], room_id: str) -> None:
        """The room, to the device; not awaited by the app (it enters the room at once, as
        with Tencent's cloud). A device that refuses or is gone ends the call."""
        try:
            result = await self._control.action(rec, tc.JOIN_ROOM_ACTION, params)
        except DeviceOffline:
            code = -1
        except ServiceError as exc:
            log.info("rtc_join_room_unanswered", device=_device_id(rec), error=str(exc))
            return
        else:
            code = result.code
        if code == 0:
            return
        log.info("rtc_join_room_failed", device=_device_id(rec), code=code)
        key = (rec.product_id, rec.device_name)
        current = self._calls.get(key)
        if current is not None and current.room_id == room_id:
            del self._calls[key]
