"""End users of an app and their login sessions (AccessTokens).

Tokens are 32 random bytes (URL-safe text); only their SHA-256 is stored, so a database
leak does not leak sessions.  Authenticated users are cached by token hash: every tokenapi
call authenticates, so a database round trip per call would dominate the App API's cost.
Everything that changes a user or a token in this process (update, revoke, revoke_all)
drops the cached entries at once; the periodic re-check is only a backstop (e.g. a token
deleted by another process), and it is spread out (jittered per entry) so a thousand
clients that logged in together do not all go back to the database in the same second."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ivcloud.services.errors import NotFound
from ivcloud.services.ports import Clock
from ivcloud.store.schema_app import AccessToken, User

TOKEN_TTL_MS = 7 * 24 * 3600 * 1000
#: Re-check a cached token with the database after this long (± a random quarter).
_CACHE_MS = 10 * 60 * 1000


@dataclass(frozen=True, slots=True)
class UserInfo:
    user_id: str
    app_id: str
    nick_name: str
    avatar: str
    country_code: str | None
    phone: str | None
    email: str | None
    wx_open_id: str | None
    has_password: bool
    created_ms: int

    def to_api(self) -> dict[str, Any]:
        """``AppGetUser`` ``Data`` (spec §2.1)."""
        return {
            "UserID": self.user_id,
            "NickName": self.nick_name,
            "Avatar": self.avatar,
            "CountryCode": self.country_code or "",
            "PhoneNumber": self.phone or "",
            "Email": self.email or "",
            "WxOpenID": self.wx_open_id or "",
            "HasPassword": 1 if self.has_password else 0,
            "HasWxOpenID": 1 if self.wx_open_id else 0,
        }


def user_info(row: User) -> UserInfo:
    return UserInfo(
        row.user_id,
        row.app_id,
        row.nick_name,
        row.avatar,
        row.country_code,
        row.phone,
        row.email,
        row.wx_open_id,
        row.password_hash is not None,
        row.created_ms,
    )


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_user_id() -> str:
    return secrets.token_hex(12)


class UserService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock
        self._auth_cache: dict[str, tuple[UserInfo, int, int]] = {}
        #: Called with ``(token_hash, user_id)`` when one token is revoked and with
        #: ``(None, user_id)`` when all of a user's are: long-lived sessions built on a
        #: token (push subscriptions) end with it instead of at their next heartbeat.
        self.revocation_listeners: list[Callable[[str | None, str], None]] = []

    async def create(self, app_id: str, **fields: Any) -> UserInfo:
        """Insert a user (``country_code``/``phone``, ``email``, ``wx_open_id``,
        ``password_hash``, ``nick_name``, ``avatar``); uniqueness per app is enforced by
        the database (IntegrityError is the caller's to map)."""
        now = self._clock.now_ms()
        row = User(
            user_id=new_user_id(),
            app_id=app_id,
            created_ms=now,
            updated_ms=now,
            nick_name=fields.pop("nick_name", "") or "",
            avatar=fields.pop("avatar", "") or "",
            **fields,
        )
        async with self._sessions.begin() as s:
            s.add(row)
        return user_info(row)

    async def get(self, user_id: str) -> UserInfo:
        async with self._sessions() as s:
            row = await s.get(User, user_id)
        if row is None:
            raise NotFound(f"user {user_id} does not exist")
        return user_info(row)

    async def find(self, app_id: str, **where: Any) -> User | None:
        """The row (with its password hash) matching all of ``where`` in this app."""
        q = select(User).where(User.app_id == app_id)
        for name, value in where.items():
            q = q.where(getattr(User, name) == value)
        async with self._sessions() as s:
            return await s.scalar(q)

    async def update(self, user_id: str, **values: Any) -> UserInfo:
        async with self._sessions.begin() as s:
            row = await s.get(User, user_id)
            if row is None:
                raise NotFound(f"user {user_id} does not exist")
            for name, value in values.items():
                setattr(row, name, value)
            row.updated_ms = self._clock.now_ms()
        self._forget_user(user_id)
        return user_info(row)

    async def issue_token(self, user: UserInfo) -> tuple[str, int]:
        """A new AccessToken and its expiry (unix seconds)."""
        token = secrets.token_urlsafe(32)
        now = self._clock.now_ms()
        expires = now + TOKEN_TTL_MS
        async with self._sessions.begin() as s:
            s.add(
                AccessToken(
                    token_hash=token_hash(token),
                    user_id=user.user_id,
                    expires_ms=expires,
                    created_ms=now,
                )
            )
        return token, expires // 1000

    async def authenticate(self, token: str) -> UserInfo | None:
        """The user of a valid, unexpired token; None otherwise."""
        now = self._clock.now_ms()
        key = token_hash(token)
        cached = self._auth_cache.get(key)
        if cached is not None:
            user, expires, recheck_at = cached
            if now < expires and now < recheck_at:
                return user
            self._auth_cache.pop(key, None)
        async with self._sessions() as s:
            row = await s.get(AccessToken, key)
            if row is None or row.expires_ms <= now:
                return None
            user_row = await s.get(User, row.user_id)
        if user_row is None:
            return None
        user = user_info(user_row)
        if len(self._auth_cache) > 100_000:
            self._auth_cache.clear()
        jitter = secrets.randbelow(_CACHE_MS // 2) - _CACHE_MS // 4
        self._auth_cache[key] = (user, row.expires_ms, now + _CACHE_MS + jitter)
        return user

    async def revoke(self, token: str) -> None:
        key = token_hash(token)
        cached = self._auth_cache.pop(key, None)
        async with self._sessions.begin() as s:
            user_id = await s.scalar(
                select(AccessToken.user_id).where(AccessToken.token_hash == key)
            )
            await s.execute(delete(AccessToken).where(AccessToken.token_hash == key))
        if user_id is None and cached is not None:
            user_id = cached[0].user_id
        if user_id is not None:
            self._revoked(key, user_id)

    async def revoke_all(self, user_id: str) -> None:
        self._forget_user(user_id)
        async with self._sessions.begin() as s:
            await s.execute(delete(AccessToken).where(AccessToken.user_id == user_id))
        self._revoked(None, user_id)

    def _revoked(self, key: str | None, user_id: str) -> None:
        for listener in self.revocation_listeners:
            listener(key, user_id)

    def _forget_user(self, user_id: str) -> None:
        for key in [k for k, v in self._auth_cache.items() if v[0].user_id == user_id]:
            self._auth_cache.pop(key, None)
