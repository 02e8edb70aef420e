"""mailbox_leases: the mailbox leases in a narrow table of their own

Renewing a lease rewrote the mailbox's whole (wide) row every few seconds; see
storage.models.MailboxLease. The leases held are carried over.

A fleet is upgraded as a whole: an instance still running the previous version fails its
next lease pass (the columns are gone) and, as after any failed renewal, stops every watcher
at once, so no mailbox is watched twice while old and new instances overlap.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 08:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('mailbox_leases',
    sa.Column('mailbox_id', sa.Integer(), nullable=False),
    sa.Column('owner', sa.String(length=64), nullable=True),
    sa.Column('until', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['mailbox_id'], ['mailboxes.id'], name=op.f('fk_mailbox_leases_mailbox_id_mailboxes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('mailbox_id', name=op.f('pk_mailbox_leases'))
    )
    with op.batch_alter_table('mailbox_leases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mailbox_leases_owner'), ['owner'], unique=False)
    op.execute(
        "INSERT INTO mailbox_leases (mailbox_id, owner, until) "
        "SELECT id, lease_owner, lease_until FROM mailboxes WHERE lease_owner IS NOT NULL"
    )
    with op.batch_alter_table('mailboxes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mailboxes_lease_owner'))
        batch_op.drop_column('lease_until')
        batch_op.drop_column('lease_owner')


def downgrade() -> None:
    with op.batch_alter_table('mailboxes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease_owner', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_mailboxes_lease_owner'), ['lease_owner'], unique=False)
    op.execute(
        "UPDATE mailboxes SET "
        "lease_owner = (SELECT owner FROM mailbox_leases WHERE mailbox_id = mailboxes.id), "
        "lease_until = (SELECT until FROM mailbox_leases WHERE mailbox_id = mailboxes.id)"
    )
    with op.batch_alter_table('mailbox_leases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mailbox_leases_owner'))
    op.drop_table('mailbox_leases')
