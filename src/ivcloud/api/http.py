"""Builds the HTTP application: console API, firmware downloads, health."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from ivcloud import __version__
from ivcloud.api import errors
from ivcloud.api.appapi.actions import build_registry
from ivcloud.api.appapi.router import AppApiEndpoints, edge
from ivcloud.api.cloud_storage import cloud_storage_routes
from ivcloud.api.console import console_router
from ivcloud.api.console_apps import apps_router
from ivcloud.api.console_user_extras import user_extras_router
from ivcloud.api.firmware_files import firmware_router
from ivcloud.api.media import MediaEndpoints

if TYPE_CHECKING:
    from ivcloud.app import Ivcloud

WEB_DIR = Path(__file__).resolve().parent.parent / "web"


def build_http_app(instance: Ivcloud, *, url_key: bytes) -> ASGIApp:
    app = FastAPI(
        title="ivcloud",
        version=__version__,
        description="Self-hosted IoT Video / IoT Explorer compatible cloud.",
        openapi_url="/openapi.json",
    )
    errors.install(app)
    app.include_router(console_router(instance), prefix="/api/console/v1")
    app.include_router(apps_router(instance), prefix="/api/console/v1")
    app.include_router(user_extras_router(instance), prefix="/api/console/v1")
    app.include_router(firmware_router(instance, url_key))
    app.router.routes.extend(instance.push.routes())  # App API long connection
    app.router.routes.extend(cloud_storage_routes(instance))  # device uploads + playback
    media = MediaEndpoints(instance)
    app.router.routes.extend(media.routes())  # stream hub: WS live, publish
    # Static pages (the MSE live player): plain files, no build step.
    app.mount("/web", StaticFiles(directory=WEB_DIR, html=True), name="web")

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, object]:
        return {
            "status": "ok",
            "version": __version__,
            "devices_connected": instance.gateway.connected_count,
            "writer_queue": instance.writer.depth,
        }

    endpoints = AppApiEndpoints(instance, build_registry())
    instance.push.tunnel = endpoints.tokenapi_data
    return edge(endpoints, media.edge(app))  # App API and HTTP-FLV before FastAPI
