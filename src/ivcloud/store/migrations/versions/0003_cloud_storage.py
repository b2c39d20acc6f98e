"""cloud storage: event clips, their init segments, events and thumbnails (index only;
the bytes are in the object store)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 21:11:59.419869
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cs_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("start_ms", sa.BigInteger(), nullable=False),
        sa.Column("end_ms", sa.BigInteger(), nullable=True),
        sa.Column("video", sa.Boolean(), nullable=False),
        sa.Column("thumbnail_key", sa.String(length=255), nullable=True),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_cs_events_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cs_events")),
        sa.UniqueConstraint(
            "device_id", "channel", "event_id", "start_ms", name=op.f("uq_cs_events_device_id")
        ),
    )
    with op.batch_alter_table("cs_events", schema=None) as batch_op:
        batch_op.create_index("ix_cs_events_device_start", ["device_id", "start_ms"], unique=False)
        batch_op.create_index("ix_cs_events_start_ms", ["start_ms"], unique=False)

    op.create_table(
        "cs_inits",
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("object_key", sa.String(length=255), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_cs_inits_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("device_id", "sha256", name=op.f("pk_cs_inits")),
    )
    op.create_table(
        "cs_segments",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.Integer(), nullable=False),
        sa.Column("start_ms", sa.BigInteger(), nullable=False),
        sa.Column("end_ms", sa.BigInteger(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("object_key", sa.String(length=255), nullable=False),
        sa.Column("init_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_cs_segments_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cs_segments")),
        sa.UniqueConstraint(
            "device_id", "channel", "start_ms", name=op.f("uq_cs_segments_device_id")
        ),
    )
    with op.batch_alter_table("cs_segments", schema=None) as batch_op:
        batch_op.create_index("ix_cs_segments_end_ms", ["end_ms"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("cs_segments", schema=None) as batch_op:
        batch_op.drop_index("ix_cs_segments_end_ms")

    op.drop_table("cs_segments")
    op.drop_table("cs_inits")
    with op.batch_alter_table("cs_events", schema=None) as batch_op:
        batch_op.drop_index("ix_cs_events_start_ms")
        batch_op.drop_index("ix_cs_events_device_start")

    op.drop_table("cs_events")
