"""User management Actions (spec §2.1) over real HTTP: registration, login by password /
code / WeChat, password change and reset, profile and binding, finding users, and every
rejection with its exact error code."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ivcloud.app import Ivcloud
from ivcloud.services.codes import LogCodeSender, Target
from tests.appclient import AppApiClient, AppCreds, create_app, error_code, ok_data
from tests.conftest import make_settings

PHONE = {"CountryCode": "86", "PhoneNumber": "13800000001"}
TARGET = Target.phone("86", "13800000001")
PW = "correct horse"


class OffsetClock:
    """Wall-clock time plus a test-controlled offset: lets codes expire and resend windows
    pass without sleeping."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms

    def advance(self, seconds: float) -> None:
        self.offset_ms += int(seconds * 1000)


@pytest.fixture
def clock() -> OffsetClock:
    return OffsetClock()


@pytest.fixture
async def server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: OffsetClock
) -> AsyncIterator[Ivcloud]:
    """The conftest server, with cheap argon2 parameters and a controllable clock."""
    monkeypatch.setattr("ivcloud.app.SystemClock", lambda: clock)
    settings = make_settings(
        tmp_path / "data",
        password_hash_time_cost=1,
        password_hash_memory_kib=8,
        password_hash_parallelism=1,
        verification_code_echo=False,
    )
    instance = Ivcloud(settings)
    await instance.start()
    try:
        yield instance
    finally:
        await instance.stop()


@pytest.fixture
async def creds(admin: httpx.AsyncClient) -> AppCreds:
    return await create_app(admin)


@pytest.fixture
def client(appclient: httpx.AsyncClient, creds: AppCreds) -> AppApiClient:
    return AppApiClient(appclient, creds)


def code_for(server: Ivcloud, target: Target) -> str:
    sender = server.accounts.codes.sender
    assert isinstance(sender, LogCodeSender)
    code = sender.last(target)
    assert code is not None and len(code) == 6 and code.isdigit()
    return code


async def send_code(
    client: AppApiClient, server: Ivcloud, purpose: str, target: Target = TARGET, **who: Any
) -> str:
    who = who or PHONE
    action = "AppSendEmailVerificationCode" if "Email" in who else "AppSendVerificationCode"
    data = ok_data(await client.appapi(action, Type=purpose, **who))
    assert data["Data"] == "OK"
    return code_for(server, target)


async def register_phone(
    client: AppApiClient, server: Ivcloud, clock: OffsetClock, password: str = PW, **who: str
) -> str:
    who = who or PHONE
    target = Target.phone(who.get("CountryCode", "86"), who["PhoneNumber"])
    code = await send_code(client, server, "register", target, **who)
    clock.advance(61)  # later sends to the same target are allowed again
    data = ok_data(
        await client.appapi(
            "AppCreateCellphoneUser", VerificationCode=code, Password=password, **who
        )
    )
    user_id: str = data["Data"]["UserID"]
    return user_id


async def login(client: AppApiClient, **params: Any) -> str:
    data = ok_data(await client.appapi("AppGetToken", **params))
    assert data["Data"]["ExpireAt"] > time.time() + 24 * 3600
    token: str = data["Data"]["Token"]
    return token


