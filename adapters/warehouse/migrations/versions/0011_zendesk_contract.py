"""zendesk contract: contact_reasons list, CSAT source/source_id/rating columns

Revision ID: 0011
Revises: 0008
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0011'
down_revision = '0008'
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column('tickets', sa.Column('contact_reasons', JSONType, nullable=True))
    op.add_column('csat_ratings', sa.Column('source', sa.String(length=32), nullable=False,
                                            server_default='satisfaction_ratings'))
    op.add_column('csat_ratings', sa.Column('source_id', sa.String(length=64), nullable=True))
    op.add_column('csat_ratings', sa.Column('rating', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('csat_ratings') as batch:
        batch.drop_column('rating')
        batch.drop_column('source_id')
        batch.drop_column('source')
    with op.batch_alter_table('tickets') as batch:
        batch.drop_column('contact_reasons')
