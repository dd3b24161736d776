"""A fake Twilio Messages API for tests, built on :class:`restock_core.testing.FakeHTTPServer`.

It speaks the documented wire format (providers.md §3): ``POST
/2010-04-01/Accounts/{AccountSid}/Messages.json`` with a form body and Basic auth, ``201`` with
a JSON Message resource, errors as ``{"code", "message", "more_info", "status"}``. It also
counts how many requests were in flight at once (``max_in_flight``), holding each one for
``hold`` seconds so that overlapping requests really overlap.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from restock_core.testing import FakeHTTPServer, RecordedRequest, Reply

from .gsm import sms_segments

API_PREFIX = "/2010-04-01/Accounts/"


def twilio_error(status: int, code: int, message: str) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


class FakeTwilio:
    """Recording fake of the Twilio Messages API; also the ``provider_fake`` of the contract
    suite (accept, rate_limit, server_error, reject_recipients, received)."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        hold: float = 0.0,
        api_keys: Mapping[str, str] | None = None,
    ):
        self.account_sid = account_sid
        self.auth_token = auth_token
        #: API key SID -> secret: Basic auth with SK...:secret is accepted on the account's
        #: URLs like AC...:auth_token (https://www.twilio.com/docs/iam/api-keys)
        self.api_keys = dict(api_keys or {})
        self.hold = hold
        #: called with (form, sid) after a message is accepted and before the 201 goes out:
        #: Twilio posts status callbacks on its own schedule, which can beat the REST answer
        #: to the client (https://www.twilio.com/docs/messaging/guides/track-outbound-message-status)
        self.on_accept: Callable[[Mapping[str, str], str], None] | None = None
        self.mode: str = "accept"
        self.retry_after: int | None = None
        self.rejected: dict[str, tuple[int, str]] = {}
        self.accepted: list[Mapping[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._counter = 0
        self._lock = threading.Lock()
        self.server = FakeHTTPServer(self._handle)

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.server.requests

    @property
    def message_requests(self) -> list[RecordedRequest]:
        return [r for r in self.server.requests if r.path.endswith("/Messages.json")]

    def start(self) -> FakeTwilio:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> FakeTwilio:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ behaviour switches

    def accept(self) -> None:
        self.mode = "accept"

    def rate_limit(self, retry_after: int | None = 1) -> None:
        self.mode = "rate_limit"
        self.retry_after = retry_after

    def server_error(self) -> None:
        self.mode = "server_error"

    def reject_recipients(
        self, addresses: Iterable[str], code: int = 21211, message: str | None = None
    ) -> None:
        for address in addresses:
            text = message or {
                21211: f"The 'To' number {address} is not a valid phone number.",
                21610: "Attempt to send to unsubscribed recipient",
                21614: f"'To' number {address} is not a valid mobile number",
                21408: "Permission to send an SMS has not been enabled for the region "
                f"indicated by the 'To' number: {address}",
            }.get(code, "Invalid parameter")
            self.rejected[address] = (code, text)

    def received(self) -> list[str]:
        """Recipients of the messages the fake accepted (201) so far."""
        with self._lock:
            return [form["To"] for form in self.accepted]

    # ------------------------------------------------------------------ the API

    def _authorized(self, request: RecordedRequest) -> bool:
        pairs = [(self.account_sid, self.auth_token), *self.api_keys.items()]
        given = request.headers.get("authorization")
        return any(
            given == "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
            for user, password in pairs
        )

    def _handle(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.hold:
                time.sleep(self.hold)
            return self._answer(request)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _answer(self, request: RecordedRequest) -> Reply:
        expected_path = f"{API_PREFIX}{self.account_sid}/Messages.json"
        if not request.path.startswith(API_PREFIX) or not request.path.endswith("/Messages.json"):
            return Reply(404, twilio_error(404, 20404, "The requested resource was not found"))
        if not self._authorized(request) or request.path != expected_path:
            return Reply(401, twilio_error(401, 20003, "Authenticate"))
        if request.method != "POST":
            return Reply(405, twilio_error(405, 20004, "Method not allowed"))
        form = {k: v[0] for k, v in request.form.items()}
        if self.mode == "rate_limit":
            headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}
            return Reply(429, twilio_error(429, 20429, "Too Many Requests"), headers=headers)
        if self.mode == "server_error":
            return Reply(500, twilio_error(500, 20500, "Internal Server Error"))
        to = form.get("To")
        if not to:
            return Reply(400, twilio_error(400, 21604, "A 'To' phone number is required."))
        if "From" not in form and "MessagingServiceSid" not in form:
            return Reply(
                400, twilio_error(400, 21603, "A 'From' or 'MessagingServiceSid' is required.")
            )
        if to in self.rejected:
            code, text = self.rejected[to]
            return Reply(400, twilio_error(400, code, text))
        with self._lock:
            self._counter += 1
            sid = f"SM{self._counter:032x}"
            self.accepted.append(form)
        if self.on_accept is not None:
            self.on_accept(form, sid)
        return Reply(
            201,
            {
                "sid": sid,
                "account_sid": self.account_sid,
                "messaging_service_sid": form.get("MessagingServiceSid"),
                "status": "accepted" if "MessagingServiceSid" in form else "queued",
                "to": to,
                "from": form.get("From"),
                "body": form.get("Body"),
                # GSM-7 160/153, UCS-2 70/67 characters per segment
                # (https://www.twilio.com/docs/glossary/what-sms-character-limit)
                "num_segments": str(sms_segments(form.get("Body") or "").count),
                "direction": "outbound-api",
                "api_version": "2010-04-01",
                "error_code": None,
                "error_message": None,
                "date_created": "Thu, 01 Jan 2026 00:00:00 +0000",
                "uri": f"{API_PREFIX}{self.account_sid}/Messages/{sid}.json",
            },
        )
