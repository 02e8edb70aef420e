"""mailbox_leases.until dropped: a lease is valid while its owner's heartbeat is

Every held lease carried its own end and was renewed every pass (3,334 row updates per
instance every 5 s at 10,000 mailboxes over three); now a lease lasts as long as its owner's
row in `instances` is fresh, and a pass writes that one row. See storage.models.MailboxLease.

A fleet is upgraded as a whole: an instance still running the previous version fails its
next lease pass (the column is gone) and, as after any failed renewal, stops every watcher at
once, so no mailbox is watched twice while old and new instances overlap. The downgrade gives
every held lease one lifetime (20 s, the default) from the moment it runs: the instances that
hold them renew them from their next pass.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 15:00:00
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('mailbox_leases', schema=None) as batch_op:
        batch_op.drop_column('until')


def downgrade() -> None:
    with op.batch_alter_table('mailbox_leases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('until', sa.DateTime(timezone=True), nullable=True))
    leases = sa.table('mailbox_leases', sa.column('owner', sa.String), sa.column('until', sa.DateTime(timezone=True)))
    until = datetime.now(UTC) + timedelta(seconds=20)
    op.execute(leases.update().where(leases.c.owner.is_not(None)).values(until=until))
