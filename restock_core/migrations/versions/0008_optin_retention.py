"""double opt-in and retention: unconfirmed sign-ups, confirmation deliveries, kept conversions

Revision ID: 0008_optin_retention
Revises: 0007_delivery_wave
Create Date: 2026-12-02 17:10:00

- `subscriptions.status` may be `unconfirmed` (double opt-in). The one-active-sign-up unique
  index covers `pending` and `unconfirmed` (uq_subscriptions_one_pending is recreated with
  that predicate); ix_subscriptions_unconfirmed (created_at, partial) serves the expiry, and
  ix_subscriptions_finished (status, updated_at, partial on notified/unsubscribed/failed)
  the retention purge. The demand triggers of 0003_faces count `pending` only and are
  unchanged: an unconfirmed sign-up is no demand until it is confirmed (the update trigger
  counts the unconfirmed -> pending change).
- `deliveries.kind` (`restock` | `confirm`, default `restock`) and `deliveries.restock_id`
  nullable: a confirmation request goes through the outbox like a restock message.
- `conversions.subscription_id` nullable, foreign key ON DELETE SET NULL (was CASCADE): a
  purged subscription keeps its conversion and revenue.

PostgreSQL: ALTER in place (DROP NOT NULL, a new foreign key). SQLite cannot change a
column's nullability or a foreign key in place, so `deliveries` and `conversions` are
rebuilt (create, copy, drop, rename, index) inside the migration's transaction; neither has
triggers. Dropping `deliveries` cascades to `provider_request_members`, so those rows are
kept aside and put back. No batch mode on `subscriptions` (it would drop the demand
triggers): only its indexes change.
"""

from alembic import op
import sqlalchemy as sa
import restock_core.db


revision = '0008_optin_retention'
down_revision = '0007_delivery_wave'
branch_labels = None
depends_on = None

ACTIVE_WHERE = "status IN ('pending', 'unconfirmed')"
FINISHED_WHERE = "status IN ('notified', 'unsubscribed', 'failed')"


def _big() -> sa.types.TypeEngine:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _metadata() -> sa.MetaData:
    """A MetaData where the referenced tables exist (by id only), so the foreign keys of the
    rebuilt tables resolve when their DDL is compiled."""
    metadata = sa.MetaData()
    for name in ('subscriptions', 'restocks'):
        sa.Table(name, metadata, sa.Column('id', _big(), primary_key=True))
    return metadata


