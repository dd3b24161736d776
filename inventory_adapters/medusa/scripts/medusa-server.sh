#!/usr/bin/env bash
# A real Medusa v2 backend for restock's tests, installed from the npm registry only.
#
#   medusa-server.sh install   npm project in the cache dir (reused when already there)
#   medusa-server.sh setup     install + database + migrations + admin user
#   medusa-server.sh start     setup + start on 127.0.0.1:<free port> + API keys; prints JSON
#   medusa-server.sh stop      stop the server this script started
#   medusa-server.sh status    print the state JSON when the server is up (exit 1 otherwise)
#
# Environment:
#   RESTOCK_MEDUSA_HOME     cache dir, outside the repo   (default ~/.cache/restock-medusa)
#   RESTOCK_MEDUSA_VERSION  @medusajs/* version            (default 2.21.2)
#   RESTOCK_MEDUSA_PG       PostgreSQL server URL          (default postgres://postgres@127.0.0.1:5432)
#   RESTOCK_MEDUSA_DB       database name                  (default restock_medusa)
#   RESTOCK_MEDUSA_PORT     port                           (default: a free one)
#   RESTOCK_MEDUSA_STATE    state file of the started server (default $RESTOCK_MEDUSA_HOME/state.json);
#                           give each concurrent server its own
#   RESTOCK_MEDUSA_LOCK_WAIT  seconds to wait for another run's install/migrations (default 1800)
#   RESTOCK_EVENTS_URL, RESTOCK_EVENT_SECRET   passed to the bundled restock-forwarder subscriber
#
# Safe to run several times at once from one cache (two test runs, two worktrees): the shared
# project dir is changed only under an exclusive flock on $RESTOCK_MEDUSA_HOME/.lock (npm
# install, config files, database creation, migrations, admin user); files are rewritten only
# when their content changes, and atomically (temp file + rename), so a server already running
# from the project never sees a half-written file; nothing per-run lives in the project:
# DATABASE_URL and the forwarder's settings go to each process in its environment (no .env),
# logs are per port, and `start` holds a lock on its own state file so two starts with one
# state file give one server.
#
# Follows docs: reference/medusa.md §6 (hand-written project, admin disabled, no Redis).
# Progress goes to stderr; `start` prints one JSON object on stdout:
#   {"url","pid","port","publishable_key","secret_key","sales_channel_id","admin_email",
#    "admin_password","log"}
set -euo pipefail

HOME_DIR="${RESTOCK_MEDUSA_HOME:-$HOME/.cache/restock-medusa}"
VERSION="${RESTOCK_MEDUSA_VERSION:-2.21.2}"
PG="${RESTOCK_MEDUSA_PG:-postgres://postgres@127.0.0.1:5432}"
DB="${RESTOCK_MEDUSA_DB:-restock_medusa}"
PROJECT="$HOME_DIR/project-$VERSION"
STATE="${RESTOCK_MEDUSA_STATE:-$HOME_DIR/state.json}"
LOGS="$HOME_DIR/logs"
LOCK="$HOME_DIR/.lock"
LOCK_WAIT="${RESTOCK_MEDUSA_LOCK_WAIT:-1800}"
export DATABASE_URL="$PG/$DB"  # per run, in the environment: never in the shared project
ADMIN_EMAIL="admin@restock.test"
ADMIN_PASSWORD="restock-test-password"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

say() { echo "medusa-server: $*" >&2; }
json_get() {  # json_get <file-or-> <js expression on `j`>
  node -e 'const fs=require("fs");const j=JSON.parse(fs.readFileSync(process.argv[1]==="-"?0:process.argv[1],"utf8"));const v=('"$2"');if(v===undefined||v===null)process.exit(3);process.stdout.write(String(v))' "$1"
}

