"""Schema of the per-user extras of the App API (spec §2.1): user settings, Tencent Mobile
Push (XG) device tokens, user feedback, and the per-app global configuration read by
``AppGetGlobalConfig``.  Same conventions as ``schema``: times are integer milliseconds.

Settings and XG tokens belong to a user and cascade with the ``users`` row (account
cancellation deletes them).  Feedback is kept for the maker after cancellation, with the
user id cleared (``SET NULL``): it is the maker's support record, not the user's data."""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ivcloud.store.schema import Base


class UserSetting(Base):
    """One row per user that ever changed a setting; absent row = the apps' defaults."""

    __tablename__ = "user_settings"

    user_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("users.user_id", ondelete="CASCADE"), primary_key=True
    )
    enable_wechat_push: Mapped[int] = mapped_column(Integer)
    enable_device_message_push: Mapped[int] = mapped_column(Integer)
    enable_family_message_push: Mapped[int] = mapped_column(Integer)
    enable_notify_message_push: Mapped[int] = mapped_column(Integer)
    temperature_unit: Mapped[str] = mapped_column(String(16))
    region: Mapped[str] = mapped_column(String(64))
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class XgToken(Base):
    """A phone's XG push token bound to a user (several phones per user)."""

    __tablename__ = "user_xg_tokens"

    user_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("users.user_id", ondelete="CASCADE"), primary_key=True
    )
    token: Mapped[str] = mapped_column(String(256), primary_key=True)
    platform: Mapped[str] = mapped_column(String(16), default="")
    created_ms: Mapped[int] = mapped_column(BigInteger)


class UserFeedback(Base):
    """A feedback message sent by a user with ``AppUserFeedBack``."""

    __tablename__ = "user_feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    app_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("apps.app_id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[str | None] = mapped_column(
        String(40), ForeignKey("users.user_id", ondelete="SET NULL"), nullable=True, index=True
    )
    type: Mapped[str] = mapped_column(String(32))
    content: Mapped[str] = mapped_column(Text)
    contact: Mapped[str] = mapped_column(String(128))
    log_url: Mapped[str] = mapped_column(Text)  # comma-separated URLs, as the apps send it
    created_ms: Mapped[int] = mapped_column(BigInteger)


class AppGlobalConfig(Base):
    """A key/value string set by the maker for one app, read by ``AppGetGlobalConfig``."""

    __tablename__ = "app_global_configs"

    app_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("apps.app_id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
