"""edge: catalog content set by trusted callers; consent records

Revision ID: 0005_edge
Revises: 0004_delivery
Create Date: 2026-12-02 15:25:00

- `catalog` (source, variant_id): titles, product URL and image set by the admin for sources
  without a catalog of their own (the built-in `manual` source). Public sign-ups can no longer
  carry message content, so this is where the manual source's content comes from.
- `consents`: one row per stored sign-up: when, IP, user agent, channel, contact and the
  consent text/version the form showed. Deleted with its subscription.
"""

from alembic import op
import sqlalchemy as sa
import restock_core.db


revision = '0005_edge'
down_revision = '0004_delivery'
branch_labels = None
depends_on = None


def upgrade() -> None:
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        'catalog',
        sa.Column('source', sa.String(length=100), nullable=False),
        sa.Column('variant_id', sa.String(length=255), nullable=False),
        sa.Column('product_title', sa.String(length=500), nullable=True),
        sa.Column('variant_title', sa.String(length=500), nullable=True),
        sa.Column('url', sa.String(length=2000), nullable=True),
        sa.Column('image_url', sa.String(length=2000), nullable=True),
        sa.Column('updated_at', restock_core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('source', 'variant_id', name=op.f('pk_catalog')),
    )
    op.create_table(
        'consents',
        sa.Column('id', big_id, autoincrement=True, nullable=False),
        sa.Column('subscription_id', big_id, nullable=False),
        sa.Column('channel', sa.String(length=10), nullable=False),
        sa.Column('contact', sa.String(length=320), nullable=False),
        sa.Column('ip', sa.String(length=64), nullable=True),
        sa.Column('user_agent', sa.String(length=500), nullable=True),
        sa.Column('text', sa.String(length=2000), nullable=True),
        sa.Column('version', sa.String(length=100), nullable=True),
        sa.Column('created_at', restock_core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ['subscription_id'],
            ['subscriptions.id'],
            name=op.f('fk_consents_subscription_id_subscriptions'),
            ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_consents')),
    )
    op.create_index('ix_consents_subscription', 'consents', ['subscription_id'], unique=False)
    op.create_index('ix_consents_contact', 'consents', ['contact'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_consents_contact', table_name='consents')
    op.drop_index('ix_consents_subscription', table_name='consents')
    op.drop_table('consents')
    op.drop_table('catalog')
