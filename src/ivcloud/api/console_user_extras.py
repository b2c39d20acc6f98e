"""Console API for what app users leave for the maker: feedback (``AppUserFeedBack``) and
the per-app global configuration the apps read with ``AppGetGlobalConfig``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from ivcloud.api.admin import admin_guard
from ivcloud.protocol.appapi import AppApiError
from ivcloud.protocol.user_extras import config_key
from ivcloud.services.errors import InvalidInput
from ivcloud.services.global_config import VALUE_MAX

if TYPE_CHECKING:
    from ivcloud.app import Ivcloud


class ConfigValueIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    Value: str = Field(max_length=VALUE_MAX)


def _key(key: str) -> str:
    try:
        return config_key(key)
    except AppApiError as exc:
        raise InvalidInput(exc.message) from None


def user_extras_router(instance: Ivcloud) -> APIRouter:
    router = APIRouter(dependencies=[Depends(admin_guard(instance))], tags=["user extras"])

    @router.get("/feedback")
    async def list_feedback(
        app_id: Annotated[str | None, Query(alias="AppId", max_length=32)] = None,
        offset: Annotated[int, Query(alias="Offset", ge=0)] = 0,
        limit: Annotated[int, Query(alias="Limit", ge=1, le=100)] = 20,
    ) -> dict[str, Any]:
        total, items = await instance.feedback.list(app_id, offset, limit)
        return {"Total": total, "Feedback": [f.to_api() for f in items]}

    @router.get("/apps/{app_id}/config")
    async def list_config(app_id: str) -> dict[str, Any]:
        await instance.apps.get(app_id)
        configs = await instance.global_config.all(app_id)
        return {"Configs": [{"Key": k, "Value": v} for k, v in configs.items()]}

    @router.put("/apps/{app_id}/config/{key}")
    async def set_config(app_id: str, key: str, body: ConfigValueIn) -> dict[str, Any]:
        await instance.apps.get(app_id)
        await instance.global_config.set(app_id, _key(key), body.Value)
        return {"Key": key, "Value": body.Value}

    @router.delete("/apps/{app_id}/config/{key}", status_code=204)
    async def delete_config(app_id: str, key: str) -> None:
        await instance.global_config.delete(app_id, _key(key))

    return router
