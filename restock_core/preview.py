"""Message previews: render a variant's notification exactly as a provider would receive it
(the dashboard's Messages page, `restock preview`, "send a test message to me"), and count
SMS segments the way carriers do."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import attrs

from .errors import ValidationError
from .models import Channel, Message, Subscription, SubscriptionStatus, VariantInfo

if TYPE_CHECKING:
    from .app import App

PREVIEW_EMAIL = "preview@example.com"
PREVIEW_PHONE = "+15005550006"

# GSM 03.38 default alphabet and its extension table (each extension character takes two
# septets). Anything else forces UCS-2. Twilio: https://www.twilio.com/docs/glossary/what-sms-character-limit
GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENDED = set("^{}\\[~]|€\f")


@attrs.frozen
class SmsInfo:
    encoding: str  # "GSM-7" or "UCS-2"
    characters: int
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int
    per_segment: int


def sms_info(text: str) -> SmsInfo:
    """Encoding and segment count: GSM-7 fits 160 septets in one message, 153 per part when
    concatenated; UCS-2 fits 70 UTF-16 units, 67 per part."""
    if all(c in GSM_BASIC or c in GSM_EXTENDED for c in text):
        units = sum(2 if c in GSM_EXTENDED else 1 for c in text)
        single, multi, encoding = 160, 153, "GSM-7"
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, multi, encoding = 70, 67, "UCS-2"
    if units <= single:
        segments, per = (1 if units else 0), single
    else:
        segments, per = -(-units // multi), multi
    return SmsInfo(encoding, len(text), units, segments, per)


def preview_message(
    app: App,
    variant_id: str,
    *,
    channel: str = "email",
    locale: str | None = None,
    scope: str = "default",
    source: str | None = None,
    to: str | None = None,
    delivery_id: int = 0,
    titles: tuple[str | None, str | None, str | None] = (None, None, None),
) -> Message:
    """The message a subscriber of `variant_id` would get, rendered by the same renderer and
    with the same adapter description the worker uses. `titles` (product, variant, url) are
    sign-up snapshots to fall back on when the adapter describes nothing."""
    try:
        kind = Channel(channel)
    except ValueError:
        raise ValidationError(
            f"unknown channel {channel!r}; use 'email' or 'sms'", field="channel"
        ) from None
    if not variant_id or len(variant_id) > 255:
        raise ValidationError("variant_id must be 1 to 255 characters", field="variant_id")
    instance = app.adapter_instance(source)
    info = app.describe(instance.id, [variant_id]).get(variant_id) or VariantInfo()
    subscription = Subscription(
        id=0,
        variant_id=variant_id,
        scope=scope,
        source=instance.id,
        channel=kind,
        contact=to or (PREVIEW_EMAIL if kind == Channel.EMAIL else PREVIEW_PHONE),
        status=SubscriptionStatus.PENDING,
        created_at=datetime.now(UTC),
        locale=locale or None,
        product_title=None if info.product_title else titles[0],
        variant_title=None if info.title else titles[1],
        url=None if info.url else titles[2],
    )
    # id 0 never exists, so this link unsubscribes nobody; it has the real link's shape
    link = app.unsubscribe_url(0)
    return app.renderer.render(
        delivery_id=delivery_id,
        attempt=1,
        subscription=subscription,
        info=info,
        unsubscribe_url=link,
        unsubscribe_post_url=link,
    )


def one_off_delivery_id() -> int:
    """A delivery id no outbox row has (outbox ids count up from 1): providers' status
    webhooks about a test message match nothing and change nothing; a fresh one per send
    keeps providers' idempotency keys from swallowing a second test."""
    return 2**62 + secrets.randbelow(2**61)
