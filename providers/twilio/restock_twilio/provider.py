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
from typing import TYPE_CHECKING, Any

import attrs
import phonenumbers
import requests
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from restock_core import (
    Channel,
    Message,
    PluginHost,
    Provider,
    Secret,
    SendResult,
    http_url,
    parse_retry_after,
    positive,
)

from .gsm import fold_to_gsm7, sms_segments

log = logging.getLogger("restock.twilio")

if TYPE_CHECKING:
    from fastapi import APIRouter

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

#: query parameter of the StatusCallback URL naming the delivery. Twilio signs the whole URL,
#: query included (https://www.twilio.com/docs/usage/security#validating-requests), so it
#: cannot be altered, and a callback that beats the worker's bookkeeping still finds its row.
DELIVERY_PARAM = "delivery_id"

#: Delivery error codes (the ErrorCode of an undelivered/failed callback), from Twilio's error
#: dictionary (https://www.twilio.com/docs/api/errors/<code>), in three groups.
#: The number cannot or must not be texted (opted out, does not exist, not SMS-capable):
#: fail the subscription and suppress the number.
SUPPRESSING_CODES = {
    "21610": "recipient unsubscribed (replied STOP)",
    "21211": "invalid 'To' phone number",
    "21614": "'To' number is not a mobile number",
    "30005": "unknown destination handset (the number does not exist)",
    "30006": "landline or unreachable carrier",
}
#: Passing conditions: send again later (bounded by max_attempts), seconds to wait.
RETRYABLE_CODES = {
    "30001": ("queue overflow", 300.0),
    "30003": ("unreachable destination handset (off, no signal)", 900.0),
    "30008": ("unknown error", 300.0),
    "30009": ("missing segment", 300.0),
    "30022": ("US A2P 10DLC rate limit exceeded", 60.0),
    "30027": ("US A2P 10DLC T-Mobile daily message limit reached", 3600.0),
}
#: Anything else fails the message without suppressing the number: mostly the sender's own
#: setup (30034 unregistered A2P 10DLC number, 30032 unverified toll-free number, 30002
#: account suspended) or the carrier's filtering (30007), which are no reason to lock the
#: shopper out. Descriptions for codes that arrive without ErrorMessage:
DELIVERY_ERRORS = {
    **SUPPRESSING_CODES,
    **{code: text for code, (text, _) in RETRYABLE_CODES.items()},
    "30002": "account suspended",
    "30004": "message blocked",
    "30007": "message filtered by the carrier",
    "30010": "message price exceeds max price",
    "30032": "toll-free number not verified",
    "30034": "message from an unregistered A2P 10DLC number",
}

#: Keywords of Twilio's default opt-out handling: a message that is exactly one of them
#: (trimmed, any case) -- https://help.twilio.com/articles/223134027 and
#: https://www.twilio.com/docs/messaging/tutorials/advanced-opt-out
STOP_WORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})
DEFAULT_HELP_TEXT = (
    "Back-in-stock alerts: you get one text when an item you asked about is back. "
    "Reply STOP to stop, START to resume."
)
#: Twilio refuses bodies longer than 1600 characters (error 21617)
MAX_BODY = 1600


# --------------------------------------------------------------------------- options


def _optional_secret(value: Any) -> Secret | None:
    return None if value is None else Secret(value)


API_KEY_SID = re.compile(r"^SK[0-9a-fA-F]{32}$")


