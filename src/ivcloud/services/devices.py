"""Devices: identity (ProductId + DeviceName + DeviceSecret), presence and system info.

Device records are cached by ClientId so MQTT authentication and every message after it
resolve a device without a database round trip."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ivcloud.bus.events import BusEvent, DeviceOnline, EntityRemoved
from ivcloud.protocol.credentials import generate_device_secret
from ivcloud.services.errors import Conflict, InvalidInput, NotFound
from ivcloud.services.ports import Bus, Clock
from ivcloud.services.products import ProductService
from ivcloud.services.writer import BatchWriter, WriteItem
from ivcloud.store.schema import Device

# Tencent's rule for device names: 1-48 of letters, digits and ``:_-.@``.
DEVICE_NAME_RE = re.compile(r"^[A-Za-z0-9:_\-.@]{1,48}$")
PRODUCT_ID_LEN = 10


@dataclass(slots=True)
class DeviceRecord:
    """The cached, mutable view of one device."""

    id: int
    product_id: str
    device_name: str
    secret: str
    created_ms: int
    online: bool = False
    last_seen_ms: int | None = None
    last_ip: str | None = None
    fw_version: str | None = None
    info: dict[str, Any] | None = None

    @property
    def client_id(self) -> str:
        return self.product_id + self.device_name

    def to_api(self, *, with_secret: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ProductId": self.product_id,
            "DeviceName": self.device_name,
            "Online": 1 if self.online else 0,
            "LastSeen": None if self.last_seen_ms is None else self.last_seen_ms // 1000,
            "LastIp": self.last_ip,
            "FirmwareVersion": self.fw_version,
            "DeviceInfo": self.info or {},
            "CreateTime": self.created_ms // 1000,
        }
        if with_secret:
            out["DeviceSecret"] = self.secret
        return out


def _record(row: Device) -> DeviceRecord:
    return DeviceRecord(
        row.id,
        row.product_id,
        row.device_name,
        row.secret,
        row.created_ms,
        row.online,
        row.last_seen_ms,
        row.last_ip,
        row.fw_version,
        row.info,
    )


def split_client_id(client_id: str) -> tuple[str, str]:
    return client_id[:PRODUCT_ID_LEN], client_id[PRODUCT_ID_LEN:]


class DeviceService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        products: ProductService,
        bus: Bus,
        clock: Clock,
        writer: BatchWriter,
    ) -> None:
        self._sessions = sessions
        self._writer = writer
        self._products = products
        self._bus = bus
        self._clock = clock
        self._cache: dict[str, DeviceRecord] = {}

    async def reset_presence(self) -> None:
        """At start-up no device is connected to this instance yet."""
        async with self._sessions.begin() as s:
            await s.execute(update(Device).where(Device.online.is_(True)).values(online=False))

    async def create(self, product_id: str, device_name: str) -> DeviceRecord:
        if not DEVICE_NAME_RE.match(device_name):
            raise InvalidInput("DeviceName must be 1-48 characters of A-Z a-z 0-9 : _ - . @")
        if not await self._products.exists(product_id):
            raise NotFound(f"product {product_id} does not exist")
        row = Device(
            product_id=product_id,
            device_name=device_name,
            secret=generate_device_secret(),
            created_ms=self._clock.now_ms(),
            online=False,
        )
        try:
            async with self._sessions.begin() as s:
                s.add(row)
        except IntegrityError:
            raise Conflict(f"device {product_id}/{device_name} already exists") from None
        rec = _record(row)
        self._cache[rec.client_id] = rec
        return rec

    async def find(self, product_id: str, device_name: str) -> DeviceRecord | None:
        key = product_id + device_name
        rec = self._cache.get(key)
        if rec is not None:
            return rec
        async with self._sessions() as s:
            row = await s.scalar(
                select(Device).where(
                    Device.product_id == product_id, Device.device_name == device_name
                )
            )
        if row is None:
            return None
        rec = _record(row)
        self._cache[key] = rec
        return rec

    async def get(self, product_id: str, device_name: str) -> DeviceRecord:
        rec = await self.find(product_id, device_name)
        if rec is None:
            raise NotFound(f"device {product_id}/{device_name} does not exist")
        return rec

    def cached(self, client_id: str) -> DeviceRecord | None:
        return self._cache.get(client_id)

    async def list(
        self, product_id: str, offset: int = 0, limit: int = 100
    ) -> tuple[int, list[DeviceRecord]]:
        if not await self._products.exists(product_id):
            raise NotFound(f"product {product_id} does not exist")
        async with self._sessions() as s:
            total = await s.scalar(
                select(func.count()).select_from(Device).where(Device.product_id == product_id)
            )
            rows = (
                await s.scalars(
                    select(Device)
                    .where(Device.product_id == product_id)
                    .order_by(Device.id)
                    .offset(offset)
                    .limit(limit)
                )
            ).all()
        out = []
        for row in rows:
            cached = self._cache.get(row.product_id + row.device_name)
            out.append(cached if cached is not None else _record(row))
        return int(total or 0), out

    async def delete(self, product_id: str, device_name: str) -> DeviceRecord:
        rec = await self.get(product_id, device_name)
        async with self._sessions.begin() as s:
            row = await s.get(Device, rec.id)
            if row is not None:
                await s.delete(row)
        self._cache.pop(rec.client_id, None)
        self._bus.publish(EntityRemoved("device", rec.client_id))
        return rec

    def on_entity_removed(self, event: BusEvent) -> None:
        """A deleted product took its devices with it (database cascade): forget them, or
        they could still authenticate from the cache."""
        if isinstance(event, EntityRemoved) and event.kind == "product":
            for key in [k for k, r in self._cache.items() if r.product_id == event.key]:
                del self._cache[key]

    async def reset_secret(self, product_id: str, device_name: str) -> DeviceRecord:
        rec = await self.get(product_id, device_name)
        secret = generate_device_secret()
        async with self._sessions.begin() as s:
            await s.execute(update(Device).where(Device.id == rec.id).values(secret=secret))
        rec.secret = secret
        return rec

    async def set_presence(self, rec: DeviceRecord, online: bool, ip: str | None = None) -> None:
        """Presence is authoritative in memory (and announced at once); the database copy
        is written by the batch writer."""
        now = self._clock.now_ms()
        rec.online = online
        rec.last_seen_ms = now
        if ip is not None:
            rec.last_ip = ip
        self._bus.publish(DeviceOnline(rec.product_id, rec.device_name, online, now))
        await self._writer.submit(WriteItem(rec.id, now, presence=(online, now, ip)))

    async def warm_cache(self, limit: int = 200_000) -> int:
        """Load device records at start-up so a reconnect storm authenticates from memory;
        skipped for fleets larger than ``limit`` (they fill the cache lazily)."""
        async with self._sessions() as s:
            count = int(await s.scalar(select(func.count()).select_from(Device)) or 0)
            if count > limit:
                return 0
            rows = (await s.scalars(select(Device))).all()
        for row in rows:
            self._cache.setdefault(row.product_id + row.device_name, _record(row))
        return len(rows)

    def touch(self, rec: DeviceRecord) -> None:
        """Last-seen in memory on every message; persisted with presence changes."""
        rec.last_seen_ms = self._clock.now_ms()

    async def save_info(self, rec: DeviceRecord, info: dict[str, Any]) -> None:
        fw = info.get("fw_ver")
        rec.info = info
        values: dict[str, Any] = {"info": info}
        if isinstance(fw, str) and fw:
            rec.fw_version = fw[:32]
            values["fw_version"] = rec.fw_version
        async with self._sessions.begin() as s:
            await s.execute(update(Device).where(Device.id == rec.id).values(**values))

    async def save_fw_version(self, rec: DeviceRecord, version: str) -> None:
        rec.fw_version = version
        async with self._sessions.begin() as s:
            await s.execute(update(Device).where(Device.id == rec.id).values(fw_version=version))
