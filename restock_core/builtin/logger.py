"""The local logger provider: logs what it would send instead of sending it, for development
without accounts (in the spirit of Medusa's local notification provider).

One summary line per batch at INFO (how many messages, the first recipient and subject), one
line per message at DEBUG, and, with `file`, one JSON line per message appended to that file.
A 100,000-subscriber restock therefore writes 100 INFO lines, not 100,000 (issue 13)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence

import attrs

from restock_core import Channel, Message, Provider, SendResult, hookimpl

log = logging.getLogger("restock.logger")


@attrs.frozen
class LoggerOptions:
    channels: list[str] = attrs.field(factory=lambda: ["email", "sms"])
    file: str | None = None  # also append one JSON line per message to this file
    max_batch_size: int = 1000

    @channels.validator
    def _check(self, attribute: object, value: list[str]) -> None:
        for channel in value:
            if channel not in ("email", "sms"):
                raise ValueError(f"channels: unknown channel {channel!r}; use 'email' or 'sms'")


class LoggerProvider(Provider):
    name = "logger"

    def __init__(self, options: LoggerOptions | None = None):
        self.options = options or LoggerOptions()
        self.channels = frozenset(Channel(c) for c in self.options.channels)
        self.max_batch_size = self.options.max_batch_size
        self._lock = threading.Lock()

    def send(self, messages: Sequence[Message]) -> list[SendResult]:
        if messages:
            first = messages[0]
            channels = sorted({str(m.channel) for m in messages})
            variants = {m.variant_id for m in messages}
            log.info(
                "notification batch of %d: channel=%s variants=%d first to=%s template=%s "
                "variant=%s subject=%r delivery=%s",
                len(messages),
                ",".join(channels),
                len(variants),
                first.to,
                first.template,
                first.variant_id,
                first.subject or first.text,
                first.delivery_id,
            )
        if log.isEnabledFor(logging.DEBUG):
            for message in messages:
                log.debug(
                    "notification to=%s channel=%s template=%s variant=%s subject=%r delivery=%s",
                    message.to,
                    message.channel,
                    message.template,
                    message.variant_id,
                    message.subject or message.text,
                    message.delivery_id,
                )
        if self.options.file and messages:
            lines = [
                json.dumps(
                    {
                        "delivery_id": message.delivery_id,
                        "to": message.to,
                        "channel": str(message.channel),
                        "template": message.template,
                        "variant_id": message.variant_id,
                        "subject": message.subject,
                        "text": message.text,
                        "html": message.html,
                        "locale": message.locale,
                        "unsubscribe_url": message.unsubscribe_url,
                    }
                )
                for message in messages
            ]
            with self._lock, open(self.options.file, "a", encoding="utf-8") as fh:
                fh.write("\n".join(lines) + "\n")
        # one provider message id per batch, as SendGrid gives one per request: the outbox
        # records a batch that shares an id in a few set-based UPDATEs instead of one per message
        batch_id = f"logger-{messages[0].delivery_id}" if messages else "logger"
        return [SendResult.sent(m.delivery_id, batch_id) for m in messages]


@hookimpl
def register_providers(register):  # type: ignore[no-untyped-def]
    register(
        "logger",
        LoggerProvider,
        options=LoggerOptions,
        description="Logs messages instead of sending them (development)",
    )
