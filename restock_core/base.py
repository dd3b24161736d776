"""What a plugin sees of restock and what it subclasses.

- :class:`PluginHost`: the operations a provider or adapter may call on the running core
  (handed to ``bind`` and ``routes``). ``App`` implements it; plugins never need ``App``.
- :class:`Provider` and :class:`InventoryAdapter`: base classes with the optional methods as
  documented no-ops, so the core calls them directly instead of probing with ``getattr``.

Everything here is exported from :mod:`restock_core`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from .models import Channel, DeliveryEvent, Message, SendResult, StockKey, StockUpdate, VariantInfo

if TYPE_CHECKING:
    from .app import Page, PublicSignUp, SignUp, StockResult
    from .models import Conversion, Order
    from .pacing import ProviderGate
    from .signup import SignUpContext
    from .store.webhooks import WebhookLog


class PluginHost(Protocol):
    """The running restock core, as plugins see it."""

    @property
    def public_url(self) -> str:
        """The base URL shoppers and providers reach restock at (no trailing slash
        guaranteed): for links and for checking webhook signatures over the full URL."""
        ...

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
        """Sign a shopper up as a trusted caller (the shop's own backend, a signed
        platform event). Raises :class:`~restock_core.RestockError` subclasses on bad input
        or in-stock variants. Routes a shopper's browser reaches use `subscribe_public`."""
        ...

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
        """The public sign-up context of a Starlette request (client IP behind
        `trusted_proxies`, or `ip` when the plugin knows it better, e.g. from a platform
        proxy whose signature it checked), user agent, optional honeypot and consent text."""
        ...

    def subscribe_public(
        self, variant_id: str, *, context: SignUpContext, **fields: Any
    ) -> PublicSignUp:
        """A shopper's sign-up from a plugin's storefront route: abuse limits and the
        ``before_subscribe`` hook apply, shop content is refused, and the answer (only
        whether a confirmation message follows) is the same for a new and a repeat
        sign-up. Raises RateLimitedError (answer 429 with Retry-After), InStockError,
        ValidationError or RefusedError."""
        ...

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
        """Keyset-paginated subscriptions, oldest first."""
        ...

    def record_stock(self, source: str, updates: Sequence[StockUpdate]) -> StockResult:
        """Record what the platform said about stock (webhooks, events); stale observations
        are dropped, a rise with pending subscribers opens a restock. `source` is the
        plugin's instance id."""
        ...

    def pending_keys(self, source: str, variant_ids: Sequence[str]) -> list[StockKey]:
        """The (variant, scope) pairs among `variant_ids` with pending subscribers at
        `source`: what to re-read when a platform event names variants."""
        ...

    def read_availability(
        self, source: str, keys: Sequence[StockKey]
    ) -> Mapping[StockKey, int | None]:
        """Ask `source`'s adapter for quantities; failures raise :class:`AdapterError`."""
        ...

    def stock_quantities(self, source: str, keys: Sequence[StockKey]) -> dict[StockKey, int | None]:
        """What restock last recorded for each key at `source` (None when unknown)."""
        ...

    def catalog(self, source: str, variant_ids: Sequence[str]) -> dict[str, VariantInfo]:
        """Message content a trusted caller stored for `variant_ids` at `source` (admin
        ``PUT /stock`` with titles/URL): for sources that keep no catalog of their own."""
        ...

    def seen_event(self, source: str, event_id: str) -> bool:
        """Record a webhook/event id; True when it was handled before (a replay)."""
        ...

    def handle_delivery_event(self, event: DeliveryEvent) -> bool:
        """Apply a provider's status report; False for a replay, an unknown message or an
        event that changes nothing."""
        ...

    def suppress(self, channel: Channel, contact: str, reason: str) -> None:
        """Block a contact for a channel from now on (opt-out received out of band)."""
        ...

    def lift_suppression(self, channel: Channel, contact: str) -> bool:
        """Unblock a contact (the person opted in again, e.g. replied START); True when it
        was blocked."""
        ...

    def unsubscribe_contact(self, channel: Channel, contact: str, reason: str) -> int:
        """End every pending sign-up of a contact on a channel (e.g. an SMS STOP) and cancel
        their queued messages; returns how many were ended."""
        ...

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
        """A message the provider accepted could not be delivered for a passing reason:
        send it again after `delay` seconds (within `max_attempts`, else it fails without
        suppressing). False for a replayed `event_id` or an unknown / no longer sent one."""
        ...

    def record_orders(self, orders: Sequence[Order]) -> list[Conversion]:
        """Record orders the platform reported (webhooks, polls) for revenue attribution;
        an order already recorded (same source and id) changes nothing. Returns the
        conversions made (docs/attribution.md)."""
        ...

    def latest_order_at(self, source: str) -> datetime | None:
        """When the newest recorded order of `source` was placed (where an order poll
        resumes), or None."""
        ...

    def cancel_order(self, source: str, order_id: str) -> list[Conversion]:
        """The platform cancelled or refunded an order: take back its conversions."""
        ...

    @property
    def webhook_log(self) -> WebhookLog:
        """The outgoing-webhook delivery log (add, claim, delivered, attempt_failed,
        recent), for plugins that post events durably like the built-in ``webhook``."""
        ...

    @property
    def install_id(self) -> str:
        """A random id of this installation; tag messages with it so webhook events of
        another install sharing the provider account are told apart."""
        ...


