"""The SendGrid provider: `POST /v3/mail/send` through the official `sendgrid` SDK.

One request carries up to 1000 personalizations (one per recipient), each with its own
`custom_args` (`delivery_id`, so webhook events map back to the outbox row), its own
`List-Unsubscribe` headers and its own unsubscribe link:

- with restock's rendered content, messages whose subject/text/html are identical once the
  unsubscribe URL is replaced by a substitution tag share one request, and each
  personalization's `substitutions` puts its own link back; messages that differ go out in one
  request per distinct content;
- with a dynamic template (`template_id`), every personalization carries its own
  `dynamic_template_data` (SendGrid does not allow `substitutions` together with dynamic
  templates), so any messages share a request.
"""

from __future__ import annotations

import html as html_lib
import http.client
import json
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs
import python_http_client.exceptions as http_errors
from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid import SendGridAPIClient

from restock_core import (
    Channel,
    Hold,
    Message,
    Outcome,
    PluginHost,
    Provider,
    SendResult,
    SharedContent,
    retry_after,
)

from .options import MAX_PERSONALIZATIONS, SendGridOptions, load_public_key

log = logging.getLogger("restock.sendgrid")

#: substitution tag standing for the recipient's unsubscribe URL in text and subject
TAG = "-restock_unsubscribe-"
#: ... and for its HTML-escaped form in the HTML part (only used when the two differ)
HTML_TAG = "-restock_unsubscribe_html-"
MAIL_SEND_PATH = "/v3/mail/send"
#: custom arg naming the restock install that sent a message (see `App.install_id`)
INSTALL_ARG = "restock_install"
#: how many times one chunk is re-posted after SendGrid rejected some of its recipients
MAX_PRUNE_ROUNDS = 3

_PERSONALIZATION_FIELD = re.compile(r"^personalizations(?:\.|\[)(\d+)\]?(?:[.\[]|$)")
_BEARER = re.compile(r"(Bearer\s+)[^\s'\",}]+")


