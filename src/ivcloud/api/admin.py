"""Admin authentication of the console API: ``Authorization: Bearer <admin token>``."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

from fastapi import Header, HTTPException

if TYPE_CHECKING:
    from ivcloud.app import Ivcloud


def admin_guard(instance: Ivcloud) -> Callable[[str | None], None]:
    def require_admin(authorization: Annotated[str | None, Header()] = None) -> None:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), instance.admin_token.encode()
        ):
            raise HTTPException(
                401, "missing or wrong admin token", headers={"WWW-Authenticate": "Bearer"}
            )

    return require_admin