async def test_phone_user_full_flow(
    server: Ivcloud, client: AppApiClient, clock: OffsetClock
) -> None:
    code = await send_code(client, server, "register")
    ok_data(
        await client.appapi(
            "AppCheckVerificationCode", Type="register", VerificationCode=code, **PHONE
        )
    )
    created = ok_data(
        await client.appapi("AppCreateCellphoneUser", VerificationCode=code, Password=PW, **PHONE)
    )
    user_id = created["Data"]["UserID"]

    token = await login(client, Type="phone", Password=PW, **PHONE)
    clock.advance(61)
    login_code = await send_code(client, server, "login")
    token2 = await login(client, Type="phone", VerificationCode=login_code, **PHONE)
    assert token2 != token

    me = ok_data(await client.tokenapi(token, "AppGetUser"))["Data"]
    assert me == {
        "UserID": user_id,
        "NickName": "",
        "Avatar": "",
        "CountryCode": "86",
        "PhoneNumber": "13800000001",
        "Email": "",
        "WxOpenID": "",
        "HasPassword": 1,
        "HasWxOpenID": 0,
    }

    ok_data(
        await client.tokenapi(
            token, "AppUpdateUser", NickName="Ann", Avatar="https://x.example/a.png"
        )
    )
    me = ok_data(await client.tokenapi(token, "AppGetUser"))["Data"]
    assert (me["NickName"], me["Avatar"]) == ("Ann", "https://x.example/a.png")

    wrong = await client.tokenapi(
        token, "AppUserResetPassword", Password="not the one", NewPassword="new password"
    )
    assert error_code(wrong) == "InvalidParameterValue.UserLoginFailed"
    short = await client.tokenapi(token, "AppUserResetPassword", Password=PW, NewPassword="short")
    assert error_code(short) == "InvalidParameterValue.PasswordInvalid"
    ok_data(
        await client.tokenapi(
            token, "AppUserResetPassword", Password=PW, NewPassword="new password"
        )
    )
    for old in (token, token2):  # every session ended with the old password
        assert error_code(await client.tokenapi(old, "AppGetUser")) == (
            "InvalidParameterValue.InvalidAccessToken"
        )
    assert (
        error_code(await client.appapi("AppGetToken", Type="phone", Password=PW, **PHONE))
        == "InvalidParameterValue.UserLoginFailed"
    )

    token3 = await login(client, Type="phone", Password="new password", **PHONE)
    ok_data(await client.tokenapi(token3, "AppLogoutUser"))
    assert error_code(await client.tokenapi(token3, "AppGetUser")) == (
        "InvalidParameterValue.InvalidAccessToken"
    )


async def test_email_user_flow(server: Ivcloud, client: AppApiClient, clock: OffsetClock) -> None:
    target = Target.email("bob@example.com")
    code = await send_code(client, server, "register", target, Email="Bob@Example.com")
    bad = await client.appapi(
        "AppCheckEmailVerificationCode",
        Type="register",
        Email="bob@example.com",
        VerificationCode="xx",
    )
    assert error_code(bad) == "InvalidParameterValue.VerificationCodeError"
    ok_data(
        await client.appapi(
            "AppCheckEmailVerificationCode",
            Type="register",
            Email="bob@example.com",
            VerificationCode=code,
        )
    )
    ok_data(
        await client.appapi(
            "AppCreateEmailUser", Email="bob@example.com", VerificationCode=code, Password=PW
        )
    )
    token = await login(client, Type="email", Email="BOB@example.com", Password=PW)
    assert ok_data(await client.tokenapi(token, "AppGetUser"))["Data"]["Email"] == (
        "bob@example.com"
    )

    clock.advance(61)
    reset = await send_code(client, server, "resetpass", target, Email="bob@example.com")
    ok_data(
        await client.appapi(
            "AppResetPasswordByEmail",
            Email="bob@example.com",
            VerificationCode=reset,
            Password="another password",
        )
    )
    assert error_code(await client.tokenapi(token, "AppGetUser")) == (
        "InvalidParameterValue.InvalidAccessToken"
    )
    await login(client, Email="bob@example.com", Password="another password")  # Type inferred
    again = await client.appapi(
        "AppResetPasswordByEmail",
        Email="bob@example.com",
        VerificationCode=reset,
        Password="third password",
    )
    assert error_code(again) == "InvalidParameterValue.VerificationCodeExpired"  # single use
    invalid = await client.appapi(
        "AppSendEmailVerificationCode", Type="register", Email="not-an-address"
    )
    assert error_code(invalid) == "InvalidParameterValue.EmailInvalid"


