"""The `restock` command line. Bad input gets one clear line on stderr and a non-zero exit,
never a traceback.

Start-up is kept fast: this module imports only click and the standard library at import
time. SQLAlchemy, Alembic, FastAPI, uvicorn, Jinja2, httpx and prometheus_client are imported
inside the commands that need them, so `restock --help`, `restock init` and `restock plugins`
do not pay for them (see bench/bench_cli_startup.py).
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .errors import ConfigError, NotFoundError, RestockError

if TYPE_CHECKING:
    from .app import App
    from .config import Config

F = TypeVar("F", bound=Callable[..., Any])

VERSION = "0.1.0"

#: what runs when no config file is found (kept in step with config.default_plugins)
DEFAULTS_NOTE = "SQLite restock.db, the logger provider, manual stock"


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _database_error(exc: Exception) -> tuple[str, int] | None:
    """SQLAlchemy's errors, recognised without importing SQLAlchemy when nothing did yet."""
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is None:
        return None
    if isinstance(exc, sa_exc.ArgumentError):  # includes NoSuchModuleError: a bad URL
        return f"configuration: option 'database': {exc}", 2
    if isinstance(exc, sa_exc.OperationalError):
        return f"database: {str(exc.orig or exc).splitlines()[0]}", 1
    if isinstance(exc, sa_exc.ProgrammingError):
        first = str(exc.orig or exc).splitlines()[0]
        return f"database: {first} (did you run 'restock db upgrade'?)", 1
    return None


def handle_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            _fail(f"configuration: {exc.message}", 2)
        except RestockError as exc:
            _fail(exc.message, 1)
        except Exception as exc:
            known = _database_error(exc)
            if known is None:
                raise
            _fail(*known)

    return wrapper  # type: ignore[return-value]


class State:
    """What the global options said, wherever on the command line they were given."""

    def __init__(self) -> None:
        self.config_path: str | None = None
        self.database: str | None = None
        self._config: Config | None = None
        self._app: App | None = None

    def config(self) -> Config:
        if self._config is None:
            from .config import load_config

            overrides = {"database": self.database} if self.database else None
            self._config = load_config(self.config_path, overrides=overrides)
        return self._config

    def config_source(self) -> str:
        """One line saying which config file was loaded, or that none was found."""
        config = self.config()
        if config.path is None:
            line = (
                "no config file found (no --config, no RESTOCK_CONFIG, no ./plugins.toml): "
                f"using built-in defaults ({DEFAULTS_NOTE}); `restock init` writes one"
            )
        else:
            if self.config_path:
                how = "--config"
            elif os.environ.get("RESTOCK_CONFIG"):
                how = "RESTOCK_CONFIG"
            else:
                how = "the current directory"
            line = f"config {config.path.resolve()} (from {how})"
        if self.database:
            line += "; database from --database"
        return line

    def app(self, *, announce: bool = False) -> App:
        if self._app is None:
            from .app import App
            from .logs import setup_logging

            config = self.config()
            if announce:
                click.echo(f"restock: {self.config_source()}", err=True)
            setup_logging(config.settings.log_level)
            self._app = App(config)
        return self._app


pass_state = click.make_pass_decorator(State, ensure=True)


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None and param.name is not None:
        setattr(ctx.ensure_object(State), param.name, value)
    return value


def _global_options() -> list[click.Option]:
    """`--config` and `--database`, accepted on the group and on every subcommand, so that
    `restock --config x serve` and `restock serve --config x` mean the same."""
    return [
        click.Option(
            ["--config", "config_path"],
            metavar="PATH",
            expose_value=False,
            callback=_remember,
            help="plugins.toml to use (default: $RESTOCK_CONFIG, then ./plugins.toml).",
        ),
        click.Option(
            ["--database"],
            metavar="URL",
            expose_value=False,
            callback=_remember,
            help="Database URL (overrides [restock] database).",
        ),
    ]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(VERSION, prog_name="restock")
@click.pass_context
def main(ctx: click.Context) -> None:
    """restock: back-in-stock notifications.

    Start with `restock init`, check the result with `restock config check`, then
    `restock serve`.
    """
    ctx.ensure_object(State)


# ---------------------------------------------------------------------- init and config


