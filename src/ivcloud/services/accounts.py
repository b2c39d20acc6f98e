"""Account use-cases of the App API (spec §2.1): register, log in (password, code, WeChat),
reset and change passwords, bind phone/email, find users.  Users belong to one app.

Passwords are hashed with argon2id (argon2-cffi) in a worker thread — a hash costs ~100 ms
at the default parameters and must not stall the event loop.  Changing or resetting a
password revokes every token of the user, so a stolen session ends with the password.

Error codes defined here (the spec documents none for these cases; same naming style):
``InvalidParameterValue.UserAlreadyExists`` (phone/email taken in this app),
``InvalidParameterValue.EmailInvalid``, ``InvalidParameterValue.PasswordInvalid`` (not 8–64
characters); see also the code errors in :mod:`ivcloud.services.codes`.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ivcloud.services.codes import (
    CodeSender,
    LogCodeSender,
    RoutingCodeSender,
    SmtpCodeSender,
    Target,
    VerificationCodes,
)
from ivcloud.services.errors import InvalidInput, ServiceError
from ivcloud.services.ports import Clock
from ivcloud.services.throttle import FailureLimit
from ivcloud.services.users import UserInfo, UserService, user_info

if TYPE_CHECKING:
    from ivcloud.config import Settings

PASSWORD_MIN: Final[int] = 8
PASSWORD_MAX: Final[int] = 64
_EMAIL = re.compile(r"[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+")
_DIGITS = re.compile(r"[0-9]+")
_TAKEN: Final[str] = "this phone number or email belongs to a user already"


#: A password login is refused after this many wrong passwords for one account within the
#: window (a code login still works: it has its own attempt limit).
LOGIN_FAILURES_MAX = 5
LOGIN_FAILURES_WINDOW_MS = 15 * 60 * 1000

class UserNotExists(ServiceError):
    code = "InvalidParameterValue.ErrorUserNotExists"


class LoginFailed(ServiceError):
    code = "InvalidParameterValue.UserLoginFailed"


class UserAlreadyExists(ServiceError):
    code = "InvalidParameterValue.UserAlreadyExists"


class PhoneNumberInvalid(ServiceError):
    code = "InvalidParameterValue.PhoneNumberInvalid"


class EmailInvalid(ServiceError):
    code = "InvalidParameterValue.EmailInvalid"


class PasswordInvalid(ServiceError):
    code = "InvalidParameterValue.PasswordInvalid"


class CodeRequired(ServiceError):
    code = "ErrorRequiredParamNotFound"


@dataclass(frozen=True, slots=True)
class Identity:
    """A phone number or an email address that names a user of an app."""

    kind: Literal["phone", "email"]
    country_code: str = ""
    phone: str = ""
    email: str = ""

    @classmethod
    def of_phone(cls, country_code: str, number: str) -> Identity:
        """Digits only (a leading ``+`` on the country code is tolerated); E.164 allows 15
        digits in all; mainland China (86) numbers are 11 digits starting with 1."""
        cc = country_code.strip().removeprefix("+")
        number = number.strip()
        if not (_DIGITS.fullmatch(cc) and _DIGITS.fullmatch(number)):
            raise PhoneNumberInvalid("the phone number must be digits")
        if not (1 <= len(cc) <= 4 and cc[0] != "0" and 4 <= len(number) <= 15 - len(cc)):
            raise PhoneNumberInvalid("the phone number has a wrong length")
        if cc == "86" and not (len(number) == 11 and number[0] == "1"):
            raise PhoneNumberInvalid("a +86 number has 11 digits and starts with 1")
        return cls("phone", country_code=cc, phone=number)

    @classmethod
    def of_email(cls, address: str) -> Identity:
        """Compared case-insensitively (stored lower-case), as mail users expect."""
        address = address.strip().lower()
        if len(address) > 254 or _EMAIL.fullmatch(address) is None:
            raise EmailInvalid("the email address is not valid")
        return cls("email", email=address)

    @property
    def target(self) -> Target:
        if self.kind == "phone":
            return Target.phone(self.country_code, self.phone)
        return Target.email(self.email)

    @property
    def columns(self) -> dict[str, str]:
        if self.kind == "phone":
            return {"country_code": self.country_code, "phone": self.phone}
        return {"email": self.email}


def check_password(password: str) -> None:
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise PasswordInvalid(f"the password must be {PASSWORD_MIN}-{PASSWORD_MAX} characters")


class Passwords:
    """argon2id hashing off the event loop.  Parameters are configurable so tests can use
    cheap ones; hashes made with other parameters are upgraded at the next login."""

    def __init__(self, *, time_cost: int = 3, memory_kib: int = 65536, parallelism: int = 4):
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism
        )

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, hashed: str, password: str) -> bool:
        def run() -> bool:
            try:
                return self._hasher.verify(hashed, password)
            except (VerificationError, InvalidHashError):
                return False

        return await asyncio.to_thread(run)

    def needs_rehash(self, hashed: str) -> bool:
        return self._hasher.check_needs_rehash(hashed)


class AccountService:
    def __init__(
        self,
        users: UserService,
        codes: VerificationCodes,
        passwords: Passwords,
        clock: Clock,
        *,
        login_failures: FailureLimit | None = None,
    ) -> None:
        self.users = users
        self.codes = codes
        self.passwords = passwords
        self._clock = clock
        #: Wrong passwords per (app, account): the code stays ``UserLoginFailed`` (what
        #: clients already handle), the message says when to try again.
        self.login_failures = login_failures or FailureLimit(
            LOGIN_FAILURES_MAX, LOGIN_FAILURES_WINDOW_MS
        )

    async def _find(self, app_id: str, who: Identity) -> UserInfo | None:
        row = await self.users.find(app_id, **who.columns)
        return None if row is None else user_info(row)

    async def _must_find(self, app_id: str, who: Identity) -> UserInfo:
        user = await self._find(app_id, who)
        if user is None:
            raise UserNotExists("the user does not exist")
        return user

    # -- codes -----------------------------------------------------------------------------

    async def send_code(self, app_id: str, who: Identity, purpose: str) -> None:
        """``register`` needs a free identity, ``resetpass``/``login`` an existing user:
        refusing early spares a message that could not be used anyway."""
        exists = await self._find(app_id, who) is not None
        if purpose == "register" and exists:
            raise UserAlreadyExists(_TAKEN)
        if purpose != "register" and not exists:
            raise UserNotExists("the user does not exist")
        await self.codes.send(app_id, who.target, purpose)

    async def check_code(self, app_id: str, who: Identity, purpose: str, code: str) -> None:
        """Check without spending (the client checks on one screen and uses the code on
        the next)."""
        await self.codes.check(app_id, who.target, purpose, code, consume=False)

    # -- log in ----------------------------------------------------------------------------

    async def login_wechat(
        self, app_id: str, open_id: str, nick_name: str, avatar: str
    ) -> tuple[str, int]:
        """Log in by WeChat openid; the first call registers the user.  NickName/Avatar
        are taken only then: later the user's own edits (AppUpdateUser) win."""
        row = await self.users.find(app_id, wx_open_id=open_id)
        if row is not None:
            return await self.users.issue_token(user_info(row))
        try:
            user = await self.users.create(
                app_id, wx_open_id=open_id, nick_name=nick_name, avatar=avatar
            )
        except IntegrityError:  # a concurrent first login created it
            row = await self.users.find(app_id, wx_open_id=open_id)
            if row is None:
                raise
            user = user_info(row)
        return await self.users.issue_token(user)

    async def login(
        self, app_id: str, who: Identity, *, password: str | None, code: str | None
    ) -> tuple[str, int]:
        row = await self.users.find(app_id, **who.columns)
        if row is None:
            raise UserNotExists("the user does not exist")
        user = user_info(row)
        if code is not None:
            await self.codes.check(app_id, who.target, "login", code, consume=True)
            return await self.users.issue_token(user)
        key = f"{app_id}\0{who.target.key}"
        wait_ms = self.login_failures.locked_for_ms(key, self._clock.now_ms())
        if wait_ms:
            raise LoginFailed(
                f"too many wrong passwords: try again in {(wait_ms + 999) // 1000} s"
                " or log in with a verification code"
            )
        if (
            password is None
            or row.password_hash is None
            or not await self.passwords.verify(row.password_hash, password)
        ):
            self.login_failures.failed(key, self._clock.now_ms())
            raise LoginFailed("wrong password")
        self.login_failures.succeeded(key)
        if self.passwords.needs_rehash(row.password_hash):
            await self.users.update(user.user_id, password_hash=await self.passwords.hash(password))
        return await self.users.issue_token(user)

    # -- register, passwords -----------------------------------------------------------------

    async def register(self, app_id: str, who: Identity, code: str, password: str) -> UserInfo:
        check_password(password)
        if await self._find(app_id, who) is not None:
            raise UserAlreadyExists(_TAKEN)
        await self.codes.check(app_id, who.target, "register", code, consume=True)
        hashed = await self.passwords.hash(password)
        try:
            return await self.users.create(app_id, password_hash=hashed, **who.columns)
        except IntegrityError:
            raise UserAlreadyExists(_TAKEN) from None

    async def reset_password(self, app_id: str, who: Identity, code: str, password: str) -> None:
        check_password(password)
        user = await self._must_find(app_id, who)
        await self.codes.check(app_id, who.target, "resetpass", code, consume=True)
        await self._set_password(user.user_id, password)

    async def change_password(self, user: UserInfo, old: str, new: str) -> None:
        """Needs the current password; every session of the user ends (also this one)."""
        check_password(new)
        row = await self.users.find(user.app_id, user_id=user.user_id)
        if (
            row is None
            or row.password_hash is None
            or not await self.passwords.verify(row.password_hash, old)
        ):
            raise LoginFailed("the current password is wrong")
        await self._set_password(user.user_id, new)

    async def _set_password(self, user_id: str, password: str) -> None:
        await self.users.update(user_id, password_hash=await self.passwords.hash(password))
        await self.users.revoke_all(user_id)

    # -- profile -----------------------------------------------------------------------------

    async def update_profile(
        self,
        user: UserInfo,
        *,
        nick_name: str | None = None,
        avatar: str | None = None,
        bind: Identity | None = None,
        code: str | None = None,
        new_password: str | None = None,
    ) -> UserInfo:
        """Change NickName/Avatar; bind (or replace) a phone number or email proven by a
        ``register`` code sent to it.  ``new_password`` only sets a *first* password (a
        WeChat user adding a phone login): changing one needs the old password
        (:meth:`change_password`), or a stolen token could take the account over."""
        values: dict[str, Any] = {}
        if nick_name is not None:
            values["nick_name"] = nick_name
        if avatar is not None:
            values["avatar"] = avatar
        if new_password is not None:
            check_password(new_password)
            if user.has_password:
                raise InvalidInput("the password is set already: use AppUserResetPassword")
        if bind is not None:
            other = await self._find(user.app_id, bind)
            if other is not None and other.user_id != user.user_id:
                raise UserAlreadyExists(_TAKEN)
            if code is None:
                raise CodeRequired("binding needs a VerificationCode")
            await self.codes.check(user.app_id, bind.target, "register", code, consume=True)
            values.update(bind.columns)
        if new_password is not None:
            values["password_hash"] = await self.passwords.hash(new_password)
        if not values:
            return user
        try:
            updated = await self.users.update(user.user_id, **values)
        except IntegrityError:
            raise UserAlreadyExists(_TAKEN) from None
        return updated

    async def bind_wechat(self, user: UserInfo, open_id: str) -> UserInfo:
        """Attach a WeChat openid to a logged-in user (``AppUpdateUserByWeiXin``), so the
        next ``AppGetTokenByWeiXin`` with it logs into this account.  An openid another
        user of the app has is refused."""
        other = await self.users.find(user.app_id, wx_open_id=open_id)
        if other is not None and other.user_id != user.user_id:
            raise UserAlreadyExists("this WeChat account belongs to another user")
        try:
            return await self.users.update(user.user_id, wx_open_id=open_id)
        except IntegrityError:
            raise UserAlreadyExists("this WeChat account belongs to another user") from None

    async def find_user(self, app_id: str, who: Identity) -> UserInfo:
        return await self._must_find(app_id, who)


def build_accounts(
    settings: Settings,
    users: UserService,
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    *,
    key: bytes,
) -> AccountService:
    """The account service as the settings describe it (one line in the composition root).
    Email codes go through SMTP when ``smtp_url`` is set; everything else through the
    development sender."""
    dev = LogCodeSender(echo=settings.verification_code_echo)
    sender: CodeSender = dev
    if settings.smtp_url:
        sender = RoutingCodeSender(
            phone=dev, email=SmtpCodeSender(settings.smtp_url, settings.smtp_from)
        )
    codes = VerificationCodes(
        sessions,
        clock,
        sender,
        key=key,
        ttl_ms=settings.verification_code_ttl_s * 1000,
        resend_ms=settings.verification_code_resend_s * 1000,
        max_attempts=settings.verification_code_max_attempts,
    )
    passwords = Passwords(
        time_cost=settings.password_hash_time_cost,
        memory_kib=settings.password_hash_memory_kib,
        parallelism=settings.password_hash_parallelism,
    )
    return AccountService(users, codes, passwords, clock)
