"""Test helpers and contract suites for plugin authors.

- :class:`FakeHTTPServer`: a recording HTTP server on 127.0.0.1 for pointing real SDKs and
  clients at (through the plugin's ``base_url`` option).
- :class:`ProviderContract` / :class:`InventoryAdapterContract`: pytest base classes; subclass
  them in your plugin's tests and provide the fixtures they name. Every first-party plugin
  does exactly this.
- :func:`running_worker`: the worker loop (with plugins' periodic tasks) in a thread for the
  length of a ``with`` block; :func:`wait_for` polls a condition.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import attrs

from .errors import AdapterError
from .models import Channel, Hold, Message, Outcome, StockKey

if TYPE_CHECKING:
    from .app import App

# --------------------------------------------------------------------------- fake server


@attrs.frozen
class RecordedRequest:
    method: str
    path: str  # without the query string
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]  # lower-cased names
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body or b"null")

    @property
    def form(self) -> Mapping[str, list[str]]:
        return parse_qs(self.body.decode())


@attrs.define
class Reply:
    """What the fake answers. `delay` sleeps first (slow responses); `reset` closes the
    connection without answering (connection resets)."""

    status: int = 200
    body: Any = None  # dict/list -> JSON, str/bytes -> as is
    headers: Mapping[str, str] = attrs.field(factory=dict)
    delay: float = 0.0
    reset: bool = False


Handler = Callable[[RecordedRequest], Reply]


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that time out and hang up are part of the tests, not errors."""


