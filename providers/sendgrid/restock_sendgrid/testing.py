"""A fake SendGrid Mail Send API for tests and benchmarks (no pytest needed).

It speaks the documented wire format: `POST /v3/mail/send` with `Authorization: Bearer <key>`,
202 with an empty body and `X-Message-Id` on success, `{"errors": [{"message", "field"}]}` on
400/401/429/5xx. It enforces the limits restock relies on (1000 personalizations and
recipients per request, no `substitutions` with a dynamic template) and records, per
recipient, the email as SendGrid would build it (substitutions applied).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from restock_core.testing import FakeHTTPServer, RecordedRequest, Reply

MAIL_SEND_PATH = "/v3/mail/send"


@attrs.frozen
class Delivered:
    """One recipient of an accepted request, as SendGrid would send the email."""

    to: str
    subject: str | None
    text: str | None
    html: str | None
    headers: Mapping[str, str]
    custom_args: Mapping[str, str]
    dynamic_template_data: Mapping[str, Any] | None
    template_id: str | None
    categories: tuple[str, ...]
    message_id: str


def _error(status: int, message: str, field: str | None = None) -> Reply:
    return Reply(status, {"errors": [{"message": message, "field": field, "help": None}]})


class SendGridFake:
    """Wraps a :class:`FakeHTTPServer`. Modes: accept (default), rate_limit, server_error;
    plus addresses to reject as invalid (400 naming their personalization)."""

    def __init__(self, api_key: str = "SG.test-key"):
        self.api_key = api_key
        self.server = FakeHTTPServer(self._handle)
        self._lock = threading.Lock()
        self._mode: Reply | None = None
        self._rejected: set[str] = set()
        self._ids = itertools.count(1)
        self.delivered: list[Delivered] = []

    # -- lifecycle
    def start(self) -> SendGridFake:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def requests(self) -> list[RecordedRequest]:
        return [r for r in self.server.requests if r.path == MAIL_SEND_PATH]

    # -- the ProviderContract's fake interface
    def accept(self) -> None:
        with self._lock:
            self._mode = None

    def rate_limit(self, retry_after: int) -> None:
        with self._lock:
            self._mode = Reply(
                429,
                {"errors": [{"field": None, "message": "too many requests"}]},
                headers={"Retry-After": str(retry_after)},
            )

    def server_error(self) -> None:
        with self._lock:
            self._mode = _error(500, "internal server error")

    def answer(self, reply: Reply) -> None:
        """Answer every request with `reply` until `accept()`."""
        with self._lock:
            self._mode = reply

    def reject_recipients(self, addresses: Iterable[str]) -> None:
        with self._lock:
            self._rejected.update(addresses)

    def received(self) -> list[str]:
        return [d.to for d in self.delivered]

    # -- the API
    def _handle(self, request: RecordedRequest) -> Reply:
        if request.method != "POST" or request.path != MAIL_SEND_PATH:
            return _error(404, "not found")
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "The provided authorization grant is invalid, expired, or revoked")
        with self._lock:
            mode = self._mode
            rejected = set(self._rejected)
        if mode is not None:
            return mode
        try:
            body = request.json
        except ValueError:
            return _error(400, "Bad Request", None)
        if not isinstance(body, dict):
            return _error(400, "Bad Request", None)
        personalizations = body.get("personalizations")
        if not isinstance(personalizations, list) or not personalizations:
            return _error(400, "The personalizations field is required.", "personalizations")
        if len(personalizations) > 1000:
            return _error(
                400,
                "The personalizations field must have no more than 1000 items.",
                "personalizations",
            )
        if not isinstance(body.get("from"), dict) or "@" not in str(body["from"].get("email")):
            return _error(400, "The from email does not contain a valid address.", "from.email")
        template_id = body.get("template_id")
        errors = []
        recipients = 0
        seen: set[str] = set()
        for index, item in enumerate(personalizations):
            to = item.get("to") or []
            for address in [*to, *(item.get("cc") or []), *(item.get("bcc") or [])]:
                email = str(address.get("email", "")).strip().lower()
                if email in seen:
                    # the whole request is refused (400), no personalization is named:
                    # https://www.twilio.com/docs/sendgrid/api-reference/mail-send/errors
                    return _error(
                        400,
                        "Each unique email address in the personalizations array should only "
                        f"be included once. You have included {email} more than once.",
                        "personalizations",
                    )
                seen.add(email)
            recipients += len(to) + len(item.get("cc") or []) + len(item.get("bcc") or [])
            for slot, address in enumerate(to):
                email = address.get("email", "")
                if "@" not in email or email in rejected:
                    errors.append(
                        {
                            "message": "Does not contain a valid address.",
                            "field": f"personalizations.{index}.to.{slot}.email",
                            "help": None,
                        }
                    )
            if template_id and item.get("substitutions"):
                return _error(
                    400,
                    "Substitutions may not be used with dynamic templating",
                    f"personalizations.{index}.substitutions",
                )
            for value in (item.get("custom_args") or {}).values():
                if not isinstance(value, str):
                    return _error(
                        400,
                        "Custom args values must be strings.",
                        f"personalizations.{index}.custom_args",
                    )
        if recipients > 1000:
            return _error(
                400, "The total number of recipients must be no more than 1000.", "personalizations"
            )
        if errors:
            return Reply(400, {"errors": errors})
        if not template_id and not body.get("content"):
            return _error(
                400, "Unless a valid template_id is provided, content is required.", "content"
            )
        message_id = f"fakeXMsgId{next(self._ids):06d}"
        content = {c["type"]: c["value"] for c in body.get("content") or []}
        for item in personalizations:
            substitutions = item.get("substitutions") or {}

            def fill(value: str | None, subs: Mapping[str, str] = substitutions) -> str | None:
                if value is None:
                    return None
                for tag, replacement in subs.items():
                    value = value.replace(tag, replacement)
                return value

            for address in item["to"]:
                self.delivered.append(
                    Delivered(
                        to=address["email"],
                        subject=fill(item.get("subject") or body.get("subject")),
                        text=fill(content.get("text/plain")),
                        html=fill(content.get("text/html")),
                        headers={**(body.get("headers") or {}), **(item.get("headers") or {})},
                        custom_args={
                            **(body.get("custom_args") or {}),
                            **(item.get("custom_args") or {}),
                        },
                        dynamic_template_data=item.get("dynamic_template_data"),
                        template_id=template_id,
                        categories=tuple(body.get("categories") or ()),
                        message_id=message_id,
                    )
                )
        return Reply(202, None, headers={"X-Message-Id": message_id})
