"""deliveries.wave: which wave of its restock released a delivery (dashboard → Restocks)

Revision ID: 0007_delivery_wave
Revises: 0006_commerce
Create Date: 2026-12-02 16:25:00

- `deliveries.wave` (nullable integer): the release writes restock.waves + 1. Rows from
  before this migration keep NULL (the dashboard shows them as one "earlier" group).
- ix_deliveries_restock (restock_id, status) becomes ix_deliveries_restock_wave
  (restock_id, wave, status): the per-wave counts are one index-only grouped scan, and the
  leading restock_id still serves the restock foreign key and `requeue --restock`.

Plain ADD COLUMN / CREATE INDEX / DROP INDEX, no Alembic batch mode: on SQLite a batch
ALTER recreates the table, and that drops its triggers (`subscriptions` has the demand
triggers of 0003_faces; `deliveries` has none today, but a rebuild would also be a full copy
of the biggest table). On PostgreSQL, creating the index takes a lock that blocks writes to
`deliveries` while it builds (seconds per million rows): run the upgrade while the worker
is stopped on a large install.
"""

from alembic import op
import sqlalchemy as sa


revision = '0007_delivery_wave'
down_revision = '0006_commerce'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('deliveries', sa.Column('wave', sa.Integer(), nullable=True))
    op.create_index(
        'ix_deliveries_restock_wave', 'deliveries', ['restock_id', 'wave', 'status'], unique=False
    )
    op.drop_index('ix_deliveries_restock', table_name='deliveries')


def downgrade() -> None:
    op.create_index(
        'ix_deliveries_restock', 'deliveries', ['restock_id', 'status'], unique=False
    )
    op.drop_index('ix_deliveries_restock_wave', table_name='deliveries')
    # SQLite >= 3.35 drops a column in place (no table rebuild, triggers kept)
    op.drop_column('deliveries', 'wave')
