"""A fake Resend API for tests and benchmarks: `POST /emails` and `POST /emails/batch` with
Bearer auth, Resend's error bodies, permissive batch validation and Idempotency-Key replay
(the same key answers the first response again and sends nothing; the same key with another
payload answers 409 `invalid_idempotent_request`).

With `requests_per_second` set (Resend's default is 2 per team, shared by all API keys:
https://resend.com/docs/api-reference/rate-limit, https://resend.com/changelog/api-rate-limit)
it enforces that limit over any one-second window: a request beyond it gets 429
`rate_limit_exceeded` with `ratelimit-limit`, `ratelimit-remaining: 0`, `ratelimit-reset` and
`retry-after` (whole seconds), and every answer carries the `ratelimit-*` headers."""

from __future__ import annotations

import collections
import itertools
import math
import threading
import time
from collections.abc import Iterable
from typing import Any

from restock_core.testing import FakeHTTPServer, RecordedRequest, Reply


def _error(status: int, name: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(
        status, {"statusCode": status, "name": name, "message": message}, headers=headers or {}
    )


class FakeResend:
    def __init__(self, api_key: str = "re_test_key", *, requests_per_second: int | None = None):
        self.api_key = api_key
        self.requests_per_second = requests_per_second
        self._window: collections.deque[float] = collections.deque()
        self.rate_limited = 0  # requests answered 429 for the rate limit
        #: consumed one per processed request: True processes it (remembering its key) and
        #: answers 500, as when Resend accepted a batch but its answer was lost
        self.lose_answers: list[bool] = []
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
        auth = request.headers.get("authorization")
        if not auth:
            return _error(401, "missing_api_key", "Missing API key in the authorization header.")
        if auth != f"Bearer {self.api_key}":
            return _error(403, "invalid_api_key", "API key is invalid")
        limit = self._limit()
        if limit is not None and limit.status == 429:
            return limit
        reply = self._answer(request)
        if limit is not None:
            reply = Reply(reply.status, reply.body, {**reply.headers, **limit.headers}, reply.delay)
        return reply

    def _limit(self) -> Reply | None:
        """Resend's rate limit over a sliding one-second window; None when unlimited."""
        rate = self.requests_per_second
        if not rate:
            return None
        with self._lock:
            now = time.monotonic()
            while self._window and now - self._window[0] >= 1.0:
                self._window.popleft()
            if len(self._window) >= rate:
                reset = max(1, math.ceil(1.0 - (now - self._window[0])))
                self.rate_limited += 1
                headers = {
                    "ratelimit-limit": str(rate),
                    "ratelimit-remaining": "0",
                    "ratelimit-reset": str(reset),
                    "retry-after": str(reset),
                }
                return _error(
                    429,
                    "rate_limit_exceeded",
                    f"Too many requests. You can only make {rate} requests per second. See "
                    "rate limit response headers for more information. Or contact support to "
                    "increase rate limit.",
                    headers,
                )
            self._window.append(now)
            headers = {
                "ratelimit-limit": str(rate),
                "ratelimit-remaining": str(rate - len(self._window)),
                "ratelimit-reset": "1",
            }
        return Reply(200, None, headers)

    def _answer(self, request: RecordedRequest) -> Reply:
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
            if self.lose_answers and self.lose_answers.pop(0):
                # processed (and remembered under its key), but the answer never arrives
                return _error(500, "application_error", "Internal server error")
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