async def test_reset_password_by_cellphone(
    server: Ivcloud, client: AppApiClient, clock: OffsetClock
) -> None:
    await register_phone(client, server, clock)
    token = await login(client, Type="phone", Password=PW, **PHONE)
    code = await send_code(client, server, "resetpass")
    short = await client.appapi(
        "AppResetPasswordByCellphone", VerificationCode=code, Password="1234567", **PHONE
    )
    assert error_code(short) == "InvalidParameterValue.PasswordInvalid"
    ok_data(
        await client.appapi(
            "AppResetPasswordByCellphone", VerificationCode=code, Password="12345678", **PHONE
        )
    )
    assert error_code(await client.tokenapi(token, "AppGetUser")) == (
        "InvalidParameterValue.InvalidAccessToken"
    )
    await login(client, Type="phone", Password="12345678", **PHONE)
    unknown = await client.appapi(
        "AppResetPasswordByCellphone",
        VerificationCode="123456",
        Password="12345678",
        CountryCode="86",
        PhoneNumber="13900000000",
    )
    assert error_code(unknown) == "InvalidParameterValue.ErrorUserNotExists"


async def test_wechat_login_registers_once(client: AppApiClient) -> None:
    first = ok_data(
        await client.appapi(
            "AppGetTokenByWeiXin",
            WxOpenID="o-123",
            NickName="Wei",
            Avatar="https://x.example/w.png",
        )
    )
    second = ok_data(await client.appapi("AppGetTokenByWeiXin", WxOpenID="o-123", NickName="Other"))
    t1, t2 = first["Data"]["Token"], second["Data"]["Token"]
    assert t1 != t2 and first["Data"]["ExpireAt"] > time.time()
    u1 = ok_data(await client.tokenapi(t1, "AppGetUser"))["Data"]
    u2 = ok_data(await client.tokenapi(t2, "AppGetUser"))["Data"]
    assert u1 == u2
    assert (u1["NickName"], u1["WxOpenID"], u1["HasWxOpenID"], u1["HasPassword"]) == (
        "Wei",
        "o-123",
        1,
        0,
    )
    assert error_code(await client.appapi("AppGetTokenByWeiXin", NickName="x")) == (
        "ErrorRequiredParamNotFound"
    )


async def test_login_rejections(server: Ivcloud, client: AppApiClient, clock: OffsetClock) -> None:
    await register_phone(client, server, clock)
    cases: list[tuple[dict[str, Any], str]] = [
        (
            {"Type": "phone", "CountryCode": "86", "PhoneNumber": "13900000000", "Password": PW},
            "InvalidParameterValue.ErrorUserNotExists",
        ),
        (
            {"Type": "phone", **PHONE, "Password": "wrong password"},
            "InvalidParameterValue.UserLoginFailed",
        ),
        ({"Type": "phone", **PHONE}, "ErrorRequiredParamNotFound"),
        ({"Type": "fax", **PHONE, "Password": PW}, "InvalidParameterValue"),
        (
            {"Type": "phone", "CountryCode": "86", "PhoneNumber": "1380000", "Password": PW},
            "InvalidParameterValue.PhoneNumberInvalid",
        ),
        (
            {"Type": "phone", "CountryCode": "86", "PhoneNumber": "abc", "Password": PW},
            "InvalidParameterValue.PhoneNumberInvalid",
        ),
        (
            {"Type": "email", "Email": "nobody@example.com", "Password": PW},
            "InvalidParameterValue.ErrorUserNotExists",
        ),
        ({"Type": "email", "Email": "@@", "Password": PW}, "InvalidParameterValue.EmailInvalid"),
        (
            {"Type": "phone", **PHONE, "VerificationCode": "000000"},
            "InvalidParameterValue.VerificationCodeExpired",
        ),  # no login code was sent
        ({"Type": "phone", **PHONE, "Password": ["x"]}, "InvalidParameter"),
    ]
    for params, code in cases:
        assert error_code(await client.appapi("AppGetToken", **params)) == code, params
    # AppGetToken is appapi only.
    token = await login(client, Type="phone", Password=PW, **PHONE)
    assert error_code(await client.tokenapi(token, "AppGetToken")) == "InvalidAction"