require_tools() {
  command -v node >/dev/null || { say "node is required (v20.19+ or v22.12+)"; exit 2; }
  command -v npm >/dev/null || { say "npm is required"; exit 2; }
  command -v curl >/dev/null || { say "curl is required"; exit 2; }
  command -v psql >/dev/null || { say "psql is required"; exit 2; }
  command -v flock >/dev/null || { say "flock is required (util-linux)"; exit 2; }
}

# The cache lock (fd 8) guards the shared project dir; the state lock (fd 7) guards one state
# file. Both are closed in the Medusa process we spawn, so a running server holds no lock.
lock_cache() {
  mkdir -p "$HOME_DIR"
  exec 8>>"$LOCK"
  if ! flock -n 8; then
    say "waiting for another run to finish with $HOME_DIR (lock $LOCK, up to ${LOCK_WAIT} s)"
    flock -w "$LOCK_WAIT" 8 || { say "gave up waiting for $LOCK after ${LOCK_WAIT} s"; exit 1; }
  fi
}
unlock_cache() { flock -u 8 2>/dev/null || true; exec 8>&-; }

lock_state() {
  mkdir -p "$(dirname "$STATE")"
  exec 7>>"$STATE.lock"
  flock -w "$LOCK_WAIT" 7 || { say "gave up waiting for $STATE.lock"; exit 1; }
}

put_file() {  # put_file <path>: stdin -> path, only when different, atomically
  local tmp
  tmp="$(mktemp "$1.XXXXXX")"
  cat >"$tmp"
  if [ -f "$1" ] && cmp -s "$tmp" "$1"; then
    rm -f "$tmp"
  else
    chmod 644 "$tmp"
    mv -f "$tmp" "$1"
  fi
}

install_locked() {  # with the cache lock held
  require_tools
  mkdir -p "$PROJECT" "$LOGS"
  if [ -f "$PROJECT/.installed" ] && [ -x "$PROJECT/node_modules/.bin/medusa" ]; then
    say "reusing install in $PROJECT"
  else
    say "installing @medusajs/* $VERSION from the npm registry into $PROJECT (takes minutes)"
    put_file "$PROJECT/package.json" <<EOF
{
  "name": "restock-medusa-test-backend",
  "private": true,
  "version": "0.0.0",
  "scripts": { "start": "medusa start" },
  "dependencies": {
    "@medusajs/medusa": "$VERSION",
    "@medusajs/framework": "$VERSION",
    "@medusajs/cli": "$VERSION",
    "@swc/core": "^1.7.28"
  },
  "devDependencies": {
    "typescript": "^5.6.2",
    "ts-node": "^10.9.2",
    "@types/node": "^20.0.0"
  },
  "engines": { "node": ">=20" }
}
EOF
    (cd "$PROJECT" && npm install --no-audit --no-fund --loglevel=error >"$LOGS/npm-install.log" 2>&1) || {
      say "npm install failed; see $LOGS/npm-install.log"; tail -20 "$LOGS/npm-install.log" >&2; exit 1; }
    touch "$PROJECT/.installed"
  fi
  put_file "$PROJECT/medusa-config.ts" <<'EOF'
import { loadEnv, defineConfig } from "@medusajs/framework/utils"

loadEnv(process.env.NODE_ENV || "development", process.cwd())

module.exports = defineConfig({
  projectConfig: {
    databaseUrl: process.env.DATABASE_URL,
    http: {
      storeCors: process.env.STORE_CORS || "http://127.0.0.1:8000",
      adminCors: process.env.ADMIN_CORS || "http://127.0.0.1:8000",
      authCors: process.env.AUTH_CORS || "http://127.0.0.1:8000",
      jwtSecret: process.env.JWT_SECRET || "restock-test-jwt",
      cookieSecret: process.env.COOKIE_SECRET || "restock-test-cookie",
    },
  },
  admin: { disable: true },
})
EOF
  put_file "$PROJECT/tsconfig.json" <<'EOF'
{
  "compilerOptions": {
    "target": "ES2021",
    "esModuleInterop": true,
    "module": "Node16",
    "moduleResolution": "Node16",
    "emitDecoratorMetadata": true,
    "experimentalDecorators": true,
    "skipLibCheck": true,
    "skipDefaultLibCheck": true,
    "declaration": false,
    "sourceMap": false,
    "inlineSourceMap": true,
    "outDir": "./.medusa/server",
    "rootDir": "./",
    "jsx": "react-jsx",
    "forceConsistentCasingInFileNames": true,
    "resolveJsonModule": true,
    "checkJs": false,
    "strictNullChecks": true
  },
  "ts-node": { "swc": true },
  "include": ["**/*", ".medusa/types/*"],
  "exclude": ["node_modules", ".medusa/server", ".medusa/admin", ".cache"]
}
EOF
  # no .env: DATABASE_URL comes from each process's environment, which wins over any .env
  # (Medusa's loadEnv runs dotenv without override), so runs on other databases do not clash
  mkdir -p "$PROJECT/src/subscribers"
  put_file "$PROJECT/src/subscribers/restock-forwarder.ts" <"$HERE/../medusa-subscriber/restock-forwarder.ts"
}

