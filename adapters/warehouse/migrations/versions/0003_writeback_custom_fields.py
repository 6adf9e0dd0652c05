"""write-back custom fields

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('writeback_state', schema=None) as batch_op:
        batch_op.add_column(sa.Column(
            'desired_fields', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'),
            nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('writeback_state', schema=None) as batch_op:
        batch_op.drop_column('desired_fields')
