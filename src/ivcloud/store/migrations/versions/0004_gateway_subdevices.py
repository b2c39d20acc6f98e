"""gateway sub-devices: the gateway each sub-device is bound to

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gateway_subdevices",
        sa.Column("sub_device_id", sa.Integer(), nullable=False),
        sa.Column("gateway_device_id", sa.Integer(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["sub_device_id"],
            ["devices.id"],
            name=op.f("fk_gateway_subdevices_sub_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["gateway_device_id"],
            ["devices.id"],
            name=op.f("fk_gateway_subdevices_gateway_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("sub_device_id", name=op.f("pk_gateway_subdevices")),
    )
    with op.batch_alter_table("gateway_subdevices", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_gateway_subdevices_gateway_device_id"),
            ["gateway_device_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("gateway_subdevices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gateway_subdevices_gateway_device_id"))
    op.drop_table("gateway_subdevices")
