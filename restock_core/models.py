"""Value types shared by the core and every plugin.

They are frozen attrs classes so a plugin can keep, hash and compare them without
worrying that the core changes them underneath it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import attrs


class Channel(enum.StrEnum):
    EMAIL = "email"
    SMS = "sms"


class SubscriptionStatus(enum.StrEnum):
    #: double opt-in: signed up, waiting for the person to confirm (never notified)
    UNCONFIRMED = "unconfirmed"
    PENDING = "pending"
    NOTIFIED = "notified"
    FAILED = "failed"
    UNSUBSCRIBED = "unsubscribed"


class DeliveryStatus(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"  # the subscription left `pending` before its message went out


class DeliveryKind(enum.StrEnum):
    """What an outbox row sends: the back-in-stock message of a restock, or the double
    opt-in confirmation request of a sign-up."""

    RESTOCK = "restock"
    CONFIRM = "confirm"


class RestockStatus(enum.StrEnum):
    OPEN = "open"  # waiting for its (next) wave
    DONE = "done"  # everyone was released
    ENDED = "ended"  # stock ran out again (or the source went away) before everyone was


class Outcome(enum.StrEnum):
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"


@attrs.frozen
class StockKey:
    """Where a quantity is counted: a variant within a scope (sales channel, stock, location set)."""

    variant_id: str
    scope: str = "default"

    def __str__(self) -> str:
        return f"{self.variant_id}@{self.scope}"


@attrs.frozen
class StockUpdate:
    """A platform's statement that `key` had `available` units at `observed_at`.

    `available=None` means untracked or unknown (Medusa `manage_inventory: false`, say).
    """

    key: StockKey
    available: int | None
    observed_at: datetime


@attrs.frozen
class VariantInfo:
    """What templates need to describe a variant; every field is optional."""

    title: str | None = None
    product_title: str | None = None
    url: str | None = None
    image_url: str | None = None


@attrs.frozen
class Subscription:
    id: int
    variant_id: str
    scope: str
    source: str
    channel: Channel
    contact: str
    status: SubscriptionStatus
    created_at: datetime
    customer_id: str | None = None
    product_id: str | None = None
    locale: str | None = None
    product_title: str | None = None
    variant_title: str | None = None
    url: str | None = None
    attributes: Mapping[str, Any] = attrs.field(factory=dict)
    notified_at: datetime | None = None
    failed_reason: str | None = None

    @property
    def email(self) -> str | None:
        return self.contact if self.channel == Channel.EMAIL else None

    @property
    def phone(self) -> str | None:
        return self.contact if self.channel == Channel.SMS else None


@attrs.frozen
class Restock:
    """One detected restock of a variant in a scope; released to subscribers in waves."""

    id: int
    source: str
    variant_id: str
    scope: str
    quantity: int | None
    detected_at: datetime
    released: int = 0
    waves: int = 0
    status: RestockStatus = RestockStatus.OPEN


@attrs.frozen(cache_hash=True)
class SharedContent:
    """The part of a rendered message that every recipient of the same template, variant and
    locale shares: `subject`, `text` and `html` with `link` standing where each recipient's
    own unsubscribe URL goes (in `html` its HTML-escaped form goes there).

    The core renders it once per distinct content and hands the same object with every
    message made from it (:attr:`Message.content`), so a provider that sends one body to
    many recipients (SendGrid substitutions, a bulk API) can group messages and find the
    per-recipient part without searching each message's text. For such a message
    ``message.text == content.text.replace(content.link, message.unsubscribe_url)``, and the
    same for the subject; ``html`` has the escaped URL in place of `link`.
    """

    link: str
    text: str
    subject: str | None = None
    html: str | None = None


@attrs.frozen
class Message:
    """One rendered notification handed to a provider.

    `delivery_id` identifies the outbox row and is stable across retries, so providers use it
    (or `idempotency_key`) to make a retried request safe.
    """

    delivery_id: int
    channel: Channel
    to: str
    text: str
    unsubscribe_url: str
    template: str
    variant_id: str
    subject: str | None = None
    html: str | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict)
    template_data: Mapping[str, Any] = attrs.field(factory=dict)
    locale: str | None = None
    subscription_id: int | None = None
    attempt: int = 1
    #: for providers with ``stable_requests``: the key of the stored provider request this
    #: message belongs to (the same on every retry of that request)
    request_key: str | None = None
    #: the content this message shares with other recipients of the same rendered template
    #: (see :class:`SharedContent`); None when the core did not render it that way (a
    #: confirmation request, a message built by hand). Optional for providers to use: the
    #: message's own `subject`, `text` and `html` are always complete
    content: SharedContent | None = None

    @property
    def idempotency_key(self) -> str:
        return f"restock-delivery-{self.delivery_id}"


class Hold(enum.StrEnum):
    """Why a provider cannot take messages right now. A result carrying a hold is retried
    without counting toward ``max_attempts`` and pauses the provider: until ``retry_after``
    for a rate limit, until the key works again for an auth failure."""

    RATE_LIMITED = "rate_limited"  # 429: the provider's request rate or concurrency limit
    UNAUTHORIZED = "unauthorized"  # 401/403: the API key is wrong, revoked or lacks a scope


@attrs.frozen
class SendResult:
    """What happened to one message. Providers return one per message, in any order.

    Build them with `SendResult.sent(...)`, `.retry(...)` and `.failed(...)`.
    `suppress=True` on a failure means the address should not be used again for this
    channel (hard bounce, opted out).
    """

    delivery_id: int
    outcome: Outcome
    provider_message_id: str | None = None
    reason: str | None = None
    retry_after: float | None = None
    suppress: bool = False
    hold: Hold | None = None

    @classmethod
    def sent(cls, delivery_id: int, provider_message_id: str | None = None) -> SendResult:
        return cls(delivery_id, Outcome.SENT, provider_message_id=provider_message_id)

    @classmethod
    def retry(cls, delivery_id: int, reason: str, retry_after: float | None = None) -> SendResult:
        return cls(delivery_id, Outcome.RETRY, reason=reason, retry_after=retry_after)

    @classmethod
    def failed(cls, delivery_id: int, reason: str, *, suppress: bool = False) -> SendResult:
        return cls(delivery_id, Outcome.FAILED, reason=reason, suppress=suppress)

    @classmethod
    def rate_limited(
        cls, delivery_id: int, reason: str, retry_after: float | None = None
    ) -> SendResult:
        """The provider answered 429: the provider pauses until `retry_after` (1 s when
        unknown) and the message is retried then, without using up an attempt."""
        return cls(
            delivery_id,
            Outcome.RETRY,
            reason=reason,
            retry_after=retry_after,
            hold=Hold.RATE_LIMITED,
        )

    @classmethod
    def unauthorized(cls, delivery_id: int, reason: str) -> SendResult:
        """The provider refused the credentials (401/403): a provider outage. The message
        stays queued (no attempt used) and the provider is paused until a probe succeeds."""
        return cls(delivery_id, Outcome.RETRY, reason=reason, hold=Hold.UNAUTHORIZED)


class DeliveryOutcome(enum.StrEnum):
    """What a provider's later report means for a message; each provider maps its own
    vocabulary (SendGrid `bounce`, Twilio `undelivered` ...) onto these."""

    ACCEPTED = "accepted"  # the provider took or forwarded it (processed, queued, sent)
    DELIVERED = "delivered"  # the receiving server or handset has it
    ENGAGED = "engaged"  # opened, clicked
    BOUNCED = "bounced"  # the receiving server refused it
    DROPPED = "dropped"  # the provider would not send it (earlier bounce, invalid address)
    COMPLAINED = "complained"  # marked as spam
    OPTED_OUT = "opted_out"  # unsubscribed at the provider / STOP
    FAILED = "failed"  # not delivered for another reason (carrier failure, undelivered)
    OTHER = "other"  # anything restock does not act on (deferred ...)

    @property
    def is_failure(self) -> bool:
        """The message did not reach the person: the subscription fails."""
        return self in _FAILURES

    @property
    def is_known(self) -> bool:
        return self != DeliveryOutcome.OTHER


_FAILURES = frozenset(
    {
        DeliveryOutcome.BOUNCED,
        DeliveryOutcome.DROPPED,
        DeliveryOutcome.COMPLAINED,
        DeliveryOutcome.OPTED_OUT,
        DeliveryOutcome.FAILED,
    }
)


@attrs.frozen
class DeliveryEvent:
    """A provider's later report on a message (delivered, bounced, opted out ...).

    ``event`` is the vendor's own name for it (for logs and the failure reason); ``outcome``
    is what it means, set by the provider; the core acts on ``outcome`` only.
    """

    provider: str
    provider_message_id: str | None
    event: str
    reason: str | None = None
    delivery_id: int | None = None
    event_id: str | None = None  # for replay protection
    #: whether a failure event should block the contact for this channel from now on
    #: (hard bounces and opt-outs: yes; a carrier's passing queue overflow: no)
    suppress: bool = True
    #: the address the provider reports; when given it must match the delivery's contact
    recipient: str | None = None
    outcome: DeliveryOutcome = attrs.field(kw_only=True, converter=DeliveryOutcome)


@attrs.frozen
class OrderLine:
    """One line of an order: `quantity` units of `variant_id` for `revenue` (the line's
    total in the order's currency, a Decimal, after the platform's own rounding)."""

    variant_id: str
    quantity: int
    revenue: Decimal


@attrs.frozen
class Order:
    """An order a platform reported, reduced to what attribution needs.

    `order_id` is the platform's id and the idempotency key (per `source`); `placed_at` is
    when the shopper ordered (UTC). Contacts are matched against subscriptions: `email`
    and `phone` as given (normalised by the core), `customer_id` as the platform spells it.
    Cancelled and test orders are stored but convert nothing."""

    source: str
    order_id: str
    placed_at: datetime
    currency: str
    lines: tuple[OrderLine, ...]
    email: str | None = None
    phone: str | None = None
    customer_id: str | None = None
    total: Decimal | None = None
    cancelled: bool = False
    test: bool = False


@attrs.frozen
class Conversion:
    """A notified subscriber bought the variant within the attribution window: counted
    once per subscription."""

    subscription_id: int
    source: str
    order_id: str
    variant_id: str
    quantity: int
    revenue: Decimal
    currency: str
    ordered_at: datetime
    notified_at: datetime
    id: int | None = None
    recorded_at: datetime | None = None
