"""Schema of the app side: apps (AppKey/AppSecret), users and their tokens, families, rooms,
members, device bindings, bind tokens and sharing.  Same conventions as ``schema``: times
are integer milliseconds, ids given to clients are strings."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ivcloud.store.schema import Base


class App(Base):
    """An application (branded app or mini-program) with its signing credentials."""

    __tablename__ = "apps"

    app_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    app_key: Mapped[str] = mapped_column(String(64), unique=True)
    # Kept in clear: HMAC verification needs it (as Tencent's own console does).
    app_secret: Mapped[str] = mapped_column(String(128))
    created_ms: Mapped[int] = mapped_column(BigInteger)


class AppProduct(Base):
    __tablename__ = "app_products"

    app_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("apps.app_id", ondelete="CASCADE"), primary_key=True
    )
    product_id: Mapped[str] = mapped_column(
        String(10), ForeignKey("products.product_id", ondelete="CASCADE"), primary_key=True
    )


class User(Base):
    """An end user of one app (users are scoped per app, like an OEM's own account base)."""

    __tablename__ = "users"
    __table_args__ = (
        # Named explicitly: the naming convention uses the first column only, and three
        # constraints named uq_users_app_id collide on PostgreSQL.
        UniqueConstraint("app_id", "country_code", "phone", name="uq_users_app_phone"),
        UniqueConstraint("app_id", "email", name="uq_users_app_email"),
        UniqueConstraint("app_id", "wx_open_id", name="uq_users_app_wx"),
    )

    user_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    app_id: Mapped[str] = mapped_column(String(32), ForeignKey("apps.app_id", ondelete="CASCADE"))
    country_code: Mapped[str | None] = mapped_column(String(8), nullable=True)
    phone: Mapped[str | None] = mapped_column(String(32), nullable=True)
    email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    wx_open_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    nick_name: Mapped[str] = mapped_column(String(64), default="")
    avatar: Mapped[str] = mapped_column(String(512), default="")
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class AccessToken(Base):
    """A login session.  Only a SHA-256 of the token is stored."""

    __tablename__ = "access_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("users.user_id", ondelete="CASCADE"), index=True
    )
    expires_ms: Mapped[int] = mapped_column(BigInteger)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class VerificationCode(Base):
    __tablename__ = "verification_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    app_id: Mapped[str] = mapped_column(String(32), ForeignKey("apps.app_id", ondelete="CASCADE"))
    target: Mapped[str] = mapped_column(String(270), index=True)
    purpose: Mapped[str] = mapped_column(String(16))
    code_hash: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    used: Mapped[bool] = mapped_column(Boolean, default=False)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    expires_ms: Mapped[int] = mapped_column(BigInteger)


class Family(Base):
    __tablename__ = "families"

    family_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    app_id: Mapped[str] = mapped_column(String(32), ForeignKey("apps.app_id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(255), default="")
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class FamilyMember(Base):
    """Role 1 = admin (owner), 0 = member."""

    __tablename__ = "family_members"

    family_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("families.family_id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("users.user_id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[int] = mapped_column(Integer)
    joined_ms: Mapped[int] = mapped_column(BigInteger)


class Room(Base):
    __tablename__ = "rooms"

    room_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    family_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("families.family_id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(64))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class FamilyDevice(Base):
    """A device bound into a family (a device is in at most one family); room ``"0"`` is the
    default room."""

    __tablename__ = "family_devices"

    device_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    family_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("families.family_id", ondelete="CASCADE"), index=True
    )
    room_id: Mapped[str] = mapped_column(String(40), default="0")
    alias_name: Mapped[str] = mapped_column(String(64), default="")
    bound_by: Mapped[str] = mapped_column(String(40))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class AppBindToken(Base):
    """A Wi-Fi provisioning token issued to a user (state 1 created, 2 reported by a device,
    3 used to bind)."""

    __tablename__ = "app_bind_tokens"

    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("users.user_id", ondelete="CASCADE"), index=True
    )
    state: Mapped[int] = mapped_column(Integer, default=1)
    product_id: Mapped[str | None] = mapped_column(String(10), nullable=True)
    device_name: Mapped[str | None] = mapped_column(String(48), nullable=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    expires_ms: Mapped[int] = mapped_column(BigInteger)


class ShareToken(Base):
    __tablename__ = "share_tokens"

    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # "device" or "family"
    from_user_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("users.user_id", ondelete="CASCADE")
    )
    family_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("families.family_id", ondelete="CASCADE")
    )
    device_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("devices.id", ondelete="CASCADE"), nullable=True
    )
    context: Mapped[str] = mapped_column(Text, default="")
    to_user_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    expires_ms: Mapped[int] = mapped_column(BigInteger)
    used_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class DeviceShare(Base):
    """A device shared to a user outside its family: visible and controllable, not
    manageable."""

    __tablename__ = "device_shares"

    device_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("users.user_id", ondelete="CASCADE"), primary_key=True, index=True
    )
    from_user_id: Mapped[str] = mapped_column(String(40))
    created_ms: Mapped[int] = mapped_column(BigInteger)
