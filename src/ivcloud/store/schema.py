"""The relational schema.  Times are integer milliseconds since the epoch (UTC) so SQLite
and PostgreSQL behave identically; JSON values are stored as JSON."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Product(Base):
    __tablename__ = "products"

    product_id: Mapped[str] = mapped_column(String(10), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(16))
    net_type: Mapped[str] = mapped_column(String(8))
    description: Mapped[str] = mapped_column(Text, default="")
    thing_model: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class Device(Base):
    __tablename__ = "devices"
    __table_args__ = (UniqueConstraint("product_id", "device_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    product_id: Mapped[str] = mapped_column(
        String(10), ForeignKey("products.product_id", ondelete="CASCADE")
    )
    device_name: Mapped[str] = mapped_column(String(48))
    secret: Mapped[str] = mapped_column(String(64))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    fw_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    info: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class PropertyLatest(Base):
    __tablename__ = "property_latest"

    device_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    prop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    ts_ms: Mapped[int] = mapped_column(BigInteger)


class PropertyHistory(Base):
    __tablename__ = "property_history"
    __table_args__ = (Index("ix_property_history_lookup", "device_id", "prop_id", "ts_ms"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    device_id: Mapped[int] = mapped_column(Integer, ForeignKey("devices.id", ondelete="CASCADE"))
    prop_id: Mapped[str] = mapped_column(String(64))
    value: Mapped[Any] = mapped_column(JSON)
    ts_ms: Mapped[int] = mapped_column(BigInteger)


class EventLog(Base):
    __tablename__ = "event_log"
    __table_args__ = (Index("ix_event_log_lookup", "device_id", "ts_ms"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    device_id: Mapped[int] = mapped_column(Integer, ForeignKey("devices.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(8))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    ts_ms: Mapped[int] = mapped_column(BigInteger)
    received_ms: Mapped[int] = mapped_column(BigInteger)


class PendingControl(Base):
    """Controls not yet acknowledged by the device; served in get_status_reply.data.control."""

    __tablename__ = "pending_controls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[int] = mapped_column(Integer, ForeignKey("devices.id", ondelete="CASCADE"))
    client_token: Mapped[str] = mapped_column(String(128))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class BindToken(Base):
    __tablename__ = "bind_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[int] = mapped_column(Integer, ForeignKey("devices.id", ondelete="CASCADE"))
    token: Mapped[str] = mapped_column(String(128), index=True)
    received_ms: Mapped[int] = mapped_column(BigInteger)


class Firmware(Base):
    __tablename__ = "firmware"
    __table_args__ = (UniqueConstraint("product_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    product_id: Mapped[str] = mapped_column(
        String(10), ForeignKey("products.product_id", ondelete="CASCADE")
    )
    version: Mapped[str] = mapped_column(String(32))
    filename: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    md5: Mapped[str] = mapped_column(String(32))
    object_key: Mapped[str] = mapped_column(String(255))
    created_ms: Mapped[int] = mapped_column(BigInteger)


class OtaJob(Base):
    __tablename__ = "ota_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    product_id: Mapped[str] = mapped_column(
        String(10), ForeignKey("products.product_id", ondelete="CASCADE")
    )
    firmware_id: Mapped[int] = mapped_column(Integer, ForeignKey("firmware.id", ondelete="CASCADE"))
    gray_percent: Mapped[int] = mapped_column(Integer, default=100)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class OtaTask(Base):
    """One device's part of an upgrade job: state pending → downloading → burning → done|fail."""

    __tablename__ = "ota_tasks"
    __table_args__ = (UniqueConstraint("job_id", "device_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(Integer, ForeignKey("ota_jobs.id", ondelete="CASCADE"))
    device_id: Mapped[int] = mapped_column(Integer, ForeignKey("devices.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    percent: Mapped[int] = mapped_column(Integer, default=0)
    result_code: Mapped[int] = mapped_column(Integer, default=0)
    result_msg: Mapped[str] = mapped_column(String(255), default="")
    updated_ms: Mapped[int] = mapped_column(BigInteger)
