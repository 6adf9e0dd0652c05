"""initial warehouse schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-22 14:08:51.643545
"""
from alembic import op
import sqlalchemy as sa
import ticketlens.adapters.warehouse.schema
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    
    op.create_table('agents',
    sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('name', sa.String(length=255), nullable=True),
    sa.Column('email', sa.String(length=255), nullable=True),
    sa.Column('role', sa.String(length=32), nullable=True),
    sa.Column('default_group_id', sa.BigInteger(), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=True),
    sa.Column('created_at', ticketlens.adapters.warehouse.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', ticketlens.adapters.warehouse.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('extracted_at', ticketlens.adapters.warehouse.schema.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_agents'))
    )
    op.create_table('csat_ratings',
    sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('ticket_id', sa.BigInteger(), nullable=False),
    sa.Column('score', sa.String(length=32), nullable=False),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('reason', sa.String(length=128), nullable=True),
    sa.Column('assignee_id', sa.BigInteger(), nullable=True),
    sa.Column('group_id', sa.BigInteger(), nullable=True),
    sa.Column('requester_id', sa.BigInteger(), nullable=True),
    sa.Column('created_at', ticketlens.adapters.warehouse.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', ticketlens.adapters.warehouse.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('extracted_at', ticketlens.adapters.warehouse.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('run_id', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_csat_ratings'))
    )
    with op.batch_alter_table('csat_ratings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_csat_ratings_ticket_id'), ['ticket_id'], unique=False)

    op.create_table('extraction_state',
    sa.Column('stream', sa.String(length=32), nullable=False),
    sa.Column('cursor', sa.Text(), nullable=True),
    sa.Column('watermark', sa.BigInteger(), nullable=True),
    sa.Column('pages', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('run_id', sa.String(length=64), nullable=True),
    sa.Column('updated_at', ticketlens.adapters.warehouse.schema.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('stream', name=op.f('pk_extraction_state'))
    )
    op.create_table('groups',
    sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('name', sa.String(length=255), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('is_deleted', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('created_at', ticketlens.adapters.warehouse.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', ticketlens.adapters.warehouse.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('extracted_at', ticketlens.adapters.warehouse.schema.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_groups'))
    )
    op.create_table('quarantine',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('stream', sa.String(length=32), nullable=False),
    sa.Column('record_id', sa.String(length=64), nullable=True),
    sa.Column('payload_sha256', sa.String(length=64), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('failed_checks', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('run_id', sa.String(length=64), nullable=True),
    sa.Column('quarantined_at', ticketlens.adapters.warehouse.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('times_seen', sa.Integer(), server_default='1', nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_quarantine')),
    sa.UniqueConstraint('stream', 'payload_sha256', name=op.f('uq_quarantine_stream_payload_sha256'))
    )
    op.create_table('raw_records',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('stream', sa.String(length=32), nullable=False),
    sa.Column('record_id', sa.String(length=64), nullable=True),
    sa.Column('payload_sha256', sa.String(length=64), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('extracted_at', ticketlens.adapters.warehouse.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('run_id', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_raw_records')),
    sa.UniqueConstraint('stream', 'payload_sha256', name=op.f('uq_raw_records_stream_payload_sha256'))
    )
    op.create_table('ticket_fields',
    sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('title', sa.String(length=255), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=True),
    sa.Column('options', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('updated_at', ticketlens.adapters.warehouse.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('extracted_at', ticketlens.adapters.warehouse.schema.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ticket_fields'))
    )
    op.create_table('tickets',
    sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('created_at', ticketlens.adapters.warehouse.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', ticketlens.adapters.warehouse.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('generated_timestamp', sa.BigInteger(), nullable=True),
    sa.Column('subject', sa.Text(), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('priority', sa.String(length=16), nullable=True),
    sa.Column('type', sa.String(length=16), nullable=True),
    sa.Column('tags', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('channel', sa.String(length=32), nullable=True),
    sa.Column('requester_id', sa.BigInteger(), nullable=True),
    sa.Column('submitter_id', sa.BigInteger(), nullable=True),
    sa.Column('assignee_id', sa.BigInteger(), nullable=True),
    sa.Column('group_id', sa.BigInteger(), nullable=True),
    sa.Column('organization_id', sa.BigInteger(), nullable=True),
    sa.Column('custom_fields', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('contact_reason', sa.String(length=128), nullable=True),
    sa.Column('confirmed_category', sa.String(length=128), nullable=True),
    sa.Column('solved_at', ticketlens.adapters.warehouse.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('first_reply_minutes', sa.Integer(), nullable=True),
    sa.Column('full_resolution_minutes', sa.Integer(), nullable=True),
    sa.Column('reopens', sa.Integer(), nullable=True),
    sa.Column('is_deleted', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('deleted_at', ticketlens.adapters.warehouse.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('extracted_at', ticketlens.adapters.warehouse.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('run_id', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tickets'))
    )
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tickets_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_tickets_updated_at'), ['updated_at'], unique=False)

    


def downgrade() -> None:
    
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tickets_updated_at'))
        batch_op.drop_index(batch_op.f('ix_tickets_created_at'))

    op.drop_table('tickets')
    op.drop_table('ticket_fields')
    op.drop_table('raw_records')
    op.drop_table('quarantine')
    op.drop_table('groups')
    op.drop_table('extraction_state')
    with op.batch_alter_table('csat_ratings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_csat_ratings_ticket_id'))

    op.drop_table('csat_ratings')
    op.drop_table('agents')
    
