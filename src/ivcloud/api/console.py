"""The operator's REST API (``/api/console/v1``): products, thing models, devices, control,
firmware and upgrade jobs.  Admin-authenticated with ``Authorization: Bearer <token>``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Body, Depends, File, Form, Query, UploadFile
from pydantic import BaseModel, ConfigDict, Field

from ivcloud.api.admin import admin_guard
from ivcloud.protocol import bind_qr
from ivcloud.protocol.thingmodel import STANDARD_MODELS, load_standard_model
from ivcloud.services.errors import InvalidInput, NotFound
from ivcloud.services.ota import MAX_FIRMWARE_BYTES

if TYPE_CHECKING:
    from ivcloud.app import Ivcloud
    from ivcloud.services.devices import DeviceRecord


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ProductIn(_In):
    Name: str = Field(min_length=1, max_length=64)
    Category: str
    NetType: str = "wifi"
    Description: str = Field(default="", max_length=1024)


class DeviceIn(_In):
    DeviceName: str = Field(min_length=1, max_length=48)


class ControlIn(_In):
    Params: dict[str, Any]
    WaitSeconds: float = Field(default=0.0, ge=0, le=60)


class ActionIn(_In):
    Params: dict[str, Any] = Field(default_factory=dict)
    TimeoutSeconds: float = Field(default=5.0, gt=0, le=60)


class BindCodeIn(_In):
    #: 0 = a code that does not expire (printed on a label).
    ExpireSeconds: int = Field(default=600, ge=0, le=365 * 24 * 3600)


class OtaJobIn(_In):
    Version: str = Field(min_length=1, max_length=32)
    DeviceNames: list[str] | None = None
    GrayPercent: int = Field(default=100, ge=1, le=100)


def console_router(instance: Ivcloud) -> APIRouter:
    router = APIRouter(dependencies=[Depends(admin_guard(instance))], tags=["console"])
    products = instance.products
    devices = instance.devices

    async def device(product_id: str, device_name: str) -> DeviceRecord:
        return await devices.get(product_id, device_name)

    # -- products ---------------------------------------------------------------------

    @router.get("/products")
    async def list_products() -> dict[str, Any]:
        items = await products.list()
        return {"Products": [p.to_api() for p in items], "Total": len(items)}

    @router.post("/products", status_code=201)
    async def create_product(body: ProductIn) -> dict[str, Any]:
        info = await products.create(body.Name, body.Category, body.NetType, body.Description)
        return info.to_api()

    @router.get("/products/{product_id}")
    async def get_product(product_id: str) -> dict[str, Any]:
        return (await products.get(product_id)).to_api()

    @router.delete("/products/{product_id}", status_code=204)
    async def delete_product(product_id: str) -> None:
        await products.delete(product_id)

    # -- thing models -----------------------------------------------------------------

    @router.get("/thing-model-templates")
    async def list_templates() -> dict[str, Any]:
        return {"Templates": list(STANDARD_MODELS)}

    @router.get("/thing-model-templates/{name}")
    async def get_template(name: str) -> dict[str, Any]:
        if name not in STANDARD_MODELS:
            raise NotFound(f"no standard model {name!r}")
        return load_standard_model(name).to_json()

    @router.put("/products/{product_id}/thing-model")
    async def import_model(product_id: str, doc: Annotated[Any, Body()]) -> dict[str, Any]:
        await products.import_thing_model(product_id, doc)
        return await products.thing_model_json(product_id)

    @router.put("/products/{product_id}/thing-model/standard/{name}")
    async def import_standard(product_id: str, name: str) -> dict[str, Any]:
        await products.import_standard_model(product_id, name)
        return await products.thing_model_json(product_id)

    @router.get("/products/{product_id}/thing-model")
    async def export_model(product_id: str) -> dict[str, Any]:
        return await products.thing_model_json(product_id)

    # -- devices ----------------------------------------------------------------------

    @router.post("/products/{product_id}/devices", status_code=201)
    async def create_device(product_id: str, body: DeviceIn) -> dict[str, Any]:
        rec = await devices.create(product_id, body.DeviceName)
        return rec.to_api(with_secret=True)

    @router.get("/products/{product_id}/devices")
    async def list_devices(
        product_id: str,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        total, recs = await devices.list(product_id, offset, limit)
        return {"Devices": [r.to_api() for r in recs], "Total": total}

    @router.get("/products/{product_id}/devices/{device_name}")
    async def get_device(product_id: str, device_name: str) -> dict[str, Any]:
        rec = await device(product_id, device_name)
        latest = await instance.telemetry.latest(rec)
        out = rec.to_api()
        out["Properties"] = {
            k: {"Value": v.value, "LastUpdate": v.ts_ms} for k, v in sorted(latest.items())
        }
        return out

    @router.delete("/products/{product_id}/devices/{device_name}", status_code=204)
    async def delete_device(product_id: str, device_name: str) -> None:
        rec = await devices.delete(product_id, device_name)
        instance.telemetry.forget(rec)
        await instance.gateway.disconnect(rec.client_id)

    @router.post("/products/{product_id}/devices/{device_name}/reset-secret")
    async def reset_secret(product_id: str, device_name: str) -> dict[str, Any]:
        rec = await devices.reset_secret(product_id, device_name)
        await instance.gateway.disconnect(rec.client_id)
        return rec.to_api(with_secret=True)

    @router.post("/products/{product_id}/devices/{device_name}/bind-code")
    async def bind_code(
        product_id: str, device_name: str, body: BindCodeIn | None = None
    ) -> dict[str, Any]:
        """A "scan to bind" code for ``AppSecureAddDeviceInFamily`` (protocol/bind_qr.py)."""
        rec = await device(product_id, device_name)
        ttl = (body or BindCodeIn()).ExpireSeconds
        expires = 0 if ttl == 0 else instance.clock.now_ms() // 1000 + ttl
        signature = bind_qr.make_signature(rec.product_id, rec.device_name, rec.secret, expires)
        return {
            "DeviceSignature": signature,
            "QRText": bind_qr.qr_text(signature, instance.base_url),
            "ExpireAt": expires,
        }

    @router.get("/products/{product_id}/devices/{device_name}/properties/{prop_id}/history")
    async def history(
        product_id: str,
        device_name: str,
        prop_id: str,
        since: Annotated[int, Query(ge=0, description="ms since epoch")] = 0,
        until: Annotated[int | None, Query(ge=0)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        rec = await device(product_id, device_name)
        rows = await instance.telemetry.history(
            rec, prop_id, since_ms=since, until_ms=until, limit=limit
        )
        return {"Values": [{"Value": r.value, "Time": r.ts_ms} for r in rows]}

    @router.get("/products/{product_id}/devices/{device_name}/events")
    async def events(
        product_id: str,
        device_name: str,
        event_id: str | None = None,
        since: Annotated[int, Query(ge=0)] = 0,
        until: Annotated[int | None, Query(ge=0)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        rec = await device(product_id, device_name)
        rows = await instance.telemetry.events(
            rec, event_id=event_id, since_ms=since, until_ms=until, limit=limit
        )
        return {"Events": rows}

    @router.get("/products/{product_id}/devices/{device_name}/bind-tokens")
    async def bind_tokens(product_id: str, device_name: str) -> dict[str, Any]:
        rec = await device(product_id, device_name)
        return {"Tokens": await instance.binding.tokens(rec)}

    @router.post("/products/{product_id}/devices/{device_name}/control")
    async def control(product_id: str, device_name: str, body: ControlIn) -> dict[str, Any]:
        rec = await device(product_id, device_name)
        result = await instance.control.control(rec, body.Params, wait_s=body.WaitSeconds)
        return result.to_api()

    @router.post("/products/{product_id}/devices/{device_name}/actions/{action_id}")
    async def action(
        product_id: str, device_name: str, action_id: str, body: ActionIn
    ) -> dict[str, Any]:
        rec = await device(product_id, device_name)
        result = await instance.control.action(
            rec, action_id, body.Params, timeout_s=body.TimeoutSeconds
        )
        return result.to_api()

    # -- firmware and upgrade jobs ----------------------------------------------------

    @router.post("/products/{product_id}/firmware", status_code=201)
    async def upload_firmware(
        product_id: str,
        version: Annotated[str, Form(min_length=1, max_length=32)],
        file: Annotated[UploadFile, File()],
    ) -> dict[str, Any]:
        data = await file.read(MAX_FIRMWARE_BYTES + 1)
        if len(data) > MAX_FIRMWARE_BYTES:
            raise InvalidInput(f"firmware file is larger than {MAX_FIRMWARE_BYTES} bytes")
        fw = await instance.ota.upload_firmware(
            product_id, version, file.filename or "firmware.bin", data
        )
        return fw.to_api()

    @router.get("/products/{product_id}/firmware")
    async def list_firmware(product_id: str) -> dict[str, Any]:
        await products.get(product_id)
        return {"Firmware": [f.to_api() for f in await instance.ota.list_firmware(product_id)]}

    @router.post("/products/{product_id}/ota-jobs", status_code=201)
    async def create_job(product_id: str, body: OtaJobIn) -> dict[str, Any]:
        return await instance.ota.create_job(
            product_id, body.Version, device_names=body.DeviceNames, gray_percent=body.GrayPercent
        )

    @router.get("/ota-jobs/{job_id}")
    async def job_status(job_id: int) -> dict[str, Any]:
        return await instance.ota.job_status(job_id)

    return router