async def test_users_belong_to_one_app(
    server: Ivcloud,
    client: AppApiClient,
    admin: httpx.AsyncClient,
    appclient: httpx.AsyncClient,
    clock: OffsetClock,
) -> None:
    user_a = await register_phone(client, server, clock)
    other = AppApiClient(appclient, await create_app(admin))
    assert (
        error_code(await other.appapi("AppGetToken", Type="phone", Password=PW, **PHONE))
        == "InvalidParameterValue.ErrorUserNotExists"
    )
    # The same phone number registers separately in app B (a different user).
    user_b = await register_phone(other, server, clock, password="password b")
    assert user_b != user_a
    token_b = await login(other, Type="phone", Password="password b", **PHONE)
    assert ok_data(await other.tokenapi(token_b, "AppGetUser"))["Data"]["UserID"] == user_b
    assert (
        error_code(await client.appapi("AppGetToken", Type="phone", Password="password b", **PHONE))
        == "InvalidParameterValue.UserLoginFailed"
    )


async def test_code_rules(server: Ivcloud, client: AppApiClient, clock: OffsetClock) -> None:
    code = await send_code(client, server, "register")
    again = await client.appapi("AppSendVerificationCode", Type="register", **PHONE)
    assert error_code(again) == "InvalidParameterValue.SendVerifyCodeTooQuick"
    bad_type = await client.appapi("AppSendVerificationCode", Type="hello", **PHONE)
    assert error_code(bad_type) == "InvalidParameterValue"
    bad_phone = await client.appapi(
        "AppSendVerificationCode", Type="register", CountryCode="86", PhoneNumber="2380000000x"
    )
    assert error_code(bad_phone) == "InvalidParameterValue.PhoneNumberInvalid"
    wrong = "000000" if code != "000000" else "111111"
    # A register code is not a login code.
    assert (
        error_code(await client.appapi("AppGetToken", Type="phone", VerificationCode=code, **PHONE))
        == "InvalidParameterValue.ErrorUserNotExists"
    )
    for _ in range(5):
        doc = await client.appapi(
            "AppCheckVerificationCode", Type="register", VerificationCode=wrong, **PHONE
        )
        assert error_code(doc) == "InvalidParameterValue.VerificationCodeError"
    dead = await client.appapi(
        "AppCreateCellphoneUser", VerificationCode=code, Password=PW, **PHONE
    )
    assert error_code(dead) == "InvalidParameterValue.VerificationCodeExpired"

    clock.advance(61)
    code = await send_code(client, server, "register")
    clock.advance(5 * 60 + 1)
    expired = await client.appapi(
        "AppCreateCellphoneUser", VerificationCode=code, Password=PW, **PHONE
    )
    assert error_code(expired) == "InvalidParameterValue.VerificationCodeExpired"

    code = await send_code(client, server, "register")
    short = await client.appapi(
        "AppCreateCellphoneUser", VerificationCode=code, Password="x", **PHONE
    )
    assert error_code(short) == "InvalidParameterValue.PasswordInvalid"  # code not spent
    ok_data(
        await client.appapi("AppCreateCellphoneUser", VerificationCode=code, Password=PW, **PHONE)
    )
    exists = await client.appapi(
        "AppCreateCellphoneUser", VerificationCode=code, Password=PW, **PHONE
    )
    assert error_code(exists) == "InvalidParameterValue.UserAlreadyExists"
    clock.advance(61)
    taken = await client.appapi("AppSendVerificationCode", Type="register", **PHONE)
    assert error_code(taken) == "InvalidParameterValue.UserAlreadyExists"
    nobody = await client.appapi(
        "AppSendVerificationCode", Type="resetpass", CountryCode="86", PhoneNumber="13900000000"
    )
    assert error_code(nobody) == "InvalidParameterValue.ErrorUserNotExists"
    # A login code works once.
    login_code = await send_code(client, server, "login")
    await login(client, Type="phone", VerificationCode=login_code, **PHONE)
    reused = await client.appapi("AppGetToken", Type="phone", VerificationCode=login_code, **PHONE)
    assert error_code(reused) == "InvalidParameterValue.VerificationCodeExpired"


