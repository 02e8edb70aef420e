"""oauth2: sign-in states, feature flags, per-service endpoints

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 09:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

SERVICE_COLUMNS = ('oauth2_authorize_url', 'oauth2_token_url', 'oauth2_device_url', 'oauth2_revoke_url')


def upgrade() -> None:
    op.create_table('feature_flags',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('updated_by', sa.BigInteger(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_feature_flags'))
    )
    op.create_table('oauth_states',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('state_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('service_id', sa.Integer(), nullable=False),
    sa.Column('flow', sa.String(length=16), nullable=False),
    sa.Column('purpose', sa.String(length=16), nullable=False),
    sa.Column('mailbox_id', sa.Integer(), nullable=True),
    sa.Column('wizard', sa.String(length=32), nullable=True),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('login', sa.String(length=320), nullable=False),
    sa.Column('code_verifier_enc', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['mailbox_id'], ['mailboxes.id'], name=op.f('fk_oauth_states_mailbox_id_mailboxes'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['service_id'], ['services.id'], name=op.f('fk_oauth_states_service_id_services'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_oauth_states_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_oauth_states')),
    sa.UniqueConstraint('state_hash', name=op.f('uq_oauth_states_state_hash'))
    )
    with op.batch_alter_table('oauth_states', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oauth_states_user_id'), ['user_id'], unique=False)

    with op.batch_alter_table('services', schema=None) as batch_op:
        for name in SERVICE_COLUMNS:
            batch_op.add_column(sa.Column(name, sa.String(length=1000), nullable=True))
        batch_op.add_column(sa.Column('oauth2_scopes', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('services', schema=None) as batch_op:
        batch_op.drop_column('oauth2_scopes')
        for name in reversed(SERVICE_COLUMNS):
            batch_op.drop_column(name)

    with op.batch_alter_table('oauth_states', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oauth_states_user_id'))

    op.drop_table('oauth_states')
    op.drop_table('feature_flags')