setup_locked() {  # with the cache lock held
  install_locked
  local exists
  exists="$(psql "$PG/postgres" -Atc "select 1 from pg_database where datname = '$DB'" 2>/dev/null || true)"
  if [ "$exists" != "1" ]; then
    say "creating database $DB"
    psql "$PG/postgres" -qc "create database \"$DB\"" >/dev/null
    rm -f "$PROJECT/.migrated-$DB"
  fi
  if [ ! -f "$PROJECT/.migrated-$DB" ]; then
    say "running migrations (about half a minute)"
    (cd "$PROJECT" && npx --no-install medusa db:migrate >"$LOGS/migrate.log" 2>&1) || {
      say "migrations failed; see $LOGS/migrate.log"; tail -20 "$LOGS/migrate.log" >&2; exit 1; }
    (cd "$PROJECT" && npx --no-install medusa user -e "$ADMIN_EMAIL" -p "$ADMIN_PASSWORD" >"$LOGS/user.log" 2>&1) ||
      grep -qi "exist" "$LOGS/user.log" || { say "creating the admin user failed; see $LOGS/user.log"; exit 1; }
    touch "$PROJECT/.migrated-$DB"
  else
    say "database $DB is migrated already"
  fi
}

do_install() { lock_cache; install_locked; unlock_cache; }
do_setup() { lock_cache; setup_locked; unlock_cache; }

running_state() {  # prints the state file when its server is alive and healthy
  [ -f "$STATE" ] || return 1
  local pid url
  pid="$(json_get "$STATE" 'j.pid')" || return 1
  url="$(json_get "$STATE" 'j.url')" || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  [ "$(curl -fsS --max-time 5 "$url/health" 2>/dev/null || true)" = "OK" ] || return 1
  cat "$STATE"
}

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

api() {  # api METHOD URL AUTH [BODY]
  local args=(-sS --max-time 30 -X "$1" "$2" -H "content-type: application/json")
  [ -n "$3" ] && args+=(-H "authorization: $3")
  [ -n "${4:-}" ] && args+=(--data "$4")
  curl "${args[@]}"
}

spawn() {  # spawn <port> <log>: start Medusa in its own session; prints its pid
  (
    exec 7>&- 8>&-  # the server must not inherit (and so hold) our locks
    cd "$PROJECT"
    export NODE_ENV=development MEDUSA_DISABLE_TELEMETRY=true
    exec setsid npx --no-install medusa start -H 127.0.0.1 -p "$1" >"$2" 2>&1 </dev/null
  ) &
  echo $!
}

