"""Apps: the branded apps / mini-programs that call the App API, each with an AppKey and
AppSecret and the products its users may bind and control."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ivcloud.bus.events import EntityRemoved
from ivcloud.services.errors import InvalidInput, NotFound
from ivcloud.services.ports import Bus, Clock
from ivcloud.services.products import ProductService
from ivcloud.store.schema_app import App, AppProduct


@dataclass(frozen=True, slots=True)
class AppInfo:
    app_id: str
    name: str
    app_key: str
    app_secret: str
    created_ms: int
    product_ids: tuple[str, ...]

    def to_api(self, *, with_secret: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "AppId": self.app_id,
            "Name": self.name,
            "AppKey": self.app_key,
            "ProductIds": list(self.product_ids),
            "CreateTime": self.created_ms // 1000,
        }
        if with_secret:
            out["AppSecret"] = self.app_secret
        return out


class AppService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        products: ProductService,
        clock: Clock,
        bus: Bus,
    ) -> None:
        self._sessions = sessions
        self._bus = bus
        self._products = products
        self._clock = clock
        self._by_key: dict[str, AppInfo] = {}
        self._by_id: dict[str, AppInfo] = {}

    async def create(self, name: str) -> AppInfo:
        name = name.strip()
        if not 1 <= len(name) <= 64:
            raise InvalidInput("name must be 1-64 characters")
        row = App(
            app_id="app_" + secrets.token_hex(8),
            name=name,
            app_key=secrets.token_hex(12),
            app_secret=secrets.token_urlsafe(24),
            created_ms=self._clock.now_ms(),
        )
        async with self._sessions.begin() as s:
            s.add(row)
        return AppInfo(row.app_id, name, row.app_key, row.app_secret, row.created_ms, ())

    async def _load(self, s: AsyncSession, row: App) -> AppInfo:
        pids = (
            await s.scalars(
                select(AppProduct.product_id)
                .where(AppProduct.app_id == row.app_id)
                .order_by(AppProduct.product_id)
            )
        ).all()
        return AppInfo(
            row.app_id, row.name, row.app_key, row.app_secret, row.created_ms, tuple(pids)
        )

    async def get(self, app_id: str) -> AppInfo:
        """Cached: every tokenapi call resolves its user's app."""
        info = self._by_id.get(app_id)
        if info is not None:
            return info
        async with self._sessions() as s:
            row = await s.get(App, app_id)
            if row is None:
                raise NotFound(f"app {app_id} does not exist")
            info = await self._load(s, row)
        self._by_id[app_id] = info
        return info

    def _forget(self) -> None:
        self._by_key.clear()
        self._by_id.clear()

    async def list(self) -> list[AppInfo]:
        async with self._sessions() as s:
            rows = (await s.scalars(select(App).order_by(App.created_ms))).all()
            return [await self._load(s, r) for r in rows]

    async def by_key(self, app_key: str) -> AppInfo | None:
        """Cached: every signed request resolves its AppKey."""
        info = self._by_key.get(app_key)
        if info is not None:
            return info
        async with self._sessions() as s:
            row = await s.scalar(select(App).where(App.app_key == app_key))
            if row is None:
                return None
            info = await self._load(s, row)
        self._by_key[app_key] = info
        return info

    async def link_product(self, app_id: str, product_id: str) -> AppInfo:
        await self.get(app_id)
        if not await self._products.exists(product_id):
            raise NotFound(f"product {product_id} does not exist")
        try:
            async with self._sessions.begin() as s:
                s.add(AppProduct(app_id=app_id, product_id=product_id))
        except IntegrityError:
            pass  # already linked: linking is idempotent
        self._forget()
        return await self.get(app_id)

    async def unlink_product(self, app_id: str, product_id: str) -> AppInfo:
        async with self._sessions.begin() as s:
            await s.execute(
                delete(AppProduct).where(
                    AppProduct.app_id == app_id, AppProduct.product_id == product_id
                )
            )
        self._forget()
        return await self.get(app_id)

    async def delete(self, app_id: str) -> None:
        async with self._sessions.begin() as s:
            row = await s.get(App, app_id)
            if row is None:
                raise NotFound(f"app {app_id} does not exist")
            await s.delete(row)
        self._forget()
        self._bus.publish(EntityRemoved("app", app_id))

    async def links(self, app_id: str, product_id: str) -> bool:
        info = await self.get(app_id)
        return product_id in info.product_ids
