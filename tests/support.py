"""Test doubles for *external* parts (a scripted notification provider, observers).
The core itself is never mocked."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from restock_core import Channel, Message, Provider, SendResult, hookimpl
from restock_core.store.subscriptions import SignUpWrite


@attrs.frozen
class ScriptedOptions:
    channels: list[str] = attrs.field(factory=lambda: ["email", "sms"])
    max_batch_size: int = 100


class ScriptedProvider(Provider):
    """A provider whose answers are scripted per call: `script` is a list of functions
    message -> SendResult (or an Exception to raise), consumed one per send() call;
    after the script runs out every message is sent."""

    name = "scripted"

    def __init__(self, options: ScriptedOptions | None = None):
        self.options = options or ScriptedOptions()
        self.channels = frozenset(Channel(c) for c in self.options.channels)
        self.max_batch_size = self.options.max_batch_size
        self.script: list[Callable[[Message], SendResult] | Exception] = []
        self.calls: list[list[Message]] = []
        self.lock = threading.Lock()

    def send(self, messages: Sequence[Message]) -> list[SendResult]:
        with self.lock:
            self.calls.append(list(messages))
            step = self.script.pop(0) if self.script else None
        if isinstance(step, Exception):
            raise step
        if step is None:
            return [SendResult.sent(m.delivery_id, f"msg-{m.delivery_id}") for m in messages]
        return [step(m) for m in messages]

    @property
    def sent_to(self) -> list[str]:
        return [m.to for call in self.calls for m in call]


class ScriptedPlugin:
    """Registers one shared ScriptedProvider instance under the name "scripted"."""

    def __init__(self) -> None:
        self.provider = ScriptedProvider()

    @hookimpl
    def register_providers(self, register):  # type: ignore[no-untyped-def]
        def factory(options: ScriptedOptions) -> ScriptedProvider:
            self.provider.__init__(options)  # type: ignore[misc]
            return self.provider

        register("scripted", factory, options=ScriptedOptions)


class Recorder:
    """An observer plugin recording what the core announced."""

    def __init__(self) -> None:
        self.created: list[int] = []  # names differ from the hooks: pluggy reads attributes
        self.restocks: list[tuple[int, list[int]]] = []
        self.sent: list[int] = []
        self.failed: list[tuple[int, str | None]] = []

    @hookimpl
    def subscription_created(self, subscription):  # type: ignore[no-untyped-def]
        self.created.append(subscription.id)

    @hookimpl
    def restocked(self, restock, subscriptions):  # type: ignore[no-untyped-def]
        self.restocks.append((restock.id, [s.id for s in subscriptions]))

    @hookimpl
    def notification_sent(self, subscription, result):  # type: ignore[no-untyped-def]
        self.sent.append(subscription.id)

    @hookimpl
    def notification_failed(self, subscription, result):  # type: ignore[no-untyped-def]
        self.failed.append((subscription.id, result.reason))


class Exploding:
    """An observer that raises from every hook."""

    @hookimpl
    def subscription_created(self, subscription):  # type: ignore[no-untyped-def]
        raise RuntimeError("observer bug: created")

    @hookimpl
    def restocked(self, restock, subscriptions):  # type: ignore[no-untyped-def]
        raise RuntimeError("observer bug: restocked")

    @hookimpl
    def notification_sent(self, subscription, result):  # type: ignore[no-untyped-def]
        raise RuntimeError("observer bug: sent")


def scripted_config(**restock: object) -> dict[str, object]:
    return {
        "restock": {"retry_base": 0.0, **restock},
        "plugins": [{"resolve": "scripted"}, {"resolve": "manual"}],
    }


def sign_up_write(
    contact: str,
    variant: str = "v1",
    *,
    values: Mapping[str, Any] | None = None,
    consent: Mapping[str, Any] | None = None,
    **fields: Any,
) -> SignUpWrite:
    """A public e-mail sign-up of `contact` for `variant` at the manual source, as the
    sign-up writer receives it; `values` overrides row columns, `fields` the write's checks."""
    row: dict[str, Any] = {
        "variant_id": variant,
        "scope": "default",
        "source": "manual",
        "channel": "email",
        "contact": contact,
        "customer_id": None,
        "product_id": None,
        "locale": None,
        "product_title": None,
        "variant_title": None,
        "url": None,
        "attributes": {},
        **(values or {}),
    }
    fields.setdefault("fill_customer_id", False)
    fields.setdefault("max_active", None)
    fields.setdefault("confirm", None)
    return SignUpWrite(
        values=row,
        consent={"ip": "10.0.0.1", "user_agent": "test"} if consent is None else consent,
        **fields,
    )
