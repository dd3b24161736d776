"""deliveries: drop ix_deliveries_subscription (subscription_id, status)

Revision ID: 0009_deliveries_fewer_indexes
Revises: 0008_optin_retention
Create Date: 2026-12-03 06:25:00

Every look-up of a subscription's deliveries (the release's "no active delivery yet" probe,
erasure, the dashboard) is served as well by the leading `subscription_id` of the unique
constraint uq_deliveries_subscription_restock (subscription_id, restock_id): a subscription
has a handful of deliveries, so filtering their status on the row costs nothing. The index's
`status` column, though, moved its entry on every state change of every delivery (queued ->
sending -> sent): measured on a 100,000-message fan-out (SQLite), the claim's and the
record's UPDATEs took 0.70 s with it and 0.60 s without (issue 13, docs/benchmarks.md).

Plain DROP INDEX / CREATE INDEX, no batch mode (a batch ALTER would rebuild the table).
"""

from alembic import op


revision = '0009_deliveries_fewer_indexes'
down_revision = '0008_optin_retention'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_deliveries_subscription', table_name='deliveries')


def downgrade() -> None:
    op.create_index('ix_deliveries_subscription', 'deliveries', ['subscription_id', 'status'])
