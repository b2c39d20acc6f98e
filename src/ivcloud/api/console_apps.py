"""Console API for apps: create apps (AppKey/AppSecret) and link the products their users
may bind and control."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from ivcloud.api.admin import admin_guard

if TYPE_CHECKING:
    from ivcloud.app import Ivcloud


class AppIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    Name: str = Field(min_length=1, max_length=64)


class NoticeIn(BaseModel):
    """A maker notice for every user of an app (their message centre, Category 3)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    Title: str = Field(min_length=1, max_length=128)
    Content: str = Field(min_length=1, max_length=1024)


def apps_router(instance: Ivcloud) -> APIRouter:
    router = APIRouter(dependencies=[Depends(admin_guard(instance))], tags=["apps"])
    apps = instance.apps

    @router.post("/apps", status_code=201)
    async def create_app(body: AppIn) -> dict[str, Any]:
        return (await apps.create(body.Name)).to_api(with_secret=True)

    @router.get("/apps")
    async def list_apps() -> dict[str, Any]:
        items = await apps.list()
        return {"Apps": [a.to_api() for a in items], "Total": len(items)}

    @router.get("/apps/{app_id}")
    async def get_app(app_id: str) -> dict[str, Any]:
        return (await apps.get(app_id)).to_api(with_secret=True)

    @router.delete("/apps/{app_id}", status_code=204)
    async def delete_app(app_id: str) -> None:
        await apps.delete(app_id)

    @router.put("/apps/{app_id}/products/{product_id}")
    async def link(app_id: str, product_id: str) -> dict[str, Any]:
        return (await apps.link_product(app_id, product_id)).to_api()

    @router.delete("/apps/{app_id}/products/{product_id}")
    async def unlink(app_id: str, product_id: str) -> dict[str, Any]:
        return (await apps.unlink_product(app_id, product_id)).to_api()

    @router.post("/apps/{app_id}/messages", status_code=201)
    async def notify(app_id: str, body: NoticeIn) -> dict[str, Any]:
        users = await instance.messages.notify_app(app_id, body.Title, body.Content)
        return {"AppId": app_id, "Users": users}

    return router
