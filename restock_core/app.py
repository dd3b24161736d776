"""The restock application: the library API that the HTTP API, the CLI and the worker
all call. Everything that changes state goes through here."""

from __future__ import annotations

import functools
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from . import db, migrate
from .config import Config, ReleasePolicy, load_config, parse_config
from .contacts import resolve_contact
from .db import processed_events, restocks, stock, subscriptions, suppressions, utcnow
from .errors import (
    AdapterError,
    ConfigError,
    InStockError,
    NotFoundError,
    RestockError,
    SuppressedError,
    ValidationError,
)
from .metrics import Metrics
from .models import (
    Channel,
    DeliveryEvent,
    Restock,
    StockKey,
    StockUpdate,
    Subscription,
    SubscriptionStatus,
    VariantInfo,
)
from .plugins import PluginInstance, PluginRegistry, channel_routing
from .rendering import Renderer
from .tokens import Signer

if TYPE_CHECKING:
    from .worker import Worker

log = logging.getLogger("restock")

MAX_ID_LENGTH = 255
MAX_QUANTITY = 2**31 - 1  # the stock column is a 32-bit integer
MAX_ROW_ID = 2**63 - 1  # BIGINT; larger numbers cannot name a row
WAKE_CHANNEL = "restock_wake"

#: DeliveryEvent.event values that mean the message did not reach the person
FAILURE_EVENTS = frozenset(
    {
        "bounce",
        "bounced",
        "dropped",
        "spamreport",
        "complaint",
        "complained",
        "unsubscribe",
        "group_unsubscribe",
        "opt_out",
        "undelivered",
        "failed",
    }
)
#: values that confirm the message; anything else is ignored
CONFIRMATION_EVENTS = frozenset({"delivered", "processed", "sent", "queued", "open", "click"})


@attrs.frozen
class SignUp:
    """The result of a sign-up: the subscription and whether this call created it."""

    subscription: Subscription
    created: bool


@attrs.frozen
class StockResult:
    """What `record_stock` did with a batch of updates."""

    applied: int
    stale: int
    restocks_opened: tuple[int, ...]


@attrs.frozen
class Page:
    items: tuple[Subscription, ...]
    next_after: int | None


def row_to_subscription(row: Any) -> Subscription:
    m = row._mapping
    return Subscription(
        id=m["id"],
        variant_id=m["variant_id"],
        scope=m["scope"],
        source=m["source"],
        channel=Channel(m["channel"]),
        contact=m["contact"],
        status=SubscriptionStatus(m["status"]),
        created_at=m["created_at"],
        customer_id=m["customer_id"],
        product_id=m["product_id"],
        locale=m["locale"],
        product_title=m["product_title"],
        variant_title=m["variant_title"],
        url=m["url"],
        attributes=m["attributes"] or {},
        notified_at=m["notified_at"],
        failed_reason=m["failed_reason"],
    )


def row_to_restock(row: Any) -> Restock:
    m = row._mapping
    return Restock(
        id=m["id"],
        source=m["source"],
        variant_id=m["variant_id"],
        scope=m["scope"],
        quantity=m["quantity"],
        detected_at=m["detected_at"],
        released=m["released"],
        waves=m["waves"],
        status=m["status"],
    )


def _check_id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{field} must be a non-empty string", field=field)
    value = value.strip()
    if len(value) > MAX_ID_LENGTH:
        raise ValidationError(f"{field} is longer than {MAX_ID_LENGTH} characters", field=field)
    return value