def _deliveries(name: str, restock_nullable: bool, with_kind: bool) -> sa.Table:
    columns = [
        sa.Column('id', _big(), primary_key=True, autoincrement=True),
        sa.Column(
            'subscription_id',
            _big(),
            sa.ForeignKey('subscriptions.id', ondelete='CASCADE',
                          name='fk_deliveries_subscription_id_subscriptions'),
            nullable=False,
        ),
        sa.Column(
            'restock_id',
            _big(),
            sa.ForeignKey('restocks.id', ondelete='CASCADE',
                          name='fk_deliveries_restock_id_restocks'),
            nullable=restock_nullable,
        ),
        sa.Column('channel', sa.String(10), nullable=False),
        sa.Column('provider', sa.String(100)),
        sa.Column('status', sa.String(20), nullable=False, server_default='queued'),
        sa.Column('attempts', sa.Integer, nullable=False, server_default='0'),
        sa.Column('next_attempt_at', restock_core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('lease_until', restock_core.db.UTCDateTime(timezone=True)),
        sa.Column('claim_token', sa.String(40)),
        sa.Column('provider_message_id', sa.String(255)),
        sa.Column('last_error', sa.String(1000)),
        sa.Column('created_at', restock_core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('sent_at', restock_core.db.UTCDateTime(timezone=True)),
        sa.Column('wave', sa.Integer),
    ]
    if with_kind:
        columns.append(sa.Column('kind', sa.String(10), nullable=False, server_default='restock'))
    return sa.Table(
        name,
        _metadata(),
        *columns,
        sa.PrimaryKeyConstraint('id', name='pk_deliveries'),
        sa.UniqueConstraint('subscription_id', 'restock_id',
                            name='uq_deliveries_subscription_restock'),
    )


def _deliveries_indexes() -> None:
    op.create_index('ix_deliveries_queued', 'deliveries', ['id'],
                    sqlite_where=sa.text("status = 'queued'"))
    op.create_index('ix_deliveries_leased', 'deliveries', ['lease_until'],
                    sqlite_where=sa.text("status = 'sending'"))
    op.create_index('ix_deliveries_subscription', 'deliveries', ['subscription_id', 'status'])
    op.create_index('ix_deliveries_provider_message', 'deliveries',
                    ['provider', 'provider_message_id'])
    op.create_index('ix_deliveries_restock_wave', 'deliveries', ['restock_id', 'wave', 'status'])


def _conversions(name: str, nullable: bool, ondelete: str) -> sa.Table:
    return sa.Table(
        name,
        _metadata(),
        sa.Column('id', _big(), primary_key=True, autoincrement=True),
        sa.Column(
            'subscription_id',
            _big(),
            sa.ForeignKey('subscriptions.id', ondelete=ondelete,
                          name='fk_conversions_subscription_id_subscriptions'),
            nullable=nullable,
        ),
        sa.Column('source', sa.String(100), nullable=False),
        sa.Column('order_id', sa.String(255), nullable=False),
        sa.Column('variant_id', sa.String(255), nullable=False),
        sa.Column('quantity', sa.Integer, nullable=False),
        sa.Column('revenue', sa.Numeric(18, 4), nullable=False),
        sa.Column('currency', sa.String(3), nullable=False),
        sa.Column('ordered_at', restock_core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('notified_at', restock_core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('recorded_at', restock_core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name='pk_conversions'),
        sa.UniqueConstraint('subscription_id', name='uq_conversions_subscription'),
    )


def _conversions_indexes() -> None:
    op.create_index('ix_conversions_order', 'conversions', ['source', 'order_id'])
    op.create_index('ix_conversions_report', 'conversions', ['notified_at', 'variant_id'])


def _rebuild_sqlite(table: sa.Table, final: str, copy: list[str]) -> None:
    """Create `table` (named final + '_new'), copy `copy` columns, swap it in."""
    bind = op.get_bind()
    table.create(bind)
    names = ', '.join(copy)
    op.execute(f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {final}")
    op.execute(f"DROP TABLE {final}")
    op.execute(f"ALTER TABLE {table.name} RENAME TO {final}")


DELIVERY_COLUMNS = [
    'id', 'subscription_id', 'restock_id', 'channel', 'provider', 'status', 'attempts',
    'next_attempt_at', 'lease_until', 'claim_token', 'provider_message_id', 'last_error',
    'created_at', 'sent_at', 'wave',
]
CONVERSION_COLUMNS = [
    'id', 'subscription_id', 'source', 'order_id', 'variant_id', 'quantity', 'revenue',
    'currency', 'ordered_at', 'notified_at', 'recorded_at',
]


def _keep_members() -> None:
    op.execute("CREATE TEMPORARY TABLE _kept_members AS SELECT * FROM provider_request_members")


def _restore_members() -> None:
    op.execute(
        "INSERT INTO provider_request_members (delivery_id, request_id) "
        "SELECT k.delivery_id, k.request_id FROM _kept_members k "
        "WHERE k.delivery_id IN (SELECT id FROM deliveries)"
    )
    op.execute("DROP TABLE _kept_members")


def _subscription_indexes(active_where: str | None) -> None:
    op.drop_index('uq_subscriptions_one_pending', table_name='subscriptions')
    where = active_where or "status = 'pending'"
    op.create_index(
        'uq_subscriptions_one_pending',
        'subscriptions',
        ['variant_id', 'scope', 'channel', 'contact'],
        unique=True,
        sqlite_where=sa.text(where),
        postgresql_where=sa.text(where),
    )


def upgrade() -> None:
    _subscription_indexes(ACTIVE_WHERE)
    op.create_index(
        'ix_subscriptions_unconfirmed', 'subscriptions', ['created_at'],
        sqlite_where=sa.text("status = 'unconfirmed'"),
        postgresql_where=sa.text("status = 'unconfirmed'"),
    )
    op.create_index(
        'ix_subscriptions_finished', 'subscriptions', ['status', 'updated_at'],
        sqlite_where=sa.text(FINISHED_WHERE),
        postgresql_where=sa.text(FINISHED_WHERE),
    )
    if op.get_bind().dialect.name == 'postgresql':
        op.add_column(
            'deliveries',
            sa.Column('kind', sa.String(10), nullable=False, server_default='restock'),
        )
        op.alter_column('deliveries', 'restock_id', nullable=True)
        op.drop_constraint(
            'fk_conversions_subscription_id_subscriptions', 'conversions', type_='foreignkey'
        )
        op.create_foreign_key(
            'fk_conversions_subscription_id_subscriptions', 'conversions', 'subscriptions',
            ['subscription_id'], ['id'], ondelete='SET NULL',
        )
        op.alter_column('conversions', 'subscription_id', nullable=True)
        return
    _keep_members()
    _rebuild_sqlite(_deliveries('deliveries_new', True, True), 'deliveries', DELIVERY_COLUMNS)
    _deliveries_indexes()
    _restore_members()
    _rebuild_sqlite(
        _conversions('conversions_new', True, 'SET NULL'), 'conversions', CONVERSION_COLUMNS
    )
    _conversions_indexes()


def downgrade() -> None:
    # confirmation deliveries and orphaned conversions cannot be expressed before 0008
    op.execute("DELETE FROM deliveries WHERE kind <> 'restock' OR restock_id IS NULL")
    op.execute("DELETE FROM conversions WHERE subscription_id IS NULL")
    op.execute("DELETE FROM subscriptions WHERE status = 'unconfirmed'")
    op.drop_index('ix_subscriptions_finished', table_name='subscriptions')
    op.drop_index('ix_subscriptions_unconfirmed', table_name='subscriptions')
    _subscription_indexes(None)
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_column('deliveries', 'kind')
        op.alter_column('deliveries', 'restock_id', nullable=False)
        op.drop_constraint(
            'fk_conversions_subscription_id_subscriptions', 'conversions', type_='foreignkey'
        )
        op.create_foreign_key(
            'fk_conversions_subscription_id_subscriptions', 'conversions', 'subscriptions',
            ['subscription_id'], ['id'], ondelete='CASCADE',
        )
        op.alter_column('conversions', 'subscription_id', nullable=False)
        return
    _keep_members()
    _rebuild_sqlite(_deliveries('deliveries_new', False, False), 'deliveries', DELIVERY_COLUMNS)
    _deliveries_indexes()
    _restore_members()
    _rebuild_sqlite(
        _conversions('conversions_new', False, 'CASCADE'), 'conversions', CONVERSION_COLUMNS
    )
    _conversions_indexes()