@attrs.frozen
class TwilioOptions:
    """Options of the ``twilio`` provider (see docs/plugins/twilio.md)."""

    account_sid: str = attrs.field()
    #: Auth Token: API credentials unless api_key is set; always what verifies webhooks
    auth_token: Secret | None = attrs.field(default=None, converter=_optional_secret, repr=False)
    #: API key (SK...) and its secret: API credentials instead of the Auth Token
    api_key: str | None = attrs.field(default=None)
    api_secret: Secret | None = attrs.field(default=None, converter=_optional_secret, repr=False)
    from_number: str | None = attrs.field(default=None)
    messaging_service_sid: str | None = attrs.field(default=None)
    #: None: derive from the app's public_url (+ /<instance id>/status); "": send none
    status_callback: str | None = attrs.field(default=None)
    base_url: str = attrs.field(default=DEFAULT_BASE_URL, validator=http_url)
    timeout: float = attrs.field(default=10.0, validator=positive)
    concurrency: int = attrs.field(default=8)
    batch_size: int = attrs.field(default=100)
    #: most Messages API requests per second from this process (all worker threads); None:
    #: unpaced. Twilio's REST limit is account concurrency with no published number (429
    #: 20429, https://www.twilio.com/docs/api/errors/20429) and it queues what exceeds a
    #: sender's throughput itself (a US long code sends 1 segment/s:
    #: https://www.twilio.com/docs/api/errors/30001); set it to the sender's rate to keep
    #: a big fan-out from overflowing that queue
    requests_per_second: float | None = attrs.field(default=None)
    #: ISO 3166 alpha-2 region for national numbers given at sign-up ("GB": 07700 900123)
    default_region: str | None = attrs.field(default=None)
    #: replace typographic punctuation (’ “ – …) with GSM-7 look-alikes before sending
    fold_punctuation: bool = attrs.field(default=True)
    #: also ask Twilio to do it (SmartEncoded=true), for what restock's table does not cover
    smart_encoded: bool = attrs.field(default=False)
    #: warn (once per template and count) when a text needs more segments than this; 0: never
    segment_warning: int = attrs.field(default=3)
    #: the answer to HELP/INFO on the inbound-message webhook
    help_text: str = attrs.field(default=DEFAULT_HELP_TEXT)

    @requests_per_second.validator
    def _check_rate(self, attribute: Any, value: float | None) -> None:
        if value is not None and (isinstance(value, bool) or not value > 0):
            raise ValueError(f"requests_per_second must be a positive number, got {value!r}")

    @account_sid.validator
    def _check_account_sid(self, attribute: Any, value: str) -> None:
        if not isinstance(value, str) or not ACCOUNT_SID.match(value):
            raise ValueError(f"account_sid must be 'AC' followed by 32 hex digits, got {value!r}")

    @auth_token.validator
    def _check_auth_token(self, attribute: Any, value: Secret | None) -> None:
        if value is not None and not value.value.strip():
            raise ValueError("auth_token must not be empty")

    @api_key.validator
    def _check_api_key(self, attribute: Any, value: str | None) -> None:
        if value is not None and not API_KEY_SID.match(value):
            raise ValueError(
                "api_key must be an API key SID: 'SK' followed by 32 hex digits "
                f"(the secret goes in api_secret), got {value!r}"
            )

    @api_secret.validator
    def _check_api_secret(self, attribute: Any, value: Secret | None) -> None:
        if value is not None and not value.value.strip():
            raise ValueError("api_secret must not be empty")

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

    @default_region.validator
    def _check_region(self, attribute: Any, value: str | None) -> None:
        if value is not None and value not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(
                "default_region must be an ISO 3166 alpha-2 region code in upper case, such "
                f"as 'US' or 'GB', got {value!r}"
            )

    @segment_warning.validator
    def _check_segment_warning(self, attribute: Any, value: int) -> None:
        if value < 0:
            raise ValueError(f"segment_warning must be 0 (off) or more, got {value!r}")

    @help_text.validator
    def _check_help_text(self, attribute: Any, value: str) -> None:
        if not value.strip() or len(value) > MAX_BODY:
            raise ValueError(
                f"help_text must be between 1 and {MAX_BODY} characters, got {len(value)}"
            )

    def __attrs_post_init__(self) -> None:
        if (self.from_number is None) == (self.messaging_service_sid is None):
            raise ValueError(
                "from_number or messaging_service_sid: set exactly one of them "
                f"(got {'both' if self.from_number else 'neither'})"
            )
        if (self.api_key is None) != (self.api_secret is None):
            raise ValueError(
                "api_key and api_secret: set both (an API key SK... and its secret) or neither"
            )
        if self.auth_token is None and self.api_key is None:
            raise ValueError(
                "auth_token: set it (or api_key and api_secret for API requests; the auth "
                "token is still needed to verify Twilio's webhooks)"
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
    paces_requests = True

    def __init__(self, options: TwilioOptions):
        self.options = options
        self.requests_per_second = options.requests_per_second
        self.max_batch_size = options.batch_size
        #: read by the core: the region of national numbers given at sign-up
        self.default_region = options.default_region
        self.instance_id = "twilio"
        self._local = threading.local()
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._http_clients: list[RestockTwilioHttpClient] = []
        #: the Auth Token verifies webhooks; None when only an API key is configured
        self._token = options.auth_token.value if options.auth_token is not None else None
        self._secrets = [
            secret.value for secret in (options.auth_token, options.api_secret) if secret
        ]
        self._warned_segments: set[tuple[str, int]] = set()

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
        """The StatusCallback base URL: the option when set ("" = none), else the app's
        public_url + ``/<instance id>/status`` once bound (and only when the Auth Token is
        there to verify the callbacks), else none. Each message adds its delivery id."""
        if self.options.status_callback is not None:
            return self.options.status_callback or None
        if self._host is None or self._token is None:
            return None
        base = str(self.host.public_url).rstrip("/")
        return f"{base}/{self.instance_id}/status"

    @staticmethod
    def callback_for(base: str | None, delivery_id: int) -> str | None:
        """``base`` with ``delivery_id=<id>`` added to its query string."""
        if not base:
            return None
        return f"{base}{'&' if '?' in base else '?'}{DELIVERY_PARAM}={delivery_id}"

    def _client(self) -> tuple[Client, RestockTwilioHttpClient]:
        found = getattr(self._local, "client", None)
        if found is not None:
            return found
        http = RestockTwilioHttpClient(self.options.base_url, timeout=self.options.timeout)
        if self.options.api_key and self.options.api_secret is not None:
            # API key auth: Basic SK...:secret on the account's URLs
            # (https://www.twilio.com/docs/iam/api-keys)
            username, password = self.options.api_key, self.options.api_secret.value
        else:
            username, password = self.options.account_sid, str(self._token)
        client = Client(
            username,
            password,
            account_sid=self.options.account_sid,
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
        """Belt and braces: no error text ever carries a secret (real ones are 32 chars;
        a very short test secret would mangle ordinary words, so those are left alone)."""
        for secret in self._secrets:
            if len(secret) >= 8:
                text = text.replace(secret, "***")
        return text

    def body_of(self, message: Message) -> str:
        """The SMS text as sent: typographic punctuation folded to GSM-7 (unless turned off)."""
        text = message.text
        return fold_to_gsm7(text) if self.options.fold_punctuation else text

    def _check_segments(self, message: Message, body: str) -> None:
        limit = self.options.segment_warning
        if not limit:
            return
        segments = sms_segments(body)
        if segments.count <= limit:
            return
        key = (message.template, segments.count)
        with self._lock:
            if key in self._warned_segments:
                return
            self._warned_segments.add(key)
        log.warning(
            "twilio %s: template %r renders a %s-segment SMS (%s, %s units); Twilio bills "
            "each segment",
            self.instance_id,
            message.template,
            segments.count,
            segments.encoding,
            segments.units,
        )

    def _send_one(self, message: Message, callback: str | None) -> SendResult:
        did = message.delivery_id
        if message.channel != Channel.SMS:
            return SendResult.failed(did, f"twilio sends sms only, not {message.channel}")
        if not E164.match(message.to or ""):
            return SendResult.failed(did, f"twilio: {message.to!r} is not an E.164 phone number")
        body = self.body_of(message)
        self._check_segments(message, body)
        params: dict[str, Any] = {"to": message.to, "body": body}
        if self.options.messaging_service_sid:
            params["messaging_service_sid"] = self.options.messaging_service_sid
        else:
            params["from_"] = self.options.from_number
        url = self.callback_for(callback, did)
        if url:
            params["status_callback"] = url
        if self.options.smart_encoded:
            params["smart_encoded"] = True
        http: RestockTwilioHttpClient | None = None
        try:
            client, http = self._client()
            with self.paced():
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
            return SendResult.failed(
                did,
                f"twilio {code or 'error'}: {text} (sid {sid})",
                suppress=str(code) in SUPPRESSING_CODES,
            )
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
            # "never processed and always safe to retry"; the account is over its limit, so
            # the provider pauses (https://www.twilio.com/docs/api/errors/20429)
            return SendResult.rate_limited(
                did, reason, parse_retry_after(_header(headers, "Retry-After"))
            )
        if status >= 500:
            return SendResult.retry(did, reason, parse_retry_after(_header(headers, "Retry-After")))
        if code is not None and str(code) in SUPPRESSING_CODES:
            # opted out (21610), invalid (21211) or not a mobile number (21614)
            return SendResult.failed(did, reason, suppress=True)
        if code in REGION_BLOCKED:
            return SendResult.failed(did, reason)
        if status in (401, 403) or code == AUTH_FAILED:
            log.warning(
                "twilio refused the credentials of account %s (%s); check account_sid and "
                "auth_token (or api_key and api_secret)",
                self.options.account_sid,
                status or code,
            )
            # a provider outage: the core keeps the messages queued until the key works
            return SendResult.unauthorized(did, f"authentication failed: {reason}")
        if 400 <= status < 500:
            return SendResult.failed(did, reason)
        return SendResult.retry(did, reason)

    # ------------------------------------------------------------------ webhooks

    def routes(self, app: PluginHost) -> APIRouter:
        """``POST /status`` (Twilio status callbacks) and ``POST /inbound`` (Twilio's
        incoming-message webhook: STOP, START, HELP), mounted under ``/<instance id>``
        (:mod:`restock_twilio.webhooks`, imported here: FastAPI only where routes are served)."""
        from .webhooks import build_router

        return build_router(self, app)
