"""Action registry: each App API Action is a coroutine registered with the kind of
authentication it needs (``sign`` = appapi, ``token`` = tokenapi)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ivcloud.app import Ivcloud
    from ivcloud.services.apps import AppInfo
    from ivcloud.services.users import UserInfo

Auth = Literal["sign", "token"]


@dataclass(frozen=True, slots=True)
class Call:
    """One App API call: the resolved app, the user (tokenapi), and the flat params."""

    action: str
    request_id: str
    params: dict[str, Any]
    app: AppInfo
    user: UserInfo | None
    access_token: str | None
    instance: Ivcloud

    @property
    def me(self) -> UserInfo:
        """The calling user (tokenapi actions only)."""
        assert self.user is not None, "tokenapi action without a user"
        return self.user


Handler = Callable[[Call], Awaitable[dict[str, Any] | None]]


@dataclass(frozen=True, slots=True)
class Action:
    name: str
    auth: Auth
    handler: Handler


class ActionRegistry:
    def __init__(self) -> None:
        self._actions: dict[str, Action] = {}

    def action(self, name: str, auth: Auth) -> Callable[[Handler], Handler]:
        def add(fn: Handler) -> Handler:
            if name in self._actions:
                raise ValueError(f"action {name} registered twice")
            self._actions[name] = Action(name, auth, fn)
            return fn

        return add

    def get(self, name: str) -> Action | None:
        return self._actions.get(name)

    def names(self, auth: Auth | None = None) -> list[str]:
        return sorted(n for n, a in self._actions.items() if auth is None or a.auth == auth)
