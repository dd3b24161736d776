"""dashboard: pending demand per variant kept by triggers; delivery counts per restock

Revision ID: 0003_faces
Revises: 0002
Create Date: 2026-12-02 14:50:00

- `demand` (source, variant_id, scope) -> pending count and the latest titles, kept exact by
  triggers on `subscriptions`, whichever code path changes a row (sign-up, release, failure,
  unsubscribe, requeue, delete). Counting 1,000,000 pending rows per page view took seconds;
  reading 50 rows of `demand` takes milliseconds.
  SQLite: row triggers (rows are updated in place, so a 1,000-row batch is 1,000 cheap
  updates). PostgreSQL: statement triggers with transition tables, one aggregated upsert per
  statement in key order (a row trigger would stack 1,000 versions of one hot row per
  statement, and unordered upserts from concurrent workers could deadlock).
  NOTE: Alembic's SQLite batch mode recreates a table for some ALTERs and drops its triggers;
  a later migration that does that to `subscriptions` must create these triggers again
  (tests/test_dashboard.py::test_demand_counts_follow_every_change fails if they go missing).
- ix_deliveries_restock (restock_id, status): each restock's sent/failed/queued counts.
"""

from alembic import op
import sqlalchemy as sa


revision = '0003_faces'
down_revision = '0002'
branch_labels = None
depends_on = None

KEY = "source, variant_id, scope"

SQLITE_TRIGGERS = [
    f"""
    CREATE TRIGGER trg_demand_insert AFTER INSERT ON subscriptions
    WHEN NEW.status = 'pending'
    BEGIN
        INSERT INTO demand ({KEY}, pending, product_title, variant_title)
        VALUES (NEW.source, NEW.variant_id, NEW.scope, 1, NEW.product_title, NEW.variant_title)
        ON CONFLICT ({KEY}) DO UPDATE SET
            pending = pending + 1,
            product_title = COALESCE(excluded.product_title, product_title),
            variant_title = COALESCE(excluded.variant_title, variant_title);
    END
    """,
    f"""
    CREATE TRIGGER trg_demand_update AFTER UPDATE OF status, source, variant_id, scope
    ON subscriptions
    WHEN (OLD.status = 'pending') <> (NEW.status = 'pending')
      OR (OLD.status = 'pending' AND (OLD.source, OLD.variant_id, OLD.scope)
                                     <> (NEW.source, NEW.variant_id, NEW.scope))
    BEGIN
        UPDATE demand SET pending = pending - 1
        WHERE OLD.status = 'pending'
          AND source = OLD.source AND variant_id = OLD.variant_id AND scope = OLD.scope;
        INSERT INTO demand ({KEY}, pending, product_title, variant_title)
        SELECT NEW.source, NEW.variant_id, NEW.scope, 1, NEW.product_title, NEW.variant_title
        WHERE NEW.status = 'pending'
        ON CONFLICT ({KEY}) DO UPDATE SET pending = pending + 1;
    END
    """,
    """
    CREATE TRIGGER trg_demand_delete AFTER DELETE ON subscriptions
    WHEN OLD.status = 'pending'
    BEGIN
        UPDATE demand SET pending = pending - 1
        WHERE source = OLD.source AND variant_id = OLD.variant_id AND scope = OLD.scope;
    END
    """,
]

PG_FUNCTIONS = [
    f"""
    CREATE FUNCTION restock_demand_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO demand ({KEY}, pending, product_title, variant_title)
        SELECT {KEY}, count(*), max(product_title), max(variant_title)
        FROM new_rows WHERE status = 'pending'
        GROUP BY {KEY} ORDER BY {KEY}
        ON CONFLICT ({KEY}) DO UPDATE SET
            pending = demand.pending + EXCLUDED.pending,
            product_title = COALESCE(EXCLUDED.product_title, demand.product_title),
            variant_title = COALESCE(EXCLUDED.variant_title, demand.variant_title);
        RETURN NULL;
    END $$
    """,
    f"""
    CREATE FUNCTION restock_demand_updated() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO demand ({KEY}, pending)
        SELECT {KEY}, sum(d) FROM (
            SELECT {KEY}, 1 AS d FROM new_rows WHERE status = 'pending'
            UNION ALL
            SELECT {KEY}, -1 AS d FROM old_rows WHERE status = 'pending'
        ) AS changes
        GROUP BY {KEY} HAVING sum(d) <> 0 ORDER BY {KEY}
        ON CONFLICT ({KEY}) DO UPDATE SET pending = demand.pending + EXCLUDED.pending;
        RETURN NULL;
    END $$
    """,
    f"""
    CREATE FUNCTION restock_demand_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO demand ({KEY}, pending)
        SELECT {KEY}, -count(*) FROM old_rows WHERE status = 'pending'
        GROUP BY {KEY} ORDER BY {KEY}
        ON CONFLICT ({KEY}) DO UPDATE SET pending = demand.pending + EXCLUDED.pending;
        RETURN NULL;
    END $$
    """,
]

PG_TRIGGERS = [
    """CREATE TRIGGER trg_demand_insert AFTER INSERT ON subscriptions
       REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
       EXECUTE FUNCTION restock_demand_inserted()""",
    """CREATE TRIGGER trg_demand_update AFTER UPDATE ON subscriptions
       REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
       EXECUTE FUNCTION restock_demand_updated()""",
    """CREATE TRIGGER trg_demand_delete AFTER DELETE ON subscriptions
       REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
       EXECUTE FUNCTION restock_demand_deleted()""",
]


def upgrade() -> None:
    op.create_table(
        'demand',
        sa.Column('source', sa.String(length=100), nullable=False),
        sa.Column('variant_id', sa.String(length=255), nullable=False),
        sa.Column('scope', sa.String(length=255), nullable=False),
        sa.Column('pending', sa.Integer(), server_default='0', nullable=False),
        sa.Column('product_title', sa.String(length=500), nullable=True),
        sa.Column('variant_title', sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint('source', 'variant_id', 'scope', name=op.f('pk_demand')),
    )
    with op.batch_alter_table('demand', schema=None) as batch_op:
        batch_op.create_index('ix_demand_pending', ['pending'], unique=False)
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_deliveries_restock', ['restock_id', 'status'], unique=False)
    # what is pending now (the triggers keep it from here on)
    op.execute(
        f"""INSERT INTO demand ({KEY}, pending, product_title, variant_title)
            SELECT {KEY}, count(*), max(product_title), max(variant_title)
            FROM subscriptions WHERE status = 'pending' GROUP BY {KEY}"""
    )
    if op.get_bind().dialect.name == 'postgresql':
        for statement in PG_FUNCTIONS + PG_TRIGGERS:
            op.execute(statement)
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    for name in ('trg_demand_insert', 'trg_demand_update', 'trg_demand_delete'):
        if op.get_bind().dialect.name == 'postgresql':
            op.execute(f'DROP TRIGGER IF EXISTS {name} ON subscriptions')
        else:
            op.execute(f'DROP TRIGGER IF EXISTS {name}')
    if op.get_bind().dialect.name == 'postgresql':
        for name in ('restock_demand_inserted', 'restock_demand_updated', 'restock_demand_deleted'):
            op.execute(f'DROP FUNCTION IF EXISTS {name}()')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_restock')
    op.drop_table('demand')
