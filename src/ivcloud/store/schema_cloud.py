"""Schema of cloud storage: the index of what devices uploaded (the bytes live in the object
store). Same conventions as ``schema``: integer milliseconds, JSON as JSON.

Rows cascade with their device, so a deleted device's clips vanish from every query at
once. Uniqueness is what makes uploads idempotent: a segment is (device, channel, start),
an event is (device, channel, event id, start), an init segment is (device, sha256).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from ivcloud.store.schema import Base


class CsInit(Base):
    """An fMP4 init segment, content-addressed: segments name it by its SHA-256."""

    __tablename__ = "cs_inits"

    device_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    object_key: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class CsSegment(Base):
    """One fMP4 media segment (a GOP or more): ``[start_ms, end_ms)`` in wall-clock time as
    the device declared it, ``duration_ms`` as measured from its sample tables."""

    __tablename__ = "cs_segments"
    __table_args__ = (
        UniqueConstraint("device_id", "channel", "start_ms"),
        Index("ix_cs_segments_end_ms", "end_ms"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    device_id: Mapped[int] = mapped_column(Integer, ForeignKey("devices.id", ondelete="CASCADE"))
    channel: Mapped[int] = mapped_column(Integer)
    start_ms: Mapped[int] = mapped_column(BigInteger)
    end_ms: Mapped[int] = mapped_column(BigInteger)
    duration_ms: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(Integer)
    object_key: Mapped[str] = mapped_column(String(255))
    init_sha256: Mapped[str] = mapped_column(String(64))
    created_ms: Mapped[int] = mapped_column(BigInteger)


class CsEvent(Base):
    """A cloud-storage event (``iv_cs_event_start``/``_stop``, or a picture-only
    ``iv_cs_event_directly_report`` when ``video`` is false)."""

    __tablename__ = "cs_events"
    __table_args__ = (
        UniqueConstraint("device_id", "channel", "event_id", "start_ms"),
        Index("ix_cs_events_device_start", "device_id", "start_ms"),
        Index("ix_cs_events_start_ms", "start_ms"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    device_id: Mapped[int] = mapped_column(Integer, ForeignKey("devices.id", ondelete="CASCADE"))
    channel: Mapped[int] = mapped_column(Integer)
    event_id: Mapped[int] = mapped_column(Integer)
    start_ms: Mapped[int] = mapped_column(BigInteger)
    end_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    video: Mapped[bool] = mapped_column(Boolean, default=True)
    thumbnail_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
