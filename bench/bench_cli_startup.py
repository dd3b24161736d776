"""CLI start-up: how long `import restock_core.cli`, `restock --help` and `restock plugins`
take, next to the floor of starting Python at all (`python -c pass`).

    .venv/bin/python bench/bench_cli_startup.py            # 7 runs each, median and best
    .venv/bin/python bench/bench_cli_startup.py --runs 15

The import time is CPython's own figure (`python -X importtime`, the cumulative microseconds
of the `restock_core.cli` line); the commands are wall time of a fresh process each run, from
an empty directory (so no plugins.toml is read). Also lists which heavy libraries a process has
imported after each step: none should be there for `--help` and `plugins --entry-points`.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("sqlalchemy", "alembic", "fastapi", "uvicorn", "jinja2", "httpx", "prometheus_client")


def wall(argv: list[str], cwd: str, runs: int) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, cwd=cwd, capture_output=True, check=False)
        times.append(time.perf_counter() - started)
    return statistics.median(times), min(times)


def import_time(cwd: str, runs: int) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import restock_core.cli"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        )
        found = re.search(r"\|\s*(\d+)\s*\|\s*restock_core\.cli\s*$", done.stderr, re.M)
        assert found, done.stderr[-500:]
        times.append(int(found.group(1)) / 1e6)
    return statistics.median(times), min(times)


def heavy_after(args: list[str], cwd: str) -> list[str]:
    probe = (
        "import sys\nfrom restock_core.cli import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY:', *(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True, check=True
    )
    return out.stdout.rsplit("HEAVY:", 1)[1].split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    restock = str(Path(sys.executable).with_name("restock"))
    with tempfile.TemporaryDirectory() as cwd:
        rows = [
            ("python -c pass (floor)", wall([sys.executable, "-c", "pass"], cwd, args.runs)),
            ("import restock_core.cli (-X importtime)", import_time(cwd, args.runs)),
            ("restock --help", wall([restock, "--help"], cwd, args.runs)),
            (
                "restock plugins --entry-points",
                wall([restock, "plugins", "--entry-points"], cwd, args.runs),
            ),
            ("restock plugins (imports every plugin)", wall([restock, "plugins"], cwd, args.runs)),
        ]
        print(f"{'what':44} {'median':>8} {'best':>8}")
        for label, (median, best) in rows:
            print(f"{label:44} {median:7.3f}s {best:7.3f}s")
        for argv in (["--help"], ["plugins", "--entry-points"], ["plugins"]):
            heavy = heavy_after(argv, cwd)
            print(f"heavy modules after restock {' '.join(argv)}: {', '.join(heavy) or 'none'}")


if __name__ == "__main__":
    main()
