"""scripts/medusa-server.sh run twice at once from one cache (issue 10 item 14).

npm, npx and psql are replaced by small recording stand-ins on PATH (the real ones take
minutes and a real database); the script itself, bash, flock and node are real. Each stand-in
logs when it starts and ends, and what DATABASE_URL it saw, so the test can check that the
shared project dir is installed once, that migrations never overlap, and that each run talks
to its own database, whatever the other run wrote.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "medusa-server.sh"

pytestmark = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in ("bash", "node", "curl", "flock")),
    reason="needs bash, node, curl and flock",
)

STUB_NPM = """\
#!/usr/bin/env bash
# npm install: slow, then a node_modules with a medusa binary
echo "install-start $$ $(date +%s.%N)" >>"$STUB_LOG"
sleep 1
mkdir -p node_modules/.bin && printf '#!/bin/sh\\n' >node_modules/.bin/medusa
chmod +x node_modules/.bin/medusa
echo "install-end $$ $(date +%s.%N)" >>"$STUB_LOG"
"""

STUB_NPX = """\
#!/usr/bin/env bash
# npx --no-install medusa <command>: records the command and the database it would use
shift 2
echo "$1-start $$ $(date +%s.%N) ${DATABASE_URL:-none} $(cat .env 2>/dev/null | tr -d '\\n')" >>"$STUB_LOG"
sleep 1
echo "$1-end $$ $(date +%s.%N)" >>"$STUB_LOG"
"""

STUB_PSQL = """\
#!/usr/bin/env bash
# psql <url> -Atc "select ... datname = 'db'" | -qc "create database \\"db\\""
sql="${@: -1}"
name="$(printf '%s' "$sql" | sed -E "s/.*datname = '([^']*)'.*/\\\\1/; s/.*create database \\"([^\\"]*)\\".*/\\\\1/")"
case "$sql" in
  select*) [ -f "$STUB_DBS/$name" ] && echo 1 ;;
  create*) touch "$STUB_DBS/$name" ;;
esac
exit 0
"""


@pytest.fixture
def stubbed(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("npm", STUB_NPM), ("npx", STUB_NPX), ("psql", STUB_PSQL)):
        path = bin_dir / name
        path.write_text(textwrap.dedent(body))
        path.chmod(0o755)
    (tmp_path / "dbs").mkdir()
    return {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "RESTOCK_MEDUSA_HOME": str(tmp_path / "cache"),
        "STUB_LOG": str(tmp_path / "calls.log"),
        "STUB_DBS": str(tmp_path / "dbs"),
    }


def run_together(env: dict[str, str], *databases: str) -> list[subprocess.CompletedProcess]:
    runs = [
        subprocess.Popen(
            ["bash", str(SCRIPT), "setup"],
            env={**env, "RESTOCK_MEDUSA_DB": db},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for db in databases
    ]
    done = []
    for run in runs:
        out, err = run.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(run.args, run.returncode, out, err))
    return done


def calls(env: dict[str, str]) -> list[list[str]]:
    return [line.split() for line in Path(env["STUB_LOG"]).read_text().splitlines()]


def spans(entries: list[list[str]], kind: str) -> list[tuple[float, float]]:
    starts = {e[1]: float(e[2]) for e in entries if e[0] == f"{kind}-start"}
    ends = {e[1]: float(e[2]) for e in entries if e[0] == f"{kind}-end"}
    return sorted((starts[pid], ends[pid]) for pid in starts)


def overlap(intervals: list[tuple[float, float]]) -> bool:
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(intervals))


def test_two_setups_at_once_install_and_migrate_once(stubbed: dict[str, str]):
    results = run_together(stubbed, "restock_medusa", "restock_medusa")
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    entries = calls(stubbed)
    assert len(spans(entries, "install")) == 1  # the second run waited and reused it
    assert len(spans(entries, "db:migrate")) == 1
    assert any("waiting for another run" in r.stderr for r in results)
    project = Path(stubbed["RESTOCK_MEDUSA_HOME"]) / "project-2.21.2"
    assert (project / ".installed").exists()
    assert "defineConfig" in (project / "medusa-config.ts").read_text()


def test_two_databases_at_once_each_gets_its_own(stubbed: dict[str, str]):
    """Before: both runs wrote DATABASE_URL into the shared project's .env, so one run's
    migrations (and server) could use the other's database."""
    results = run_together(stubbed, "restock_medusa_a", "restock_medusa_b")
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    entries = calls(stubbed)
    migrations = [e for e in entries if e[0] == "db:migrate-start"]
    assert sorted(e[3] for e in migrations) == [
        "postgres://postgres@127.0.0.1:5432/restock_medusa_a",
        "postgres://postgres@127.0.0.1:5432/restock_medusa_b",
    ]
    assert not overlap(spans(entries, "db:migrate"))
    assert not overlap(spans(entries, "install"))
    project = Path(stubbed["RESTOCK_MEDUSA_HOME"]) / "project-2.21.2"
    assert not (project / ".env").exists()
    # a third run finds both databases migrated and changes no file
    before = {p: p.stat().st_mtime_ns for p in project.rglob("*") if p.is_file()}
    again = run_together(stubbed, "restock_medusa_a")[0]
    assert again.returncode == 0 and "migrated already" in again.stderr
    assert {p: p.stat().st_mtime_ns for p in project.rglob("*") if p.is_file()} == before
