"""message centre: per-user App API messages (AppGetMessages / AppDeleteMessage)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "app_messages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("category", sa.Integer(), nullable=False),
        sa.Column("msg_type", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=128), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("from_user_id", sa.String(length=40), nullable=False),
        sa.Column("product_id", sa.String(length=10), nullable=False),
        sa.Column("device_name", sa.String(length=64), nullable=False),
        sa.Column("device_alias", sa.String(length=128), nullable=False),
        sa.Column("family_id", sa.String(length=40), nullable=False),
        sa.Column("family_name", sa.String(length=64), nullable=False),
        sa.Column("share_token", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.user_id"],
            name=op.f("fk_app_messages_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_messages")),
    )
    with op.batch_alter_table("app_messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_app_messages_listing", ["user_id", "category", "ts_ms", "id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_app_messages_ts_ms"), ["ts_ms"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("app_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_app_messages_ts_ms"))
        batch_op.drop_index("ix_app_messages_listing")
    op.drop_table("app_messages")