class _RedactAuthorization(logging.Filter):
    """python_http_client logs every request's headers at DEBUG, Authorization included;
    keep the API key out of the logs whatever level the application runs at."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record we cannot format is not ours to fix
            return True
        if "Bearer" in message:
            record.msg = _BEARER.sub(r"\1***", message)
            record.args = ()
        return True


def _install_redaction() -> None:
    logger = logging.getLogger("python_http_client.client")
    if not any(isinstance(f, _RedactAuthorization) for f in logger.filters):
        logger.addFilter(_RedactAuthorization())


_install_redaction()


# --------------------------------------------------------------------------- helpers


def _header(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    getter = getattr(headers, "get", None)
    value = getter(name) if getter is not None else None
    if value is None and isinstance(headers, Mapping):
        lowered = name.lower()
        value = next((v for k, v in headers.items() if str(k).lower() == lowered), None)
    return str(value) if value is not None else None


def retry_after_seconds(headers: Any, now: float | None = None) -> float | None:
    """Seconds to wait after a 429: `Retry-After` (seconds or an HTTP date), else
    `X-RateLimit-Reset` (epoch seconds, as SendGrid sends it). None when neither is usable."""
    return retry_after(headers, reset_headers=("X-RateLimit-Reset",), now=now)


def _errors(body: bytes) -> list[dict[str, Any]] | None:
    """SendGrid's `{"errors": [{"message", "field", "help"}]}`, or None when the body is
    not that shape."""
    try:
        data = json.loads(body.decode("utf-8")) if body else None
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("errors"), list):
        return None
    return [e for e in data["errors"] if isinstance(e, dict)] or None


def _describe(errors: list[dict[str, Any]] | None, body: bytes) -> str:
    if errors:
        parts = []
        for error in errors[:5]:
            message = str(error.get("message") or "no message")
            field = error.get("field")
            parts.append(f"{field}: {message}" if field else message)
        text = "; ".join(parts)
    elif body:
        text = "unreadable error body: " + body[:200].decode("utf-8", "replace")
    else:
        text = "no error details"
    return text[:500]


def _named_personalizations(
    errors: list[dict[str, Any]] | None, count: int
) -> dict[int, str] | None:
    """{index: reason} when every error names a personalization of this request
    (`personalizations.3.to.0.email`); None when any error concerns the whole request."""
    if not errors:
        return None
    bad: dict[int, str] = {}
    for error in errors:
        field = error.get("field")
        match = _PERSONALIZATION_FIELD.match(field) if isinstance(field, str) else None
        if match is None:
            return None
        index = int(match.group(1))
        if index >= count:
            return None
        bad.setdefault(index, f"{field}: {error.get('message') or 'rejected'}"[:500])
    return bad


def _escaped_forms(url: str) -> list[str]:
    """How an URL can appear in HTML: html.escape's and markupsafe's (Jinja's) escaping."""
    markupsafe_style = (
        url.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
        .replace("'", "&#39;")
    )
    forms = {html_lib.escape(url, quote=True), markupsafe_style} - {url}
    return sorted(forms, key=len, reverse=True)


def _json_safe(value: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(dict(value), default=str))


def _requests(items: Sequence[Message], size: int) -> Iterator[list[Message]]:
    """Requests of at most `size` messages in which no address appears twice: SendGrid
    refuses (400) a whole request that names one address in two personalizations ("Each
    unique email address in the personalizations array should only be included once. You
    have included [email] more than once." --
    https://www.twilio.com/docs/sendgrid/api-reference/mail-send/errors).
    A repeated address (one person signed up for two variants that render alike) goes to the
    next request; the order of first appearance is kept."""
    requests: list[tuple[list[Message], set[str]]] = []
    for message in items:
        address = (message.to or "").strip().lower()
        for members, seen in requests:
            if len(members) < size and address not in seen:
                members.append(message)
                seen.add(address)
                break
        else:
            requests.append(([message], {address}))
    for members, _ in requests:
        yield members


@attrs.frozen(cache_hash=True)
class _Content:
    """What one request's messages share. `substituted`: the unsubscribe link in the content
    is a substitution tag that each personalization fills in."""

    subject: str | None
    text: str | None
    html: str | None
    substituted: bool

    @property
    def tags(self) -> tuple[str, ...]:
        if not self.substituted:
            return ()
        joined = "".join(v for v in (self.subject, self.text, self.html) if v)
        return tuple(t for t in (TAG, HTML_TAG) if t in joined)


_TEMPLATE = _Content(None, None, None, False)


def content_of(message: Message) -> _Content:
    """The message's content with its own unsubscribe URL replaced by substitution tags."""
    subject, text, html = message.subject, message.text, message.html
    url = message.unsubscribe_url
    joined = "".join(v for v in (subject, text, html) if v)
    if (
        not url
        or TAG in joined
        or HTML_TAG in joined
        or url not in joined
        and not any(form in joined for form in _escaped_forms(url))
    ):
        return _Content(subject, text, html, False)
    if html:
        for form in _escaped_forms(url):
            html = html.replace(form, HTML_TAG)
        html = html.replace(url, TAG)
    return _Content(
        subject.replace(url, TAG) if subject else subject,
        text.replace(url, TAG) if text else text,
        html,
        True,
    )


#: characters HTML escaping changes: an URL with none of them appears as itself in HTML
_HTML_SPECIAL = "&<>\"'"


def tagged(content: SharedContent, escaped: bool) -> _Content | None:
    """The core's shared content with its link marker replaced by the substitution tags:
    the URL's own form in subject and text, its HTML-escaped form in the HTML (a tag of its
    own when `escaped`, i.e. escaping changes the URL). None when the content cannot be
    sent this way (its text already holds one of our tags), so the message's own content is
    used instead."""
    parts = (content.subject, content.text, content.html)
    joined = "".join(v for v in parts if v)
    if TAG in joined or HTML_TAG in joined:
        return None
    link = content.link
    if link not in joined:
        return _Content(content.subject, content.text, content.html, False)
    html = content.html.replace(link, HTML_TAG if escaped else TAG) if content.html else None
    return _Content(
        content.subject.replace(link, TAG) if content.subject else content.subject,
        content.text.replace(link, TAG) if content.text else content.text,
        html,
        True,
    )


@attrs.frozen
class _Reply:
    status: int | None  # None: no HTTP answer (timeout, refused or reset connection)
    headers: Any
    body: bytes
    error: str | None = None


@attrs.frozen
class _Stop:
    """A batch-level answer (429, 5xx, network, auth) that applies to every message still
    waiting in this `send` call: they get it without another request."""

    outcome: Outcome
    reason: str
    retry_after: float | None = None
    hold: Hold | None = None

    def result(self, delivery_id: int) -> SendResult:
        if self.outcome == Outcome.FAILED:
            return SendResult.failed(delivery_id, self.reason)
        if self.hold == Hold.RATE_LIMITED:
            return SendResult.rate_limited(delivery_id, self.reason, self.retry_after)
        if self.hold == Hold.UNAUTHORIZED:
            return SendResult.unauthorized(delivery_id, self.reason)
        return SendResult.retry(delivery_id, self.reason, self.retry_after)


# --------------------------------------------------------------------------- provider


class SendGridProvider(Provider):
    """Sends email through SendGrid. See docs/plugins/sendgrid.md."""

    name = "sendgrid"
    channels = frozenset({Channel.EMAIL})
    paces_requests = True

    def __init__(self, options: SendGridOptions):
        self.options = options
        self.requests_per_second = options.requests_per_second
        self.max_batch_size = min(options.batch_size, MAX_PERSONALIZATIONS)
        self.instance_id = "sendgrid"
        self.public_key: ec.EllipticCurvePublicKey | None = (
            load_public_key(options.webhook_public_key) if options.webhook_public_key else None
        )
        self._client = SendGridAPIClient(
            api_key=options.api_key.value, host=options.base_url.rstrip("/")
        )
        # the SDK has no default timeout (urllib would wait forever)
        self._client.client.timeout = options.timeout
        sender: dict[str, str] = {"email": options.from_email}
        if options.from_name:
            sender["name"] = options.from_name
        self._from = sender

    def __repr__(self) -> str:
        return (
            f"SendGridProvider(id={self.instance_id!r}, base_url={self.options.base_url!r}, "
            f"from_email={self.options.from_email!r})"
        )

    def bind(self, app: PluginHost, instance_id: str) -> None:
        super().bind(app, instance_id)
        self.instance_id = instance_id

    def routes(self, app: PluginHost) -> Any:
        from .webhook import build_router

        return build_router(self, app)

    def close(self) -> None:  # urllib keeps no connections open
        pass

    # ------------------------------------------------------------------ sending

    def send(self, messages: Sequence[Message]) -> list[SendResult]:
        results: dict[int, SendResult] = {}
        stop: _Stop | None = None
        for content, members in self.plan(messages):
            for chunk in _requests(members, self.max_batch_size):
                if stop is not None:
                    for message in chunk:
                        results[message.delivery_id] = stop.result(message.delivery_id)
                    continue
                stop = self._deliver(content, chunk, results)
        return [
            results.get(m.delivery_id)
            or SendResult.retry(m.delivery_id, "no answer recorded for this message")
            for m in messages
        ]

    def plan(self, messages: Sequence[Message]) -> list[tuple[_Content, list[Message]]]:
        """Group messages into requests: all of them for a dynamic template, else by content
        (identical once the unsubscribe link is a substitution tag), in first-seen order.
        A message carrying the core's shared content (`Message.content`) is grouped by it:
        its tagged form is made once per content, not found again in each message."""
        groups: dict[_Content, list[Message]] = {}
        shared: dict[tuple[SharedContent, bool], _Content | None] = {}
        template_id = self.options.template_id
        for message in messages:
            # the dynamic template is the restock message's; a double opt-in confirmation
            # (template "confirm") goes out with restock's own rendered text
            if template_id and message.template == "restock":
                content = _TEMPLATE
            else:
                found = None
                if message.content is not None and message.unsubscribe_url:
                    url = message.unsubscribe_url
                    key = (message.content, any(c in url for c in _HTML_SPECIAL))
                    if key not in shared:
                        shared[key] = tagged(*key)
                    found = shared[key]
                content = found if found is not None else content_of(message)
            group = groups.get(content)
            if group is None:
                groups[content] = [message]
            else:
                group.append(message)
        return list(groups.items())

    def payload(self, content: _Content, messages: Sequence[Message]) -> dict[str, Any]:
        """The Mail Send body for these messages (personalizations in message order, so an
        error naming `personalizations.N` names messages[N])."""
        tags = content.tags  # once per request, not per personalization
        install = self.install_id
        body: dict[str, Any] = {
            "from": dict(self._from),
            "personalizations": [
                self._personalization(content, m, tags, install) for m in messages
            ],
        }
        if self.options.reply_to:
            body["reply_to"] = {"email": self.options.reply_to}
        if self.options.template_id and content == _TEMPLATE:
            body["template_id"] = self.options.template_id
        else:
            body["subject"] = content.subject or "(no subject)"
            parts = []
            if content.text:
                parts.append({"type": "text/plain", "value": content.text})
            if content.html:
                parts.append({"type": "text/html", "value": content.html})
            body["content"] = parts or [{"type": "text/plain", "value": body["subject"]}]
        if self.options.categories:
            body["categories"] = list(self.options.categories)
        if self.options.sandbox_mode:
            body["mail_settings"] = {"sandbox_mode": {"enable": True}}
        return body

    @property
    def install_id(self) -> str | None:
        """The app's install id, sent as the `restock_install` custom arg so that events of
        another restock install on the same SendGrid account are not applied here."""
        return self._host.install_id if self._host is not None else None

    def _personalization(
        self, content: _Content, message: Message, tags: tuple[str, ...], install: str | None
    ) -> dict[str, Any]:
        custom_args = {"delivery_id": str(message.delivery_id)}
        if install:
            custom_args[INSTALL_ARG] = install
        if message.subscription_id is not None:
            custom_args["subscription_id"] = str(message.subscription_id)
        item: dict[str, Any] = {"to": [{"email": message.to}], "custom_args": custom_args}
        headers = {str(k): str(v) for k, v in message.headers.items() if v}
        if message.unsubscribe_url and "List-Unsubscribe" not in headers:
            headers["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        if headers:
            item["headers"] = headers
        if self.options.template_id and content == _TEMPLATE:
            data = _json_safe(message.template_data)
            data.setdefault("unsubscribe_url", message.unsubscribe_url)
            if message.subject:
                data.setdefault("subject", message.subject)
            item["dynamic_template_data"] = data
        elif content.substituted:
            url = message.unsubscribe_url
            if tags == (TAG,):
                item["substitutions"] = {TAG: url}
            else:
                item["substitutions"] = {
                    tag: (url if tag == TAG else html_lib.escape(url)) for tag in tags
                }
        return item

    def _request(self, body: dict[str, Any]) -> _Reply:
        try:
            with self.paced():
                response = self._client.client.mail.send.post(
                    request_body=body, timeout=self.options.timeout
                )
        except http_errors.HTTPError as exc:
            return _Reply(int(exc.status_code), exc.headers, exc.body or b"")
        except (OSError, http.client.HTTPException) as exc:  # URLError, TimeoutError, resets
            return _Reply(None, None, b"", f"{type(exc).__name__}: {exc}"[:300])
        return _Reply(int(response.status_code), response.headers, response.body or b"")

    def _deliver(
        self, content: _Content, chunk: list[Message], results: dict[int, SendResult]
    ) -> _Stop | None:
        """Send one chunk (≤ batch size) and record a result for each of its messages.
        Returns a batch-level answer that the rest of this `send` call should share."""
        pending = chunk
        rounds = 0
        while pending:
            rounds += 1
            reply = self._request(self.payload(content, pending))
            status = reply.status
            if status is not None and 200 <= status < 300:
                message_id = _header(reply.headers, "X-Message-Id")
                for message in pending:
                    results[message.delivery_id] = SendResult.sent(message.delivery_id, message_id)
                return None
            if status == 400:
                errors = _errors(reply.body)
                bad = _named_personalizations(errors, len(pending))
                if bad is None:
                    reason = f"SendGrid rejected the request (400): {_describe(errors, reply.body)}"
                    for message in pending:
                        results[message.delivery_id] = SendResult.failed(
                            message.delivery_id, reason
                        )
                    return None
                for index, why in bad.items():
                    message = pending[index]
                    results[message.delivery_id] = SendResult.failed(
                        message.delivery_id, f"SendGrid rejected this recipient (400): {why}"
                    )
                pending = [m for i, m in enumerate(pending) if i not in bad]
                if pending and rounds >= MAX_PRUNE_ROUNDS:
                    for message in pending:
                        results[message.delivery_id] = SendResult.retry(
                            message.delivery_id,
                            "not sent: SendGrid kept rejecting other recipients of the batch",
                            0.0,
                        )
                    return None
                continue
            if status == 413:
                return self._split(content, pending, results)
            stop = self._classify(reply)
            for message in pending:
                results[message.delivery_id] = stop.result(message.delivery_id)
            log.warning(
                "sendgrid %s: %s (%s messages)", self.instance_id, stop.reason, len(pending)
            )
            return stop
        return None

    def _split(
        self, content: _Content, pending: list[Message], results: dict[int, SendResult]
    ) -> _Stop | None:
        """413: the request is too large; send it in halves, down to single messages."""
        if len(pending) == 1:
            message = pending[0]
            results[message.delivery_id] = SendResult.failed(
                message.delivery_id, "SendGrid refused the message as too large (413)"
            )
            return None
        half = len(pending) // 2
        stop: _Stop | None = None
        for part in (pending[:half], pending[half:]):
            if stop is not None:
                for message in part:
                    results[message.delivery_id] = stop.result(message.delivery_id)
                continue
            stop = self._deliver(content, part, results)
        return stop

    def _classify(self, reply: _Reply) -> _Stop:
        status = reply.status
        if status is None:
            return _Stop(Outcome.RETRY, f"SendGrid unreachable: {reply.error}")
        if status in (401, 403):
            word = "unauthorized" if status == 401 else "forbidden"
            # a provider outage, not the recipients' fault: the core keeps them queued
            return _Stop(
                Outcome.RETRY,
                f"SendGrid refused the API key ({status} {word}; auth error: check api_key and "
                f"its Mail Send permission): {_describe(_errors(reply.body), reply.body)}",
                hold=Hold.UNAUTHORIZED,
            )
        if status == 429:
            return _Stop(
                Outcome.RETRY,
                "rate limited by SendGrid (429)",
                retry_after_seconds(reply.headers),
                hold=Hold.RATE_LIMITED,
            )
        if status >= 500:
            return _Stop(Outcome.RETRY, f"SendGrid server error ({status})")
        return _Stop(
            Outcome.RETRY,
            f"unexpected answer from SendGrid ({status}): "
            f"{_describe(_errors(reply.body), reply.body)}",
        )
