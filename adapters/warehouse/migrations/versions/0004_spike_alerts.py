"""spike alerts and the Slack outbox

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa
import ticketlens.adapters.warehouse.schema
from sqlalchemy.dialects import postgresql

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('spike_alerts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('series', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('parent_category', sa.String(length=64), nullable=True),
    sa.Column('started_at', ticketlens.adapters.warehouse.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('last_spike_at', ticketlens.adapters.warehouse.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', ticketlens.adapters.warehouse.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('observed', sa.Integer(), nullable=False),
    sa.Column('expected', sa.Float(), nullable=False),
    sa.Column('ratio', sa.Float(), nullable=False),
    sa.Column('p_value', sa.Float(), nullable=False),
    sa.Column('peak_observed', sa.Integer(), nullable=False),
    sa.Column('notified_observed', sa.Integer(), nullable=False),
    sa.Column('hours_flagged', sa.Integer(), nullable=False),
    sa.Column('chart_path', sa.Text(), nullable=True),
    sa.Column('created_at', ticketlens.adapters.warehouse.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', ticketlens.adapters.warehouse.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('run_id', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_spike_alerts')),
    sa.UniqueConstraint('series', 'started_at', name=op.f('uq_spike_alerts_series_started_at'))
    )
    with op.batch_alter_table('spike_alerts', schema=None) as batch_op:
        batch_op.create_index('ix_spike_alerts_state', ['state'], unique=False)

    op.create_table('slack_messages',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('alert_id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('hour', ticketlens.adapters.warehouse.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('blocks', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', ticketlens.adapters.warehouse.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('sent_at', ticketlens.adapters.warehouse.schema.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['alert_id'], ['spike_alerts.id'], name=op.f('fk_slack_messages_alert_id_spike_alerts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_slack_messages')),
    sa.UniqueConstraint('alert_id', 'kind', 'hour', name=op.f('uq_slack_messages_alert_id_kind_hour'))
    )
    with op.batch_alter_table('slack_messages', schema=None) as batch_op:
        batch_op.create_index('ix_slack_messages_status', ['status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('slack_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_slack_messages_status')
    op.drop_table('slack_messages')
    with op.batch_alter_table('spike_alerts', schema=None) as batch_op:
        batch_op.drop_index('ix_spike_alerts_state')
    op.drop_table('spike_alerts')
