"""An example notification provider, written exactly as a third party would write one.

It POSTs each batch of messages as JSON to a URL you own (your own mailer, a chat webhook,
a queue gateway) and signs the body with HMAC-SHA256 so the receiver can trust it.
See docs/writing-a-provider.md for the walk-through."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence

import attrs
import httpx

from restock_core import Channel, Message, Provider, Secret, SendResult, hookimpl, parse_retry_after


@attrs.frozen
class WebhookOptions:
    url: str = attrs.field()
    secret: Secret | None = None  # signs the body: X-Restock-Signature: sha256=<hex>
    channels: list[str] = attrs.field(factory=lambda: ["email"])
    timeout: float = 10.0
    batch_size: int = attrs.field(default=100)

    @url.validator
    def _check_url(self, attribute: object, value: str) -> None:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {value!r}")

    @batch_size.validator
    def _check_batch(self, attribute: object, value: int) -> None:
        if not 1 <= value <= 1000:
            raise ValueError(f"batch_size must be between 1 and 1000, got {value}")


class WebhookProvider(Provider):
    name = "json-post"

    def __init__(self, options: WebhookOptions):
        self.options = options
        self.channels = frozenset(Channel(c) for c in options.channels)
        self.max_batch_size = options.batch_size
        self.client = httpx.Client(timeout=options.timeout)

    def send(self, messages: Sequence[Message]) -> list[SendResult]:
        body = json.dumps(
            {
                "messages": [
                    {
                        "id": m.idempotency_key,
                        "channel": str(m.channel),
                        "to": m.to,
                        "subject": m.subject,
                        "text": m.text,
                        "html": m.html,
                        "headers": dict(m.headers),
                    }
                    for m in messages
                ]
            }
        ).encode()
        headers = {"Content-Type": "application/json"}
        if self.options.secret:
            digest = hmac.new(self.options.secret.value.encode(), body, hashlib.sha256).hexdigest()
            headers["X-Restock-Signature"] = f"sha256={digest}"
        try:
            response = self.client.post(self.options.url, content=body, headers=headers)
        except httpx.HTTPError as exc:  # timeouts, resets: try again later
            return [SendResult.retry(m.delivery_id, f"{type(exc).__name__}") for m in messages]
        if response.is_success:
            # the receiver may refuse single messages: {"rejected": {"<message id>": "reason"}}
            try:
                rejected = dict(response.json().get("rejected") or {})
            except (ValueError, AttributeError):
                rejected = {}
            return [
                SendResult.failed(m.delivery_id, str(rejected[m.idempotency_key]))
                if m.idempotency_key in rejected
                else SendResult.sent(m.delivery_id, m.idempotency_key)
                for m in messages
            ]
        reason = f"HTTP {response.status_code}"
        delay = parse_retry_after(response.headers.get("Retry-After"))
        if response.status_code == 429:  # the core pauses this provider; no attempt is used
            return [SendResult.rate_limited(m.delivery_id, reason, delay) for m in messages]
        # a wrong or rotated secret is an outage, not a failure
        if response.status_code in (401, 403):
            return [SendResult.unauthorized(m.delivery_id, reason) for m in messages]
        if response.status_code >= 500:
            return [SendResult.retry(m.delivery_id, reason, retry_after=delay) for m in messages]
        return [SendResult.failed(m.delivery_id, reason) for m in messages]

    def close(self) -> None:
        self.client.close()


@hookimpl
def register_providers(register):  # type: ignore[no-untyped-def]
    register(
        "json-post",
        WebhookProvider,
        options=WebhookOptions,
        description="POSTs messages as JSON to your URL",
    )
