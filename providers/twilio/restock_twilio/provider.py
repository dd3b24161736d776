"""The Twilio SMS provider.

One ``Messages.create`` request per SMS (Twilio has no batch endpoint), sent from a pool of
``concurrency`` threads. The SDK's ``TwilioHttpClient`` shares one ``requests.Session`` and
keeps per-request state, so it is not thread-safe (twilio/twilio-python#580): every worker
thread gets its own ``Client`` through ``threading.local``.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qsl

import attrs
import requests
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from restock_core import (
    Channel,
    DeliveryEvent,
    DeliveryOutcome,
    Message,
    PluginHost,
    Provider,
    Secret,
    SendResult,
    error_response,
    http_url,
    parse_retry_after,
    positive,
)

log = logging.getLogger("restock.twilio")

DEFAULT_BASE_URL = "https://api.twilio.com"

E164 = re.compile(r"^\+[1-9]\d{1,14}$")
ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")
#: alphanumeric sender id: up to 11 letters, digits and spaces, at least one letter
ALPHANUMERIC_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")

#: Twilio error codes that fail a message for good (https://www.twilio.com/docs/errors/<code>)
INVALID_TO = 21211
OPTED_OUT = 21610  # the recipient replied STOP: suppress the number
NOT_MOBILE = 21614
REGION_BLOCKED = (21408, 21612)  # permission to send to that region / cannot route to it
AUTH_FAILED = 20003
TOO_MANY_REQUESTS = 20429

#: MessageStatus values a status callback reports that restock acts on
FINAL_STATUSES = ("delivered", "undelivered", "failed")

#: short descriptions for delivery error codes that arrive without ErrorMessage
DELIVERY_ERRORS = {
    "30003": "unreachable destination handset",
    "30005": "unknown destination handset",
    "30006": "landline or unreachable carrier",
    "30007": "message filtered by the carrier",
    "21610": "recipient unsubscribed (STOP)",
}


# --------------------------------------------------------------------------- options


@attrs.frozen
class TwilioOptions:
    """Options of the ``twilio`` provider (see docs/plugins/twilio.md)."""

    account_sid: str = attrs.field()
    auth_token: Secret = attrs.field(converter=Secret, repr=False)
    from_number: str | None = attrs.field(default=None)
    messaging_service_sid: str | None = attrs.field(default=None)
    #: None: derive from the app's public_url (+ /<instance id>/status); "": send none
    status_callback: str | None = attrs.field(default=None)
    base_url: str = attrs.field(default=DEFAULT_BASE_URL, validator=http_url)
    timeout: float = attrs.field(default=10.0, validator=positive)
    concurrency: int = attrs.field(default=8)
    batch_size: int = attrs.field(default=100)

    @account_sid.validator
    def _check_account_sid(self, attribute: Any, value: str) -> None:
        if not isinstance(value, str) or not ACCOUNT_SID.match(value):
            raise ValueError(f"account_sid must be 'AC' followed by 32 hex digits, got {value!r}")

    @auth_token.validator
    def _check_auth_token(self, attribute: Any, value: Secret) -> None:
        if not value.value.strip():
            raise ValueError("auth_token must not be empty")

    @from_number.validator
    def _check_from(self, attribute: Any, value: str | None) -> None:
        if value is None:
            return
        if not (E164.match(value) or ALPHANUMERIC_SENDER.match(value)):
            raise ValueError(
                "from_number must be an E.164 number such as +14155550100 (or an "
                f"alphanumeric sender id of at most 11 characters), got {value!r}"
            )

    @messaging_service_sid.validator
    def _check_service(self, attribute: Any, value: str | None) -> None:
        if value is not None and not SERVICE_SID.match(value):
            raise ValueError(
                f"messaging_service_sid must be 'MG' followed by 32 hex digits, got {value!r}"
            )

    @status_callback.validator
    def _check_callback(self, attribute: Any, value: str | None) -> None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError(
                f"status_callback must be an http(s) URL (or empty to send none), got {value!r}"
            )

    @concurrency.validator
    def _check_concurrency(self, attribute: Any, value: int) -> None:
        if not 1 <= value <= 256:
            raise ValueError(f"concurrency must be between 1 and 256, got {value!r}")

    @batch_size.validator
    def _check_batch_size(self, attribute: Any, value: int) -> None:
        if value < 1:
            raise ValueError(f"batch_size must be at least 1, got {value!r}")

    def __attrs_post_init__(self) -> None:
        if (self.from_number is None) == (self.messaging_service_sid is None):
            raise ValueError(
                "from_number or messaging_service_sid: set exactly one of them "
                f"(got {'both' if self.from_number else 'neither'})"
            )


# --------------------------------------------------------------------------- SDK plumbing


class RestockTwilioHttpClient(TwilioHttpClient):
    """``TwilioHttpClient`` that sends ``https://api.twilio.com`` requests to ``base_url``
    (a fake in tests, a proxy or a regional host in production), remembers the last response's
    status and headers (the SDK's exceptions drop ``Retry-After``) and logs requests at DEBUG
    without headers or bodies. One instance per thread: it is not thread-safe."""

    def __init__(self, base_url: str = DEFAULT_BASE_URL, **kwargs: Any):
        kwargs.setdefault("logger", logging.getLogger("restock.twilio.http"))
        super().__init__(**kwargs)
        self.base_url = base_url.rstrip("/")
        self.last_status: int | None = None
        self.last_headers: Mapping[str, str] = {}

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        if self.base_url != DEFAULT_BASE_URL and url.startswith(DEFAULT_BASE_URL):
            url = self.base_url + url[len(DEFAULT_BASE_URL) :]
        self.last_status = None
        self.last_headers = {}
        response = super().request(method, url, *args, **kwargs)
        self.last_status = response.status_code
        self.last_headers = response.headers or {}
        return response

    def log_request(self, kwargs: dict[str, Any]) -> None:
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug("twilio request: %s %s", kwargs["method"], kwargs["url"])

    def log_response(self, status_code: int, response: Any) -> None:
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug("twilio response: %s", status_code)

    def close(self) -> None:
        if self.session is not None:
            self.session.close()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    getter = getattr(headers, "get", None)
    if getter is None:
        return None
    found = getter(name)
    if found is None:  # a plain dict is case-sensitive
        lowered = name.lower()
        for key, value in headers.items():
            if key.lower() == lowered:
                return value
    return found


# --------------------------------------------------------------------------- provider


class TwilioProvider(Provider):
    """Sends SMS through Twilio. See :class:`TwilioOptions` for the options."""

    name = "twilio"
    channels = frozenset({Channel.SMS})

    def __init__(self, options: TwilioOptions):
        self.options = options
        self.max_batch_size = options.batch_size
        self.instance_id = "twilio"
        self._local = threading.local()
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._http_clients: list[RestockTwilioHttpClient] = []
        self._token = options.auth_token.value

    def __repr__(self) -> str:
        return (
            f"TwilioProvider(id={self.instance_id!r}, account_sid={self.options.account_sid!r}, "
            f"base_url={self.options.base_url!r})"
        )

    # ------------------------------------------------------------------ wiring

    def bind(self, app: PluginHost, instance_id: str) -> None:
        super().bind(app, instance_id)
        self.instance_id = instance_id

    @property
    def status_callback_url(self) -> str | None:
        """The StatusCallback sent with each message: the option when set ("" = none),
        else the app's public_url + ``/<instance id>/status`` once bound, else none."""
        if self.options.status_callback is not None:
            return self.options.status_callback or None
        if self._host is None:
            return None
        base = str(self.host.public_url).rstrip("/")
        return f"{base}/{self.instance_id}/status"

    def _client(self) -> tuple[Client, RestockTwilioHttpClient]:
        found = getattr(self._local, "client", None)
        if found is not None:
            return found
        http = RestockTwilioHttpClient(self.options.base_url, timeout=self.options.timeout)
        client = Client(
            self.options.account_sid,
            self._token,
            http_client=http,
            # a non-empty mapping, so the SDK does not read TWILIO_* from os.environ
            environment={"RESTOCK": "1"},
        )
        # no edge/region host rewriting: base_url names the host (regional hosts included)
        client.edge = None
        client.region = None
        with self._lock:
            self._http_clients.append(http)
        self._local.client = (client, http)
        return client, http

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self.options.concurrency, thread_name_prefix="restock-twilio"
                )
            return self._executor

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
        with self._lock:
            clients, self._http_clients = self._http_clients, []
            self._local = threading.local()
        for http in clients:
            with contextlib.suppress(Exception):  # closing is best effort
                http.close()

    # ------------------------------------------------------------------ sending

    def send(self, messages: Sequence[Message]) -> list[SendResult]:
        if not messages:
            return []
        callback = self.status_callback_url
        if len(messages) == 1:
            return [self._send_one(messages[0], callback)]
        return list(self._pool().map(lambda m: self._send_one(m, callback), messages))

    def _scrub(self, text: str) -> str:
        """Belt and braces: no error text ever carries the token (real ones are 32 chars;
        a very short test token would mangle ordinary words, so those are left alone)."""
        return text.replace(self._token, "***") if len(self._token) >= 8 else text

    def _send_one(self, message: Message, callback: str | None) -> SendResult:
        did = message.delivery_id
        if message.channel != Channel.SMS:
            return SendResult.failed(did, f"twilio sends sms only, not {message.channel}")
        if not E164.match(message.to or ""):
            return SendResult.failed(did, f"twilio: {message.to!r} is not an E.164 phone number")
        params: dict[str, Any] = {"to": message.to, "body": message.text}
        if self.options.messaging_service_sid:
            params["messaging_service_sid"] = self.options.messaging_service_sid
        else:
            params["from_"] = self.options.from_number
        if callback:
            params["status_callback"] = callback
        http: RestockTwilioHttpClient | None = None
        try:
            client, http = self._client()
            created = client.messages.create(**params)
        except (TwilioRestException, TwilioServiceException) as exc:
            headers = http.last_headers if http is not None else {}
            return self._classify(did, exc, headers)
        except requests.exceptions.Timeout:
            return SendResult.retry(
                did, f"twilio: no answer within {self.options.timeout:g} s (timeout)"
            )
        except requests.exceptions.ConnectionError as exc:
            return SendResult.retry(did, self._scrub(f"twilio: connection failed: {exc}"))
        except requests.exceptions.RequestException as exc:
            return SendResult.retry(
                did, self._scrub(f"twilio: request failed: {type(exc).__name__}: {exc}")
            )
        except ValueError as exc:
            if http is not None and http.last_status is not None and 200 <= http.last_status < 300:
                # Twilio said "created" but the body was unreadable. Twilio has no idempotency
                # key, so sending again could text the shopper twice: count it as sent.
                log.warning(
                    "twilio answered %s with an unreadable body for delivery %s; counted as "
                    "sent without a message sid",
                    http.last_status,
                    did,
                )
                return SendResult.sent(did, None)
            return SendResult.retry(did, self._scrub(f"twilio: bad response: {exc}"))
        except TwilioException as exc:
            return SendResult.retry(did, self._scrub(f"twilio: {type(exc).__name__}: {exc}"))
        except Exception as exc:  # anything else is transient for this message
            return SendResult.retry(did, self._scrub(f"twilio: {type(exc).__name__}: {exc}"))
        sid = getattr(created, "sid", None) or None
        if getattr(created, "status", None) in ("failed", "undelivered"):
            code = getattr(created, "error_code", None)
            text = getattr(created, "error_message", None) or "failed on creation"
            return SendResult.failed(did, f"twilio {code or 'error'}: {text} (sid {sid})")
        return SendResult.sent(did, sid)

    def _classify(
        self, did: int, exc: TwilioRestException | TwilioServiceException, headers: Mapping
    ) -> SendResult:
        status = int(getattr(exc, "status", 0) or 0)
        raw_code = getattr(exc, "code", None)
        try:
            code = int(raw_code) if raw_code is not None else None
        except (TypeError, ValueError):
            code = None
        if isinstance(exc, TwilioServiceException):
            text = exc.detail or exc.title or ""
        else:
            text = str(exc.msg or "")
        prefix = "Unable to create record: "
        if text.startswith(prefix):
            text = text[len(prefix) :]
        reason = self._scrub(f"twilio {code if code is not None else status}: {text}".rstrip(": "))
        if status and code != status:
            reason += f" (HTTP {status})"
        if status == 429 or code == TOO_MANY_REQUESTS:
            return SendResult.retry(did, reason, parse_retry_after(_header(headers, "Retry-After")))
        if status >= 500:
            return SendResult.retry(did, reason, parse_retry_after(_header(headers, "Retry-After")))
        if code == OPTED_OUT:
            return SendResult.failed(did, reason, suppress=True)
        if code in (INVALID_TO, NOT_MOBILE, *REGION_BLOCKED):
            return SendResult.failed(did, reason)
        if status in (401, 403) or code == AUTH_FAILED:
            log.warning(
                "twilio refused the credentials of account %s (%s); check account_sid and "
                "auth_token",
                self.options.account_sid,
                status or code,
            )
            return SendResult.failed(did, f"authentication failed: {reason}")
        if 400 <= status < 500:
            return SendResult.failed(did, reason)
        return SendResult.retry(did, reason)

    # ------------------------------------------------------------------ status callbacks

    def routes(self, app: PluginHost) -> APIRouter:
        """``POST /status`` (mounted as ``/<instance id>/status``): Twilio status callbacks."""
        router = APIRouter()
        provider = self

        @router.post(
            "/status",
            summary="Twilio message status callback",
            description="Twilio posts message status changes here (form-encoded, signed "
            "with X-Twilio-Signature). delivered confirms; undelivered/failed fail the "
            "subscription and suppress the number.",
        )
        async def twilio_status(request: Request) -> JSONResponse:
            return await provider.handle_status(app, request)

        return router

    def _candidate_urls(self, app: PluginHost, request: Request) -> list[str]:
        """The URLs Twilio may have signed: the StatusCallback we send, and the public
        URL of this route (a Messaging Service's own callback pointing here)."""
        query = request.url.query
        base = str(app.public_url).rstrip("/")
        urls = []
        configured = self.options.status_callback
        if configured:
            urls.append(configured if "?" in configured or not query else f"{configured}?{query}")
        own = base + request.url.path + (f"?{query}" if query else "")
        if own not in urls:
            urls.append(own)
        return urls

    async def handle_status(self, app: PluginHost, request: Request) -> JSONResponse:
        signature = request.headers.get("x-twilio-signature")
        if not signature:
            return error_response(401, "unauthorized", "missing X-Twilio-Signature header")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return error_response(
                400, "malformed", "expected an application/x-www-form-urlencoded body"
            )
        raw = await request.body()
        try:
            text = raw.decode("utf-8")
            pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
        except (UnicodeDecodeError, ValueError):
            return error_response(400, "malformed", "the body is not a valid form")
        params: dict[str, str] = {}
        for key, value in pairs:
            if key in params:
                return error_response(400, "malformed", f"parameter {key} is repeated", key)
            params[key] = value
        validator = RequestValidator(self._token)
        if not any(
            validator.validate(url, params, signature) for url in self._candidate_urls(app, request)
        ):
            return error_response(401, "unauthorized", "X-Twilio-Signature does not match")
        sid = params.get("MessageSid") or params.get("SmsSid")
        status = params.get("MessageStatus") or params.get("SmsStatus")
        if not sid:
            return error_response(400, "malformed", "MessageSid is missing", "MessageSid")
        if not status:
            return error_response(400, "malformed", "MessageStatus is missing", "MessageStatus")
        if status not in FINAL_STATUSES:
            return JSONResponse({"ok": True, "applied": False, "status": status})
        reason = None
        if status != "delivered":
            code = params.get("ErrorCode") or ""
            detail = params.get("ErrorMessage") or DELIVERY_ERRORS.get(code) or status
            reason = f"error {code}: {detail}" if code else detail
        event = DeliveryEvent(
            provider=self.instance_id,
            provider_message_id=sid,
            event=status,
            outcome=DeliveryOutcome.DELIVERED if status == "delivered" else DeliveryOutcome.FAILED,
            reason=reason,
            event_id=f"{sid}:{status}",
        )
        applied = await run_in_threadpool(app.handle_delivery_event, event)
        return JSONResponse({"ok": True, "applied": bool(applied), "status": status})
