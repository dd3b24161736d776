"""Release policy, crash safety and scale-out: nobody lost, nobody notified twice.

The crash tests run real `restock worker` processes and kill them with SIGKILL."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from restock_core.app import App
from restock_core.config import parse_config
from restock_core.db import restocks, stock, subscriptions, utcnow
from restock_core.testing import wait_for
from tests.support import ScriptedPlugin, scripted_config


def seed(app, n: int, variant: str = "hot") -> None:
    start = utcnow() - timedelta(hours=1)
    with app.engine.begin() as conn:
        conn.execute(
            sa.insert(stock).values(
                source="manual",
                variant_id=variant,
                scope="default",
                quantity=0,
                observed_at=start,
                updated_at=start,
            )
        )
        conn.execute(
            sa.insert(subscriptions),
            [
                {
                    "variant_id": variant,
                    "scope": "default",
                    "source": "manual",
                    "channel": "email",
                    "contact": f"s{i:05d}@example.com",
                    "status": "pending",
                    "attributes": {},
                    "created_at": start + timedelta(milliseconds=i),
                    "updated_at": start,
                }
                for i in range(n)
            ],
        )


def pending(app) -> int:
    with app.engine.connect() as conn:
        return conn.execute(
            sa.select(sa.func.count()).where(subscriptions.c.status == "pending")
        ).scalar()


def release_next_wave_now(app) -> None:
    with app.engine.begin() as conn:
        conn.execute(
            sa.update(restocks).where(restocks.c.status == "open").values(next_wave_at=utcnow())
        )


def test_waves_are_sized_by_stock_and_stop_when_it_runs_out(make_app) -> None:
    plugin = ScriptedPlugin()
    app = make_app(scripted_config(per_unit=2, wave_interval=3600), plugins=[plugin])
    seed(app, 12)
    app.set_stock("hot", 3)
    worker = app.worker()
    worker.drain()
    first = plugin.provider.sent_to
    assert first == [f"s{i:05d}@example.com" for i in range(6)]  # 2 per unit x 3, oldest first
    worker.drain()
    assert len(plugin.provider.sent_to) == 6  # the next wave waits for wave_interval
    app.set_stock("hot", 1)  # some sold: the next wave is smaller
    release_next_wave_now(app)
    worker.drain()
    assert plugin.provider.sent_to[6:] == ["s00006@example.com", "s00007@example.com"]
    app.set_stock("hot", 0)  # gone: the rest stay pending for the next restock
    release_next_wave_now(app)
    worker.drain()
    assert len(plugin.provider.sent_to) == 8 and pending(app) == 4
    with app.engine.connect() as conn:
        assert conn.execute(sa.select(restocks.c.status)).scalar() == "ended"
    app.set_stock("hot", 10)
    worker.drain()
    assert len(plugin.provider.sent_to) == 12 and pending(app) == 0
    assert len(set(plugin.provider.sent_to)) == 12


def test_unlimited_policy_releases_everyone_in_one_wave(make_app) -> None:
    plugin = ScriptedPlugin()
    app = make_app(scripted_config(release_batch_size=7), plugins=[plugin])
    seed(app, 30)
    app.set_stock("hot", 1)
    app.worker().drain()
    assert len(plugin.provider.sent_to) == 30
    with app.engine.connect() as conn:
        row = conn.execute(sa.select(restocks)).one()
    assert (row.status, row.released, row.waves) == ("done", 30, 1)


# --------------------------------------------------------------------------- processes


def write_config(tmp_path: Path, database_url: str, **restock: object) -> Path:
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in restock.items())
    config = tmp_path / "plugins.toml"
    config.write_text(
        f'[restock]\ndatabase = "{database_url}"\nlog_level = "WARNING"\n{extra}\n'
        f'[[plugins]]\nresolve = "logger"\noptions = {{ file = "{tmp_path / "sent.jsonl"}" }}\n\n'
        '[[plugins]]\nresolve = "manual"\n'
    )
    return config


def start_worker(config: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "restock_core.cli", "--config", str(config), "worker"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def sent_counts(tmp_path: Path) -> Counter:
    path = tmp_path / "sent.jsonl"
    if not path.exists():
        return Counter()
    return Counter(json.loads(line)["to"] for line in path.read_text().splitlines() if line.strip())


@pytest.mark.slow
def test_sigkilled_workers_lose_nobody(make_app, database_url: str, tmp_path: Path) -> None:
    """A worker killed with SIGKILL at random points of a 10,000 fan-out, then restarted:
    zero lost; duplicates only for messages whose provider call was in flight at a kill."""
    batch = 200
    app = make_app({"restock": {"batch_size": batch, "lease": 2, "release_batch_size": 500}})
    seed(app, 10_000)
    config = write_config(tmp_path, database_url, batch_size=batch, lease=2, release_batch_size=500)
    app.set_stock("hot", 5)
    rng = random.Random(int(os.environ.get("RESTOCK_FAULT_SEED", "7")))
    kills = 0
    for _ in range(4):
        worker = start_worker(config)
        time.sleep(rng.uniform(0.8, 2.0))  # startup takes most of a second
        if worker.poll() is None:
            os.kill(worker.pid, signal.SIGKILL)
            kills += 1
        worker.wait()
        if pending(app) == 0:
            break
    worker = start_worker(config)
    try:
        wait_for(lambda: pending(app) == 0, timeout=120, interval=0.2)
    finally:
        worker.terminate()
        worker.wait(10)
    counts = sent_counts(tmp_path)
    assert len(counts) == 10_000, "lost subscribers"
    duplicates = sum(n - 1 for n in counts.values())
    print(f"kills: {kills}, duplicates: {duplicates} (bound {kills * batch})")
    assert duplicates <= kills * batch, (duplicates, kills)
    with app.engine.connect() as conn:
        statuses = dict(
            conn.execute(sa.text("select status, count(*) from deliveries group by status")).all()
        )
    assert statuses == {"sent": 10_000}


@pytest.mark.slow
@pytest.mark.postgres
def test_four_workers_share_one_fan_out_exactly_once(postgres_url: str, tmp_path: Path) -> None:
    app = App(parse_config({"restock": {"database": postgres_url, "batch_size": 250}}))
    app.migrate()
    seed(app, 10_000)
    config = write_config(tmp_path, postgres_url, batch_size=250)
    workers = [start_worker(config) for _ in range(4)]
    try:
        time.sleep(1.0)
        app.set_stock("hot", 5)  # NOTIFY wakes every worker
        wait_for(lambda: pending(app) == 0, timeout=120, interval=0.2)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(10)
        app.close()
    counts = sent_counts(tmp_path)
    assert len(counts) == 10_000 and set(counts.values()) == {1}


def test_flaky_sendgrid_still_delivers_everyone_once(make_app) -> None:
    """A fake SendGrid failing 20% of requests (429 with Retry-After, 500, timeouts, resets):
    every subscriber is delivered exactly once, through the real SDK."""
    from restock_core.testing import FakeHTTPServer, Reply

    rng = random.Random(20)
    accepted: Counter = Counter()
    failures: Counter = Counter()

    def handler(request) -> Reply:
        roll = rng.random()
        if roll < 0.05:
            failures["429"] += 1
            return Reply(429, {"errors": [{"message": "too many"}]}, headers={"Retry-After": "1"})
        if roll < 0.10:
            failures["500"] += 1
            return Reply(500, {"errors": [{"message": "boom"}]})
        if roll < 0.15:
            failures["timeout"] += 1
            return Reply(500, delay=3.0)  # the client gives up first
        if roll < 0.20:
            failures["reset"] += 1
            return Reply(reset=True)
        for p in request.json["personalizations"]:
            accepted[p["to"][0]["email"]] += 1
        return Reply(202, None, headers={"X-Message-Id": f"m{len(accepted)}"})

    with FakeHTTPServer(handler) as fake:
        app = make_app(
            {
                "restock": {"retry_base": 0.05, "max_attempts": 50},
                "plugins": [
                    {
                        "resolve": "sendgrid",
                        "options": {
                            "api_key": "SG.test",
                            "from_email": "shop@example.com",
                            "base_url": fake.url,
                            # well above a loaded machine's slowest 202 (SendGrid has no
                            # idempotency key: a 202 that outlasts the timeout is a real
                            # duplicate), well below the simulated timeout's delay
                            "timeout": 1.5,
                            "batch_size": 50,
                        },
                    },
                    {"resolve": "manual"},
                ],
            }
        )
        seed(app, 2000)
        app.set_stock("hot", 3)
        worker = app.worker()
        wait_for(lambda: worker.drain() >= 0 and pending(app) == 0, timeout=120, interval=0.05)
    assert sum(failures.values()) > 0 and len(failures) == 4, failures
    assert len(accepted) == 2000 and set(accepted.values()) == {1}
