"""letter actions: each letter's flags, place and Undo target; each mailbox's special folders

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 13:40:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'letter_marks',
        sa.Column('letter_id', sa.Integer(), nullable=False),
        sa.Column('seen', sa.Boolean(), nullable=True),
        sa.Column('flagged', sa.Boolean(), nullable=True),
        sa.Column('place', sa.String(length=16), nullable=False),
        sa.Column('folder', sa.String(length=255), nullable=True),
        sa.Column('folder_uidvalidity', sa.BigInteger(), nullable=True),
        sa.Column('folder_uid', sa.BigInteger(), nullable=True),
        sa.Column('undo_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('alert_chat_id', sa.BigInteger(), nullable=True),
        sa.Column('alert_message_id', sa.BigInteger(), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ['letter_id'], ['letters.id'], name=op.f('fk_letter_marks_letter_id_letters'), ondelete='CASCADE'
        ),
        sa.PrimaryKeyConstraint('letter_id', name=op.f('pk_letter_marks')),
    )
    op.create_table(
        'mailbox_folders',
        sa.Column('mailbox_id', sa.Integer(), nullable=False),
        sa.Column('archive', sa.String(length=255), nullable=True),
        sa.Column('trash', sa.String(length=255), nullable=True),
        sa.Column('junk', sa.String(length=255), nullable=True),
        sa.Column('gmail', sa.Boolean(), nullable=False),
        sa.Column('found_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ['mailbox_id'], ['mailboxes.id'], name=op.f('fk_mailbox_folders_mailbox_id_mailboxes'), ondelete='CASCADE'
        ),
        sa.PrimaryKeyConstraint('mailbox_id', name=op.f('pk_mailbox_folders')),
    )


def downgrade() -> None:
    op.drop_table('mailbox_folders')
    op.drop_table('letter_marks')