@main.command()
@click.option(
    "--plugins",
    "plugin_names",
    metavar="NAMES",
    help="Comma-separated plugins to configure, e.g. sendgrid,shopify "
    "(default: logger,manual). A missing provider or stock source is filled with "
    "logger or manual.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@pass_state
@handle_errors
def init(state: State, plugin_names: str | None, force: bool) -> None:
    """Write a commented plugins.toml (to --config PATH, else ./plugins.toml)."""
    from .cli_init import render_config, resolve_choices

    target = Path(state.config_path or "plugins.toml")
    if target.exists() and not force:
        _fail(f"{target} already exists; use --force to overwrite it", 1)
    names = [n.strip() for n in (plugin_names or "").split(",") if n.strip()]
    chosen = resolve_choices(names)
    text, env_vars = render_config(chosen, database=state.database)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    click.echo(f"wrote {target} ({', '.join(f.name for f in chosen)})")
    if env_vars:
        click.echo("set these environment variables: " + ", ".join(env_vars))
    check = "restock config check"
    if state.config_path:
        check += f" --config {state.config_path}"
    click.echo(f"then run: {check}")


@main.group("config")
def config_group() -> None:
    """The configuration file."""


@config_group.command("check")
@pass_state
@handle_errors
def config_check(state: State) -> None:
    """Validate the config and every plugin's options, with the messages `serve` gives.

    Builds every configured plugin exactly as `serve` does, without touching the database.
    """
    app = state.app(announce=True)
    try:
        url = app.engine.url.render_as_string(hide_password=True)
        click.echo(f"database: {url}")
        for instance in app.instances:
            channels = getattr(instance.obj, "channels", None)
            served = f": {', '.join(sorted(str(c) for c in channels))}" if channels else ""
            click.echo(
                f"{instance.kind.replace('_', ' ')} {instance.id!r} "
                f"({instance.factory.name}){served}"
            )
        routing = ", ".join(f"{ch} -> {inst.id}" for ch, inst in sorted(app.routing.items()))
        click.echo(f"channels: {routing}")
        click.echo("ok: the configuration is valid")
    finally:
        app.close()


# ---------------------------------------------------------------------- running


@main.command()
@click.option("--host", help="Interface to bind (default from [restock] host)")
@click.option("--port", type=int, help="Port (default from [restock] port)")
@click.option("--no-worker", is_flag=True, help="API only; run `restock worker` separately")
@click.option(
    "--root-path",
    metavar="PREFIX",
    help="Path prefix a reverse proxy strips before forwarding (default: the path of "
    '[restock] public_url, e.g. /restock; "" for none).',
)
@pass_state
@handle_errors
def serve(
    state: State, host: str | None, port: int | None, no_worker: bool, root_path: str | None
) -> None:
    """Run the HTTP API with the worker and pollers in one process (the embedded default)."""
    app = state.app(announce=True)
    import uvicorn

    from .api import create_api

    _ensure_schema(app)
    api = create_api(app, run_worker=not no_worker)
    if not no_worker:
        from .worker import freeze_heap

        freeze_heap()  # the embedded worker's fan-outs: see freeze_heap
    host = host or app.settings.host
    port = port or app.settings.port
    if root_path is None:
        from urllib.parse import urlsplit

        root_path = urlsplit(app.settings.public_url).path
    root_path = "/" + root_path.strip("/") if root_path.strip("/") else ""
    click.echo(
        f"restock serving on http://{host}:{port} (docs at {root_path}/docs"
        f"{f', behind a proxy at {root_path}' if root_path else ''})",
        err=True,
    )
    uvicorn.run(
        api, host=host, port=port, root_path=root_path, log_level="warning", access_log=False
    )


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


def work_once(app: App) -> tuple[int, int]:
    """`restock worker --once`: what a running worker would do now: release and deliver until
    nothing is due, then run the plugins' periodic tasks whose pass is due (order catch-up
    reads, ...), claimed in the shared schedule like a running worker's. Returns (items
    processed, periodic tasks run)."""
    from .periodic import PeriodicRunner

    done = app.worker().drain(max_seconds=3600)
    return done, PeriodicRunner(app.store, app.periodic_tasks()).run_due()


@main.command()
@click.option("--once", is_flag=True, help="Do what is due now, then exit")
@pass_state
@handle_errors
def worker(state: State, once: bool) -> None:
    """Release restocks and send notifications (run several against PostgreSQL to scale)."""
    app = state.app(announce=True)
    _ensure_schema(app)
    from .worker import freeze_heap

    freeze_heap()  # this process is the worker's: see freeze_heap
    if once:
        done, tasks = work_once(app)
        click.echo(f"processed {done} items" + (f", ran {tasks} periodic tasks" if tasks else ""))
        return
    w = app.worker()
    stop = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        stop.set()
        app.wake_event.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    w.run(stop)


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _no_items() -> Iterator[int]:
    yield from ()


@contextmanager
def progress(label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr for long work whose total is not known up front; nothing at
    all when stderr is not a terminal (cron, pipes, logs)."""
    if not _stderr_is_tty():
        yield lambda n: None
        return
    # a generator has no length hint, so click draws an open-ended bar with a count and rate
    nothing: Iterator[int] = iter(_no_items())
    with click.progressbar(
        nothing,
        label=label,
        file=sys.stderr,
        show_pos=True,
        show_eta=False,
        item_show_func=None,
    ) as bar:
        yield bar.update


@main.command()
@click.option("--source", help="Only this inventory source (plugin id)")
@pass_state
@handle_errors
def check(state: State, source: str | None) -> None:
    """One reconciliation pass: re-read stock for every variant with pending subscribers."""
    app = state.app()
    _ensure_schema(app)
    if source is not None:
        app.adapter_instance(source)
    w = app.worker()
    started = time.monotonic()
    with progress("checking stock (variant/scope pairs)") as advance:
        result = w.reconcile(source, progress=advance)
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
@pass_state
@handle_errors
def db_upgrade(state: State) -> None:
    """Apply migrations (Alembic) up to the latest schema."""
    app = state.app()
    app.migrate()
    click.echo(f"database at {app.engine.url.render_as_string(hide_password=True)} is up to date")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON")
@click.option(
    "--entry-points",
    is_flag=True,
    help="Only read installed entry points, importing no plugin code (fast; shows no kinds "
    "and cannot tell a broken plugin).",
)
@pass_state
@handle_errors
def plugins(state: State, as_json: bool, entry_points: bool) -> None:
    """List installed plugins: what each registers, its distribution and version, the hooks
    it implements and the instances configured from it; broken plugins too. Exits 2 when
    the configuration names a plugin that is not installed (or failed to load)."""
    config = state.config()
    if entry_points:
        _entry_point_rows(config, as_json)
        return
    from .plugins import PluginRegistry

    registry = PluginRegistry()
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
        sys.exit(2)


def _entry_point_rows(config: Config, as_json: bool) -> None:
    """`restock plugins --entry-points`: what is installed, from package metadata alone."""
    import importlib.metadata

    configured: dict[str, list[str]] = {}
    for entry in config.plugins:
        configured.setdefault(entry.resolve, []).append(entry.id)
    rows: list[dict[str, Any]] = []
    for ep in importlib.metadata.entry_points(group="restock"):
        dist = ep.dist
        rows.append(
            {
                "name": ep.name,
                "module": ep.value,
                "distribution": dist.metadata["Name"] if dist else None,
                "version": dist.version if dist else None,
                "configured": configured.get(ep.name, []),
                "description": dist.metadata["Summary"] if dist else None,
            }
        )
    rows.sort(key=lambda r: str(r["name"]))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    shown = [{**r, "configured as": ", ".join(r["configured"]) or None} for r in rows]
    _table(shown, ["name", "module", "distribution", "version", "configured as"])


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
@pass_state
@handle_errors
def subscribe(
    state: State,
    variant_id: str,
    email: str | None,
    phone: str | None,
    channel: str | None,
    scope: str | None,
    source: str | None,
    customer_id: str | None,
) -> None:
    """Sign someone up for a sold-out variant."""
    app = state.app()
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
@click.option("--product-title", help="Product title for messages")
@click.option("--variant-title", help="Variant title for messages")
@click.option("--url", help="Product page URL for messages (http/https)")
@click.option("--image-url", help="Image URL for messages (http/https)")
@pass_state
@handle_errors
def stock_set(
    state: State,
    variant_id: str,
    quantity: int,
    scope: str | None,
    source: str | None,
    product_title: str | None,
    variant_title: str | None,
    url: str | None,
    image_url: str | None,
) -> None:
    """Set a variant's available quantity (and optionally its titles, URL and image for
    messages); a restock is released by the running worker (or by `restock worker --once`)."""
    app = state.app()
    _ensure_schema(app)
    result = app.set_stock(
        variant_id,
        quantity,
        scope=scope,
        source=source,
        product_title=product_title,
        variant_title=variant_title,
        url=url,
        image_url=image_url,
    )
    note = f", restock #{result.restocks_opened[0]} opened" if result.restocks_opened else ""
    click.echo(f"{variant_id}@{scope or 'default'} = {quantity}{note}")


@main.command()
@click.option("--variant", "variant_id")
@click.option("--scope")
@click.option("--status", type=click.Choice(["pending", "notified", "failed", "unsubscribed"]))
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--after", type=int, help="Show ids after this one (pagination)")
@pass_state
@handle_errors
def subscriptions(
    state: State,
    variant_id: str | None,
    scope: str | None,
    status: str | None,
    limit: int,
    after: int | None,
) -> None:
    """List subscriptions as a table."""
    app = state.app()
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
@pass_state
@handle_errors
def deliveries_retry(
    state: State,
    restock_id: int | None,
    provider: str | None,
    reason: str | None,
    since: str | None,
    until: str | None,
) -> None:
    """Queue failed deliveries again (after fixing an API key or a template). Suppressed
    contacts and people who signed up again since are left out."""
    app = state.app()
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


def _contact_options(func: F) -> F:
    func = click.option("--phone", help="E.164 phone number")(func)
    return click.option("--email", help="email address")(func)  # type: ignore[return-value]


@main.group()
def contacts() -> None:
    """Data rights: export or erase everything about one person."""


@contacts.command("export")
@_contact_options
@pass_state
@handle_errors
def contacts_export(state: State, email: str | None, phone: str | None) -> None:
    """Print everything stored about one person as JSON (subscriptions, deliveries,
    consents, suppressions)."""
    app = state.app()
    _ensure_schema(app)
    click.echo(json.dumps(app.export_contact(email=email, phone=phone), indent=2))


@contacts.command("erase")
@_contact_options
@click.option("--yes", is_flag=True, help="Do not ask for confirmation")
@pass_state
@handle_errors
def contacts_erase(state: State, email: str | None, phone: str | None, yes: bool) -> None:
    """Delete one person's subscriptions, deliveries and consent records; a suppression is
    kept as a keyed hash so erasure does not re-enable mail."""
    app = state.app()
    _ensure_schema(app)
    if not yes:
        click.confirm(f"Erase everything about {email or phone}?", abort=True)
    click.echo(json.dumps(app.erase_contact(email=email, phone=phone)))


@main.group()
def suppressions() -> None:
    """The suppression list: contacts that bounced or opted out."""


@suppressions.command("list")
@click.option("--channel", type=click.Choice(["email", "sms"]))
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--after", help="channel:contact of the last row shown (pagination)")
@pass_state
@handle_errors
def suppressions_list(state: State, channel: str | None, limit: int, after: str | None) -> None:
    """List suppressed contacts."""
    app = state.app()
    _ensure_schema(app)
    items = app.list_suppressions(channel=channel, after=after, limit=limit)
    _table(items, ["channel", "contact", "reason", "created_at"])
    if len(items) == limit:
        click.echo(f"(more: --after {items[-1]['channel']}:{items[-1]['contact']})")


@suppressions.command("lift")
@click.argument("channel", type=click.Choice(["email", "sms"]))
@click.argument("contact")
@pass_state
@handle_errors
def suppressions_lift(state: State, channel: str, contact: str) -> None:
    """Lift a suppression (the person asked to hear from you again)."""
    from .models import Channel

    app = state.app()
    _ensure_schema(app)
    if not app.lift_suppression(Channel(channel), contact):
        raise NotFoundError(f"{contact} is not suppressed for {channel}", field="contact")
    click.echo(f"lifted: {channel} {contact}")


@main.command()
@click.option("--dry-run", is_flag=True, help="Count what would be purged; delete nothing")
@click.option(
    "--expire/--no-expire",
    default=True,
    show_default=True,
    help="Also delete sign-ups left unconfirmed past confirm_ttl (double opt-in)",
)
@pass_state
@handle_errors
def purge(state: State, dry_run: bool, expire: bool) -> None:
    """Retention ([restock] retention): delete finished sign-ups (notified, unsubscribed,
    failed) with their deliveries and consent records, old consent records and old provider
    requests. Suppressions are never purged; conversions are kept. The worker does this
    every few minutes; this runs it now."""
    app = state.app()
    _ensure_schema(app)
    counts = app.purge(dry_run=dry_run).as_dict()
    if expire and not dry_run:
        counts["unconfirmed"] = app.expire_unconfirmed()
    click.echo(
        json.dumps({"dry_run": dry_run, "retention": app.settings.retention_days(), **counts})
    )


def _add_global_options(command: click.Command) -> None:
    """Give the group and every command below it `--config` and `--database`."""
    names = {p.name for p in command.params}
    command.params.extend(o for o in _global_options() if o.name not in names)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _add_global_options(sub)


_add_global_options(main)


if __name__ == "__main__":  # pragma: no cover
    main()
