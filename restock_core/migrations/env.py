"""Alembic environment: restock runs migrations programmatically (`restock db upgrade`),
handing the engine over in `config.attributes["connection"]`."""

from __future__ import annotations

from alembic import context

from restock_core.db import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only when someone runs the alembic CLI by hand
    from restock_core.db import create_engine

    engine = create_engine(context.config.get_main_option("sqlalchemy.url") or "")
    connection = engine.connect()

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
