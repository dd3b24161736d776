"""The restock application: the library API that the HTTP API, the CLI and the worker
all call. Everything that changes state goes through here."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs
from sqlalchemy.engine import Connection, Engine

from . import migrate
from .base import PeriodicTask
from .clock import utcnow
from .config import Config, ReleasePolicy, load_config, parse_config
from .contacts import (
    check_sms_number,
    email_key,
    normalize_email,
    normalize_phone,
    resolve_contact,
)
from .errors import (
    AdapterError,
    ConfigError,
    NotFoundError,
    RateLimitedError,
    RefusedError,
    RestockError,
    SuppressedError,
    ValidationError,
)
from .limits import Buckets, client_ip, parse_networks
from .metrics import Metrics
from .models import (
    Channel,
    Conversion,
    DeliveryEvent,
    Order,
    StockKey,
    StockUpdate,
    Subscription,
    SubscriptionStatus,
    VariantInfo,
)
from .pacing import ProviderGate
from .plugins import PluginInstance, PluginRegistry, channel_routing
from .rendering import Renderer
from .signup import (
    CONTENT_FIELDS,
    SignUpContext,
    SignUpRequest,
    Veto,
    check_id,
    check_message_url,
    check_text,
    is_nonblocking,
    max_length,
    optional_text,
)
from .stock import MAX_QUANTITY
from .store import MAX_ROW_ID, EventMatch, PurgeCounts, Store, WebhookLog
from .store.outbox import RetryFilter
from .store.subscriptions import ConfirmPlan
from .tokens import Signer

if TYPE_CHECKING:
    from .base import PluginHost
    from .worker import Worker

log = logging.getLogger("restock")

#: a repeat sign-up of a still unconfirmed contact sends another confirmation request at most
#: this often, and no more than CONFIRM_MAX_SENDS in all
CONFIRM_RESEND_AFTER = timedelta(minutes=15)
CONFIRM_MAX_SENDS = 3


@attrs.frozen
class SignUp:
    """The result of a sign-up: the subscription and whether this call created it."""

    subscription: Subscription
    created: bool


@attrs.frozen
class PublicSignUp:
    """What a shopper may be told about their sign-up: the channel it is on and whether to
    look for a confirmation message (double opt-in), which depend on the request and the
    configuration, not on the person."""

    channel: str
    confirm: bool


@attrs.frozen
class _Plan:
    """A checked sign-up on its way to the writer: the row's values, the keyword arguments
    of `SubscriptionStore.insert_or_get` (the in-transaction checks among them) and
    whether the adapter must still be asked for the stock (it may block)."""

    kind: Channel
    adapter: PluginInstance
    key: StockKey
    values: dict[str, Any]
    checks: dict[str, Any]
    remote_stock: bool


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
        if engine is not None:
            self.store = Store(engine)
        else:
            self.store = Store.from_url(self.settings.database)
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
        self.renderer = Renderer(self.settings.templates or os.environ.get("RESTOCK_TEMPLATES"))
        self.metrics = Metrics()
        #: per provider instance, shared by every worker thread: pace, 429 pauses, outages
        self.gates = {
            pid: ProviderGate(pid, instance.obj.requests_per_second)
            for pid, instance in self.providers.items()
        }
        self._signer: Signer | None = None
        self._confirm_signer: Signer | None = None
        self._describe_cache: dict[tuple[str, str], tuple[float, VariantInfo | None]] = {}
        window = self.settings.limit_window
        #: public sign-ups per client IP and per variant (in memory, per process)
        self.ip_buckets = Buckets(self.settings.limit_signups_per_ip, window)
        self.variant_buckets = Buckets(self.settings.limit_signups_per_variant, window)
        self.trusted_proxies = parse_networks(self.settings.trusted_proxies)
        for instance in self.instances:
            instance.obj.bind(self, instance.id)
            if instance.id in self.gates:
                instance.obj._gate = self.gates[instance.id]
            for number, observer in enumerate(instance.obj.observers()):
                self.registry.register(observer, name=f"{instance.id}:observer:{number}")

    @property
    def engine(self) -> Engine:
        return self.store.engine

    @property
    def read_engine(self) -> Engine:
        return self.store.read_engine

    @property
    def is_postgres(self) -> bool:
        return self.store.is_postgres

    @property
    def wake_event(self) -> threading.Event:
        return self.store.wake_event

    @property
    def public_url(self) -> str:
        """The base URL people reach restock at (links in messages, webhook URLs)."""
        return self.settings.public_url

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
            try:
                instance.obj.close()
            except Exception:  # closing is best effort
                log.exception("closing plugin %s failed", instance.id)
        self.store.dispose()

    @property
    def signer(self) -> Signer:
        if self._signer is None:
            secret = self.settings.secret_key.value if self.settings.secret_key else None
            self._signer = Signer(secret or self._stored_secret())
        return self._signer

    @property
    def confirm_signer(self) -> Signer:
        """Signs double opt-in confirm links (a key of its own: an unsubscribe token does not
        confirm anything)."""
        if self._confirm_signer is None:
            secret = self.settings.secret_key.value if self.settings.secret_key else None
            self._confirm_signer = Signer(secret or self._stored_secret(), purpose="confirm")
        return self._confirm_signer

    @functools.cached_property
    def _stored_secret_value(self) -> str:
        return self.store.meta.get_or_create("unsubscribe_secret")

    def _stored_secret(self) -> str:
        """No secret_key configured: keep a generated one in the database, so links keep
        working across restarts and processes. Constant once made, so read once per App
        (every public sign-up hashes the contact with it for the suppression check)."""
        return self._stored_secret_value

    @functools.cached_property
    def install_id(self) -> str:
        """A random id of this installation (database), made once and kept in the database.
        Providers tag messages with it, so webhook events of another restock install sharing
        the same provider account (staging and production, two stores) are told apart."""
        return self.store.meta.get_or_create("install_id", lambda: secrets.token_hex(8))

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
        self.store.wake(conn)

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
        context: SignUpContext | None = None,
    ) -> SignUp:
        """Sign a shopper up for a variant. Returns the existing pending subscription for a
        repeat sign-up (filling a missing customer_id); refuses when the variant is in stock.
        `context` describes a public caller (see `sign_up`); without it the caller is
        trusted."""
        request = SignUpRequest.parse(
            variant_id,
            email=email,
            phone=phone,
            channel=channel,
            scope=scope,
            source=source,
            attributes=attributes,
            customer_id=customer_id,
            product_id=product_id,
            locale=locale,
            product_title=product_title,
            variant_title=variant_title,
            url=url,
        )
        return self.sign_up(request, check_stock=check_stock, context=context)

    def sign_up(
        self,
        request: SignUpRequest,
        *,
        check_stock: bool = True,
        context: SignUpContext | None = None,
    ) -> SignUp:
        """`subscribe` for an already parsed request. `context` says who sent it: without
        one the caller is trusted (library, CLI); a public context (``trusted=False``) goes
        through the ``before_subscribe`` hook and the abuse limits, may not set message
        content and cannot fill in a customer_id on an existing sign-up. Refusals raise
        before anything is stored; a consent record is stored with every new sign-up.

        The checks that read restock's own database (suppression, the stock of a source
        whose stock restock keeps, the per-contact limit) run in the sign-up writer's
        transaction, one query per group of sign-ups (see
        :meth:`SubscriptionStore.insert_or_get`)."""
        plan = self._plan(request, context or SignUpContext(), check_stock=check_stock)
        if plan.remote_stock:
            plan.checks["in_stock"] = self._in_stock(plan.adapter, plan.key)
        for _ in range(5):  # a notified/unsubscribed race can free the slot between steps
            stored = self.store.subscriptions.insert_or_get(plan.values, **plan.checks)
            if stored is not None:
                break
        else:  # pragma: no cover - five lost races in a row
            raise RestockError("could not store the sign-up; try again", code="conflict")
        subscription, created = stored
        if created:
            self._signups_counter(plan.kind).inc()
            self.notify_observers("subscription_created", subscription=subscription)
        return SignUp(subscription, created=created)

    async def sign_up_async(
        self,
        request: SignUpRequest,
        *,
        check_stock: bool = True,
        context: SignUpContext | None = None,
    ) -> SignUp:
        """:meth:`sign_up` for a caller on an asyncio event loop (the HTTP sign-up route):
        the in-memory limits and the validation run on the loop, the write is awaited
        without a thread, and only what may block runs in the thread pool: a
        ``before_subscribe`` hook not marked :func:`~restock_core.signup.nonblocking`, an
        adapter's ``availability`` unless it declares ``local_stock`` (its stock is
        restock's own table, read in the writer's transaction), and `subscription_created`
        observers."""
        from anyio.to_thread import run_sync

        context = context or SignUpContext()
        if not context.trusted and self._hook_may_block():
            plan = await run_sync(
                functools.partial(self._plan, request, context, check_stock=check_stock)
            )
        else:
            plan = self._plan(request, context, check_stock=check_stock)
        if plan.remote_stock:
            plan.checks["in_stock"] = await run_sync(self._in_stock, plan.adapter, plan.key)
        store = self.store.subscriptions
        for _ in range(5):  # a notified/unsubscribed race can free the slot between steps
            stored = await store.insert_or_get_async(plan.values, **plan.checks)
            if stored is not None:
                break
        else:  # pragma: no cover - five lost races in a row
            raise RestockError("could not store the sign-up; try again", code="conflict")
        subscription, created = stored
        if created:
            self._signups_counter(plan.kind).inc()
            if self.has_observers("subscription_created"):
                await run_sync(
                    functools.partial(
                        self.notify_observers, "subscription_created", subscription=subscription
                    )
                )
        return SignUp(subscription, created=created)

    def _plan(self, request: SignUpRequest, context: SignUpContext, *, check_stock: bool) -> _Plan:
        """Everything a sign-up is checked for before it reaches the writer: the public
        limits and hook, content, the contact, the channel's provider, the variant's limit;
        and the row and the in-transaction checks to store it with."""
        if not context.trusted:
            self._admit_public(request, context)
        self._check_content(request, trusted=context.trusted)
        kind, contact = resolve_contact(
            request.email, request.phone, request.channel, region=self.phone_region()
        )
        if kind not in self.routing:
            raise ValidationError(f"no configured provider sends {kind} messages", field="channel")
        if kind == Channel.SMS:
            check_sms_number(contact, self.settings.sms_countries)
        adapter = self.adapter_instance(request.source)
        key = StockKey(self._normalized_variant(adapter, request.variant_id), request.scope)
        if not context.trusted:
            wait = self.variant_buckets.take(f"{adapter.id}\0{key.variant_id}\0{key.scope}")
            if wait:
                raise RateLimitedError(
                    "too many sign-ups for this item right now; try again later",
                    field="variant_id",
                    retry_after=wait,
                )
        local_stock = check_stock and bool(getattr(adapter.obj, "local_stock", False))
        values = {
            "variant_id": key.variant_id,
            "scope": key.scope,
            "source": adapter.id,
            "channel": str(kind),
            "contact": contact,
            "customer_id": request.customer_id,
            "product_id": request.product_id,
            "locale": request.locale,
            "product_title": request.product_title,
            "variant_title": request.variant_title,
            "url": request.url,
            "attributes": dict(request.attributes),
        }
        limit = self.settings.limit_active_per_contact
        confirm = None
        if not context.trusted and self.settings.opt_in(kind):
            confirm = ConfirmPlan(
                provider=self.routing[kind].id,
                resend_after=CONFIRM_RESEND_AFTER,
                max_sends=CONFIRM_MAX_SENDS,
            )
        checks: dict[str, Any] = {
            "consent": context.consent_record(),
            "fill_customer_id": context.trusted,
            "max_active": None if context.trusted or not limit else limit,
            "confirm": confirm,
            "suppression_hash": self.contact_hash(contact),
            "stock_required": self.settings.inventory_required if local_stock else None,
        }
        return _Plan(kind, adapter, key, values, checks, check_stock and not local_stock)

    @functools.cached_property
    def _signup_counters(self) -> dict[Channel, Any]:
        return {}

    def _signups_counter(self, kind: Channel) -> Any:
        """The `signups` counter of `kind`'s channel (looked up once per channel)."""
        counter = self._signup_counters.get(kind)
        if counter is None:
            counter = self._signup_counters[kind] = self.metrics.signups.labels(channel=str(kind))
        return counter

    def _hook_may_block(self) -> bool:
        """Whether a ``before_subscribe`` implementation may block (any not marked
        :func:`~restock_core.signup.nonblocking`): then it runs in the thread pool."""
        impls = self.registry.pm.hook.before_subscribe.get_hookimpls()
        return any(not is_nonblocking(impl.function) for impl in impls)

    def needs_confirmation(self, channel: str | Channel) -> bool:
        """Whether a public sign-up on `channel` is stored unconfirmed and confirmed by a
        link (``[restock] double_opt_in``). Depends on the channel only, so saying it in a
        public answer tells nothing about the person."""
        return self.settings.opt_in(str(channel))

    def confirm_url(self, subscription_id: int) -> str:
        base = self.settings.public_url.rstrip("/")
        return f"{base}/confirm/{self.confirm_signer.sign(subscription_id)}"

    def confirm(self, token: str) -> Subscription:
        """Double opt-in: the person behind a signed confirm link confirms their sign-up
        (unconfirmed -> pending). Idempotent; an expired (deleted) sign-up is NotFoundError,
        as is a forged token."""
        subscription_id = self.confirm_signer.verify(token)
        if self.store.subscriptions.confirm(subscription_id):
            log.info("subscription %s confirmed", subscription_id)
        return self.get_subscription(subscription_id)

    def confirm_ttl(self) -> timedelta:
        return timedelta(hours=self.settings.confirm_ttl)

    def expire_unconfirmed(self) -> int:
        """Delete sign-ups left unconfirmed longer than `confirm_ttl` (the worker calls it)."""
        expired = self.store.subscriptions.expire_unconfirmed(utcnow() - self.confirm_ttl())
        if expired:
            log.info("expired %s unconfirmed sign-ups", expired)
        return expired

    def purge(self, *, dry_run: bool = False) -> PurgeCounts:
        """Retention (``[restock] retention``): delete finished sign-ups (notified,
        unsubscribed, failed) with their deliveries, consent records and provider requests
        older than their category's days; suppressions are never purged and conversions
        are kept (without their subscription). `dry_run` only counts."""
        counts = self.store.retention.purge(
            self.settings.retention_days(), now=utcnow(), dry_run=dry_run
        )
        if counts.total and not dry_run:
            log.info("retention purged %s", counts.as_dict())
        return counts

    def public_context(
        self,
        request: Any,
        *,
        ip: str | None = None,
        honeypot: str | None = None,
        consent_text: str | None = None,
        consent_version: str | None = None,
        form: Mapping[str, Any] | None = None,
    ) -> SignUpContext:
        """The context of a shopper's sign-up reaching a plugin route (a Starlette
        ``Request``): client IP (``X-Forwarded-For`` only behind `trusted_proxies`) and
        user agent, so the sign-up passes the same limits and hook as ``POST
        /subscriptions``. `ip` overrides the address when the plugin knows it better (a
        platform proxy whose signature it checked)."""
        peer = request.client.host if request.client else None
        agent = request.headers.get("user-agent")
        for name, value in (
            ("hp", honeypot),
            ("consent_text", consent_text),
            ("consent_version", consent_version),
        ):
            if value is not None:
                check_text(value, name)
        return SignUpContext(
            trusted=False,
            ip=ip[:64]
            if ip
            else client_ip(peer, request.headers.get("x-forwarded-for"), self.trusted_proxies),
            user_agent=None if agent is None else agent[:500],
            honeypot=honeypot,
            consent_text=consent_text,
            consent_version=consent_version,
            form=dict(form or {}),
        )

    def subscribe_public(
        self, variant_id: str, *, context: SignUpContext, **fields: Any
    ) -> PublicSignUp:
        """A shopper's sign-up through a platform-shaped plugin route: the public limits and
        ``before_subscribe`` apply and no shop content is accepted. The answer is the same
        for a new, a repeat, a honeypot-caught and a suppressed sign-up, so a stranger
        learns nothing about the person. Raises RateLimitedError (429), InStockError,
        ValidationError and a non-silent RefusedError for the route to map."""
        if context.trusted:
            raise ValueError("subscribe_public takes a public context (see public_context)")
        try:
            result: SignUp | None = self.subscribe(variant_id, context=context, **fields)
        except SuppressedError:
            result = None
        except RefusedError as exc:
            if not exc.silent:
                raise
            result = None
        return self._public_answer(result, fields)

    async def subscribe_public_async(
        self, variant_id: str, *, context: SignUpContext, **fields: Any
    ) -> PublicSignUp:
        """:meth:`subscribe_public` on an asyncio event loop (see :meth:`sign_up_async`)."""
        if context.trusted:
            raise ValueError("subscribe_public takes a public context (see public_context)")
        request = SignUpRequest.parse(variant_id, **fields)
        try:
            result: SignUp | None = await self.sign_up_async(request, context=context)
        except SuppressedError:
            result = None
        except RefusedError as exc:
            if not exc.silent:
                raise
            result = None
        return self._public_answer(result, fields)

    def _public_answer(self, result: SignUp | None, fields: Mapping[str, Any]) -> PublicSignUp:
        if result is not None:
            channel = str(result.subscription.channel)
        else:
            channel = str(fields.get("channel") or "") or (
                "sms" if fields.get("phone") and not fields.get("email") else "email"
            )
        return PublicSignUp(channel=channel, confirm=self.needs_confirmation(channel))

    def _admit_public(self, request: SignUpRequest, context: SignUpContext) -> None:
        """The checks only public sign-ups pass: the client's budget, then the plugins'
        ``before_subscribe`` veto (the built-in honeypot among them)."""
        if context.ip is not None:
            wait = self.ip_buckets.take(context.ip)
            if wait:
                raise RateLimitedError(
                    "too many sign-ups from this address; try again later", retry_after=wait
                )
        verdict = self.registry.pm.hook.before_subscribe(request=request, context=context)
        if verdict is not None:
            veto = verdict if isinstance(verdict, Veto) else Veto(str(verdict))
            raise RefusedError(veto.reason, silent=veto.silent)

    def _check_content(self, request: SignUpRequest, *, trusted: bool) -> None:
        """Message content (titles, product URL) only from trusted callers; every URL that
        reaches a message is http(s), on an allowed host when `allowed_url_hosts` is set."""
        if not trusted:
            for field in CONTENT_FIELDS:
                if getattr(request, field) is not None:
                    raise ValidationError(
                        f"{field} can only be set by the shop (secret API key); the message "
                        "uses the shop's own catalog",
                        field=field,
                    )
        if request.url is not None:
            check_message_url(request.url, "url", self.settings.allowed_url_hosts)

    def _in_stock(self, adapter: PluginInstance, key: StockKey) -> bool:
        """Whether the adapter says `key` is in stock (a sign-up is refused then); a failing
        platform counts as sold out: the sign-up is accepted and reconciliation catches up."""
        try:
            quantity = adapter.obj.availability([key]).get(key)
        except Exception as exc:  # the platform is down: accept, reconciliation catches up
            log.warning("stock check for %s failed (%s); accepting the sign-up", key, exc)
            return False
        return quantity is not None and quantity >= self.settings.inventory_required

    @staticmethod
    def _normalized_variant(adapter: PluginInstance, variant_id: str) -> str:
        """Let the adapter spell ids its way (Shopify: "123" -> its gid), so sign-ups from
        any surface match what its webhooks and polls report."""
        try:
            return check_id(adapter.obj.normalize_variant_id(variant_id), "variant_id")
        except ValueError as exc:
            raise ValidationError(str(exc), field="variant_id") from None

    def is_suppressed(self, channel: Channel, contact: str) -> bool:
        return self.store.suppressions.contains(channel, contact, self.contact_hash(contact))

    def contact_hash(self, contact: str) -> str:
        """What an erased contact's suppression is kept as: a keyed hash (the signing
        secret), so the list still blocks the person without naming them."""
        mac = self._hash_mac.copy()  # the keyed state, made once: cheaper than hmac.new
        mac.update(contact.encode())
        return f"sha256:{mac.hexdigest()}"

    @functools.cached_property
    def _hash_mac(self) -> hmac.HMAC:
        secret = self.settings.secret_key.value if self.settings.secret_key else None
        return hmac.new((secret or self._stored_secret()).encode(), digestmod=hashlib.sha256)

    def suppress(self, channel: Channel, contact: str, reason: str) -> None:
        self.store.suppressions.add(channel, contact, reason)

    def phone_region(self) -> str | None:
        """The region (ISO 3166 alpha-2) in which national phone numbers given at sign-up
        are read: the `default_region` of the provider that sends SMS, if it has one."""
        instance = self.routing.get(Channel.SMS)
        region = instance.obj.default_region if instance else None
        return str(region) if region else None

    def lift_suppression(self, channel: Channel, contact: str) -> bool:
        """Remove `contact` from the suppression list of `channel` (the person opted in again,
        e.g. replied START). True when it was suppressed."""
        return self.store.suppressions.remove(channel, contact, self.contact_hash(contact))

    def unsubscribe_contact(self, channel: Channel, contact: str, reason: str) -> int:
        """Unsubscribe every pending subscription of `contact` on `channel` (the person
        opted out, e.g. replied STOP) and cancel their queued messages. Returns how many
        subscriptions it ended."""
        return self.store.subscriptions.unsubscribe_contact(channel, contact, reason)

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
        requeued = self.store.outbox.requeue(
            provider,
            delivery_id=delivery_id,
            provider_message_id=provider_message_id,
            reason=reason,
            delay=min(max(0.0, delay), self.settings.retry_max),
            max_attempts=self.settings.max_attempts,
            event_id=event_id,
        )
        if requeued:
            self.wake()
        return requeued

    # ------------------------------------------------------------------ reads

    def get_subscription(self, subscription_id: int) -> Subscription:
        if not 0 < subscription_id <= MAX_ROW_ID:
            raise NotFoundError(f"no subscription {subscription_id}", field="id")
        found = self.store.subscriptions.get(subscription_id)
        if found is None:
            raise NotFoundError(f"no subscription {subscription_id}", field="id")
        return found

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
        for name, value in (("variant_id", variant_id), ("scope", scope), ("contact", contact)):
            if value is not None:
                check_text(value, name)
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
        rows = self.store.subscriptions.page(
            variant_id=variant_id,
            scope=scope,
            status=None if status is None else SubscriptionStatus(status),
            contact=contact,
            limit=limit + 1,
            after=after,
        )
        items = tuple(rows[:limit])
        next_after = items[-1].id if len(rows) > limit else None
        return Page(items, next_after)

    def counts(self) -> dict[str, dict[str, int]]:
        """Rows by status, for /metrics and the CLI."""
        return self.store.counts()

    # ------------------------------------------------------------------ unsubscribe

    def unsubscribe_url(self, subscription_id: int) -> str:
        return f"{self.settings.public_url.rstrip('/')}/unsubscribe/{self.signer.sign(subscription_id)}"

    def unsubscribe(self, token: str) -> Subscription:
        """Unsubscribe the subscription a signed token names. Idempotent."""
        subscription_id = self.signer.verify(token)
        self.store.subscriptions.unsubscribe(subscription_id)
        return self.get_subscription(subscription_id)

    def stop_all_messages(self, token: str) -> Subscription:
        """The person behind a signed token wants no more back-in-stock messages at all: the
        contact is suppressed for its channel and its pending sign-ups end (their queued
        messages are cancelled). Idempotent."""
        subscription = self.get_subscription(self.signer.verify(token))
        reason = "asked to stop all back-in-stock messages (unsubscribe page)"
        self.suppress(subscription.channel, subscription.contact, reason)
        self.unsubscribe_contact(subscription.channel, subscription.contact, reason)
        return self.get_subscription(subscription.id)

    # ------------------------------------------------------------------ stock

    def set_stock(
        self,
        variant_id: str,
        quantity: int,
        *,
        scope: str | None = None,
        source: str | None = None,
        product_title: str | None = None,
        variant_title: str | None = None,
        url: str | None = None,
        image_url: str | None = None,
    ) -> StockResult:
        """Set stock on a source that accepts it (the built-in `manual` source), and
        optionally the variant's message content (titles, product URL, image): trusted
        content that the source's `describe` then returns."""
        variant_id = check_id(variant_id, "variant_id")
        content = {
            name: optional_text(value, name)
            for name, value in (
                ("product_title", product_title),
                ("variant_title", variant_title),
                ("url", url),
            )
            if value is not None
        }
        if image_url is not None:
            content["image_url"] = check_text(image_url, "image_url")
            if len(image_url) > max_length("url"):
                raise ValidationError(
                    f"image_url is longer than {max_length('url')} characters", field="image_url"
                )
        for name in ("url", "image_url"):
            if content.get(name) is not None:
                check_message_url(str(content[name]), name, self.settings.allowed_url_hosts)
        scope = check_id(scope, "scope") if scope is not None else "default"
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            raise ValidationError("quantity must be an integer", field="quantity")
        if not 0 <= quantity <= MAX_QUANTITY:
            raise ValidationError(
                f"quantity must be between 0 and {MAX_QUANTITY}", field="quantity"
            )
        if source is None:
            manual = [i for i in self.adapters.values() if i.obj.accepts_stock_updates]
            if not manual:
                raise ValidationError(
                    "no configured inventory source accepts stock updates; add the 'manual' "
                    "plugin or send stock through your platform's adapter",
                    field="source",
                )
            instance = manual[0]
        else:
            instance = self.adapter_instance(source)
            if not instance.obj.accepts_stock_updates:
                raise ValidationError(
                    f"source {source!r} reads stock from its platform; it cannot be set here",
                    field="source",
                )
        if content:
            self.store.catalog.set(instance.id, variant_id, content)
            self._describe_cache.pop((instance.id, variant_id), None)
        return self.record_stock(
            instance.id, [StockUpdate(StockKey(variant_id, scope), quantity, utcnow())]
        )

    def catalog(self, source: str, variant_ids: Sequence[str]) -> dict[str, VariantInfo]:
        """Content a trusted caller stored for `variant_ids` at `source` (see `set_stock`):
        what a source without its own catalog (the manual one) describes variants with."""
        return self.store.catalog.describe(source, variant_ids)

    def record_stock(self, source: str, updates: Sequence[StockUpdate]) -> StockResult:
        """Record what a platform said about stock. Older observations than the stored one
        are dropped; a move to at-or-above `inventory_required` with pending subscribers
        opens a restock (released after `trigger_delay`). One batch is one transaction with
        one read of the stored rows, so a reconciliation pass over thousands of keys is cheap."""
        if source not in self.adapters:
            raise ValidationError(f"unknown source {source!r}", field="source")
        if not updates:
            return StockResult(0, 0, ())
        recorded = self.store.stock.record(
            source,
            updates,
            required=self.settings.inventory_required,
            trigger_delay_ms=self.settings.trigger_delay,
        )
        for restock_id, key, quantity in recorded.opened:
            log.info(
                "restock %s opened for %s from %s (%s available)", restock_id, key, source, quantity
            )
        if recorded.stale:
            self.metrics.stock_updates.labels(result="stale").inc(recorded.stale)
        if recorded.applied:
            self.metrics.stock_updates.labels(result="applied").inc(recorded.applied)
        if recorded.opened:
            self.metrics.restocks.inc(len(recorded.opened))
        opened = tuple(restock_id for restock_id, _, _ in recorded.opened)
        return StockResult(recorded.applied, recorded.stale, opened)

    def seen_event(self, source: str, event_id: str) -> bool:
        """Record a webhook/event id; True when it was handled before (a replay)."""
        return self.store.events.seen(source, event_id)

    def stock_quantities(self, source: str, keys: Sequence[StockKey]) -> dict[StockKey, int | None]:
        """What restock last recorded for each key at `source` (None when unknown): the
        stock of sources that keep no stock of their own, like the built-in `manual` one."""
        return self.store.stock.quantities(source, keys)

    def pending_keys(self, source: str, variant_ids: Sequence[str]) -> list[StockKey]:
        """The (variant, scope) pairs among `variant_ids` that have pending subscribers at
        `source`: what an adapter should re-read when a platform event names variants."""
        return self.store.subscriptions.pending_keys(source, variant_ids)

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
        failure = None
        if event.outcome.is_failure:
            failure = f"{event.provider} {event.event}" + (
                f": {event.reason}" if event.reason else ""
            )
        match = self.store.outbox.apply_event(event, failure)
        if match == EventMatch.OTHER_RECIPIENT:
            log.warning(
                "%s event for delivery %s names another recipient; ignored",
                event.provider,
                event.delivery_id or event.provider_message_id,
            )
        if match != EventMatch.MATCHED:
            return False
        self.metrics.delivery_events.labels(provider=event.provider, event=event.event).inc()
        return event.outcome.is_known

    # ------------------------------------------------------------------ orders and attribution

    @property
    def attribution_window(self) -> timedelta:
        return timedelta(days=self.settings.attribution_window)

    def record_orders(self, orders: Sequence[Order]) -> list[Conversion]:
        """Record platform orders (webhooks, polls, `POST /orders`) and the conversions they
        make: a line for a variant that the same person was notified for within
        `attribution_window` converts that subscription, once (docs/attribution.md). An
        order already recorded (same source and id) changes nothing. Contacts and variant
        ids are normalised the way sign-ups are, so they match."""
        normalized = [self._normalized_order(order) for order in orders]
        made = self.store.orders.record(normalized, self.attribution_window)
        for conversion in made:
            self.metrics.conversions.inc()
            self.metrics.revenue.labels(currency=conversion.currency).inc(float(conversion.revenue))
            log.info(
                "conversion: subscription %s bought %s x %s (%s %s) in order %s/%s",
                conversion.subscription_id,
                conversion.quantity,
                conversion.variant_id,
                conversion.revenue,
                conversion.currency,
                conversion.source,
                conversion.order_id,
            )
            self.notify_observers("conversion_recorded", conversion=conversion)
        return made

    def latest_order_at(self, source: str) -> datetime | None:
        return self.store.orders.latest_placed_at(source)

    def cancel_order(self, source: str, order_id: str) -> list[Conversion]:
        """The platform cancelled or refunded an order: take back its conversions."""
        return self.store.orders.cancel(source, order_id)

    @property
    def webhook_log(self) -> WebhookLog:
        return self.store.webhooks

    def conversion_of(self, subscription_id: int) -> Conversion | None:
        return self.store.orders.conversion_of(subscription_id)

    def _normalized_order(self, order: Order) -> Order:
        if order.source not in self.adapters:
            raise ValidationError(
                f"unknown source {order.source!r}; configured sources: {', '.join(self.adapters)}",
                field="source",
            )
        adapter = self.adapters[order.source].obj
        email = email_key(order.email) if order.email else None
        phone = None
        if order.phone:
            try:
                phone = normalize_phone(order.phone, self.phone_region())
            except ValidationError:
                phone = None
        lines = []
        for line in order.lines:
            try:
                variant_id = adapter.normalize_variant_id(line.variant_id)
            except ValueError:
                continue  # not a variant of this platform: it cannot match a sign-up
            lines.append(
                line if variant_id == line.variant_id else attrs.evolve(line, variant_id=variant_id)
            )
        unchanged = len(lines) == len(order.lines) and all(
            a is b for a, b in zip(lines, order.lines, strict=True)
        )
        if unchanged and email == order.email and phone == order.phone:
            return order  # already normalised (most orders): no copy
        return attrs.evolve(order, email=email, phone=phone, lines=tuple(lines))

    # ------------------------------------------------------------------ data rights

    def _contact(self, email: str | None, phone: str | None) -> str:
        if (email is None) == (phone is None):
            raise ValidationError("give exactly one of email or phone", field="email")
        if email is not None:
            return normalize_email(check_text(email, "email"))
        return normalize_phone(check_text(str(phone), "phone"), self.phone_region())

    def export_contact(
        self, *, email: str | None = None, phone: str | None = None
    ) -> dict[str, Any]:
        """Everything stored about one person (GDPR/CCPA access): subscriptions, deliveries,
        consent records and suppressions, as JSON values."""
        contact = self._contact(email, phone)
        return {
            "contact": contact,
            **self.store.contacts.export(contact, self.contact_hash(contact)),
        }

    def erase_contact(
        self, *, email: str | None = None, phone: str | None = None
    ) -> dict[str, Any]:
        """Erase one person (GDPR/CCPA erasure): their subscriptions, deliveries and consent
        records are deleted; a suppression (they opted out or bounced) is kept as a keyed
        hash so erasure does not re-enable mail. Returns what was removed."""
        contact = self._contact(email, phone)
        erased = self.store.contacts.erase(contact, self.contact_hash(contact))
        log.info("erased a contact: %s", erased)
        return {"erased": erased}

    def list_suppressions(
        self, *, channel: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """A page of the suppression list; `after` is `channel:contact` of the last row."""
        chosen = None
        if channel is not None:
            try:
                chosen = Channel(channel)
            except ValueError:
                raise ValidationError(
                    f"unknown channel {channel!r}; use 'email' or 'sms'", field="channel"
                ) from None
        if after is not None:
            check_text(after, "after")
        if not 1 <= limit <= 1000:
            raise ValidationError("limit must be between 1 and 1000", field="limit")
        return self.store.contacts.suppressions(chosen, after, limit)

    # ------------------------------------------------------------------ plugin state

    _STATE_KEY = re.compile(r"[A-Za-z0-9._-]{1,40}")
    _STATE_MAX = 10_000

    def _state_key(self, source: str, key: str) -> str:
        from .periodic import meta_key

        if not any(instance.id == source for instance in self.instances):
            raise ValueError(f"plugin state: {source!r} is not a configured plugin instance")
        if not self._STATE_KEY.fullmatch(key):
            raise ValueError(f"plugin state key {key!r}: letters, digits and ._- (at most 40)")
        return meta_key("plugin", source, key)

    def plugin_state(self, source: str, key: str) -> str | None:
        """A value plugin instance `source` stored with :meth:`set_plugin_state`, or None.
        Kept in the database (``restock_meta``): it survives restarts, every process sees it."""
        return self.store.meta.get(self._state_key(source, key))

    def set_plugin_state(self, source: str, key: str, value: str | None) -> None:
        """Keep a small text value (a cursor) for plugin instance `source`; None deletes it."""
        stored = self._state_key(source, key)
        if value is None:
            self.store.meta.delete(stored)
            return
        if len(value) > self._STATE_MAX:
            raise ValueError(f"plugin state {key!r}: at most {self._STATE_MAX} characters")
        self.store.meta.put(stored, value)

    def periodic_tasks(self) -> list[tuple[str, PeriodicTask]]:
        """Every plugin instance's periodic tasks, as (instance id, task), for the worker.
        A plugin whose ``periodic_tasks()`` raises is logged and contributes none."""
        found: list[tuple[str, PeriodicTask]] = []
        for instance in self.instances:
            try:
                tasks = list(instance.obj.periodic_tasks())
            except Exception:
                log.exception("plugin %s: periodic_tasks() failed; none run", instance.id)
                continue
            names: set[str] = set()
            for task in tasks:
                if not isinstance(task, PeriodicTask) or task.name in names:
                    log.error("plugin %s: ignoring periodic task %r", instance.id, task)
                    continue
                names.add(task.name)
                found.append((instance.id, task))
        return found

    # ------------------------------------------------------------------ provider outages

    _OUTAGE_KEY = "provider_outage:"

    def provider_outage_started(self, provider_id: str, reason: str) -> None:
        """A provider refused restock's credentials: its sends are paused (deliveries stay
        queued) until a probe succeeds. Loud on purpose: error log, metric, /health."""
        log.error(
            "provider %s refuses restock's credentials (%s): its messages stay queued and "
            "are sent once the key works again; fix the API key in plugins.toml",
            provider_id,
            reason,
        )
        self.metrics.provider_down.labels(provider=provider_id).set(1)
        self.store.meta.put(
            self._OUTAGE_KEY + provider_id,
            json.dumps({"reason": reason[:500], "since": utcnow().isoformat()}),
        )

    def provider_outage_ended(self, provider_id: str) -> None:
        log.warning("provider %s accepts restock's credentials again; sending resumes", provider_id)
        self.metrics.provider_down.labels(provider=provider_id).set(0)
        self.store.meta.delete(self._OUTAGE_KEY + provider_id)

    def provider_outages(self) -> dict[str, dict[str, str]]:
        """Providers in an outage, as any process of this install recorded them."""
        found: dict[str, dict[str, str]] = {}
        for provider_id, value in self.store.meta.with_prefix(self._OUTAGE_KEY).items():
            try:
                found[provider_id] = dict(json.loads(value))
            except ValueError:
                found[provider_id] = {"reason": "unknown"}
        return found

    def retry_deliveries(
        self,
        *,
        restock_id: int | None = None,
        provider: str | None = None,
        reason: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[int]:
        """Queue failed deliveries again (after fixing a key, a template, an outage), by
        restock, provider, a substring of the failure reason and/or creation time range.
        Suppressed contacts and people who signed up again are left out. Returns the ids."""
        if provider is not None and provider not in self.providers:
            raise ValidationError(
                f"unknown provider {provider!r}; configured: {', '.join(sorted(self.providers))}",
                field="provider",
            )
        if since is not None and until is not None and since >= until:
            raise ValidationError("since must be before until", field="since")
        ids = self.store.outbox.retry_failed(
            RetryFilter(restock_id, provider, reason or None, since, until)
        )
        if ids:
            log.info("%s failed deliveries queued again", len(ids))
            self.wake()
        return ids

    def worker(self) -> Worker:
        """A worker for this app: `.run(stop_event)` loops, `.drain()` does what is due now."""
        from .worker import Worker

        return Worker(self)


__all__ = ["App", "Page", "SignUp", "StockResult", "load_config"]


if TYPE_CHECKING:

    def _app_is_a_plugin_host(app: App) -> PluginHost:
        return app  # mypy checks that App implements everything PluginHost promises
