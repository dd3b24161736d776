"""Sign-up throughput over HTTP against a real `restock serve` on SQLite.

    .venv/bin/python bench/bench_signup_http.py [--requests 5000] [--concurrency 32] [--no-limits]

Starts the server in its own process on 127.0.0.1 (temporary database), sends public sign-ups
(no key) from concurrent clients (10% of them repeats of an earlier sign-up), then prints
sign-ups/s, p50/p99 latency, and the rows stored against the 2xx responses. Stops by itself.

The abuse limits are on as by default (per-IP and per-variant buckets, the per-contact count,
the honeypot hook), except that the per-IP budget is raised so the one bench client is
measured instead of refused; `--no-limits` turns every limit off to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import sqlalchemy as sa


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run_clients(
    base: str, total: int, concurrency: int
) -> tuple[list[float], dict[int, int], set[str]]:
    latencies: list[float] = []
    codes: dict[int, int] = {}
    unique: set[str] = set()
    counter = iter(range(total))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def one_client() -> None:
            for i in counter:
                n = i if i % 10 else max(0, i - 5)  # every tenth is a repeat sign-up
                email = f"shopper{n}@example.com"
                started = time.perf_counter()
                response = await client.post(
                    "/subscriptions", json={"variant_id": f"v{n % 100}", "email": email}
                )
                latencies.append(time.perf_counter() - started)
                codes[response.status_code] = codes.get(response.status_code, 0) + 1
                if response.status_code < 300:
                    unique.add(f"v{n % 100}/{email}")

        await asyncio.gather(*(one_client() for _ in range(concurrency)))
    return latencies, codes, unique


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--no-limits", action="store_true", help="turn every abuse limit off")
    args = parser.parse_args()
    if args.no_limits:
        limits = "limit_signups_per_ip = 0\nlimit_signups_per_variant = 0\nlimit_active_per_contact = 0\n"
    else:  # on, but the bench is one client: let it through the per-IP budget
        limits = "limit_signups_per_ip = 10000000\n"
    with tempfile.TemporaryDirectory() as tmp:
        db_path = Path(tmp) / "bench.db"
        config = Path(tmp) / "plugins.toml"
        config.write_text(
            f'[restock]\ndatabase = "sqlite:///{db_path}"\nlog_level = "WARNING"\n{limits}\n'
            '[[plugins]]\nresolve = "logger"\n\n[[plugins]]\nresolve = "manual"\n'
        )
        port = free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "restock_core.cli",
                "--config",
                str(config),
                "serve",
                "--port",
                str(port),
            ],
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{base}/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("server did not start")
                time.sleep(0.1)
            started = time.perf_counter()
            latencies, codes, unique = asyncio.run(
                run_clients(base, args.requests, args.concurrency)
            )
            elapsed = time.perf_counter() - started
        finally:
            server.terminate()
            server.wait(10)
        engine = sa.create_engine(f"sqlite:///{db_path}")
        with engine.connect() as conn:
            rows = conn.execute(sa.text("select count(*) from subscriptions")).scalar()
        latencies.sort()
        ok = sum(n for code, n in codes.items() if 200 <= code < 300)
        print(
            f"requests: {args.requests}  concurrency: {args.concurrency}  elapsed: {elapsed:.2f} s"
        )
        print(f"sign-ups/s: {args.requests / elapsed:.0f}")
        print(
            f"latency p50: {latencies[len(latencies) // 2] * 1000:.1f} ms  "
            f"p99: {latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms"
        )
        print(f"responses: {dict(sorted(codes.items()))}  2xx: {ok}")
        print(
            f"rows stored: {rows}  distinct sign-ups answered 2xx: {len(unique)}  "
            f"{'OK' if rows == len(unique) else 'MISMATCH'}"
        )


if __name__ == "__main__":
    main()
