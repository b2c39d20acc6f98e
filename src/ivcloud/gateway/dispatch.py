"""The device-side adapter: authenticates CONNECTs and turns each device PUBLISH into a
service call and a reply, mapping service and protocol errors to ``$thing`` reply codes
(0 ok, 406 invalid data, 404 unknown method, 500 storage failure). ``$video/up`` (ivcloud's
video signalling) follows the same conventions on ``$video/down``."""

from __future__ import annotations

from typing import Any

import structlog

from ivcloud.gateway.contracts import ConnectRefused, DeviceIdentity
from ivcloud.gateway.subdevices import GatewayOperations
from ivcloud.gateway.video import video_up
from ivcloud.protocol import ota, thing
from ivcloud.protocol.credentials import parse_username, verify_password
from ivcloud.protocol.errors import (
    CredentialError,
    CredentialExpired,
    ProtocolError,
    ValidationFailed,
)
from ivcloud.services.binding import BindingService, BindTokenRefused
from ivcloud.services.control import ControlService
from ivcloud.services.devices import DeviceRecord, DeviceService, split_client_id
from ivcloud.services.errors import InvalidInput
from ivcloud.services.ota import OtaService
from ivcloud.services.ports import Clock, Downlink
from ivcloud.services.products import ProductService
from ivcloud.services.telemetry import Telemetry
from ivcloud.services.video_signal import VideoSignalService

log = structlog.get_logger("ivcloud.gateway")

OK, NOT_FOUND, INVALID, STORE_FAILED = 0, 404, 406, 500
REPORT_INVALID = "checkReportData fail"
EVENT_INVALID = "Param count not match"


