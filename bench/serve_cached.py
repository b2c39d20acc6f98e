"""Run ``ivcloud serve`` with two in-memory caches patched in (bench experiment only).

    .venv/bin/python bench/serve_cached.py serve --data-dir D ...   # same arguments as ivcloud

What-if for ``bench/app_api.py --cached-experiment``: how much of the App API's cost are the
per-request database round trips that never change between requests?

* ``AppService.get(app_id)`` (2 queries: the app row + its linked products; called by the
  router for every tokenapi request and again by ``AccessService.product_ids`` for every
  device access check) is memoized per app_id; ``link_product``, ``unlink_product`` and
  ``delete`` clear the memo (the existing ``by_key`` cache is invalidated the same way).
* ``AccessService.family_role(user, family_id)`` (1 query per family/device check) is
  memoized for *positive* answers only (a role, never "not a member"), and the memo is
  cleared by every ``FamilyService`` method that can remove a membership (``delete_member``,
  ``exit_family``, ``delete_family``). Joining needs no invalidation since "not a member" is
  never cached. Single-instance semantics only (scale-out would need bus invalidation).

Nothing in ``src/`` changes; this is an estimate of the gain, not the implementation.
"""

from __future__ import annotations

import functools
import sys
from typing import Any


def patch() -> None:
    from ivcloud.services.access import AccessService
    from ivcloud.services.apps import AppService
    from ivcloud.services.families import FamilyService

    app_memo: dict[str, Any] = {}
    orig_get = AppService.get

    async def get(self: AppService, app_id: str) -> Any:
        info = app_memo.get(app_id)
        if info is None:
            info = await orig_get(self, app_id)
            app_memo[app_id] = info
        return info

    AppService.get = get  # type: ignore[method-assign]

    def clearing(method: Any, memo: dict[Any, Any]) -> Any:
        @functools.wraps(method)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await method(*args, **kwargs)
            finally:
                memo.clear()

        return wrapper

    for name in ("link_product", "unlink_product", "delete"):
        setattr(AppService, name, clearing(getattr(AppService, name), app_memo))

    role_memo: dict[tuple[str, str, str], int] = {}
    orig_role = AccessService.family_role

    async def family_role(self: AccessService, user: Any, family_id: str) -> int | None:
        key = (user.user_id, user.app_id, family_id)
        role = role_memo.get(key)
        if role is None:
            role = await orig_role(self, user, family_id)
            if role is not None:
                role_memo[key] = role
        return role

    AccessService.family_role = family_role  # type: ignore[method-assign]
    for name in ("delete_member", "exit_family", "delete_family"):
        setattr(FamilyService, name, clearing(getattr(FamilyService, name), role_memo))


def main() -> None:
    patch()
    from ivcloud.cli import main as ivcloud_main

    sys.argv = ["ivcloud", *sys.argv[1:]]
    ivcloud_main()


if __name__ == "__main__":
    main()
