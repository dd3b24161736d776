"""The Resend provider: email through the official `resend` SDK.

Batches go to ``POST /emails/batch`` (up to 100) with an ``Idempotency-Key``. The core stores
each batch's membership and key before its first attempt (``stable_requests``), so a batch
retried after a lost response is byte-identical and Resend answers the first result again
instead of sending twice. Requests are paced to ``requests_per_second`` (Resend's default
team limit, 2/s); a 429 pauses the instance until ``retry-after``; a refused key (401/403)
pauses it as an outage. Delivery webhooks are verified with Svix.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import resend
import resend.exceptions
from resend.http_client_requests import RequestsClient

from restock_core import (
    Channel,
    Message,
    PluginHost,
    Provider,
    Secret,
    SendResult,
    hookimpl,
    http_url,
    positive,
    retry_after,
)

log = logging.getLogger("restock.resend")

MAX_BATCH = 100
DEFAULT_URL = "https://api.resend.com"
# "The default maximum rate limit is 2 requests per second" per team, shared by all its API
# keys (https://resend.com/docs/api-reference/rate-limit); a batch counts as one request.
DEFAULT_REQUESTS_PER_SECOND = 2.0

# The SDK keeps its key, URL and HTTP client in module globals; every call sets them under
# this lock, so two provider instances (two Resend accounts) never mix them up.
_SDK_LOCK = threading.Lock()


def _check_batch(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    if not 1 <= value <= MAX_BATCH:
        raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}, got {value}")


def _not_empty(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not str.__str__(value).strip():
        raise ValueError(f"{attribute.name} must not be empty")


def _svix_secret(instance: Any, attribute: attrs.Attribute, value: Secret | None) -> None:
    if value is None:
        return
    from svix.webhooks import Webhook

    try:
        Webhook(str.__str__(value))
    except Exception:
        raise ValueError(
            "webhook_secret must be the Svix signing secret shown by Resend (whsec_...)"
        ) from None


@attrs.frozen
class ResendOptions:
    api_key: Secret = attrs.field(validator=_not_empty)
    from_email: str = attrs.field(validator=_not_empty)  # "Shop <shop@example.com>"
    reply_to: str | None = None
    base_url: str = attrs.field(default=DEFAULT_URL, validator=http_url)
    timeout: float = attrs.field(default=10.0, validator=positive)
    batch_size: int = attrs.field(default=MAX_BATCH, validator=_check_batch)
    requests_per_second: float = attrs.field(
        default=DEFAULT_REQUESTS_PER_SECOND, validator=positive
    )
    use_batch: bool = True
    webhook_secret: Secret | None = attrs.field(default=None, validator=_svix_secret)


class _Client(RequestsClient):
    """The SDK's requests client with an explicit timeout (its default is 30 s)."""

    def __init__(self, timeout: float):
        super().__init__(timeout=timeout)  # type: ignore[arg-type]


def batch_key(messages: Sequence[Message]) -> str:
    """Same deliveries, same key: a retried batch reuses it (Resend keeps keys for 24 h)."""
    ids = ",".join(str(d) for d in sorted(m.delivery_id for m in messages))
    return "restock-batch-" + hashlib.sha256(ids.encode()).hexdigest()[:40]