class _PluginBase:
    #: the registered name (``"sendgrid"``); set on the class
    name: str = ""
    _host: PluginHost | None = None

    @property
    def host(self) -> PluginHost:
        """The core this instance is bound to (available once ``bind`` ran)."""
        if self._host is None:
            raise RuntimeError(f"{type(self).__name__} is not bound to a restock core yet")
        return self._host

    def bind(self, host: PluginHost, instance_id: str) -> None:
        """Called once after the core is built, before any other call: `host` is how the
        plugin calls back into restock (record stock, apply delivery events); `instance_id`
        is this instance's `id` in plugins.toml (the plugin name unless set), used as
        `source` and route prefix. The default keeps `host` (see :attr:`host`); an override
        calls ``super().bind(host, instance_id)``."""
        self._host = host

    def routes(self, host: PluginHost) -> Any | None:
        """A FastAPI ``APIRouter`` mounted under ``/<instance id>`` (webhooks,
        platform-shaped sign-up), or None (the default)."""
        return None

    def observers(self) -> Iterable[object]:
        """Objects with ``@hookimpl`` observer methods (``restocked``, ``notification_sent``
        ...) that the core registers for this instance after ``bind``. Default: none."""
        return ()

    def close(self) -> None:
        """Release connections and threads at shutdown. Default: nothing."""


class Provider(_PluginBase):
    """Sends notifications. Subclass it and set:

    - ``name``: the registered name;
    - ``channels``: the channels it serves (``frozenset({Channel.EMAIL})``);
    - ``max_batch_size``: the most messages one ``send`` call receives;
    - ``default_region`` (optional, SMS): the region national phone numbers are read in;

    and implement ``send(messages)``: one :class:`SendResult` per message. Per-message
    failures are results, not exceptions; anything raised counts as a transient failure of
    the whole batch. Optional: ``bind``, ``routes``, ``observers``, ``close``.
    """

    channels: frozenset[Channel] = frozenset()
    max_batch_size: int = 1
    #: the most requests per second this instance sends (None: unpaced). Shared by every
    #: worker thread of the process; set it from a ``requests_per_second`` option whose
    #: default is the vendor's documented limit
    requests_per_second: float | None = None
    #: True when ``send`` calls :meth:`pace` before each HTTP request itself (a provider
    #: making several requests per ``send``); otherwise the core paces each ``send`` call
    paces_requests: bool = False
    #: True when every ``send`` call is one provider request whose membership the core
    #: must keep stable across retries: the core stores which deliveries went into it and
    #: a key before the first attempt, re-sends exactly those together (ordered by
    #: delivery id) and passes the key as :attr:`Message.request_key` (Resend batches)
    stable_requests: bool = False
    _gate: ProviderGate | None = None
    #: SMS providers: the region (ISO 3166 alpha-2) national numbers given at sign-up are
    #: read in; None reads only international (+...) numbers
    default_region: str | None = None

    def send(self, messages: Sequence[Message]) -> Sequence[SendResult]:
        raise NotImplementedError(f"{type(self).__name__} does not implement send()")

    def pace(self) -> None:
        """Wait for the next request's turn: at most ``requests_per_second`` across every
        worker thread of the process, and nothing while the provider is paused after a 429
        (see :meth:`SendResult.rate_limited`). Call it before each HTTP request when
        ``paces_requests`` is True; a no-op before the core bound the instance."""
        if self._gate is not None:
            self._gate.acquire()

    @contextmanager
    def paced(self) -> Iterator[None]:
        """``with self.paced(): <one HTTP request>``: :meth:`pace`, and also records when the
        request finished, so a request that reached the provider late cannot squeeze the
        next ones into one of its rate-limit windows. Prefer it to :meth:`pace`."""
        if self._gate is None:
            yield
            return
        with self._gate.request():
            yield


class InventoryAdapter(_PluginBase):
    """Reads stock from a commerce platform. Subclass it, set ``name`` and implement
    ``availability(keys)``. Optional, with these defaults:

    - ``describe(variant_ids)`` → ``{}`` (templates get no title or URL);
    - ``poll_interval = None``: seconds between reconciliation passes, None for no polling;
    - ``max_batch_size = 250``: keys per ``availability`` call during reconciliation;
    - ``accepts_stock_updates = False``: True when stock is set through restock itself
      (``PUT /stock``, ``restock stock set``), as the built-in ``manual`` source does;
    - ``normalize_variant_id(variant_id)`` → unchanged: spell ids the platform's way
      (Shopify ``"123"`` → its gid) so sign-ups match webhooks; raise ``ValueError`` to
      refuse an id;
    - ``bind``, ``routes``, ``observers``, ``close``.
    """

    poll_interval: float | None = None
    max_batch_size: int = 250
    accepts_stock_updates: bool = False

    def availability(self, keys: Sequence[StockKey]) -> Mapping[StockKey, int | None]:
        """``{key: quantity or None}`` for a batch of keys (None: untracked or unknown); use
        the platform's batch endpoints. Raise :class:`AdapterError` when the platform fails."""
        raise NotImplementedError(f"{type(self).__name__} does not implement availability()")

    def describe(self, variant_ids: Sequence[str]) -> Mapping[str, VariantInfo]:
        return {}

    def normalize_variant_id(self, variant_id: str) -> str:
        return variant_id


class ObserverPlugin(_PluginBase):
    """A plugin configured in plugins.toml that only watches (registered through
    ``register_observers``): subclass it, set ``name`` and return the objects holding its
    ``@hookimpl`` observer methods from ``observers()`` (often ``[self]``)."""
