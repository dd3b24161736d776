"""dashboard indexes: pending demand per variant, delivery counts per restock

Revision ID: 0003_faces
Revises: 0002
Create Date: 2026-12-02 14:50:00

- ix_subscriptions_demand (partial, pending only; variant_id, scope, source, created_at): the
  dashboard's demand page counts pending sign-ups per variant from this index alone (a covering
  index scan in group order, no table reads, no sort for the grouping).
- ix_deliveries_restock (restock_id, status): each restock's sent/failed/queued counts.
"""

from alembic import op
import sqlalchemy as sa


revision = '0003_faces'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.create_index('ix_subscriptions_demand', ['variant_id', 'scope', 'source', 'created_at'], unique=False, sqlite_where=sa.text("status = 'pending'"), postgresql_where=sa.text("status = 'pending'"))
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_deliveries_restock', ['restock_id', 'status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_restock')
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.drop_index('ix_subscriptions_demand', sqlite_where=sa.text("status = 'pending'"), postgresql_where=sa.text("status = 'pending'"))
