"""The remaining user Actions of spec §2.1: account cancellation, user settings, XG push
tokens, feedback, and the app's global configuration.  Parameter reading only (parsers in
:mod:`ivcloud.protocol.user_extras`); the rules live in the services.

Response shapes follow the official clients: ``UserSetting`` and ``Configs`` sit at the
top of ``Response`` (iOS reads ``responseObject[@"UserSetting"]``, Android
``json.getJSONArray("Configs")``); the other actions answer nothing beyond ``RequestId``."""

from __future__ import annotations

from typing import Any

from ivcloud.api.appapi.registry import ActionRegistry, Call
from ivcloud.protocol import user_extras
from ivcloud.protocol.appapi import str_param
from ivcloud.services.feedback import CONTACT_MAX, DESC_MAX, TYPE_MAX


def register(reg: ActionRegistry) -> None:
    @reg.action("AppUserCancelAccount", "token")
    async def cancel_account(call: Call) -> dict[str, Any]:
        await call.instance.account_cancel.cancel(call.me)
        return {}

    @reg.action("AppGetUserSetting", "token")
    async def get_setting(call: Call) -> dict[str, Any]:
        return {"UserSetting": await call.instance.user_settings.get(call.me.user_id)}

    @reg.action("AppUpdateUserSetting", "token")
    async def update_setting(call: Call) -> dict[str, Any]:
        patch = user_extras.settings_patch(call.params)
        await call.instance.user_settings.update(call.me.user_id, patch)
        return {}

    @reg.action("AppBindXgToken", "token")
    async def bind_xg(call: Call) -> dict[str, Any]:
        token = user_extras.xg_token(call.params)
        platform = user_extras.platform(call.params)
        await call.instance.xg_tokens.bind(call.me.user_id, token, platform)
        return {}

    @reg.action("AppUnBindXgToken", "token")
    async def unbind_xg(call: Call) -> dict[str, Any]:
        await call.instance.xg_tokens.unbind(call.me.user_id, user_extras.xg_token(call.params))
        return {}

    @reg.action("AppUserFeedBack", "token")
    async def feedback(call: Call) -> dict[str, Any]:
        p = call.params
        await call.instance.feedback.submit(
            call.me.app_id,
            call.me.user_id,
            type=str_param(p, "Type", required=False, max_len=TYPE_MAX) or "advise",
            desc=str_param(p, "Desc", max_len=DESC_MAX),
            contact=str_param(p, "Contact", required=False, max_len=CONTACT_MAX) or "",
            log_urls=user_extras.log_urls(
                str_param(p, "LogUrl", required=False, max_len=user_extras.LOG_URL_MAX) or ""
            ),
        )
        return {}

    @reg.action("AppGetGlobalConfig", "sign")
    async def global_config(call: Call) -> dict[str, Any]:
        keys = user_extras.config_keys(call.params.get("Keys"))
        found = await call.instance.global_config.get_many(call.app.app_id, keys)
        return {"Configs": [{"Key": k, "Value": v} for k, v in found]}
