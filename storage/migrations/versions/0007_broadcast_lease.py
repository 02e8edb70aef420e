"""broadcast runner lease: which instance sends a broadcast, and until when

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 10:45:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('broadcasts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('runner_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('broadcasts', schema=None) as batch_op:
        batch_op.drop_column('lease_until')
        batch_op.drop_column('runner_id')
