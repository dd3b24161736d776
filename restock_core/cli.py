"""The `restock` command line. Bad input gets one clear line on stderr and a non-zero exit,
never a traceback."""

from __future__ import annotations

import functools
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
import sqlalchemy as sa

from .app import App
from .config import load_config
from .errors import ConfigError, RestockError
from .logs import setup_logging

F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def handle_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            _fail(f"configuration: {exc.message}", 2)
        except RestockError as exc:
            _fail(exc.message, 1)
        except sa.exc.OperationalError as exc:
            _fail(f"database: {str(exc.orig or exc).splitlines()[0]}", 1)
        except sa.exc.ProgrammingError as exc:
            _fail(
                f"database: {str(exc.orig or exc).splitlines()[0]} (did you run 'restock db upgrade'?)",
                1,
            )

    return wrapper  # type: ignore[return-value]


class Context:
    def __init__(self, config_path: str | None, database: str | None):
        self.config_path = config_path
        self.database = database
        self._app: App | None = None

    def app(self) -> App:
        if self._app is None:
            overrides = {"database": self.database} if self.database else None
            config = load_config(self.config_path, overrides=overrides)
            setup_logging(config.settings.log_level)
            self._app = App(config)
        return self._app


pass_ctx = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", envvar="RESTOCK_CONFIG", help="plugins.toml to use")
@click.option("--database", help="Database URL (overrides [restock] database)")
@click.version_option("0.1.0", prog_name="restock")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, database: str | None) -> None:
    """restock: back-in-stock notifications."""
    ctx.obj = Context(config_path, database)


@main.command()
@click.option("--host", help="Interface to bind (default from [restock] host)")
@click.option("--port", type=int, help="Port (default from [restock] port)")
@click.option("--no-worker", is_flag=True, help="API only; run `restock worker` separately")
@pass_ctx
@handle_errors
def serve(ctx: Context, host: str | None, port: int | None, no_worker: bool) -> None:
    """Run the HTTP API with the worker and pollers in one process (the embedded default)."""
    import uvicorn

    from .api import create_api

    app = ctx.app()
    _ensure_schema(app)
    api = create_api(app, run_worker=not no_worker)
    host = host or app.settings.host
    port = port or app.settings.port
    click.echo(f"restock serving on http://{host}:{port} (docs at /docs)", err=True)
    uvicorn.run(api, host=host, port=port, log_level="warning", access_log=False)


def _ensure_schema(app: App) -> None:
    """SQLite (the embedded default) is migrated on start; PostgreSQL is migrated by an
    explicit `restock db upgrade` so that N processes starting together do not race."""
    from . import migrate

    if not app.is_postgres:
        app.migrate()
        return
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()
    current = migrate.current_revision(app.engine)
    if current != head:
        raise RestockError(
            f"the database schema is at {current or 'nothing'}, expected {head}: "
            "run 'restock db upgrade' first"
        )


@main.command()
@click.option("--once", is_flag=True, help="Do what is due now, then exit")
@pass_ctx
@handle_errors
def worker(ctx: Context, once: bool) -> None:
    """Release restocks and send notifications (run several against PostgreSQL to scale)."""
    app = ctx.app()
    _ensure_schema(app)
    w = app.worker()
    if once:
        done = w.drain(max_seconds=3600)
        click.echo(f"processed {done} items")
        return
    stop = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        stop.set()
        app.wake_event.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    w.run(stop)


@main.command()
@click.option("--source", help="Only this inventory source (plugin id)")
@pass_ctx
@handle_errors
def check(ctx: Context, source: str | None) -> None:
    """One reconciliation pass: re-read stock for every variant with pending subscribers."""
    app = ctx.app()
    _ensure_schema(app)
    if source is not None:
        app.adapter_instance(source)
    w = app.worker()
    started = time.monotonic()
    with click.progressbar(length=0, label="checking stock", file=sys.stderr) as bar:
        result = w.reconcile(source, progress=bar.update)
    done = w.drain(max_seconds=600) if result.restocks_opened else 0
    click.echo(
        f"checked {result.keys} variant/scope pairs in {time.monotonic() - started:.1f}s: "
        f"{result.changed} updated, {result.restocks_opened} restocks, {done} deliveries handled"
    )
    if result.errors:
        _fail("; ".join(result.errors))


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@pass_ctx
@handle_errors
def db_upgrade(ctx: Context) -> None:
    """Apply migrations (Alembic) up to the latest schema."""
    app = ctx.app()
    app.migrate()
    click.echo(f"database at {app.engine.url.render_as_string(hide_password=True)} is up to date")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON")
