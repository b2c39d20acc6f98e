"""Per-app global configuration: key/value strings set by the maker (console API, CLI) and
read by the app with ``AppGetGlobalConfig`` — e.g. ``RegionListCN`` / ``RegionListEN``, the
time-zone lists the official apps show (their ``Value`` is a JSON text the app parses).

Keys not set are left out of the answer (the apps index ``Configs`` by position, so they
must not be sent keys they do not know either way)."""

from __future__ import annotations

from typing import Final

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ivcloud.protocol.user_extras import CONFIG_KEY_MAX
from ivcloud.services.errors import InvalidInput, NotFound
from ivcloud.services.ports import Clock
from ivcloud.store.schema_user_extras import AppGlobalConfig

VALUE_MAX: Final[int] = 64 * 1024
MAX_KEYS_PER_APP: Final[int] = 200


class GlobalConfigService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    async def set(self, app_id: str, key: str, value: str) -> None:
        """Create or replace one key (the key is validated by the caller's parser)."""
        if not 1 <= len(key) <= CONFIG_KEY_MAX:
            raise InvalidInput(f"a config key is 1-{CONFIG_KEY_MAX} characters")
        if len(value) > VALUE_MAX:
            raise InvalidInput(f"a config value is at most {VALUE_MAX} characters")
        now = self._clock.now_ms()
        async with self._sessions.begin() as s:
            row = await s.get(AppGlobalConfig, (app_id, key))
            if row is not None:
                row.value = value
                row.updated_ms = now
                return
            count = await s.scalar(
                select(func.count())
                .select_from(AppGlobalConfig)
                .where(AppGlobalConfig.app_id == app_id)
            )
            if int(count or 0) >= MAX_KEYS_PER_APP:
                raise InvalidInput(f"an app has at most {MAX_KEYS_PER_APP} config keys")
            s.add(AppGlobalConfig(app_id=app_id, key=key, value=value, updated_ms=now))

    async def delete(self, app_id: str, key: str) -> None:
        async with self._sessions.begin() as s:
            row = await s.get(AppGlobalConfig, (app_id, key))
            if row is None:
                raise NotFound(f"config key {key} is not set")
            await s.delete(row)

    async def all(self, app_id: str) -> dict[str, str]:
        async with self._sessions() as s:
            rows = await s.execute(
                select(AppGlobalConfig.key, AppGlobalConfig.value)
                .where(AppGlobalConfig.app_id == app_id)
                .order_by(AppGlobalConfig.key)
            )
            return {k: v for k, v in rows.all()}

    async def get_many(self, app_id: str, keys: list[str]) -> list[tuple[str, str]]:
        """``(key, value)`` of the keys that are set, in the order asked."""
        async with self._sessions() as s:
            rows = await s.execute(
                select(AppGlobalConfig.key, AppGlobalConfig.value).where(
                    AppGlobalConfig.app_id == app_id, AppGlobalConfig.key.in_(keys)
                )
            )
            found = {k: v for k, v in rows.all()}
        return [(k, found[k]) for k in keys if k in found]
