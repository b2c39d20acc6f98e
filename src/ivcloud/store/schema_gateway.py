"""Schema of gateway topology (device-protocol spec §6.2): which gateway device a sub-device
is bound to.  A sub-device has at most one gateway (the primary key is the sub-device), both
ends cascade with their devices.  Same conventions as ``schema``: times in milliseconds."""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Integer
from sqlalchemy.orm import Mapped, mapped_column

from ivcloud.store.schema import Base


class GatewaySubdevice(Base):
    __tablename__ = "gateway_subdevices"

    sub_device_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    gateway_device_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("devices.id", ondelete="CASCADE"), index=True
    )
    created_ms: Mapped[int] = mapped_column(BigInteger)