class FakeHTTPServer:
    """A threaded HTTP server on 127.0.0.1 that records every request and answers through
    `handler` (or through replies queued with :meth:`queue`, which take precedence).

    >>> with FakeHTTPServer(lambda req: Reply(200, {"ok": True})) as fake:
    ...     httpx.get(fake.url + "/x")
    """

    def __init__(self, handler: Handler | None = None):
        self.handler = handler or (lambda request: Reply(200, {}))
        self.requests: list[RecordedRequest] = []
        self._queued: list[tuple[Callable[[RecordedRequest], bool], Reply]] = []
        self._lock = threading.Lock()
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in separate writes

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = RecordedRequest(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                with outer._lock:
                    outer.requests.append(request)
                reply = outer._next_reply(request)
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.reset:
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                    )
                    self.close_connection = True
                    self.connection.close()
                    return
                payload = reply.body
                content_type = "application/json"
                if isinstance(payload, bytes):
                    data = payload
                    content_type = "application/octet-stream"
                elif isinstance(payload, str):
                    data = payload.encode()
                    content_type = "text/plain"
                elif payload is None:
                    data = b""
                else:
                    data = json.dumps(payload).encode()
                self.send_response(reply.status)
                headers = {"Content-Type": content_type, **reply.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        self._server = _QuietServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    def queue(
        self, reply: Reply, *, times: int = 1, when: Callable[[RecordedRequest], bool] | None = None
    ) -> None:
        """Answer the next `times` matching requests with `reply` instead of the handler."""
        with self._lock:
            for _ in range(times):
                self._queued.append((when or (lambda request: True), reply))

    def _next_reply(self, request: RecordedRequest) -> Reply:
        with self._lock:
            for index, (matches, reply) in enumerate(self._queued):
                if matches(request):
                    del self._queued[index]
                    return reply
        return self.handler(request)

    def start(self) -> FakeHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeHTTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- messages


def make_message(
    delivery_id: int,
    *,
    channel: Channel = Channel.EMAIL,
    to: str | None = None,
    variant_id: str = "variant-1",
) -> Message:
    """A rendered message as the core hands it to providers."""
    if to is None:
        to = (
            f"shopper{delivery_id}@example.com"
            if channel == Channel.EMAIL
            else f"+1415555{delivery_id % 10000:04d}"
        )
    unsubscribe = f"http://127.0.0.1:8000/unsubscribe/token-{delivery_id}"
    return Message(
        delivery_id=delivery_id,
        channel=channel,
        to=to,
        subject="Back in stock: Blue Shirt - M" if channel == Channel.EMAIL else None,
        text=f"Blue Shirt - M is back. Unsubscribe: {unsubscribe}",
        html=f'<p>Blue Shirt - M is back. <a href="{unsubscribe}">Unsubscribe</a></p>'
        if channel == Channel.EMAIL
        else None,
        unsubscribe_url=unsubscribe,
        template="restock",
        variant_id=variant_id,
        headers={
            "List-Unsubscribe": f"<{unsubscribe}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
        if channel == Channel.EMAIL
        else {},
        template_data={
            "name": "Blue Shirt - M",
            "url": "https://shop.example/p/1",
            "unsubscribe_url": unsubscribe,
        },
        subscription_id=delivery_id,
    )


# --------------------------------------------------------------------------- contracts

try:  # the contract suites need pytest; the rest of this module does not
    import pytest
except ImportError:  # pragma: no cover
    pytest = None  # type: ignore[assignment]


class ProviderContract:
    """Reusable tests every provider must pass. Subclass and provide fixtures:

    - ``provider``: the provider under test, pointed at a fake server;
    - ``provider_fake``: an object with
        ``accept()`` (answer success from now on),
        ``rate_limit(retry_after: int)`` (answer 429 with Retry-After),
        ``server_error()`` (answer 500),
        ``reject_recipients(addresses)`` (mark these recipients invalid/permanent),
        ``received() -> list[str]`` (recipients the fake accepted so far);
    - ``provider_secrets``: the secret strings (API keys, tokens) that must never be logged;
    - ``contract_channel``: the channel to send on (a `Channel`).
    """

    def _messages(self, channel: Channel, count: int, start: int = 1) -> list[Message]:
        return [make_message(i, channel=channel) for i in range(start, start + count)]

    def test_declares_the_contract(self, provider: Any) -> None:
        assert isinstance(provider.name, str) and provider.name
        assert provider.channels and set(provider.channels) <= set(Channel)
        assert isinstance(provider.max_batch_size, int) and provider.max_batch_size >= 1

    def test_one_result_per_message(
        self, provider: Any, provider_fake: Any, contract_channel: Channel
    ) -> None:
        provider_fake.accept()
        count = min(provider.max_batch_size, 7)
        messages = self._messages(contract_channel, count)
        results = provider.send(messages)
        assert sorted(r.delivery_id for r in results) == [m.delivery_id for m in messages]
        assert all(r.outcome == Outcome.SENT for r in results), results
        assert sorted(provider_fake.received()) == sorted(m.to for m in messages)

    def test_full_batch_is_accepted(
        self, provider: Any, provider_fake: Any, contract_channel: Channel
    ) -> None:
        provider_fake.accept()
        size = min(provider.max_batch_size, 120)
        results = provider.send(self._messages(contract_channel, size, start=1000))
        assert len(results) == size
        assert {r.outcome for r in results} == {Outcome.SENT}

    def test_rate_limit_is_retried_after_the_servers_delay(
        self, provider: Any, provider_fake: Any, contract_channel: Channel
    ) -> None:
        provider_fake.rate_limit(retry_after=7)
        results = provider.send(self._messages(contract_channel, 2))
        assert len(results) == 2
        assert {r.outcome for r in results} == {Outcome.RETRY}
        assert all(r.retry_after is not None and 6 <= r.retry_after <= 8 for r in results), results
        # reported as a rate limit: the core pauses the provider and keeps the attempts
        assert {r.hold for r in results} == {Hold.RATE_LIMITED}

    def test_server_error_is_retried(
        self, provider: Any, provider_fake: Any, contract_channel: Channel
    ) -> None:
        provider_fake.server_error()
        try:
            results = provider.send(self._messages(contract_channel, 2))
        except Exception:  # allowed by the contract: raising counts as transient
            return
        assert {r.outcome for r in results} == {Outcome.RETRY}
        assert all(r.reason for r in results)

    def test_rejected_recipient_fails_for_good(
        self, provider: Any, provider_fake: Any, contract_channel: Channel
    ) -> None:
        provider_fake.accept()
        messages = self._messages(contract_channel, 3, start=50)
        provider_fake.reject_recipients([messages[1].to])
        results = {r.delivery_id: r for r in provider.send(messages)}
        assert results[messages[1].delivery_id].outcome == Outcome.FAILED
        assert results[messages[1].delivery_id].reason
        others = [results[m.delivery_id].outcome for m in (messages[0], messages[2])]
        # a provider whose API rejects a whole batch for one bad address may retry the others
        assert all(o in (Outcome.SENT, Outcome.RETRY) for o in others)

    def test_no_secret_in_logs(
        self,
        provider: Any,
        provider_fake: Any,
        provider_secrets: Sequence[str],
        contract_channel: Channel,
        caplog: Any,
    ) -> None:
        caplog.set_level(logging.DEBUG)
        provider_fake.server_error()
        try:
            provider.send(self._messages(contract_channel, 2))
        except Exception as exc:
            for secret in provider_secrets:
                assert secret not in str(exc)
        provider_fake.accept()
        provider.send(self._messages(contract_channel, 2, start=10))
        for secret in provider_secrets:
            assert secret and secret not in caplog.text
            assert secret not in repr(provider)
            assert secret not in repr(getattr(provider, "options", ""))


class InventoryAdapterContract:
    """Reusable tests every inventory adapter must pass. Subclass and provide fixtures:

    - ``adapter``: the adapter under test, pointed at a fake platform;
    - ``adapter_fake``: an object with
        ``set_stock(key: StockKey, quantity: int | None)`` (None = untracked),
        ``unauthorized()`` (answer 401 from now on),
        ``requests_made() -> int`` (requests received so far);
    - ``known_keys``: at least three `StockKey`s the fake knows about.
    """

    def test_declares_the_contract(self, adapter: Any) -> None:
        assert isinstance(adapter.name, str) and adapter.name
        assert adapter.poll_interval is None or adapter.poll_interval > 0

    def test_reads_a_batch(
        self, adapter: Any, adapter_fake: Any, known_keys: Sequence[StockKey]
    ) -> None:
        for quantity, key in enumerate(known_keys):
            adapter_fake.set_stock(key, quantity)
        found = adapter.availability(list(known_keys))
        assert {k: found[k] for k in known_keys} == {k: q for q, k in enumerate(known_keys)}

    def test_batch_uses_few_requests(
        self, adapter: Any, adapter_fake: Any, known_keys: Sequence[StockKey]
    ) -> None:
        for key in known_keys:
            adapter_fake.set_stock(key, 1)
        before = adapter_fake.requests_made()
        adapter.availability(list(known_keys))
        scopes = {k.scope for k in known_keys}
        assert adapter_fake.requests_made() - before <= 2 * len(scopes)

    def test_unknown_variant_is_none(
        self, adapter: Any, adapter_fake: Any, known_keys: Sequence[StockKey]
    ) -> None:
        ghost = StockKey("does-not-exist-404", known_keys[0].scope)
        found = adapter.availability([known_keys[0], ghost])
        assert found.get(ghost) is None

    def test_untracked_is_none(
        self, adapter: Any, adapter_fake: Any, known_keys: Sequence[StockKey]
    ) -> None:
        adapter_fake.set_stock(known_keys[0], None)
        assert adapter.availability([known_keys[0]]).get(known_keys[0]) is None

    def test_describe_returns_variant_info(
        self, adapter: Any, known_keys: Sequence[StockKey]
    ) -> None:
        info = adapter.describe([known_keys[0].variant_id])
        assert isinstance(info, Mapping)

    def test_unauthorized_is_a_clear_adapter_error(
        self, adapter: Any, adapter_fake: Any, known_keys: Sequence[StockKey]
    ) -> None:
        adapter_fake.unauthorized()
        with pytest.raises(AdapterError) as caught:
            adapter.availability(list(known_keys))
        assert "401" in str(caught.value) or "unauthor" in str(caught.value).lower()


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll until `condition()` is truthy; raise AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


@contextmanager
def running_worker(app: App) -> Iterator[threading.Thread]:
    """Run ``app.worker().run`` (dispatch, reconciliation, plugins' periodic tasks) in a
    thread until the ``with`` block ends; the exit waits for the worker to stop."""
    stop = threading.Event()
    thread = threading.Thread(
        target=app.worker().run, args=(stop,), name="restock-test-worker", daemon=True
    )
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        app.wake_event.set()
        thread.join(timeout=30)
