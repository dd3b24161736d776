"""Plugins' periodic tasks and plugin state: the worker (and only the worker) runs
`periodic_tasks()`, a failing task is retried at its next interval without stopping the
worker, the schedule is shared in the database (one runner per pass, kept across restarts),
and `plugin_state` survives a new App. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import attrs
import pytest
from fastapi.testclient import TestClient

from restock_core import (
    App,
    ObserverPlugin,
    PeriodicTask,
    StockKey,
    StockUpdate,
    hookimpl,
    store_time,
    stored_time,
)
from restock_core.api import create_api
from restock_core.cli import work_once
from restock_core.periodic import PeriodicRunner
from restock_core.testing import running_worker, wait_for


@attrs.frozen
class TickerOptions:
    interval: float = 0.05
    fail: bool = False


class Ticker(ObserverPlugin):
    """A plugin with two periodic tasks: `tick` counts, `boom` (with `fail`) raises."""

    name = "ticker"

    def __init__(self, options: TickerOptions) -> None:
        self.options = options
        self.ticks = 0
        self.booms = 0
        self.asked = 0

    def periodic_tasks(self) -> list[PeriodicTask]:
        self.asked += 1
        tasks = [PeriodicTask("tick", self.options.interval, self.tick)]
        if self.options.fail:
            tasks.append(PeriodicTask("boom", self.options.interval, self.boom))
        return tasks

    def tick(self) -> None:
        self.ticks += 1

    def boom(self) -> None:
        self.booms += 1
        raise RuntimeError("the platform is down")


class TickerPlugin:
    def __init__(self) -> None:
        self.made: list[Ticker] = []

    @hookimpl
    def register_observers(self, register):  # type: ignore[no-untyped-def]
        def factory(options: TickerOptions) -> Ticker:
            self.made.append(Ticker(options))
            return self.made[-1]

        register("ticker", factory, options=TickerOptions)


def ticker_app(make_app: Callable[..., App], **options: Any) -> tuple[App, Ticker]:
    plugin = TickerPlugin()
    app = make_app(
        {
            "plugins": [
                {"resolve": "logger"},
                {"resolve": "manual"},
                {"resolve": "ticker", "options": options},
            ]
        },
        plugins=[plugin],
    )
    return app, plugin.made[-1]


def test_a_failing_task_does_not_stop_the_worker(make_app: Callable[..., App]) -> None:
    app, ticker = ticker_app(make_app, fail=True)
    with running_worker(app) as thread:
        # the failing task is retried at each interval, the other one keeps its schedule
        wait_for(lambda: ticker.booms >= 3 and ticker.ticks >= 3)
        # and the worker still sends notifications meanwhile
        sub = app.subscribe("sku-1", email="ann@example.com", source="manual").subscription
        app.record_stock("manual", [StockUpdate(StockKey("sku-1"), 2, datetime.now(UTC))])
        wait_for(lambda: app.get_subscription(sub.id).status == "notified")
        assert thread.is_alive()
    assert not thread.is_alive()  # and it stops cleanly
    assert ticker.asked == 1  # asked once per worker start


def test_only_the_worker_runs_tasks_not_the_api(make_app: Callable[..., App]) -> None:
    app, ticker = ticker_app(make_app, interval=3600)
    # `restock serve --no-worker` (and any API-only process): nothing runs
    with TestClient(create_api(app)) as client:
        assert client.get("/health").status_code == 200
    assert (ticker.asked, ticker.ticks) == (0, 0)
    # `restock serve` (the worker embedded): the embedded worker runs each task once per pass
    with TestClient(create_api(app, run_worker=True)) as client:
        wait_for(lambda: ticker.ticks == 1)
        assert client.get("/health").status_code == 200
    assert ticker.asked == 1
    due = app.store.meta.get("periodic:ticker:tick")
    assert due is not None and due > datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def test_the_schedule_is_shared_and_survives_a_restart(make_app: Callable[..., App]) -> None:
    app, ticker = ticker_app(make_app, interval=3600)
    tasks = app.periodic_tasks()
    assert [(source, task.name) for source, task in tasks] == [("ticker", "tick")]
    first, second = PeriodicRunner(app.store, tasks), PeriodicRunner(app.store, tasks)
    # two workers on one database: one of them runs the pass
    assert first.run_due() + second.run_due() == 1
    assert ticker.ticks == 1
    # a restarted worker does not run it again before the interval is over
    restarted = PeriodicRunner(app.store, app.periodic_tasks())
    assert restarted.run_due() == 0
    assert restarted.next_check_in(cap=60.0) == 60.0
    # a shortened interval (config change) is due at once instead of an hour later
    shorter = [(source, attrs.evolve(task, interval=1.0)) for source, task in tasks]
    assert PeriodicRunner(app.store, shorter).run_due() == 1
    assert ticker.ticks == 2


def test_worker_once_delivers_and_runs_the_due_tasks(make_app: Callable[..., App]) -> None:
    """`restock worker --once` (cron-style deployments) does what a running worker would:
    delivers what is due and runs each periodic task whose pass is due, once."""
    app, ticker = ticker_app(make_app, interval=3600)
    sub = app.subscribe("sku-1", email="ann@example.com", source="manual").subscription
    app.record_stock("manual", [StockUpdate(StockKey("sku-1"), 2, datetime.now(UTC))])
    done, tasks = work_once(app)
    assert app.get_subscription(sub.id).status == "notified"
    assert done >= 1 and (tasks, ticker.ticks) == (1, 1)
    # a second run within the interval finds nothing due
    assert work_once(app) == (0, 0)
    assert ticker.ticks == 1


def test_plugin_state_is_namespaced_and_survives_a_new_app(make_app: Callable[..., App]) -> None:
    app, _ = ticker_app(make_app)
    assert app.plugin_state("ticker", "cursor") is None
    app.set_plugin_state("ticker", "cursor", "2026-01-01T00:00:00+00:00")
    app.set_plugin_state("ticker", "cursor", "2026-01-02T00:00:00+00:00")  # overwrites
    app.set_plugin_state("logger", "cursor", "other")
    again, _ = ticker_app(make_app)  # a restart: a new App on the same database
    assert again.plugin_state("ticker", "cursor") == "2026-01-02T00:00:00+00:00"
    assert again.plugin_state("logger", "cursor") == "other"
    again.set_plugin_state("ticker", "cursor", None)
    assert again.plugin_state("ticker", "cursor") is None
    with pytest.raises(ValueError, match="not a configured plugin"):
        again.plugin_state("nobody", "cursor")
    with pytest.raises(ValueError, match="letters, digits"):
        again.set_plugin_state("ticker", "no spaces", "x")
    with pytest.raises(ValueError, match="at most 10000"):
        again.set_plugin_state("ticker", "big", "x" * 10_001)


def test_a_time_cursor_round_trips_and_an_unreadable_one_reads_as_none(
    make_app: Callable[..., App], caplog: pytest.LogCaptureFixture
) -> None:
    app, _ = ticker_app(make_app)
    assert stored_time(app, "ticker", "since") is None
    when = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    store_time(app, "ticker", "since", when)
    assert app.plugin_state("ticker", "since") == "2026-03-01T12:30:15.123456+00:00"
    again, _ = ticker_app(make_app)  # a restart reads it back, aware and exact
    assert stored_time(again, "ticker", "since") == when
    again.set_plugin_state("ticker", "since", "2026-03-01T12:30:15")  # naive: read as UTC
    assert stored_time(again, "ticker", "since") == when.replace(microsecond=0)
    again.set_plugin_state("ticker", "since", "yesterday")
    assert stored_time(again, "ticker", "since") is None
    assert "ignoring unreadable stored cursor since='yesterday'" in caplog.text


def test_a_task_is_checked_when_declared() -> None:
    with pytest.raises(ValueError, match="interval must be a positive"):
        PeriodicTask("orders", 0, lambda: None)
    with pytest.raises(ValueError):
        PeriodicTask("two words", 1, lambda: None)