def _request_key(messages: Sequence[Message]) -> str:
    """The key the core stored for this request before its first attempt, so every retry
    carries it whatever changed since; the hash of the ids when sent outside the core."""
    keys = {m.request_key for m in messages}
    if len(keys) == 1 and None not in keys:
        return str(keys.pop())
    return batch_key(messages)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Resend sends `retry-after` and `ratelimit-reset` (seconds until the window resets)
    (https://resend.com/docs/api-reference/rate-limit)."""
    return retry_after(headers or {}, reset_headers=("ratelimit-reset",))


def classify(exc: Exception, message_ids: Sequence[int]) -> list[SendResult]:
    """Turn an SDK exception for a whole request into one result per message."""
    if not isinstance(exc, resend.exceptions.ResendError):
        reason = f"{type(exc).__name__}: {exc}"
        return [SendResult.retry(d, reason) for d in message_ids]
    code = str(exc.code)
    reason = f"resend {code} {exc.error_type}: {exc.message}"[:500]
    if exc.error_type == "HttpClientError" or code.startswith("5"):
        return [SendResult.retry(d, reason) for d in message_ids]
    if code == "429":
        # the team's rate limit (or quota) is shared by every message: pause the provider
        # until retry-after; the messages keep their attempts
        wait = _retry_after(exc.headers)
        if exc.error_type in ("daily_quota_exceeded", "monthly_quota_exceeded"):
            wait = max(wait or 0.0, 3600.0)  # a quota does not come back in seconds
        return [SendResult.rate_limited(d, reason, retry_after=wait) for d in message_ids]
    if code == "409" and exc.error_type == "concurrent_idempotent_requests":
        # the first request with this key is still running; its answer will be replayed
        wait = _retry_after(exc.headers) or 5.0
        return [SendResult.retry(d, reason, retry_after=wait) for d in message_ids]
    if code == "409":
        # invalid_idempotent_request: these deliveries were already submitted under this key
        # (within Resend's 24 h) with other content; sending again would duplicate the email
        reason = (
            f"{reason} (these deliveries were already submitted with other content; "
            "not sent again to avoid a duplicate)"
        )[:500]
    if code in ("401", "403"):
        # a missing, wrong or revoked key fails every message alike: a provider outage, not
        # the recipients' fault; the core keeps them queued until the key works
        reason = f"resend refused the API key ({code} {exc.error_type})"
        return [SendResult.unauthorized(d, reason) for d in message_ids]
    return [SendResult.failed(d, reason) for d in message_ids]


class ResendProvider(Provider):
    name = "resend"
    channels = frozenset({Channel.EMAIL})
    paces_requests = True

    def __init__(self, options: ResendOptions):
        self.options = options
        self.max_batch_size = options.batch_size if options.use_batch else 1
        self.requests_per_second = options.requests_per_second
        # one batch per send call: the core keeps its membership and key across retries
        self.stable_requests = options.use_batch
        self._client = _Client(options.timeout)
        self.id = "resend"

    def __repr__(self) -> str:
        return f"ResendProvider(base_url={self.options.base_url!r})"

    def bind(self, app: PluginHost, instance_id: str) -> None:
        super().bind(app, instance_id)
        self.id = instance_id

    def _params(self, message: Message) -> dict[str, Any]:
        params: dict[str, Any] = {
            "from": self.options.from_email,
            "to": [message.to],
            "subject": message.subject or "",
            "text": message.text,
            "headers": dict(message.headers),
            "tags": [{"name": "delivery_id", "value": str(message.delivery_id)}],
        }
        if message.html:
            params["html"] = message.html
        if self.options.reply_to:
            params["reply_to"] = self.options.reply_to
        return params

    def _call(self, function: Any, params: Any, options: dict[str, Any]) -> Any:
        # every HTTP request waits for its turn (shared by all worker threads)
        with self.paced(), _SDK_LOCK:
            resend.api_key = self.options.api_key.value
            resend.api_url = self.options.base_url.rstrip("/")
            resend.default_http_client = self._client
            try:
                return function(params, options)
            finally:
                resend.api_key = None

    def send(self, messages: Sequence[Message]) -> list[SendResult]:
        if len(messages) == 1 or not self.options.use_batch:
            return [self._send_one(m) for m in messages]
        # a stable order keeps the payload of a retried batch identical to the first attempt,
        # which Resend requires before it replays the first answer for the same key
        messages = sorted(messages, key=lambda m: m.delivery_id)
        ids = [m.delivery_id for m in messages]
        try:
            response = self._call(
                resend.Batch.send,
                [self._params(m) for m in messages],
                {"idempotency_key": _request_key(messages), "batch_validation": "permissive"},
            )
        except Exception as exc:  # the SDK raises for the whole request
            return classify(exc, ids)
        return self._batch_results(messages, response)

    def _batch_results(self, messages: Sequence[Message], response: Any) -> list[SendResult]:
        data = response.get("data") if isinstance(response, Mapping) else None
        errors = response.get("errors") if isinstance(response, Mapping) else None
        if not isinstance(data, list):
            # accepted (2xx) but unreadable: retrying under the same key cannot send twice
            return [
                SendResult.retry(m.delivery_id, "resend: unreadable batch answer") for m in messages
            ]
        rejected: dict[int, str] = {}
        for error in errors or []:
            if isinstance(error, Mapping) and isinstance(error.get("index"), int):
                rejected[error["index"]] = str(error.get("message") or "rejected")
        accepted_ids = iter(item.get("id") if isinstance(item, Mapping) else None for item in data)
        results = []
        for index, message in enumerate(messages):
            if index in rejected:
                results.append(SendResult.failed(message.delivery_id, f"resend: {rejected[index]}"))
            else:
                results.append(SendResult.sent(message.delivery_id, next(accepted_ids, None)))
        return results

    def _send_one(self, message: Message) -> SendResult:
        try:
            response = self._call(
                resend.Emails.send,
                self._params(message),
                {"idempotency_key": message.request_key or message.idempotency_key},
            )
        except Exception as exc:
            return classify(exc, [message.delivery_id])[0]
        email_id = response.get("id") if isinstance(response, Mapping) else None
        return SendResult.sent(message.delivery_id, email_id)

    def routes(self, app: PluginHost) -> Any:
        from .webhooks import build_router

        return build_router(self, app)


@hookimpl
def register_providers(register):  # type: ignore[no-untyped-def]
    register(
        "resend",
        ResendProvider,
        options=ResendOptions,
        description="Email through Resend (official SDK, batches, idempotency keys)",
    )
