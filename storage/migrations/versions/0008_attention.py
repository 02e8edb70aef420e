"""attention: alert rules (mute / VIP), quiet hours and grouping per user

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 13:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'alert_rules',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.BigInteger(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('value', sa.String(length=320), nullable=False),
        sa.Column('action', sa.String(length=16), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_alert_rules_user_id_users'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_rules')),
        sa.UniqueConstraint('user_id', 'kind', 'value', name='uq_alert_rules_user_kind_value'),
    )
    with op.batch_alter_table('alert_rules', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_rules_user_id'), ['user_id'], unique=False)
    op.create_table(
        'attention_prefs',
        sa.Column('user_id', sa.BigInteger(), nullable=False),
        sa.Column('timezone', sa.String(length=64), nullable=True),
        sa.Column('quiet_start', sa.Integer(), nullable=True),
        sa.Column('quiet_end', sa.Integer(), nullable=True),
        sa.Column('quiet_mode', sa.String(length=16), server_default='silent', nullable=False),
        sa.Column('vip_breaks_quiet', sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column('burst_threshold', sa.Integer(), server_default='6', nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_attention_prefs_user_id_users'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('user_id', name=op.f('pk_attention_prefs')),
    )


def downgrade() -> None:
    op.drop_table('attention_prefs')
    with op.batch_alter_table('alert_rules', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_rules_user_id'))
    op.drop_table('alert_rules')
