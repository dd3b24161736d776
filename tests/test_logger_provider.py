"""The logger provider logs one INFO line per batch and one DEBUG line per message
(docs/plugins/logger.md), and writes every message to its `file` whatever the log level."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from restock_core.builtin.logger import LoggerOptions, LoggerProvider
from restock_core.models import Channel, Message, Outcome


def _messages(n: int) -> list[Message]:
    return [
        Message(
            delivery_id=i,
            channel=Channel.EMAIL,
            to=f"shopper{i}@example.com",
            text="Back in stock",
            unsubscribe_url=f"http://shop.example/unsubscribe/{i}",
            template="restock",
            variant_id="v1" if i % 2 else "v2",
            subject="Back in stock: Shirt",
        )
        for i in range(1, n + 1)
    ]


def test_one_info_line_per_batch(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="restock.logger")
    results = LoggerProvider().send(_messages(250))
    lines = [r for r in caplog.records if r.name == "restock.logger"]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO
    text = lines[0].getMessage()
    assert "batch of 250" in text and "variants=2" in text
    assert "first to=shopper1@example.com" in text
    assert [r.outcome for r in results] == [Outcome.SENT] * 250


def test_one_debug_line_per_message(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="restock.logger")
    LoggerProvider().send(_messages(3))
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert [line.split()[1] for line in debug] == [
        "to=shopper1@example.com",
        "to=shopper2@example.com",
        "to=shopper3@example.com",
    ]


def test_file_gets_every_message_at_info_level(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="restock.logger")
    out = tmp_path / "outbox.jsonl"
    provider = LoggerProvider(LoggerOptions(file=str(out)))
    provider.send(_messages(3))
    provider.send(_messages(2))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["to"] for r in rows] == [
        "shopper1@example.com",
        "shopper2@example.com",
        "shopper3@example.com",
        "shopper1@example.com",
        "shopper2@example.com",
    ]
    assert len([r for r in caplog.records if r.name == "restock.logger"]) == 2


def test_a_batch_shares_one_provider_message_id() -> None:
    results = LoggerProvider().send(_messages(4))
    assert {r.provider_message_id for r in results} == {"logger-1"}
    assert [r.delivery_id for r in results] == [1, 2, 3, 4]
