"""prediction fingerprints: input_sha256 / content_sha256 on ticket_predictions, so write-back echoes are not
re-scored (models.echoes)

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('ticket_predictions') as batch:
        batch.add_column(sa.Column('input_sha256', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('content_sha256', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('ticket_predictions') as batch:
        batch.drop_column('content_sha256')
        batch.drop_column('input_sha256')
