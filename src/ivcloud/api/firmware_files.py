"""Firmware downloads for ``update_firmware`` URLs: signed, expiring, with ``Range`` support
(devices resume interrupted downloads with ``Range: bytes=offset-``)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, Response

from ivcloud.protocol.signing import BadSignedUrl, verify_path
from ivcloud.services.errors import NotFound

if TYPE_CHECKING:
    from ivcloud.app import Ivcloud


def firmware_router(instance: Ivcloud, url_key: bytes) -> APIRouter:
    router = APIRouter(tags=["ota"])

    @router.get("/ota/firmware/{firmware_id}/{filename}", response_model=None)
    async def download(
        firmware_id: int, filename: str, expires: str | None = None, sign: str | None = None
    ) -> Response:
        path = f"/ota/firmware/{firmware_id}/{filename}"
        try:
            verify_path(url_key, path, expires, sign, int(time.time()))
        except BadSignedUrl as exc:
            raise HTTPException(403, str(exc)) from None
        try:
            fw = await instance.ota.firmware(firmware_id)
        except NotFound:
            raise HTTPException(404, "firmware not found") from None
        local = instance.objects.local_path(fw.object_key)
        if fw.filename != filename or local is None:
            raise HTTPException(404, "firmware not found")
        return FileResponse(local, media_type="application/octet-stream", filename=fw.filename)

    return router