class ThingDispatcher:
    """Implements :class:`ivcloud.gateway.contracts.DeviceHandler`."""

    def __init__(
        self,
        *,
        devices: DeviceService,
        products: ProductService,
        telemetry: Telemetry,
        control: ControlService,
        ota_service: OtaService,
        binding: BindingService,
        downlink: Downlink,
        clock: Clock,
        video: VideoSignalService | None = None,
        gateway_ops: GatewayOperations | None = None,
    ) -> None:
        self._devices = devices
        self._products = products
        self._telemetry = telemetry
        self._control = control
        self._ota = ota_service
        self._binding = binding
        self._clock = clock
        self._downlink = downlink
        self._video = video
        self._gateway_ops = gateway_ops

    # -- connection lifecycle -----------------------------------------------------------

    async def authenticate(
        self, client_id: str, username: str | None, password: bytes | None
    ) -> DeviceIdentity:
        if not username or password is None:
            raise ConnectRefused(4, "username and password are required")
        try:
            user = parse_username(username)
            pw = password.decode("ascii")
        except (CredentialError, UnicodeDecodeError):
            raise ConnectRefused(4, "malformed credentials") from None
        if user.client_id != client_id:
            raise ConnectRefused(4, "username does not match the client id")
        product_id, device_name = split_client_id(client_id)
        rec = await self._devices.find(product_id, device_name) if device_name else None
        if rec is None:
            raise ConnectRefused(4, "unknown device")
        try:
            verify_password(rec.secret, username, pw, self._clock.now_ms() // 1000)
        except CredentialError as exc:
            code = 5 if isinstance(exc, CredentialExpired) else 4
            raise ConnectRefused(code, str(exc)) from None
        return DeviceIdentity(product_id, device_name)

    async def on_online(self, device: DeviceIdentity, peer: str) -> None:
        rec = self._devices.cached(device.client_id)
        if rec is not None:
            await self._devices.set_presence(rec, True, peer.rsplit(":", 1)[0] or None)
            log.info("device_online", client_id=device.client_id, peer=peer)

    async def on_offline(self, device: DeviceIdentity, reason: str) -> None:
        rec = self._devices.cached(device.client_id)
        if rec is not None:
            await self._devices.set_presence(rec, False)
            log.info("device_offline", client_id=device.client_id, reason=reason)

    # -- messages -----------------------------------------------------------------------

    async def on_message(self, device: DeviceIdentity, topic: str, payload: bytes) -> None:
        rec = self._devices.cached(device.client_id)
        if rec is None:  # deleted while connected
            return
        self._devices.touch(rec)
        parts = topic.split("/")
        head = parts[0]
        if head == "$thing" and len(parts) == 5 and parts[1] == "up":
            channel = parts[2]
            if channel == "property":
                await self._property(rec, payload)
            elif channel == "event":
                await self._event(rec, payload)
            elif channel == "action":
                await self._action_reply(rec, payload)
            elif channel == "service":
                await self._service(rec, payload)
            else:
                log.info("unhandled_topic", client_id=rec.client_id, topic=topic)
        elif head == "$ota" and len(parts) == 4 and parts[1] == "report":
            await self._ota_report(rec, payload)
        elif head == "$gateway" and len(parts) == 4 and self._gateway_ops is not None:
            await self._gateway_ops.on_operation(rec, payload)  # sub-devices, spec §6.2
        elif head == "$sys" and len(parts) == 4 and parts[1] == "operation":
            await self._sys(rec, payload)
        elif head == "$video" and len(parts) == 4 and parts[1] == "up" and self._video:
            await video_up(self._downlink, self._video, rec, payload)
        else:
            log.info("unhandled_topic", client_id=rec.client_id, topic=topic)

    async def _send(self, rec: DeviceRecord, channel: str, body: bytes) -> None:
        await self._downlink.publish(
            rec.client_id, thing.thing_topic("down", channel, rec.product_id, rec.device_name), body
        )

    def _reply_ack(self, rec: DeviceRecord, channel: str, method: str, token: str, **extra: Any):  # type: ignore[no-untyped-def]
        async def ack(ok: bool) -> None:
            if ok:
                body = thing.reply(method, token, OK, "success", **extra)
            else:
                body = thing.reply(method, token, STORE_FAILED, "storage unavailable", **extra)
            await self._send(rec, channel, body)

        return ack

    async def _property(self, rec: DeviceRecord, payload: bytes) -> None:
        try:
            msg = thing.parse_up(payload)
        except thing.MessageError as exc:
            await self._reject(rec, "property", "report_reply", exc.client_token, str(exc))
            return
        method = msg.method
        if method == "report":
            await self._report(rec, msg, payload)
        elif method == "get_status":
            await self._get_status(rec, msg)
        elif method == "control_reply":
            try:
                code = thing.reply_code(msg)
            except thing.MessageError as exc:
                log.info("bad_control_reply", client_id=rec.client_id, error=str(exc))
                return
            status = msg.raw.get("status")
            await self._control.on_control_reply(
                rec, msg.client_token, code, status if isinstance(status, str) else ""
            )
        elif method == "clear_control":
            await self._control.clear(rec)
            await self._send(
                rec, "property", thing.reply("clear_control_reply", msg.client_token, OK, "success")
            )
        elif method == "report_info":
            params = msg.raw.get("params")
            if not isinstance(params, dict):
                await self._reject(
                    rec,
                    "property",
                    "report_info_reply",
                    msg.client_token,
                    "params must be an object",
                )
                return
            await self._devices.save_info(rec, _clip_info(params))
            await self._send(
                rec, "property", thing.reply("report_info_reply", msg.client_token, OK, "success")
            )
        else:
            await self._send(
                rec,
                "property",
                thing.reply(f"{method}_reply", msg.client_token, NOT_FOUND, "unknown method"),
            )

    async def _reject(
        self,
        rec: DeviceRecord,
        channel: str,
        method: str,
        token: str,
        detail: str,
        status: str = REPORT_INVALID,
    ) -> None:
        log.info("device_message_rejected", client_id=rec.client_id, method=method, error=detail)
        await self._send(rec, channel, thing.reply(method, token, INVALID, status, msg=detail))

    async def _report(self, rec: DeviceRecord, msg: thing.UpMessage, payload: bytes) -> None:
        model = await self._products.thing_model(rec.product_id)
        try:
            if model is None:
                raise ProtocolError(f"product {rec.product_id} has no thing model")
            params = model.validate_report(thing.report_params(msg))
            ts = thing.report_timestamp_ms(msg)
        except ProtocolError as exc:
            await self._reject(rec, "property", "report_reply", msg.client_token, str(exc))
            return
        await self._telemetry.record_report(
            rec,
            params,
            ts,
            self._reply_ack(rec, "property", "report_reply", msg.client_token),
            client_token=msg.client_token,
            payload=payload,
        )

    async def _get_status(self, rec: DeviceRecord, msg: thing.UpMessage) -> None:
        kind = msg.raw.get("type", "report")
        data: dict[str, Any] = {}
        if kind != "control":
            latest = await self._telemetry.latest(rec)
            if latest:
                data["reported"] = {k: v.value for k, v in latest.items()}
        pending = await self._control.pending(rec)
        if pending:
            data["control"] = pending
        body = thing.reply(
            "get_status_reply",
            msg.client_token,
            OK,
            "success",
            type=kind if isinstance(kind, str) else "report",
            data=data,
        )
        await self._send(rec, "property", body)

    async def _event(self, rec: DeviceRecord, payload: bytes) -> None:
        try:
            msg = thing.parse_up(payload)
        except thing.MessageError as exc:
            await self._event_reject(rec, exc.client_token, str(exc))
            return
        if msg.method not in ("event_post", "events_post"):
            await self._event_reject(rec, msg.client_token, f"unknown method {msg.method}")
            return
        model = await self._products.thing_model(rec.product_id)
        try:
            events = thing.posted_events(msg)
            if model is None:
                raise ProtocolError(f"product {rec.product_id} has no thing model")
            events = [
                thing.PostedEvent(
                    ev.event_id,
                    ev.event_type,
                    ev.timestamp_ms,
                    model.validate_event(ev.event_id, ev.event_type, ev.params),
                )
                for ev in events
            ]
        except (ProtocolError, ValidationFailed) as exc:
            await self._event_reject(rec, msg.client_token, str(exc))
            return
        await self._telemetry.record_events(
            rec,
            events,
            self._reply_ack(rec, "event", "event_reply", msg.client_token, version="1.0", data={}),
            client_token=msg.client_token,
        )

    async def _event_reject(self, rec: DeviceRecord, token: str, detail: str) -> None:
        log.info("device_event_rejected", client_id=rec.client_id, error=detail)
        body = thing.reply(
            "event_reply", token, INVALID, EVENT_INVALID, version="1.0", data={}, msg=detail
        )
        await self._send(rec, "event", body)

    async def _action_reply(self, rec: DeviceRecord, payload: bytes) -> None:
        try:
            msg = thing.parse_up(payload)
            code = thing.reply_code(msg)
        except thing.MessageError as exc:
            log.info("bad_action_reply", client_id=rec.client_id, error=str(exc))
            return
        response = msg.raw.get("response", {})
        status = msg.raw.get("status", "")
        matched = self._control.on_action_reply(
            rec,
            msg.client_token,
            code,
            status if isinstance(status, str) else "",
            response if isinstance(response, dict) else {},
        )
        if not matched:
            log.info("unmatched_action_reply", client_id=rec.client_id)

    async def _service(self, rec: DeviceRecord, payload: bytes) -> None:
        try:
            msg = thing.parse_up(payload)
        except thing.MessageError as exc:
            await self._reject(rec, "service", "app_bind_token_reply", exc.client_token, str(exc))
            return
        if msg.method != "app_bind_token":
            await self._send(
                rec,
                "service",
                thing.reply(f"{msg.method}_reply", msg.client_token, NOT_FOUND, "unknown method"),
            )
            return
        params = msg.raw.get("params")
        try:
            token = params.get("token") if isinstance(params, dict) else None
            await self._binding.device_reported_token(rec, token)
        except InvalidInput as exc:
            await self._reject(
                rec, "service", "app_bind_token_reply", msg.client_token, str(exc), "invalid token"
            )
            return
        except BindTokenRefused as exc:
            # An app bind token this device may not claim (expired / another device's): 403.
            log.info("bind_token_refused", client_id=rec.client_id, error=str(exc))
            await self._send(
                rec,
                "service",
                thing.reply(
                    "app_bind_token_reply", msg.client_token, 403, "token refused", msg=str(exc)
                ),
            )
            return
        await self._send(
            rec, "service", thing.reply("app_bind_token_reply", msg.client_token, OK, "success")
        )

    async def _ota_report(self, rec: DeviceRecord, payload: bytes) -> None:
        try:
            report = ota.parse_report(payload)
        except ProtocolError as exc:
            log.info("bad_ota_report", client_id=rec.client_id, error=str(exc))
            return
        if isinstance(report, ota.VersionReport):
            await self._ota.on_version(rec, report.version)
        else:
            await self._ota.on_progress(rec, report)

    async def _sys(self, rec: DeviceRecord, payload: bytes) -> None:
        try:
            doc = thing.decode_json_object(payload)
        except ProtocolError:
            return
        resources = doc.get("resource")
        if doc.get("type") != "get" or not isinstance(resources, list):
            return
        out: dict[str, Any] = {"type": "get"}
        if "time" in resources:
            now = self._clock.now_ms()
            out.update(time=now // 1000, ntptime1=now, ntptime2=self._clock.now_ms())
        if "serverip" in resources:
            out["serverip"] = ""
        await self._downlink.publish(
            rec.client_id,
            f"$sys/operation/result/{rec.product_id}/{rec.device_name}",
            thing.encode(out),
        )


def _clip_info(params: dict[str, Any]) -> dict[str, Any]:
    """Keep report_info bounded: string fields only, 256 chars each, at most 32 keys."""
    out: dict[str, Any] = {}
    for key, value in list(params.items())[:32]:
        if isinstance(value, str):
            out[str(key)[:64]] = value[:256]
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[str(key)[:64]] = value
        elif isinstance(value, dict):
            out[str(key)[:64]] = {
                str(k)[:64]: v[:256] for k, v in list(value.items())[:32] if isinstance(v, str)
            }
    return out
