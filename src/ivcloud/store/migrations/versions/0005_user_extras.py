"""user extras: settings, XG push tokens, feedback, per-app global config

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _user_fk(table: str, ondelete: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["user_id"], ["users.user_id"], name=op.f(f"fk_{table}_user_id_users"), ondelete=ondelete
    )


def _app_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["app_id"], ["apps.app_id"], name=op.f(f"fk_{table}_app_id_apps"), ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "user_settings",
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("enable_wechat_push", sa.Integer(), nullable=False),
        sa.Column("enable_device_message_push", sa.Integer(), nullable=False),
        sa.Column("enable_family_message_push", sa.Integer(), nullable=False),
        sa.Column("enable_notify_message_push", sa.Integer(), nullable=False),
        sa.Column("temperature_unit", sa.String(length=16), nullable=False),
        sa.Column("region", sa.String(length=64), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        _user_fk("user_settings", "CASCADE"),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_settings")),
    )
    op.create_table(
        "user_xg_tokens",
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("token", sa.String(length=256), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        _user_fk("user_xg_tokens", "CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "token", name=op.f("pk_user_xg_tokens")),
    )
    op.create_table(
        "user_feedback",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("app_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=True),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("contact", sa.String(length=128), nullable=False),
        sa.Column("log_url", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        _app_fk("user_feedback"),
        _user_fk("user_feedback", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_feedback")),
    )
    with op.batch_alter_table("user_feedback", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_user_feedback_app_id"), ["app_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_user_feedback_user_id"), ["user_id"], unique=False)
    op.create_table(
        "app_global_configs",
        sa.Column("app_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        _app_fk("app_global_configs"),
        sa.PrimaryKeyConstraint("app_id", "key", name=op.f("pk_app_global_configs")),
    )


def downgrade() -> None:
    op.drop_table("app_global_configs")
    with op.batch_alter_table("user_feedback", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_user_feedback_user_id"))
        batch_op.drop_index(batch_op.f("ix_user_feedback_app_id"))
    op.drop_table("user_feedback")
    op.drop_table("user_xg_tokens")
    op.drop_table("user_settings")