def _optional_text(value: Any, field: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a string", field=field)
    if len(value) > limit:
        raise ValidationError(f"{field} is longer than {limit} characters", field=field)
    return value


class App:
    """One restock installation: configuration, plugins, database and worker.

    >>> app = App.from_config("plugins.toml")   # or App() for the embedded defaults
    >>> app.migrate()
    >>> app.subscribe("variant-1", email="ada@example.com")
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        registry: PluginRegistry | None = None,
        plugins: Iterable[object] = (),
        engine: Engine | None = None,
    ):
        self.config = config or parse_config({})
        self.settings = self.config.settings
        self.registry = registry or PluginRegistry(plugins=plugins)
        if registry is not None:
            for plugin in plugins:
                self.registry.register(plugin)
        self.engine = engine or db.create_engine(self.settings.database)
        self.is_postgres = db.is_postgres(self.engine)
        #: for reads only; on SQLite it does not queue behind the writer
        self.read_engine = (
            self.engine
            if self.is_postgres or engine is not None
            else db.create_engine(self.settings.database, for_reads=True)
        )
        self.instances: list[PluginInstance] = self.registry.build(self.config)
        self.providers = {i.id: i for i in self.instances if i.kind == "provider"}
        self.adapters = {i.id: i for i in self.instances if i.kind == "inventory_adapter"}
        if not self.adapters:
            raise ConfigError(
                "no inventory adapter is configured; add one (for example "
                '[[plugins]] resolve = "manual") so restock knows where stock comes from'
            )
        if not self.providers:
            raise ConfigError(
                "no notification provider is configured; add one (for example [[plugins]] "
                'resolve = "logger")'
            )
        self.routing = channel_routing(self.settings, self.instances)
        self.renderer = Renderer(os.environ.get("RESTOCK_TEMPLATES"))
        self.metrics = Metrics()
        self.wake_event = threading.Event()
        self._signer: Signer | None = None
        self._describe_cache: dict[tuple[str, str], tuple[float, VariantInfo | None]] = {}
        for instance in self.instances:
            bind = getattr(instance.obj, "bind", None)
            if callable(bind):
                bind(self, instance.id)

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | None = None, **overrides: Any) -> App:
        """Load plugins.toml (--config, RESTOCK_CONFIG or ./plugins.toml) and build the app."""
        return cls(load_config(path, overrides=overrides or None))

    # ------------------------------------------------------------------ setup

    def migrate(self) -> None:
        """Bring the database schema up to date (Alembic)."""
        migrate.upgrade(self.engine)

    def close(self) -> None:
        for instance in self.instances:
            close = getattr(instance.obj, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:  # closing is best effort
                    log.exception("closing plugin %s failed", instance.id)
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()

    @property
    def signer(self) -> Signer:
        if self._signer is None:
            secret = self.settings.secret_key.value if self.settings.secret_key else None
            self._signer = Signer(secret or self._stored_secret())
        return self._signer

    def _stored_secret(self) -> str:
        """No secret_key configured: keep a generated one in the database, so links keep
        working across restarts and processes."""
        with self.engine.begin() as conn:
            found = conn.execute(
                sa.select(db.meta.c.value).where(db.meta.c.key == "unsubscribe_secret")
            ).scalar()
            if found:
                return str(found)
            value = secrets.token_urlsafe(32)
            conn.execute(sa.insert(db.meta).values(key="unsubscribe_secret", value=value))
            return value

    @functools.cached_property
    def install_id(self) -> str:
        """A random id of this installation (database), made once and kept in the database.
        Providers tag messages with it, so webhook events of another restock install sharing
        the same provider account (staging and production, two stores) are told apart."""
        with self.engine.begin() as conn:
            conn.execute(
                self._insert(db.meta)
                .values(key="install_id", value=secrets.token_hex(8))
                .on_conflict_do_nothing(index_elements=["key"])
            )
            return str(
                conn.execute(
                    sa.select(db.meta.c.value).where(db.meta.c.key == "install_id")
                ).scalar_one()
            )

    # ------------------------------------------------------------------ observers

    def notify_observers(self, hook_name: str, **kwargs: Any) -> None:
        """Call every implementation of an observer hook on its own: one raising observer
        is logged and neither stops the others nor the delivery that triggered it."""
        hook = getattr(self.registry.pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            try:
                impl.function(**{name: kwargs[name] for name in impl.argnames})
            except Exception:
                self.metrics.observer_errors.labels(hook=hook_name).inc()
                log.exception("observer %s.%s raised; ignored", impl.plugin_name, hook_name)

    def has_observers(self, hook_name: str) -> bool:
        return bool(getattr(self.registry.pm.hook, hook_name).get_hookimpls())

    # ------------------------------------------------------------------ wake-ups

    def wake(self, conn: Connection | None = None) -> None:
        """Tell workers there is work: in this process directly, in others by NOTIFY."""
        self.wake_event.set()
        if self.is_postgres and conn is not None:
            conn.execute(sa.text("SELECT pg_notify(:channel, '')"), {"channel": WAKE_CHANNEL})

    # ------------------------------------------------------------------ sign-up

    def adapter_instance(self, source: str | None) -> PluginInstance:
        if source is None:
            if len(self.adapters) == 1:
                return next(iter(self.adapters.values()))
            raise ValidationError(
                f"several inventory sources are configured ({', '.join(self.adapters)}); "
                "say which one with 'source'",
                field="source",
            )
        try:
            return self.adapters[source]
        except KeyError:
            raise ValidationError(
                f"unknown source {source!r}; configured sources: {', '.join(self.adapters)}",
                field="source",
            ) from None

    def subscribe(
        self,
        variant_id: str,
        *,
        email: str | None = None,
        phone: str | None = None,
        channel: str | None = None,
        scope: str | None = None,
        source: str | None = None,
        customer_id: str | None = None,
        product_id: str | None = None,
        locale: str | None = None,
        product_title: str | None = None,
        variant_title: str | None = None,
        url: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        check_stock: bool = True,
    ) -> SignUp:
        """Sign a shopper up for a variant. Returns the existing pending subscription for a
        repeat sign-up (filling a missing customer_id); refuses when the variant is in stock."""
        variant_id = _check_id(variant_id, "variant_id")
        scope = _check_id(scope, "scope") if scope is not None else "default"
        kind, contact = resolve_contact(email, phone, channel, region=self.phone_region())
        if kind not in self.routing:
            raise ValidationError(f"no configured provider sends {kind} messages", field="channel")
        adapter = self.adapter_instance(source)
        variant_id = self._normalized_variant(adapter, variant_id)
        customer_id = _optional_text(customer_id, "customer_id", 255)
        product_id = _optional_text(product_id, "product_id", 255)
        locale = _optional_text(locale, "locale", 35)
        product_title = _optional_text(product_title, "product_title", 500)
        variant_title = _optional_text(variant_title, "variant_title", 500)
        url = _optional_text(url, "url", 2000)
        if attributes is not None and not isinstance(attributes, Mapping):
            raise ValidationError("attributes must be an object", field="attributes")
        if self.is_suppressed(kind, contact):
            raise SuppressedError(
                f"this {'address' if kind == Channel.EMAIL else 'number'} bounced or opted out "
                f"earlier and cannot receive {kind} notifications",
                field="email" if kind == Channel.EMAIL else "phone",
            )
        if check_stock:
            key = StockKey(variant_id, scope)
            try:
                quantity = adapter.obj.availability([key]).get(key)
            except Exception as exc:  # the platform is down: accept, reconciliation catches up
                log.warning("stock check for %s failed (%s); accepting the sign-up", key, exc)
                quantity = None
            if quantity is not None and quantity >= self.settings.inventory_required:
                raise InStockError(
                    f"variant {variant_id} is in stock ({quantity} available in scope "
                    f"{scope!r}); sign-ups are for sold-out variants",
                    field="variant_id",
                )
        now = utcnow()
        values = {
            "variant_id": variant_id,
            "scope": scope,
            "source": adapter.id,
            "channel": str(kind),
            "contact": contact,
            "status": "pending",
            "customer_id": customer_id,
            "product_id": product_id,
            "locale": locale,
            "product_title": product_title,
            "variant_title": variant_title,
            "url": url,
            "attributes": dict(attributes or {}),
            "created_at": now,
            "updated_at": now,
        }
        for _ in range(5):  # a notified/unsubscribed race can free the slot between steps
            with self.engine.begin() as conn:
                insert = self._insert(subscriptions).values(**values)
                insert = insert.on_conflict_do_nothing(
                    index_elements=["variant_id", "scope", "channel", "contact"],
                    index_where=sa.text("status = 'pending'"),
                ).returning(*subscriptions.c)
                row = conn.execute(insert).first()
                if row is not None:
                    created = row_to_subscription(row)
                    break
                existing = conn.execute(
                    sa.select(subscriptions).where(
                        subscriptions.c.variant_id == variant_id,
                        subscriptions.c.scope == scope,
                        subscriptions.c.channel == str(kind),
                        subscriptions.c.contact == contact,
                        subscriptions.c.status == "pending",
                    )
                ).first()
                if existing is None:
                    continue
                if customer_id and not existing.customer_id:
                    conn.execute(
                        sa.update(subscriptions)
                        .where(subscriptions.c.id == existing.id)
                        .values(customer_id=customer_id, updated_at=now)
                    )
                    existing = conn.execute(
                        sa.select(subscriptions).where(subscriptions.c.id == existing.id)
                    ).one()
                return SignUp(row_to_subscription(existing), created=False)
        else:  # pragma: no cover - five lost races in a row
            raise RestockError("could not store the sign-up; try again", code="conflict")
        self.metrics.signups.labels(channel=str(kind)).inc()
        self.notify_observers("subscription_created", subscription=created)
        return SignUp(created, created=True)

    @staticmethod
    def _normalized_variant(adapter: PluginInstance, variant_id: str) -> str:
        """Let the adapter spell ids its way (Shopify: "123" -> its gid), so sign-ups from
        any surface match what its webhooks and polls report."""
        normalize = getattr(adapter.obj, "normalize_variant_id", None)
        if not callable(normalize):
            return variant_id
        try:
            return _check_id(normalize(variant_id), "variant_id")
        except ValueError as exc:
            raise ValidationError(str(exc), field="variant_id") from None

    def _insert(self, table: sa.Table) -> Any:
        if self.is_postgres:
            from sqlalchemy.dialects import postgresql

            return postgresql.insert(table)
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table)

    def is_suppressed(self, channel: Channel, contact: str) -> bool:
        with self.read_engine.connect() as conn:
            return (
                conn.execute(
                    sa.select(sa.literal(1)).where(
                        suppressions.c.channel == str(channel), suppressions.c.contact == contact
                    )
                ).first()
                is not None
            )

    def suppress(self, channel: Channel, contact: str, reason: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                self._insert(suppressions)
                .values(
                    channel=str(channel), contact=contact, reason=reason[:1000], created_at=utcnow()
                )
                .on_conflict_do_nothing(index_elements=["channel", "contact"])
            )

    def phone_region(self) -> str | None:
        """The region (ISO 3166 alpha-2) in which national phone numbers given at sign-up
        are read: the `default_region` of the provider that sends SMS, if it has one."""
        instance = self.routing.get(Channel.SMS)
        region = getattr(instance.obj, "default_region", None) if instance else None
        return str(region) if region else None

    def lift_suppression(self, channel: Channel, contact: str) -> bool:
        """Remove `contact` from the suppression list of `channel` (the person opted in again,
        e.g. replied START). True when it was suppressed."""
        with self.engine.begin() as conn:
            result = conn.execute(
                sa.delete(suppressions).where(
                    suppressions.c.channel == str(channel), suppressions.c.contact == contact
                )
            )
        return bool(result.rowcount)

    def unsubscribe_contact(self, channel: Channel, contact: str, reason: str) -> int:
        """Unsubscribe every pending subscription of `contact` on `channel` (the person
        opted out, e.g. replied STOP) and cancel their queued messages. Returns how many
        subscriptions it ended."""
        now = utcnow()
        with self.engine.begin() as conn:
            ids = [
                row.id
                for row in conn.execute(
                    sa.select(subscriptions.c.id).where(
                        subscriptions.c.channel == str(channel),
                        subscriptions.c.contact == contact,
                        subscriptions.c.status == "pending",
                    )
                )
            ]
            for start in range(0, len(ids), 900):
                chunk = ids[start : start + 900]
                conn.execute(
                    sa.update(subscriptions)
                    .where(subscriptions.c.id.in_(chunk), subscriptions.c.status == "pending")
                    .values(status="unsubscribed", failed_reason=reason[:1000], updated_at=now)
                )
                conn.execute(
                    sa.update(db.deliveries)
                    .where(
                        db.deliveries.c.subscription_id.in_(chunk),
                        db.deliveries.c.status == "queued",
                    )
                    .values(status="cancelled", last_error=reason[:1000])
                )
        return len(ids)

    def requeue_delivery(
        self,
        provider: str,
        *,
        delivery_id: int | None = None,
        provider_message_id: str | None = None,
        reason: str,
        delay: float,
        event_id: str | None = None,
    ) -> bool:
        """A provider reports, after accepting a message, that it could not deliver it for a
        passing reason (handset off, carrier queue full): send it again after `delay` seconds,
        within `max_attempts`; past that, fail it without suppressing the contact. The
        subscription goes back to `pending` meanwhile. Returns False for a replayed
        `event_id`, an unknown delivery or one that is no longer sent or being sent; the event
        id is only recorded when the delivery exists, so an early report can be re-posted."""
        d, s = db.deliveries, subscriptions
        query = sa.select(
            d.c.id,
            d.c.status,
            d.c.attempts,
            d.c.subscription_id,
            s.c.status.label("sub_status"),
            s.c.variant_id,
            s.c.scope,
            s.c.channel,
            s.c.contact,
        ).join(s, s.c.id == d.c.subscription_id)
        if delivery_id is not None:
            query = query.where(d.c.id == delivery_id)
        elif provider_message_id:
            query = query.where(d.c.provider_message_id == provider_message_id)
        else:
            return False
        now = utcnow()
        with self.engine.begin() as conn:
            row = conn.execute(query).first()
            if row is None:
                return False
            if event_id:
                fresh = conn.execute(
                    self._insert(processed_events)
                    .values(source=f"{provider}:events", event_id=event_id[:255], received_at=now)
                    .on_conflict_do_nothing()
                    .returning(processed_events.c.event_id)
                ).first()
                if fresh is None:
                    return False
            if row.status not in ("sent", "sending") or row.sub_status not in (
                "pending",
                "notified",
            ):
                return False
            # the person signed up again since: that pending sign-up will be notified, and the
            # database allows one pending sign-up per contact and variant
            signed_up_again = conn.execute(
                sa.select(sa.literal(1)).where(
                    s.c.variant_id == row.variant_id,
                    s.c.scope == row.scope,
                    s.c.channel == row.channel,
                    s.c.contact == row.contact,
                    s.c.status == "pending",
                    s.c.id != row.subscription_id,
                )
            ).first()
            if row.attempts >= self.settings.max_attempts or signed_up_again:
                why = (
                    f"gave up after {row.attempts} attempts: {reason}"
                    if not signed_up_again
                    else reason
                )[:1000]
                conn.execute(
                    sa.update(d)
                    .where(d.c.id == row.id)
                    .values(status="failed", last_error=why, claim_token=None, lease_until=None)
                )
                conn.execute(
                    sa.update(s)
                    .where(s.c.id == row.subscription_id)
                    .values(status="failed", failed_reason=why, updated_at=now)
                )
                return True
            delay = min(max(0.0, delay), self.settings.retry_max)
            conn.execute(
                sa.update(d)
                .where(d.c.id == row.id)
                .values(
                    status="queued",
                    next_attempt_at=now + timedelta(seconds=delay),
                    last_error=reason[:1000],
                    claim_token=None,
                    lease_until=None,
                    sent_at=None,
                )
            )
            conn.execute(
                sa.update(s)
                .where(s.c.id == row.subscription_id)
                .values(status="pending", notified_at=None, updated_at=now)
            )
        self.wake()
        return True

    # ------------------------------------------------------------------ reads

    def get_subscription(self, subscription_id: int) -> Subscription:
        if not 0 < subscription_id <= MAX_ROW_ID:
            raise NotFoundError(f"no subscription {subscription_id}", field="id")
        with self.read_engine.connect() as conn:
            row = conn.execute(
                sa.select(subscriptions).where(subscriptions.c.id == subscription_id)
            ).first()
        if row is None:
            raise NotFoundError(f"no subscription {subscription_id}", field="id")
        return row_to_subscription(row)

    def list_subscriptions(
        self,
        *,
        variant_id: str | None = None,
        scope: str | None = None,
        status: str | None = None,
        contact: str | None = None,
        limit: int = 50,
        after: int | None = None,
    ) -> Page:
        """Keyset-paginated subscriptions, oldest first; `next_after` feeds the next page."""
        if status is not None and status not in {s.value for s in SubscriptionStatus}:
            raise ValidationError(
                f"unknown status {status!r}; use one of "
                + ", ".join(s.value for s in SubscriptionStatus),
                field="status",
            )
        if not 1 <= limit <= 1000:
            raise ValidationError("limit must be between 1 and 1000", field="limit")
        if after is not None and not 0 <= after <= MAX_ROW_ID:
            raise ValidationError(f"after must be between 0 and {MAX_ROW_ID}", field="after")
        query = sa.select(subscriptions).order_by(subscriptions.c.id).limit(limit + 1)
        if variant_id is not None:
            query = query.where(subscriptions.c.variant_id == variant_id)
        if scope is not None:
            query = query.where(subscriptions.c.scope == scope)
        if status is not None:
            query = query.where(subscriptions.c.status == status)
        if contact is not None:
            query = query.where(subscriptions.c.contact == contact)
        if after is not None:
            query = query.where(subscriptions.c.id > after)
        with self.read_engine.connect() as conn:
            rows = conn.execute(query).all()
        items = tuple(row_to_subscription(r) for r in rows[:limit])
        next_after = items[-1].id if len(rows) > limit else None
        return Page(items, next_after)

    def counts(self) -> dict[str, dict[str, int]]:
        """Rows by status, for /metrics and the CLI."""
        out: dict[str, dict[str, int]] = {}
        with self.read_engine.connect() as conn:
            for name, table in (("subscriptions", subscriptions), ("deliveries", db.deliveries)):
                rows = conn.execute(
                    sa.select(table.c.status, sa.func.count()).group_by(table.c.status)
                )
                out[name] = {status: count for status, count in rows}
        return out

    # ------------------------------------------------------------------ unsubscribe

    def unsubscribe_url(self, subscription_id: int) -> str:
        return f"{self.settings.public_url.rstrip('/')}/unsubscribe/{self.signer.sign(subscription_id)}"

    def unsubscribe(self, token: str) -> Subscription:
        """Unsubscribe the subscription a signed token names. Idempotent."""
        subscription_id = self.signer.verify(token)
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(subscriptions)
                .where(subscriptions.c.id == subscription_id, subscriptions.c.status == "pending")
                .values(status="unsubscribed", updated_at=now)
            )
            conn.execute(
                sa.update(db.deliveries)
                .where(
                    db.deliveries.c.subscription_id == subscription_id,
                    db.deliveries.c.status == "queued",
                )
                .values(status="cancelled", last_error="unsubscribed")
            )
        return self.get_subscription(subscription_id)

    # ------------------------------------------------------------------ stock

    def set_stock(
        self, variant_id: str, quantity: int, *, scope: str | None = None, source: str | None = None
    ) -> StockResult:
        """Set stock on a source that accepts it (the built-in `manual` source)."""
        variant_id = _check_id(variant_id, "variant_id")
        scope = _check_id(scope, "scope") if scope is not None else "default"
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            raise ValidationError("quantity must be an integer", field="quantity")
        if not 0 <= quantity <= MAX_QUANTITY:
            raise ValidationError(
                f"quantity must be between 0 and {MAX_QUANTITY}", field="quantity"
            )
        if source is None:
            manual = [
                i for i in self.adapters.values() if getattr(i.obj, "accepts_stock_updates", False)
            ]
            if not manual:
                raise ValidationError(
                    "no configured inventory source accepts stock updates; add the 'manual' "
                    "plugin or send stock through your platform's adapter",
                    field="source",
                )
            instance = manual[0]
        else:
            instance = self.adapter_instance(source)
            if not getattr(instance.obj, "accepts_stock_updates", False):
                raise ValidationError(
                    f"source {source!r} reads stock from its platform; it cannot be set here",
                    field="source",
                )
        return self.record_stock(
            instance.id, [StockUpdate(StockKey(variant_id, scope), quantity, utcnow())]
        )

    def record_stock(self, source: str, updates: Sequence[StockUpdate]) -> StockResult:
        """Record what a platform said about stock. Older observations than the stored one
        are dropped; a move to at-or-above `inventory_required` with pending subscribers
        opens a restock (released after `trigger_delay`). One batch is one transaction with
        one read of the stored rows, so a reconciliation pass over thousands of keys is cheap."""
        if source not in self.adapters:
            raise ValidationError(f"unknown source {source!r}", field="source")
        if not updates:
            return StockResult(0, 0, ())
        required = self.settings.inventory_required
        applied = stale = 0
        opened: list[int] = []
        now = utcnow()
        keys = sorted({(u.key.variant_id, u.key.scope) for u in updates})
        with self.engine.begin() as conn:
            if self.is_postgres:
                # make the rows exist, then lock them in key order: concurrent batches
                # touching the same keys queue up instead of deadlocking
                placeholder = datetime.min.replace(tzinfo=now.tzinfo)
                conn.execute(
                    self._insert(stock)
                    .values(
                        [
                            {
                                "source": source,
                                "variant_id": v,
                                "scope": sc,
                                "quantity": None,
                                "observed_at": placeholder,
                                "updated_at": now,
                            }
                            for v, sc in keys
                        ]
                    )
                    .on_conflict_do_nothing()
                )
            current: dict[tuple[str, str], tuple[int | None, datetime]] = {}
            for chunk_start in range(0, len(keys), 500):
                chunk = keys[chunk_start : chunk_start + 500]
                query = (
                    sa.select(
                        stock.c.variant_id, stock.c.scope, stock.c.quantity, stock.c.observed_at
                    )
                    .where(
                        stock.c.source == source,
                        sa.tuple_(stock.c.variant_id, stock.c.scope).in_(chunk),
                    )
                    .order_by(stock.c.variant_id, stock.c.scope)
                )
                if self.is_postgres:
                    query = query.with_for_update()
                for v, sc, quantity, observed in conn.execute(query):
                    current[(v, sc)] = (quantity, observed)
            inserts: list[dict[str, Any]] = []
            changes: dict[tuple[str, str], dict[str, Any]] = {}
            rising: dict[tuple[str, str], int] = {}
            for update in updates:
                if update.available is not None and not 0 <= update.available <= MAX_QUANTITY:
                    # a platform may report negative (oversold) stock: nothing to sell
                    update = attrs.evolve(
                        update, available=min(max(update.available, 0), MAX_QUANTITY)
                    )
                key = (update.key.variant_id, update.key.scope)
                known = current.get(key)
                if known is not None and known[1] >= update.observed_at:
                    stale += 1
                    continue
                applied += 1
                if known is None and key not in changes:
                    inserts.append(
                        {
                            "source": source,
                            "variant_id": key[0],
                            "scope": key[1],
                            "quantity": update.available,
                            "observed_at": update.observed_at,
                            "updated_at": now,
                        }
                    )
                else:
                    changes[key] = {
                        "v": key[0],
                        "sc": key[1],
                        "q": update.available,
                        "o": update.observed_at,
                    }
                current[key] = (update.available, update.observed_at)
                if update.available is not None and update.available >= required:
                    rising[key] = update.available
                else:
                    rising.pop(key, None)
            if inserts:
                conn.execute(sa.insert(stock), inserts)
            if changes:
                conn.execute(
                    sa.update(stock)
                    .where(
                        stock.c.source == source,
                        stock.c.variant_id == sa.bindparam("v"),
                        stock.c.scope == sa.bindparam("sc"),
                    )
                    .values(
                        quantity=sa.bindparam("q"),
                        observed_at=sa.bindparam("o", type_=db.UTCDateTime),
                        updated_at=now,
                    ),
                    list(changes.values()),
                )
            for (variant_id, scope), quantity in rising.items():
                restock_id = self._open_restock(
                    conn, source, StockKey(variant_id, scope), quantity, now
                )
                if restock_id is not None:
                    opened.append(restock_id)
            if opened:
                self.wake(conn)
        if stale:
            self.metrics.stock_updates.labels(result="stale").inc(stale)
        if applied:
            self.metrics.stock_updates.labels(result="applied").inc(applied)
        if opened:
            self.metrics.restocks.inc(len(opened))
        return StockResult(applied, stale, tuple(opened))

    def _open_restock(
        self, conn: Connection, source: str, key: StockKey, quantity: int, now: datetime
    ) -> int | None:
        pending = conn.execute(
            sa.select(sa.literal(1))
            .where(
                subscriptions.c.source == source,
                subscriptions.c.variant_id == key.variant_id,
                subscriptions.c.scope == key.scope,
                subscriptions.c.status == "pending",
                ~sa.exists().where(
                    db.deliveries.c.subscription_id == subscriptions.c.id,
                    db.deliveries.c.status.in_(("queued", "sending")),
                ),
            )
            .limit(1)
        ).first()
        if pending is None:
            return None
        insert = (
            self._insert(restocks)
            .values(
                source=source,
                variant_id=key.variant_id,
                scope=key.scope,
                quantity=quantity,
                detected_at=now,
                status="open",
                next_wave_at=now + timedelta(milliseconds=self.settings.trigger_delay),
                released=0,
                waves=0,
            )
            .on_conflict_do_nothing(
                index_elements=["source", "variant_id", "scope"],
                index_where=sa.text("status = 'open'"),
            )
            .returning(restocks.c.id)
        )
        restock_id = conn.execute(insert).scalar()
        if restock_id is not None:
            log.info(
                "restock %s opened for %s from %s (%s available)", restock_id, key, source, quantity
            )
        return restock_id

    def seen_event(self, source: str, event_id: str) -> bool:
        """Record a webhook/event id; True when it was handled before (a replay)."""
        with self.engine.begin() as conn:
            inserted = conn.execute(
                self._insert(processed_events)
                .values(source=source, event_id=event_id[:255], received_at=utcnow())
                .on_conflict_do_nothing()
                .returning(processed_events.c.event_id)
            ).first()
        return inserted is None

    def pending_keys(self, source: str, variant_ids: Sequence[str]) -> list[StockKey]:
        """The (variant, scope) pairs among `variant_ids` that have pending subscribers at
        `source`: what an adapter should re-read when a platform event names variants."""
        if not variant_ids:
            return []
        s = subscriptions
        with self.read_engine.connect() as conn:
            rows = conn.execute(
                sa.select(s.c.variant_id, s.c.scope)
                .where(
                    s.c.source == source,
                    s.c.status == "pending",
                    s.c.variant_id.in_(list(variant_ids)),
                )
                .group_by(s.c.variant_id, s.c.scope)
                .order_by(s.c.variant_id, s.c.scope)
            )
            return [StockKey(v, scope) for v, scope in rows]

    # ------------------------------------------------------------------ variant info

    def describe(self, source: str, variant_ids: Sequence[str]) -> dict[str, VariantInfo | None]:
        """Variant descriptions for templates, cached for a minute; never raises."""
        now = time.monotonic()
        out: dict[str, VariantInfo | None] = {}
        missing = []
        for variant_id in variant_ids:
            cached = self._describe_cache.get((source, variant_id))
            if cached and cached[0] > now:
                out[variant_id] = cached[1]
            else:
                missing.append(variant_id)
        if missing and source in self.adapters:
            try:
                found = self.adapters[source].obj.describe(missing) or {}
            except Exception as exc:
                log.warning("describing variants through %s failed: %s", source, exc)
                found = {}
            for variant_id in missing:
                info = found.get(variant_id)
                out[variant_id] = info
                self._describe_cache[(source, variant_id)] = (now + 60.0, info)
        return out

    # ------------------------------------------------------------------ release

    def release_policy(self, source: str) -> ReleasePolicy:
        instance = self.adapters.get(source)
        if instance is not None and instance.release is not None:
            return instance.release
        return self.settings.release_policy

    def read_availability(
        self, source: str, keys: Sequence[StockKey]
    ) -> Mapping[StockKey, int | None]:
        adapter = self.adapters[source].obj
        try:
            result = adapter.availability(list(keys))
        except AdapterError:
            raise
        except Exception as exc:
            raise AdapterError(f"{source}: availability failed: {exc}") from exc
        return result

    # ------------------------------------------------------------------ delivery events

    def handle_delivery_event(self, event: DeliveryEvent) -> bool:
        """Apply a provider's status report (webhook). Returns False for a replay, an unknown
        message or an event that changes nothing. Failure events (bounce, dropped, complaint,
        opt-out, undelivered) fail the subscription and, unless `suppress=False`, block the
        contact for that channel. The replay record and the change commit together, so a
        failed update is not mistaken for a replay when the provider retries."""
        deliveries = db.deliveries
        query = sa.select(
            deliveries.c.id,
            deliveries.c.subscription_id,
            subscriptions.c.channel,
            subscriptions.c.contact,
        ).join(subscriptions, subscriptions.c.id == deliveries.c.subscription_id)
        if event.delivery_id is not None:
            query = query.where(deliveries.c.id == event.delivery_id)
        elif event.provider_message_id:
            query = query.where(deliveries.c.provider_message_id == event.provider_message_id)
        else:
            return False
        with self.engine.begin() as conn:
            row = conn.execute(query).first()
            if row is None:
                # unknown (yet): the event id is not recorded, so a re-post can still apply
                return False
            if event.event_id:
                fresh = conn.execute(
                    self._insert(processed_events)
                    .values(
                        source=f"{event.provider}:events",
                        event_id=event.event_id[:255],
                        received_at=utcnow(),
                    )
                    .on_conflict_do_nothing()
                    .returning(processed_events.c.event_id)
                ).first()
                if fresh is None:
                    return False
            if event.recipient is not None and event.recipient.strip().lower() != row.contact:
                log.warning(
                    "%s event for delivery %s names another recipient; ignored",
                    event.provider,
                    row.id,
                )
                return False
            self.metrics.delivery_events.labels(provider=event.provider, event=event.event).inc()
            if event.event not in FAILURE_EVENTS:
                return event.event in CONFIRMATION_EVENTS
            reason = f"{event.provider} {event.event}" + (
                f": {event.reason}" if event.reason else ""
            )
            conn.execute(
                sa.update(subscriptions)
                .where(subscriptions.c.id == row.subscription_id)
                .values(status="failed", failed_reason=reason[:1000], updated_at=utcnow())
            )
            # claim_token cleared: a report that arrives while the worker still holds the
            # delivery (a Twilio callback 50 ms after the 201) is not overwritten by "sent"
            conn.execute(
                sa.update(deliveries)
                .where(deliveries.c.id == row.id)
                .values(
                    status="failed",
                    last_error=reason[:1000],
                    claim_token=None,
                    lease_until=None,
                    provider_message_id=sa.func.coalesce(
                        deliveries.c.provider_message_id, event.provider_message_id
                    ),
                )
            )
            if event.suppress:
                conn.execute(
                    self._insert(suppressions)
                    .values(
                        channel=row.channel,
                        contact=row.contact,
                        reason=reason[:1000],
                        created_at=utcnow(),
                    )
                    .on_conflict_do_nothing(index_elements=["channel", "contact"])
                )
        return True

    # ------------------------------------------------------------------ worker

    def worker(self) -> Worker:
        """A worker for this app: `.run(stop_event)` loops, `.drain()` does what is due now."""
        from .worker import Worker

        return Worker(self)


__all__ = ["App", "Page", "SignUp", "StockResult", "load_config"]
