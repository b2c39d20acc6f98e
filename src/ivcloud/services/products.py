"""Products and their thing models.

Compiled thing models are cached in memory per product: the report hot path validates
against them without touching the database."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ivcloud.bus.events import EntityRemoved
from ivcloud.protocol.credentials import generate_product_id
from ivcloud.protocol.errors import ThingModelError
from ivcloud.protocol.thingmodel import ThingModel, load_standard_model, parse_thing_model
from ivcloud.services.errors import Conflict, InvalidInput, NotFound
from ivcloud.services.ports import Bus, Clock
from ivcloud.store.schema import Product

CATEGORIES = ("camera", "lock", "watch")
NET_TYPES = ("wifi", "4g", "ble")
CATEGORY_IDS = {"camera": "113", "lock": "595", "watch": "0"}


@dataclass(frozen=True, slots=True)
class ProductInfo:
    product_id: str
    name: str
    category: str
    net_type: str
    description: str
    created_ms: int
    has_thing_model: bool

    def to_api(self) -> dict[str, Any]:
        return {
            "ProductId": self.product_id,
            "Name": self.name,
            "Category": self.category,
            "NetType": self.net_type,
            "Description": self.description,
            "CreateTime": self.created_ms // 1000,
            "HasThingModel": self.has_thing_model,
        }


def _info(row: Product) -> ProductInfo:
    return ProductInfo(
        row.product_id,
        row.name,
        row.category,
        row.net_type,
        row.description,
        row.created_ms,
        row.thing_model is not None,
    )


class ProductService:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], clock: Clock, bus: Bus
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._bus = bus
        self._models: dict[str, ThingModel | None] = {}

    async def create(
        self, name: str, category: str, net_type: str = "wifi", description: str = ""
    ) -> ProductInfo:
        name = name.strip()
        if not 1 <= len(name) <= 64:
            raise InvalidInput("name must be 1-64 characters")
        if category not in CATEGORIES:
            raise InvalidInput(f"category must be one of {', '.join(CATEGORIES)}")
        if net_type not in NET_TYPES:
            raise InvalidInput(f"net type must be one of {', '.join(NET_TYPES)}")
        if len(description) > 1024:
            raise InvalidInput("description is longer than 1024 characters")
        for _ in range(5):
            row = Product(
                product_id=generate_product_id(),
                name=name,
                category=category,
                net_type=net_type,
                description=description,
                thing_model=None,
                created_ms=self._clock.now_ms(),
            )
            try:
                async with self._sessions.begin() as s:
                    s.add(row)
            except IntegrityError:
                continue
            self._models[row.product_id] = None
            return _info(row)
        raise Conflict("could not allocate a unique ProductId")  # pragma: no cover

    async def list(self) -> list[ProductInfo]:
        async with self._sessions() as s:
            rows = (await s.scalars(select(Product).order_by(Product.created_ms))).all()
        return [_info(r) for r in rows]

    async def get(self, product_id: str) -> ProductInfo:
        async with self._sessions() as s:
            row = await s.get(Product, product_id)
        if row is None:
            raise NotFound(f"product {product_id} does not exist")
        return _info(row)

    async def delete(self, product_id: str) -> None:
        async with self._sessions.begin() as s:
            row = await s.get(Product, product_id)
            if row is None:
                raise NotFound(f"product {product_id} does not exist")
            await s.delete(row)
        self._models.pop(product_id, None)
        self._bus.publish(EntityRemoved("product", product_id))

    async def import_thing_model(self, product_id: str, doc: object) -> ThingModel:
        """Validate and store a thing model; an invalid one is refused and the stored one
        is left untouched."""
        try:
            model = parse_thing_model(doc)
        except ThingModelError as exc:
            raise InvalidInput(f"invalid thing model: {exc}") from None
        exported = model.to_json()
        exported.setdefault("profile", {})["ProductId"] = product_id
        async with self._sessions.begin() as s:
            row = await s.get(Product, product_id)
            if row is None:
                raise NotFound(f"product {product_id} does not exist")
            if not exported["profile"].get("CategoryId"):
                exported["profile"]["CategoryId"] = CATEGORY_IDS[row.category]
            row.thing_model = exported
        self._models[product_id] = model
        return model

    async def import_standard_model(self, product_id: str, name: str) -> ThingModel:
        try:
            model = load_standard_model(name)  # type: ignore[arg-type]
        except (KeyError, ValueError, FileNotFoundError):
            raise InvalidInput(f"unknown standard model {name!r}") from None
        return await self.import_thing_model(product_id, model.to_json())

    async def thing_model_json(self, product_id: str) -> dict[str, Any]:
        async with self._sessions() as s:
            row = await s.get(Product, product_id)
        if row is None:
            raise NotFound(f"product {product_id} does not exist")
        if row.thing_model is None:
            raise NotFound(f"product {product_id} has no thing model")
        return row.thing_model

    async def thing_model(self, product_id: str) -> ThingModel | None:
        """The compiled model (cached); None when the product has none yet."""
        try:
            return self._models[product_id]
        except KeyError:
            pass
        async with self._sessions() as s:
            row = await s.get(Product, product_id)
        model = parse_thing_model(row.thing_model) if row and row.thing_model else None
        if row is not None:
            self._models[product_id] = model
        return model

    async def require_model(self, product_id: str) -> ThingModel:
        """The compiled model, for use-cases that validate against it: a product without
        one is the caller's input error (``InvalidInput``)."""
        model = await self.thing_model(product_id)
        if model is None:
            raise InvalidInput(f"product {product_id} has no thing model")
        return model

    def cached_model(self, product_id: str) -> ThingModel | None:
        return self._models.get(product_id)

    async def exists(self, product_id: str) -> bool:
        if product_id in self._models:
            return True
        async with self._sessions() as s:
            return await s.get(Product, product_id) is not None