async def test_update_user_binds_phone_and_email(
    server: Ivcloud, client: AppApiClient, clock: OffsetClock
) -> None:
    await register_phone(client, server, clock)  # owns PHONE
    wx = ok_data(await client.appapi("AppGetTokenByWeiXin", WxOpenID="o-9"))["Data"]["Token"]
    other = {"CountryCode": "1", "PhoneNumber": "4155550100"}
    taken = await client.tokenapi(wx, "AppUpdateUser", VerificationCode="123456", **PHONE)
    assert error_code(taken) == "InvalidParameterValue.UserAlreadyExists"
    no_code = await client.tokenapi(wx, "AppUpdateUser", **other)
    assert error_code(no_code) == "ErrorRequiredParamNotFound"
    long_nick = await client.tokenapi(wx, "AppUpdateUser", NickName="n" * 65)
    assert error_code(long_nick) == "InvalidParameterValue"

    code = await send_code(client, server, "register", Target.phone("1", "4155550100"), **other)
    ok_data(
        await client.tokenapi(
            wx, "AppUpdateUser", VerificationCode=code, NewPassword="wechat password", **other
        )
    )
    me = ok_data(await client.tokenapi(wx, "AppGetUser"))["Data"]
    assert (me["CountryCode"], me["PhoneNumber"], me["HasPassword"]) == ("1", "4155550100", 1)
    await login(client, Type="phone", Password="wechat password", **other)
    # Once a password exists, only AppUserResetPassword (with the old one) changes it.
    doc = await client.tokenapi(wx, "AppUpdateUser", NewPassword="takeover password")
    assert error_code(doc) == "InvalidParameterValue"

    mail = Target.email("wei@example.com")
    code = await send_code(client, server, "register", mail, Email="wei@example.com")
    ok_data(
        await client.tokenapi(wx, "AppUpdateUser", Email="wei@example.com", VerificationCode=code)
    )
    await login(client, Type="email", Email="wei@example.com", Password="wechat password")


async def test_find_user(
    server: Ivcloud,
    client: AppApiClient,
    admin: httpx.AsyncClient,
    appclient: httpx.AsyncClient,
    clock: OffsetClock,
) -> None:
    user_id = await register_phone(client, server, clock)
    token = await login(client, Type="phone", Password=PW, **PHONE)
    ok_data(await client.tokenapi(token, "AppUpdateUser", NickName="Ann"))
    wx = ok_data(await client.appapi("AppGetTokenByWeiXin", WxOpenID="o-1"))["Data"]["Token"]
    found = ok_data(await client.tokenapi(wx, "AppFindUser", Type="phone", **PHONE))
    assert found["Data"] == {"UserID": user_id, "NickName": "Ann", "Avatar": ""}
    missing = await client.tokenapi(wx, "AppFindUser", Type="email", Email="x@example.com")
    assert error_code(missing) == "InvalidParameterValue.ErrorUserNotExists"
    # A user of another app does not find this app's users.
    other = AppApiClient(appclient, await create_app(admin))
    wx_b = ok_data(await other.appapi("AppGetTokenByWeiXin", WxOpenID="o-1"))["Data"]["Token"]
    hidden = await other.tokenapi(wx_b, "AppFindUser", Type="phone", **PHONE)
    assert error_code(hidden) == "InvalidParameterValue.ErrorUserNotExists"
    assert error_code(await client.appapi("AppFindUser", Type="phone", **PHONE)) == (
        "InvalidAction"
    )


async def test_password_guessing_is_locked_out(
    server: Ivcloud, client: AppApiClient, clock: OffsetClock
) -> None:
    await register_phone(client, server, clock)
    for _ in range(5):
        wrong = await client.appapi("AppGetToken", Type="phone", Password="guess guess", **PHONE)
        assert error_code(wrong) == "InvalidParameterValue.UserLoginFailed"
        assert wrong["msg"] == "wrong password"
    # Locked: even the right password is refused now, with the code clients handle.
    locked = await client.appapi("AppGetToken", Type="phone", Password=PW, **PHONE)
    assert error_code(locked) == "InvalidParameterValue.UserLoginFailed"
    assert "too many wrong passwords" in locked["msg"]
    # A verification-code login still works while the password is locked.
    code = await send_code(client, server, "login")
    ok_data(await client.appapi("AppGetToken", Type="phone", VerificationCode=code, **PHONE))
    clock.advance(15 * 60 + 1)  # the window passes
    await login(client, Type="phone", Password=PW, **PHONE)
