"""The `[[plugins]] resolve = "sendgrid"` options, validated field by field."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import attrs
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

from restock_core import Secret, http_url, positive

#: SendGrid's limit: 1000 personalizations (and 1000 recipients) per Mail Send request
MAX_PERSONALIZATIONS = 1000
#: SendGrid's limit: at most 10 categories per message, each at most 255 characters
MAX_CATEGORIES = 10
MAX_CATEGORY_LENGTH = 255


def load_public_key(value: str) -> ec.EllipticCurvePublicKey:
    """The Event Webhook verification key as SendGrid shows it (base64 DER without PEM
    framing), or a PEM block. Raises ValueError when it is neither."""
    text = value.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = load_pem_public_key(text.encode("ascii"))
        else:
            key = load_der_public_key(base64.b64decode("".join(text.split()), validate=True))
    except (ValueError, TypeError, binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError(
            "webhook_public_key must be the Event Webhook verification key from SendGrid "
            "(base64 DER, or a PEM block)"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("webhook_public_key must be an ECDSA (elliptic curve) public key")
    return key


def _email(attribute: Any, value: str | None, *, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or "@" not in value or value != value.strip():
        raise ValueError(f"{attribute.name} must be an email address, got {value!r}")


def _check_from(instance: Any, attribute: Any, value: str) -> None:
    _email(attribute, value, optional=False)


def _check_reply_to(instance: Any, attribute: Any, value: str | None) -> None:
    _email(attribute, value, optional=True)


@attrs.frozen
class SendGridOptions:
    """Options of the SendGrid provider (see docs/plugins/sendgrid.md)."""

    #: API key with the "Mail Send" permission; usually `{ env = "SENDGRID_API_KEY" }`
    api_key: Secret = attrs.field()
    #: sender address (a verified sender or an address in an authenticated domain)
    from_email: str = attrs.field(validator=_check_from)
    from_name: str | None = None
    reply_to: str | None = attrs.field(default=None, validator=_check_reply_to)
    #: a dynamic template ("d-..."): restock then sends `template_data` instead of its own text
    template_id: str | None = attrs.field(default=None)
    categories: list[str] = attrs.field(factory=list)
    base_url: str = attrs.field(default="https://api.sendgrid.com", validator=http_url)
    timeout: float = attrs.field(default=10.0, validator=positive)  # seconds per request
    batch_size: int = attrs.field(default=MAX_PERSONALIZATIONS)  # recipients per request, ≤ 1000
    sandbox_mode: bool = False
    #: most Mail Send requests per second from this process (all worker threads); None:
    #: unpaced. SendGrid publishes no numeric limit for /v3/mail/send (its v3 rate-limit
    #: page gives per-endpoint limits through X-RateLimit-* headers only, and the 600/min
    #: limit of 2019 excludes mail/send: https://www.twilio.com/docs/sendgrid/api-reference/
    #: how-to-use-the-sendgrid-v3-api/rate-limits, https://www.twilio.com/en-us/changelog/
    #: imposing-rate-limits-on-some-sendgrid-v2-api-endpoints); a 429 still pauses sends
    requests_per_second: float | None = attrs.field(default=None)
    #: the Signed Event Webhook verification key; without it the events route refuses requests
    webhook_public_key: str | None = attrs.field(default=None)

    @api_key.validator
    def _check_api_key(self, attribute: Any, value: Secret) -> None:
        if not str.__str__(value).strip():
            raise ValueError("api_key must not be empty")

    @template_id.validator
    def _check_template_id(self, attribute: Any, value: str | None) -> None:
        if value is not None and not value.startswith("d-"):
            raise ValueError(
                f"template_id must be a dynamic template id (it starts with 'd-'), got {value!r}"
            )

    @categories.validator
    def _check_categories(self, attribute: Any, value: list[str]) -> None:
        if len(value) > MAX_CATEGORIES:
            raise ValueError(
                f"categories: SendGrid allows at most {MAX_CATEGORIES}, got {len(value)}"
            )
        for category in value:
            if not category or len(category) > MAX_CATEGORY_LENGTH:
                raise ValueError(
                    f"categories: each must be 1 to {MAX_CATEGORY_LENGTH} characters, "
                    f"got {category!r}"
                )

    @requests_per_second.validator
    def _check_rate(self, attribute: Any, value: float | None) -> None:
        if value is not None and (isinstance(value, bool) or not value > 0):
            raise ValueError(f"requests_per_second must be a positive number, got {value!r}")

    @batch_size.validator
    def _check_batch_size(self, attribute: Any, value: int) -> None:
        if not 1 <= value <= MAX_PERSONALIZATIONS:
            raise ValueError(
                f"batch_size must be between 1 and {MAX_PERSONALIZATIONS} (SendGrid's limit "
                f"of personalizations per request), got {value}"
            )

    @webhook_public_key.validator
    def _check_webhook_public_key(self, attribute: Any, value: str | None) -> None:
        if value is not None:
            load_public_key(value)
