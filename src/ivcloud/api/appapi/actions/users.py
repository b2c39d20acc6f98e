"""User management Actions (spec §2.1): parameter reading only; the rules live in
:mod:`ivcloud.services.accounts` and :mod:`ivcloud.services.codes`.

Where the spec is silent: ``CountryCode`` defaults to ``86`` when absent (mainland clients
omit it); AppGetToken infers ``Type`` from the fields sent when it is absent; the send-code
actions answer ``Data: "OK"``; the create-user actions answer ``Data{UserID}``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ivcloud.api.appapi.registry import ActionRegistry, Call
from ivcloud.protocol import appapi
from ivcloud.protocol.appapi import AppApiError, str_param
from ivcloud.services.accounts import AccountService, Identity
from ivcloud.services.codes import PURPOSES

_CODE_LEN: Final[int] = 16
_PASSWORD_LEN: Final[int] = 256  # longer is refused here; 8-64 is the service's rule


def _accounts(call: Call) -> AccountService:
    accounts: AccountService = call.instance.accounts
    return accounts


def _phone(params: Mapping[str, object]) -> Identity:
    cc = str_param(params, "CountryCode", required=False, max_len=8) or "86"
    return Identity.of_phone(cc, str_param(params, "PhoneNumber", max_len=32))


def _email(params: Mapping[str, object]) -> Identity:
    return Identity.of_email(str_param(params, "Email", max_len=254))


def _identity_by_type(params: Mapping[str, object]) -> Identity:
    """``Type`` = ``phone`` | ``email``; absent → whichever of ``Email``/``PhoneNumber``
    was sent."""
    kind = str_param(params, "Type", required=False, max_len=16)
    if kind is None:
        kind = "email" if params.get("Email") not in (None, "") else "phone"
    if kind == "phone":
        return _phone(params)
    if kind == "email":
        return _email(params)
    raise AppApiError(appapi.INVALID_PARAMETER_VALUE, "Type must be phone or email")


def _purpose(params: Mapping[str, object]) -> str:
    purpose = str_param(params, "Type", max_len=16)
    if purpose not in PURPOSES:
        raise AppApiError(
            appapi.INVALID_PARAMETER_VALUE, "Type must be register, resetpass or login"
        )
    return purpose


def _code(params: Mapping[str, object]) -> str:
    return str_param(params, "VerificationCode", max_len=_CODE_LEN)


def _password(params: Mapping[str, object], name: str = "Password") -> str:
    return str_param(params, name, max_len=_PASSWORD_LEN)


def _token(token: str, expire_at: int) -> dict[str, Any]:
    return {"Data": {"Token": token, "ExpireAt": expire_at}}


def register(reg: ActionRegistry) -> None:
    _register_login(reg)
    _register_codes(reg)
    _register_passwords(reg)
    _register_profile(reg)


def _register_login(reg: ActionRegistry) -> None:
    @reg.action("AppGetTokenByWeiXin", "sign")
    async def get_token_by_weixin(call: Call) -> dict[str, Any]:
        p = call.params
        open_id = str_param(p, "WxOpenID", max_len=128)
        nick = str_param(p, "NickName", required=False, max_len=64) or ""
        avatar = str_param(p, "Avatar", required=False, max_len=512) or ""
        return _token(*await _accounts(call).login_wechat(call.app.app_id, open_id, nick, avatar))

    @reg.action("AppGetToken", "sign")
    async def get_token(call: Call) -> dict[str, Any]:
        p = call.params
        who = _identity_by_type(p)
        password = str_param(p, "Password", required=False, max_len=_PASSWORD_LEN)
        code = str_param(p, "VerificationCode", required=False, max_len=_CODE_LEN)
        if password is None and code is None:
            raise AppApiError(
                appapi.REQUIRED_PARAM_NOT_FOUND, "missing parameter Password or VerificationCode"
            )
        token = await _accounts(call).login(call.app.app_id, who, password=password, code=code)
        return _token(*token)

    @reg.action("AppGetUser", "token")
    async def get_user(call: Call) -> dict[str, Any]:
        return {"Data": call.me.to_api()}

    @reg.action("AppLogoutUser", "token")
    async def logout(call: Call) -> dict[str, Any]:
        assert call.access_token is not None
        await call.instance.users.revoke(call.access_token)
        return {}


def _register_codes(reg: ActionRegistry) -> None:
    @reg.action("AppSendVerificationCode", "sign")
    async def send_code(call: Call) -> dict[str, Any]:
        purpose = _purpose(call.params)
        await _accounts(call).send_code(call.app.app_id, _phone(call.params), purpose)
        return {"Data": "OK"}

    @reg.action("AppSendEmailVerificationCode", "sign")
    async def send_email_code(call: Call) -> dict[str, Any]:
        purpose = _purpose(call.params)
        await _accounts(call).send_code(call.app.app_id, _email(call.params), purpose)
        return {"Data": "OK"}

    @reg.action("AppCheckVerificationCode", "sign")
    async def check_code(call: Call) -> dict[str, Any]:
        p = call.params
        purpose = _purpose(p)
        await _accounts(call).check_code(call.app.app_id, _phone(p), purpose, _code(p))
        return {}

    @reg.action("AppCheckEmailVerificationCode", "sign")
    async def check_email_code(call: Call) -> dict[str, Any]:
        p = call.params
        purpose = _purpose(p)
        await _accounts(call).check_code(call.app.app_id, _email(p), purpose, _code(p))
        return {}


def _register_passwords(reg: ActionRegistry) -> None:
    @reg.action("AppCreateCellphoneUser", "sign")
    async def create_phone_user(call: Call) -> dict[str, Any]:
        p = call.params
        user = await _accounts(call).register(call.app.app_id, _phone(p), _code(p), _password(p))
        return {"Data": {"UserID": user.user_id}}

    @reg.action("AppCreateEmailUser", "sign")
    async def create_email_user(call: Call) -> dict[str, Any]:
        p = call.params
        user = await _accounts(call).register(call.app.app_id, _email(p), _code(p), _password(p))
        return {"Data": {"UserID": user.user_id}}

    @reg.action("AppResetPasswordByCellphone", "sign")
    async def reset_by_phone(call: Call) -> dict[str, Any]:
        p = call.params
        await _accounts(call).reset_password(call.app.app_id, _phone(p), _code(p), _password(p))
        return {}

    @reg.action("AppResetPasswordByEmail", "sign")
    async def reset_by_email(call: Call) -> dict[str, Any]:
        p = call.params
        await _accounts(call).reset_password(call.app.app_id, _email(p), _code(p), _password(p))
        return {}

    @reg.action("AppUserResetPassword", "token")
    async def change_password(call: Call) -> dict[str, Any]:
        p = call.params
        await _accounts(call).change_password(call.me, _password(p), _password(p, "NewPassword"))
        return {}


def _register_profile(reg: ActionRegistry) -> None:
    @reg.action("AppUpdateUser", "token")
    async def update_user(call: Call) -> dict[str, Any]:
        p = call.params
        bind: Identity | None = None
        if p.get("Email") not in (None, ""):
            bind = _email(p)
        elif p.get("PhoneNumber") not in (None, ""):
            bind = _phone(p)
        await _accounts(call).update_profile(
            call.me,
            nick_name=str_param(p, "NickName", required=False, max_len=64),
            avatar=str_param(p, "Avatar", required=False, max_len=512),
            bind=bind,
            code=str_param(p, "VerificationCode", required=False, max_len=_CODE_LEN),
            new_password=str_param(p, "NewPassword", required=False, max_len=_PASSWORD_LEN),
        )
        return {}

    @reg.action("AppUpdateUserByWeiXin", "token")
    async def update_user_by_weixin(call: Call) -> dict[str, Any]:
        """OEM contract (as for ``AppGetTokenByWeiXin``): the app's back end resolves the
        WeChat login ``code`` to an openid and sends ``WxOpenID``; a raw ``code`` (what
        Tencent's own app sends, with ``busi``) cannot be exchanged here."""
        p = call.params
        if p.get("WxOpenID") in (None, "") and p.get("code") not in (None, ""):
            raise AppApiError(
                appapi.INVALID_PARAMETER_VALUE,
                "send WxOpenID resolved by your back end; WeChat codes are not exchanged here",
            )
        open_id = str_param(p, "WxOpenID", max_len=128)
        updated = await _accounts(call).bind_wechat(call.me, open_id)
        return {"Data": updated.to_api()}

    @reg.action("AppFindUser", "token")
    async def find_user(call: Call) -> dict[str, Any]:
        user = await _accounts(call).find_user(call.app.app_id, _identity_by_type(call.params))
        return {"Data": {"UserID": user.user_id, "NickName": user.nick_name, "Avatar": user.avatar}}
