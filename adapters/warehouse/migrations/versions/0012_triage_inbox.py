"""triage inbox: webhooks accepted by the real-time triage service; real-time flag on predictions

Revision ID: 0012
Revises: 0011
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

import ticketlens.adapters.warehouse.schema

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _utc():
    return ticketlens.adapters.warehouse.schema.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'triage_inbox',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('ticket_id', sa.BigInteger(), nullable=False),
        sa.Column('event_key', sa.String(length=128), nullable=False),
        sa.Column('received_at', _utc(), nullable=False),
        sa.Column('ticket_created_at', _utc(), nullable=True),
        sa.Column('ticket', JSONType, nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
        sa.Column('processed_at', _utc(), nullable=True),
        sa.Column('model_version', sa.String(length=32), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_triage_inbox')),
        sa.UniqueConstraint('ticket_id', 'event_key', name=op.f('uq_triage_inbox_ticket_id_event_key')),
    )
    op.create_index('ix_triage_inbox_status', 'triage_inbox', ['status', 'id'], unique=False)
    op.add_column('ticket_predictions', sa.Column('realtime', sa.Boolean(), server_default=sa.false(),
                                                  nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('ticket_predictions') as batch:
        batch.drop_column('realtime')
    op.drop_index('ix_triage_inbox_status', table_name='triage_inbox')
    op.drop_table('triage_inbox')
