"""run locks: one row per flow lock (owner + lease expiry) so overlapping runs wait or exit cleanly

Revision ID: 0007
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa

from ticketlens.adapters.warehouse.schema import UTCDateTime

revision = '0007'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'run_locks',
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('owner', sa.String(length=255), nullable=False),
        sa.Column('acquired_at', UTCDateTime(), nullable=False),
        sa.Column('expires_at', UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_run_locks')),
    )


def downgrade() -> None:
    op.drop_table('run_locks')