do_start() {
  lock_state
  if running_state; then
    say "already running"
    return 0
  fi
  do_setup
  local port url log pid attempt
  for attempt in 1 2 3; do
    port="${RESTOCK_MEDUSA_PORT:-$(free_port)}"
    url="http://127.0.0.1:$port"
    log="$LOGS/medusa-$port.log"
    say "starting Medusa on $url (log: $log)"
    pid="$(spawn "$port" "$log")"
    local waited=0 up=""
    until [ "$(curl -fsS --max-time 2 "$url/health" 2>/dev/null || true)" = "OK" ]; do
      if ! kill -0 "$pid" 2>/dev/null; then
        up="exited"
        break
      fi
      waited=$((waited + 1))
      if [ "$waited" -gt 180 ]; then
        say "Medusa did not answer /health within 90 s"; kill -- -"$pid" 2>/dev/null || true; exit 1
      fi
      sleep 0.5
    done
    [ -z "$up" ] && break
    # another run may have taken the free port between our check and Medusa's bind
    if [ -z "${RESTOCK_MEDUSA_PORT:-}" ] && [ "$attempt" -lt 3 ] && grep -q EADDRINUSE "$log"; then
      say "port $port was taken meanwhile; trying another"
      continue
    fi
    say "Medusa exited while starting; last lines of $log:"; tail -30 "$log" >&2; exit 1
  done
  # keys: JWT login -> a secret API key (reused when still valid) + the default publishable key
  local token
  token="$(api POST "$url/auth/user/emailpass" "" "{\"email\":\"$ADMIN_EMAIL\",\"password\":\"$ADMIN_PASSWORD\"}" | json_get - 'j.token')" || {
    say "admin login failed"; kill -- -"$pid" 2>/dev/null || true; exit 1; }
  local secret="" keyfile="$HOME_DIR/secret-key-$DB"
  if [ -f "$keyfile" ]; then
    secret="$(cat "$keyfile")"
    if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -H "authorization: Basic $(printf '%s:' "$secret" | base64 -w0)" "$url/admin/sales-channels?limit=1")" != "200" ]; then
      secret=""
    fi
  fi
  if [ -z "$secret" ]; then
    secret="$(api POST "$url/admin/api-keys" "Bearer $token" '{"title":"restock tests","type":"secret"}' | json_get - 'j.api_key.token')"
    (umask 077 && printf '%s' "$secret" >"$keyfile.$$" && mv -f "$keyfile.$$" "$keyfile")
  fi
  local pk sc
  pk="$(api GET "$url/admin/api-keys?type=publishable&fields=id,token,revoked_at&limit=50" "Bearer $token" | json_get - '(j.api_keys.find(k=>!k.revoked_at)||{}).token')"
  sc="$(api GET "$url/admin/sales-channels?fields=id,name&limit=50" "Bearer $token" | json_get - '(j.sales_channels.find(c=>c.name==="Default Sales Channel")||j.sales_channels[0]||{}).id')"
  local tmp="$STATE.tmp"
  cat >"$tmp" <<EOF
{"url":"$url","pid":$pid,"port":$port,"publishable_key":"$pk","secret_key":"$secret","sales_channel_id":"$sc","admin_email":"$ADMIN_EMAIL","admin_password":"$ADMIN_PASSWORD","log":"$log","project":"$PROJECT"}
EOF
  chmod 600 "$tmp"
  mv "$tmp" "$STATE"
  say "ready"
  cat "$STATE"
}

do_stop() {
  lock_state
  [ -f "$STATE" ] || { say "not running"; return 0; }
  local pid
  pid="$(json_get "$STATE" 'j.pid')" || true
  if [ -n "${pid:-}" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- -"$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- -"$pid" 2>/dev/null || true
    say "stopped pid $pid"
  fi
  rm -f "$STATE"
}

case "${1:-start}" in
  install) do_install ;;
  setup) do_setup ;;
  start) do_start ;;
  stop) do_stop ;;
  status) running_state ;;
  *) echo "usage: $0 install|setup|start|stop|status" >&2; exit 2 ;;
esac
