"""A fake Resend API for tests and benchmarks: `POST /emails` and `POST /emails/batch` with
Bearer auth, Resend's error bodies, permissive batch validation and Idempotency-Key replay
(the same key answers the first response again and sends nothing; the same key with another
payload answers 409 `invalid_idempotent_request`)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable
from typing import Any

from restock_core.testing import FakeHTTPServer, RecordedRequest, Reply


def _error(status: int, name: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(
        status, {"statusCode": status, "name": name, "message": message}, headers=headers or {}
    )


class FakeResend:
    def __init__(self, api_key: str = "re_test_key"):
        self.api_key = api_key
        self.server = FakeHTTPServer(self._handle)
        self.mode: Reply | None = None
        self.slow_once = 0.0  # accept the next request, then answer this late
        self.rejected: set[str] = set()
        self.delivered: list[str] = []
        self.email_ids: dict[str, str] = {}  # recipient -> the id of the last email to it
        self.keys: dict[str, tuple[bytes, Reply]] = {}  # key -> (first body, first answer)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    # lifecycle
    def start(self) -> FakeResend:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> FakeResend:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.server.requests

    # the ProviderContract's fake interface
    def accept(self) -> None:
        self.mode = None

    def rate_limit(self, retry_after: int) -> None:
        self.mode = _error(
            429, "rate_limit_exceeded", "Too many requests", {"retry-after": str(retry_after)}
        )

    def server_error(self) -> None:
        self.mode = _error(500, "application_error", "Internal server error")

    def reject_recipients(self, addresses: Iterable[str]) -> None:
        self.rejected = set(addresses)

    def received(self) -> list[str]:
        return list(self.delivered)

    # the API
    def _handle(self, request: RecordedRequest) -> Reply:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(403, "invalid_api_key", "API key is invalid")
        if self.mode is not None:
            return self.mode
        key = request.headers.get("idempotency-key")
        with self._lock:
            if key and key in self.keys:
                body, first = self.keys[key]
                if body != request.body:
                    return _error(
                        409,
                        "invalid_idempotent_request",
                        "Same idempotency key used with a different request payload.",
                    )
                return first
            if request.path == "/emails":
                reply = self._one(request.json)
            elif request.path == "/emails/batch":
                reply = self._batch(request.json, request.headers.get("x-batch-validation"))
            else:
                return _error(404, "not_found", "not found")
            if key and reply.status == 200:
                self.keys[key] = (request.body, reply)
        if self.slow_once:
            delay, self.slow_once = self.slow_once, 0.0
            return Reply(reply.status, reply.body, delay=delay)
        return reply

    def _invalid(self, email: Any) -> str | None:
        if not isinstance(email, dict) or not email.get("to") or not email.get("from"):
            return "Missing `to` or `from` field."
        if any(to in self.rejected for to in email["to"]):
            return f"Invalid `to` field: {email['to'][0]}"
        return None

    def _deliver(self, email: dict[str, Any]) -> str:
        email_id = f"email-{next(self._ids)}"
        self.delivered += email["to"]
        for to in email["to"]:
            self.email_ids[to] = email_id
        return email_id

    def _one(self, email: Any) -> Reply:
        problem = self._invalid(email)
        if problem:
            return _error(422, "validation_error", problem)
        return Reply(200, {"id": self._deliver(email)})

    def _batch(self, emails: Any, validation: str | None) -> Reply:
        if not isinstance(emails, list) or not 1 <= len(emails) <= 100:
            return _error(422, "validation_error", "a batch holds 1 to 100 emails")
        problems = {i: self._invalid(e) for i, e in enumerate(emails)}
        errors = [{"index": i, "message": p} for i, p in problems.items() if p]
        if errors and validation != "permissive":
            return _error(422, "validation_error", str(errors[0]["message"]))
        data = []
        for i, email in enumerate(emails):
            if not problems[i]:
                data.append({"id": self._deliver(email)})
        body: dict[str, Any] = {"data": data}
        if errors:
            body["errors"] = errors
        return Reply(200, body)
