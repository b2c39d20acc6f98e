"""Issuing ``ShareToken`` rows, shared by family invitations and device shares: one random
token, one expiry rule, one check that an addressed recipient is a user of the same app."""

from __future__ import annotations

import secrets

from sqlalchemy.ext.asyncio import AsyncSession

from ivcloud.services.family_types import UserNotExists
from ivcloud.services.users import UserInfo
from ivcloud.store.schema_app import ShareToken, User


async def add_share_token(
    s: AsyncSession,
    *,
    kind: str,
    sender: UserInfo,
    family_id: str,
    now_ms: int,
    ttl_ms: int,
    to_user_id: str | None = None,
    device_id: int | None = None,
    context: str = "",
) -> tuple[str, int]:
    """Add the row in the caller's transaction; returns the token and its expiry (ms)."""
    if to_user_id is not None:
        target = await s.get(User, to_user_id)
        if target is None or target.app_id != sender.app_id:
            raise UserNotExists("the invited user does not exist")
    token = secrets.token_hex(16)
    s.add(
        ShareToken(
            token=token,
            kind=kind,
            from_user_id=sender.user_id,
            family_id=family_id,
            device_id=device_id,
            context=context,
            to_user_id=to_user_id,
            created_ms=now_ms,
            expires_ms=now_ms + ttl_ms,
        )
    )
    return token, now_ms + ttl_ms
