"""Per-user app settings (``AppGetUserSetting`` / ``AppUpdateUserSetting``).

A user who never changed a setting has no row: reads answer :data:`DEFAULTS`, the first
update writes a full row (defaults + the change), later updates change only the fields
sent.  Values are validated by :func:`ivcloud.protocol.user_extras.settings_patch` at the
edge; this service trusts its wire-named patch."""

from __future__ import annotations

from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ivcloud.services.ports import Clock
from ivcloud.store.schema_user_extras import UserSetting

#: What the apps get before the user changed anything.  WeChat push is off (ivcloud sends
#: no WeChat messages), the message-centre pushes on, Celsius, no region (the apps then show
#: the phone's own time zone; an empty string is what their models default to).
DEFAULTS: Final[dict[str, int | str]] = {
    "EnableWechatPush": 0,
    "EnableDeviceMessagePush": 1,
    "EnableFamilyMessagePush": 1,
    "EnableNotifyMessagePush": 1,
    "TemperatureUnit": "C",
    "Region": "",
}
_COLUMNS: Final[dict[str, str]] = {
    "EnableWechatPush": "enable_wechat_push",
    "EnableDeviceMessagePush": "enable_device_message_push",
    "EnableFamilyMessagePush": "enable_family_message_push",
    "EnableNotifyMessagePush": "enable_notify_message_push",
    "TemperatureUnit": "temperature_unit",
    "Region": "region",
}


def _to_api(row: UserSetting) -> dict[str, int | str]:
    return {name: getattr(row, column) for name, column in _COLUMNS.items()}


class UserSettingsService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    async def get(self, user_id: str) -> dict[str, int | str]:
        """The ``UserSetting`` object of the response."""
        async with self._sessions() as s:
            row = await s.get(UserSetting, user_id)
        return dict(DEFAULTS) if row is None else _to_api(row)

    async def update(self, user_id: str, patch: dict[str, int | str]) -> dict[str, int | str]:
        """Apply wire-named changes; returns the settings after the update."""
        unknown = set(patch) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}")
        async with self._sessions.begin() as s:
            row = await s.get(UserSetting, user_id, with_for_update=True)
            if row is None:
                values = {_COLUMNS[k]: v for k, v in DEFAULTS.items()}
                row = UserSetting(user_id=user_id, updated_ms=0, **values)
                s.add(row)
            for name, value in patch.items():
                setattr(row, _COLUMNS[name], value)
            row.updated_ms = self._clock.now_ms()
        return _to_api(row)
