"""fleet: instances with heartbeats, mailbox leases, alert claims

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 10:05:00.000000
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('instances',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_instances'))
    )
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_instances_last_seen'), ['last_seen'], unique=False)

    with op.batch_alter_table('mailboxes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease_owner', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('watch_epoch', sa.Integer(), server_default='0', nullable=False))
        batch_op.create_index(batch_op.f('ix_mailboxes_lease_owner'), ['lease_owner'], unique=False)

    with op.batch_alter_table('letters', schema=None) as batch_op:
        batch_op.add_column(sa.Column('alert_state', sa.String(length=16), server_default='sent', nullable=False))
        batch_op.add_column(sa.Column('alert_owner', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('alert_attempts', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('alert_error', sa.String(length=300), nullable=True))
        batch_op.create_index('ix_letters_alert_queue', ['alerted', 'mailbox_id'], unique=False)
    # alerts still owed before this version are pending; the rest went out (or were not wanted)
    op.execute(sa.text("UPDATE letters SET alert_state = 'pending' WHERE alerted = :no").bindparams(no=False))


def downgrade() -> None:
    with op.batch_alter_table('letters', schema=None) as batch_op:
        batch_op.drop_index('ix_letters_alert_queue')
        batch_op.drop_column('alert_error')
        batch_op.drop_column('alert_attempts')
        batch_op.drop_column('alert_owner')
        batch_op.drop_column('alert_state')

    with op.batch_alter_table('mailboxes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mailboxes_lease_owner'))
        batch_op.drop_column('watch_epoch')
        batch_op.drop_column('lease_until')
        batch_op.drop_column('lease_owner')

    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_instances_last_seen'))

    op.drop_table('instances')
