"""The outgoing-webhook observer: POSTs an HMAC-signed JSON event to a URL of yours when a
shopper signs up, when a restock releases subscribers, when a notification is sent or fails
and when a conversion is recorded, so automations (Zapier-like tools, a shop's own backend,
Medusa's event bus through the forwarder) can react. docs/plugins/webhook.md has the events,
the body and the signature recipe.

Events go into a delivery log in the database first (an observer never blocks delivery);
a sender thread posts them, retrying with exponential backoff (and `Retry-After`) up to
`max_attempts`; a sender that dies leaves its claims to the next after a lease."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import httpx

from restock_core import (
    ObserverPlugin,
    PluginHost,
    Restock,
    Secret,
    SendResult,
    Subscription,
    hookimpl,
    http_url,
    not_negative,
    positive,
    retry_after,
    utcnow,
)

if TYPE_CHECKING:
    from restock_core.models import Conversion
    from restock_core.store.webhooks import WebhookDelivery

log = logging.getLogger("restock.webhook")

SIGN_UP = "ecommerce.back_in_stock_requested"
BACK_IN_STOCK = "ecommerce.back_in_stock"
SENT = "ecommerce.back_in_stock_notification_sent"
FAILED = "ecommerce.back_in_stock_notification_failed"
CONVERSION = "ecommerce.back_in_stock_conversion"
EVENTS = (SIGN_UP, BACK_IN_STOCK, SENT, FAILED, CONVERSION)
#: the Medusa v1 restock plugin's event (`format = "medusa-v1"`)
MEDUSA_RESTOCKED = "restock-notification.restocked"
SIGNATURE_HEADER = "Restock-Signature"


def _events(instance: Any, attribute: Any, value: list[str]) -> None:
    for name in value:
        if name not in EVENTS:
            raise ValueError(f"events: unknown event {name!r}; events are {', '.join(EVENTS)}")


def _format(instance: Any, attribute: Any, value: str) -> None:
    if value not in ("restock", "medusa-v1"):
        raise ValueError(f"format must be 'restock' or 'medusa-v1', got {value!r}")


@attrs.frozen
class WebhookOptions:
    url: str = attrs.field(validator=http_url)
    #: signs every body (HMAC-SHA256); give it as { env = "NAME" }
    secret: Secret = attrs.field()
    events: list[str] = attrs.field(factory=lambda: list(EVENTS), validator=_events)
    #: "restock" (every event, in restock's envelope) or "medusa-v1" (only the restock, as
    #: the Medusa v1 plugin's `restock-notification.restocked` data)
    format: str = attrs.field(default="restock", validator=_format)
    timeout: float = attrs.field(default=10.0, validator=positive)
    max_attempts: int = attrs.field(default=8, validator=positive)
    #: seconds before the first retry; doubles per attempt (with jitter) up to retry_max
    retry_base: float = attrs.field(default=5.0, validator=not_negative)
    retry_max: float = attrs.field(default=3600.0, validator=not_negative)
    #: seconds the sender sleeps when nothing is due
    poll_interval: float = attrs.field(default=1.0, validator=positive)
    headers: dict[str, str] = attrs.field(factory=dict)

    @secret.validator
    def _check_secret(self, attribute: Any, value: Secret) -> None:
        if len(value.value) < 16:
            raise ValueError("secret must be at least 16 characters")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value: ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">``."""
    digest = hmac.new(
        secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, header: str, body: bytes, *, tolerance: float = 300.0) -> bool:
    """The documented recipe, as code: parse ``t`` and ``v1``, recompute, compare in
    constant time, refuse timestamps more than `tolerance` seconds away (replays)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def _subscriber(sub: Subscription) -> dict[str, Any]:
    return {
        "subscriberId": str(sub.id),
        "email": sub.email,
        "phone": sub.phone,
        "channel": str(sub.channel),
        "customerId": sub.customer_id,
    }


class WebhookObserver(ObserverPlugin):
    name = "webhook"

    def __init__(self, options: WebhookOptions):
        self.options = options
        self.id = "webhook"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = httpx.Client(timeout=options.timeout)

    def bind(self, host: PluginHost, instance_id: str) -> None:
        super().bind(host, instance_id)
        self.id = instance_id
        self._thread = threading.Thread(
            target=self._run, name=f"restock-webhook-{instance_id}", daemon=True
        )
        self._thread.start()

    def observers(self) -> Iterable[object]:
        return [self]

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.options.timeout + 5)
        self._client.close()

    # ------------------------------------------------------------------ hooks

    @hookimpl
    def subscription_created(self, subscription: Subscription) -> None:
        self._emit(
            SIGN_UP,
            {
                **_subscriber(subscription),
                "productId": subscription.product_id,
                "variantId": subscription.variant_id,
                "scope": subscription.scope,
                "source": subscription.source,
                "productTitle": subscription.product_title,
                "variantTitle": subscription.variant_title,
                "createdAt": subscription.created_at.isoformat(),
            },
        )

    @hookimpl
    def restocked(self, restock: Restock, subscriptions: Sequence[Subscription]) -> None:
        if self.options.format == "medusa-v1":
            emails = [s.email for s in subscriptions if s.email]
            self._enqueue(MEDUSA_RESTOCKED, {"variant_id": restock.variant_id, "emails": emails})
            return
        self._emit(
            BACK_IN_STOCK,
            {
                "restockId": str(restock.id),
                "variantId": restock.variant_id,
                "productId": next((s.product_id for s in subscriptions if s.product_id), None),
                "scope": restock.scope,
                "source": restock.source,
                "quantity": restock.quantity,
                "subscribers": [_subscriber(s) for s in subscriptions],
            },
        )

    @hookimpl
    def notification_sent(self, subscription: Subscription, result: SendResult) -> None:
        self._emit(
            SENT,
            {
                **_subscriber(subscription),
                "variantId": subscription.variant_id,
                "providerMessageId": result.provider_message_id,
            },
        )

    @hookimpl
    def notification_failed(self, subscription: Subscription, result: SendResult) -> None:
        self._emit(
            FAILED,
            {
                **_subscriber(subscription),
                "variantId": subscription.variant_id,
                "reason": result.reason,
            },
        )

    @hookimpl
    def conversion_recorded(self, conversion: Conversion) -> None:
        self._emit(
            CONVERSION,
            {
                "subscriberId": str(conversion.subscription_id),
                "variantId": conversion.variant_id,
                "orderId": conversion.order_id,
                "source": conversion.source,
                "quantity": conversion.quantity,
                "revenue": str(conversion.revenue),
                "currency": conversion.currency,
                "orderedAt": conversion.ordered_at.isoformat(),
                "notifiedAt": conversion.notified_at.isoformat(),
            },
        )

    def _emit(self, event: str, data: Mapping[str, Any]) -> None:
        if self.options.format != "restock" or event not in self.options.events:
            return
        self._enqueue(
            event,
            {
                "id": f"evt_{uuid.uuid4().hex}",
                "type": event,
                "createdAt": utcnow().isoformat(),
                "data": data,
            },
        )

    def _enqueue(self, event: str, body: Mapping[str, Any]) -> None:
        self.host.webhook_log.add(self.id, event, json.dumps(body, separators=(",", ":")))
        self._wake.set()

    # ------------------------------------------------------------------ sender

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                batch = self.host.webhook_log.claim(self.id, 20, lease=self.options.timeout * 2 + 5)
            except Exception as exc:  # the database blinked: try again later
                log.warning("webhook %s: reading the delivery log failed: %s", self.id, exc)
                batch = []
            for delivery in batch:
                if self._stop.is_set():
                    break
                self.deliver(delivery)
            if not batch:
                self._wake.wait(self.options.poll_interval)
                self._wake.clear()

    def deliver(self, delivery: WebhookDelivery) -> bool:
        """POST one logged event; record the outcome. True when the receiver took it."""
        body = delivery.body.encode()
        headers = {
            **self.options.headers,
            "Content-Type": "application/json",
            "User-Agent": "restock-webhook/1",
            "Restock-Event": delivery.event,
            "Restock-Delivery": str(delivery.id),
            SIGNATURE_HEADER: sign(self.options.secret.value, int(time.time()), body),
        }
        status: int | None = None
        wait: float | None = None
        try:
            response = self._client.post(self.options.url, content=body, headers=headers)
            status = response.status_code
            if 200 <= status < 300:
                self.host.webhook_log.delivered(delivery.id, status)
                return True
            error = f"HTTP {status}: {response.text[:200]}"
            wait = retry_after(response.headers)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        attempts = delivery.attempts + 1
        retry_in = None
        if attempts < self.options.max_attempts:
            backoff = min(self.options.retry_max, self.options.retry_base * 2 ** (attempts - 1))
            backoff *= random.uniform(0.8, 1.2)
            retry_in = min(self.options.retry_max, max(backoff, wait or 0.0))
        log.warning(
            "webhook %s: delivery %s (%s) failed (%s); %s",
            self.id,
            delivery.id,
            delivery.event,
            error,
            f"retrying in {retry_in:.1f}s" if retry_in is not None else "giving up",
        )
        self.host.webhook_log.attempt_failed(delivery.id, status, error, retry_in)
        return False


@hookimpl
def register_observers(register):  # type: ignore[no-untyped-def]
    register(
        "webhook",
        WebhookObserver,
        options=WebhookOptions,
        description="Signed outgoing webhooks for sign-ups, restocks, notifications, conversions",
    )
