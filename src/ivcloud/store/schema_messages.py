"""Schema of the App API message centre (``AppGetMessages`` / ``AppDeleteMessage``, spec
§2.1; docs/app-api.md "Message centre").  Same conventions as ``schema``: times are
integer milliseconds, ids given to clients are strings (``MsgID`` is this table's integer
id written in decimal).

A message belongs to one user and cascades with the ``users`` row (account cancellation
deletes it).  It deliberately has no foreign key to devices or families: the real apps
keep a device's old messages after the user loses access to it (or after it is deleted),
so the names shown (``DeviceAlias``, ``FamilyName``) are copied in when the message is
made.  Retention (age and a per-user cap) is enforced by
:class:`ivcloud.services.messages.MessageService`."""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ivcloud.store.schema import Base


class Message(Base):
    __tablename__ = "app_messages"
    __table_args__ = (
        # The listing: one user's messages of one category, newest first, paged by the
        # (MsgTimestamp, MsgID) cursor — an index-only range scan.
        Index("ix_app_messages_listing", "user_id", "category", "ts_ms", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("users.user_id", ondelete="CASCADE")
    )
    category: Mapped[int] = mapped_column(Integer)
    msg_type: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(128))
    content: Mapped[str] = mapped_column(Text)
    #: When the message was made (server time); retention ages messages by it.
    ts_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    from_user_id: Mapped[str] = mapped_column(String(40), default="")
    product_id: Mapped[str] = mapped_column(String(10), default="")
    device_name: Mapped[str] = mapped_column(String(64), default="")
    device_alias: Mapped[str] = mapped_column(String(128), default="")
    family_id: Mapped[str] = mapped_column(String(40), default="")
    family_name: Mapped[str] = mapped_column(String(64), default="")
    #: ``Attachments.ShareToken`` of an invitation (what the app sends back to accept it).
    share_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
