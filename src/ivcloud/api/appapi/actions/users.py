"""User management Actions (spec §2.1)."""

from __future__ import annotations

from typing import Any

from ivcloud.api.appapi.registry import ActionRegistry, Call


def register(reg: ActionRegistry) -> None:
    @reg.action("AppGetUser", "token")
    async def get_user(call: Call) -> dict[str, Any]:
        return {"Data": call.me.to_api()}

    @reg.action("AppLogoutUser", "token")
    async def logout(call: Call) -> dict[str, Any]:
        assert call.access_token is not None
        await call.instance.users.revoke(call.access_token)
        return {}