@pass_ctx
@handle_errors
def plugins(ctx: Context, as_json: bool) -> None:
    """List installed plugins: what each registers, its distribution and version, the hooks
    it implements and the instances configured from it; broken plugins too. Exits 1 when
    the configuration names a plugin that is not installed (or failed to load)."""
    from .plugins import PluginRegistry

    registry = PluginRegistry()
    config = load_config(ctx.config_path)
    rows = registry.describe(config)
    problems = registry.check(config)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        shown = [
            {
                **row,
                "hooks": ", ".join(row["hooks"]),
                "configured as": ", ".join(row["configured"]) or None,
            }
            for row in rows
        ]
        columns = ["name", "kind", "distribution", "version", "configured as", "hooks"]
        _table(shown, [*columns, "description"])
    for problem in problems:
        click.echo(f"error: configuration: {problem.message}", err=True)
    if problems:
        raise SystemExit(1)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


@main.command()
@click.argument("variant_id")
@click.option("--email")
@click.option("--phone", help="E.164, e.g. +14155550100")
@click.option("--channel", type=click.Choice(["email", "sms"]))
@click.option("--scope")
@click.option("--source", help="Inventory source (plugin id) when several are configured")
@click.option("--customer-id")
@pass_ctx
@handle_errors
def subscribe(
    ctx: Context,
    variant_id: str,
    email: str | None,
    phone: str | None,
    channel: str | None,
    scope: str | None,
    source: str | None,
    customer_id: str | None,
) -> None:
    """Sign someone up for a sold-out variant."""
    app = ctx.app()
    _ensure_schema(app)
    result = app.subscribe(
        variant_id,
        email=email,
        phone=phone,
        channel=channel,
        scope=scope,
        source=source,
        customer_id=customer_id,
    )
    sub = result.subscription
    verb = "subscribed" if result.created else "already subscribed"
    click.echo(f"{verb}: #{sub.id} {sub.contact} ({sub.channel}) for {sub.variant_id}@{sub.scope}")


@main.group()
def stock() -> None:
    """Stock for the built-in manual source."""


@stock.command("set")
@click.argument("variant_id")
@click.argument("quantity", type=click.IntRange(min=0))
@click.option("--scope")
@click.option("--source")
@pass_ctx
@handle_errors
def stock_set(
    ctx: Context, variant_id: str, quantity: int, scope: str | None, source: str | None
) -> None:
    """Set a variant's available quantity; a restock is released by the running worker
    (or by `restock worker --once`)."""
    app = ctx.app()
    _ensure_schema(app)
    result = app.set_stock(variant_id, quantity, scope=scope, source=source)
    note = f", restock #{result.restocks_opened[0]} opened" if result.restocks_opened else ""
    click.echo(f"{variant_id}@{scope or 'default'} = {quantity}{note}")


@main.command()
@click.option("--variant", "variant_id")
@click.option("--scope")
@click.option("--status", type=click.Choice(["pending", "notified", "failed", "unsubscribed"]))
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--after", type=int, help="Show ids after this one (pagination)")
@pass_ctx
@handle_errors
def subscriptions(
    ctx: Context,
    variant_id: str | None,
    scope: str | None,
    status: str | None,
    limit: int,
    after: int | None,
) -> None:
    """List subscriptions as a table."""
    app = ctx.app()
    _ensure_schema(app)
    page = app.list_subscriptions(
        variant_id=variant_id, scope=scope, status=status, limit=limit, after=after
    )
    rows = [
        {
            "id": s.id,
            "variant": s.variant_id,
            "scope": s.scope,
            "channel": str(s.channel),
            "contact": s.contact,
            "status": str(s.status),
            "created": s.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            "notified": s.notified_at.strftime("%Y-%m-%d %H:%M:%S") if s.notified_at else None,
        }
        for s in page.items
    ]
    _table(rows, ["id", "variant", "scope", "channel", "contact", "status", "created", "notified"])
    if page.next_after:
        click.echo(f"(more: --after {page.next_after})")


@main.group()
def deliveries() -> None:
    """Operate on the delivery outbox."""


def _when(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 time (e.g. 2026-12-01T09:00:00Z)", param_hint=option
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@deliveries.command("retry")
@click.option("--restock", "restock_id", type=click.IntRange(1), help="Only this restock's")
@click.option("--provider", help="Only deliveries through this provider instance")
@click.option("--reason", help="Only failures whose reason contains this text")
@click.option("--since", help="Only deliveries created at or after this time (ISO 8601)")
@click.option("--until", help="Only deliveries created before this time (ISO 8601)")
@pass_ctx
@handle_errors
def deliveries_retry(
    ctx: Context,
    restock_id: int | None,
    provider: str | None,
    reason: str | None,
    since: str | None,
    until: str | None,
) -> None:
    """Queue failed deliveries again (after fixing an API key or a template). Suppressed
    contacts and people who signed up again since are left out."""
    app = ctx.app()
    _ensure_schema(app)
    ids = app.retry_deliveries(
        restock_id=restock_id,
        provider=provider,
        reason=reason,
        since=_when(since, "--since"),
        until=_when(until, "--until"),
    )
    click.echo(f"{len(ids)} failed deliveries queued again")


# `restock preview` lives in its own module (message previews with the dashboard's code)
from .cli_preview import preview  # noqa: E402

main.add_command(preview)


if __name__ == "__main__":  # pragma: no cover
    logging.basicConfig()
    main()
