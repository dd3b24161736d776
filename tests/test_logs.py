"""Structured logs carry the delivery id; secrets never reach the logs."""

from __future__ import annotations

import json
import logging

from restock_core.logs import JsonFormatter
from restock_core.models import SendResult
from tests.support import ScriptedPlugin, scripted_config


def test_json_log_lines_carry_delivery_ids(make_app, caplog) -> None:
    plugin = ScriptedPlugin()
    app = make_app(scripted_config(admin_api_key="super-secret-admin"), plugins=[plugin])
    plugin.provider.script = [lambda m: SendResult.failed(m.delivery_id, "invalid address")]
    app.subscribe("v1", email="ann@example.com")
    caplog.set_level(logging.DEBUG)
    app.set_stock("v1", 1)
    app.worker().drain()
    records = [r for r in caplog.records if getattr(r, "delivery_id", None)]
    assert records, "no log record carries a delivery id"
    line = json.loads(JsonFormatter().format(records[0]))
    assert line["delivery_id"] == records[0].delivery_id and "invalid address" in line["message"]
    assert "super-secret-admin" not in caplog.text
