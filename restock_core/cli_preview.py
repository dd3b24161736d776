"""`restock preview VARIANT [--locale --channel --scope --source --json]`: print the message a
subscriber of VARIANT would get, rendered as the worker renders it."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from .errors import ConfigError, RestockError
from .preview import preview_message, sms_info


@click.command()
@click.argument("variant_id")
@click.option("--locale", help="BCP 47 locale of the subscriber, e.g. de-AT (falls back to de)")
@click.option("--channel", type=click.Choice(["email", "sms"]), default="email", show_default=True)
@click.option("--scope", default="default", show_default=True)
@click.option("--source", help="Inventory source (plugin id) when several are configured")
@click.option("--json", "as_json", is_flag=True, help="Print the message as JSON")
@click.pass_obj
def preview(
    ctx: Any,
    variant_id: str,
    locale: str | None,
    channel: str,
    scope: str,
    source: str | None,
    as_json: bool,
) -> None:
    """Print the rendered notification for a variant (subject, headers, text, HTML or SMS)."""
    import sqlalchemy as sa  # here, not at the top: `restock --help` must not load it

    try:
        from .cli import _ensure_schema  # here: cli.py imports this module

        app = ctx.app()
        _ensure_schema(app)
        message = preview_message(
            app, variant_id, channel=channel, locale=locale, scope=scope, source=source
        )
        templates = app.renderer.templates(message.locale).names
    except ConfigError as exc:
        click.echo(f"error: configuration: {exc.message}", err=True)
        sys.exit(2)
    except RestockError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(1)
    except sa.exc.SQLAlchemyError as exc:
        click.echo(
            f"error: database: {str(getattr(exc, 'orig', None) or exc).splitlines()[0]}", err=True
        )
        sys.exit(1)
    used = [
        t for t in templates if t.startswith("restock_sms" if channel == "sms" else "restock_email")
    ]
    if as_json:
        body: dict[str, Any] = {
            "channel": str(message.channel),
            "to": message.to,
            "subject": message.subject,
            "headers": dict(message.headers),
            "text": message.text,
            "html": message.html,
            "locale": message.locale,
            "templates": used,
        }
        if channel == "sms":
            info = sms_info(message.text)
            body["sms"] = {
                "encoding": info.encoding,
                "characters": info.characters,
                "segments": info.segments,
            }
        click.echo(json.dumps(body, indent=2, ensure_ascii=False))
        return
    click.echo(f"Templates: {', '.join(used)}")
    click.echo(f"To: {message.to}")
    if message.subject is not None:
        click.echo(f"Subject: {message.subject}")
    for name, value in message.headers.items():
        click.echo(f"{name}: {value}")
    if channel == "sms":
        info = sms_info(message.text)
        click.echo(
            f"SMS: {info.encoding}, {info.characters} characters, {info.segments} segment(s)"
        )
    click.echo("\n--- text ---")
    click.echo(message.text)
    if message.html:
        click.echo("--- html ---")
        click.echo(message.html)
