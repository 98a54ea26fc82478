#!/usr/bin/env bash
# Two ingot binaries side by side: the five user operations (create, get, list, token, delete)
# against each, alternating A B A B, median of the repetitions, and the ratio B/A. For "is this
# change slower?": build the old commit in a worktree, then
#
#   bash tests/bench/ab.sh /path/to/old/ingot target/release/ingot
#
# The load generator is tests/bench/loadgen.rs (built here with --release). Each server gets a
# fresh temp database on a free 127.0.0.1 port and BENCH_SEED users; traffic is loopback only.
# Knobs: BENCH_CONCURRENCY (32), BENCH_SECONDS (5), BENCH_REPS (3), BENCH_SEED (2000),
# BENCH_WRITES (2000), BENCH_TASKSET and BENCH_LG_TASKSET (e.g. "taskset -c 1" for the servers
# and "taskset -c 0" for the load generator: steadier figures on a shared machine).
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 INGOT_A INGOT_B" >&2; exit 2; }
A=$(realpath "$1")
B=$(realpath "$2")
CONC=${BENCH_CONCURRENCY:-32}
SECS=${BENCH_SECONDS:-5}
REPS=${BENCH_REPS:-3}
SEED=${BENCH_SEED:-2000}
WRITES=${BENCH_WRITES:-2000}
PIN=${BENCH_TASKSET:-}
LG_PIN=${BENCH_LG_TASKSET:-}

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/ingot-ab.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
log() { echo "[ab $(date +%H:%M:%S)] $*" >&2; }

(cd "$ROOT" && cargo build --release --example loadgen 2>&1 | tail -n 1) >&2
LG="$ROOT/target/release/examples/loadgen"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# start NAME BIN: a server with a fresh database; sets URL_NAME and AUTH_NAME.
start() {
    local name=$1 bin=$2 port
    port=$(free_port)
    mkdir -p "$WORK/$name"
    # Rate limits off: this measures the edge and the store, not the limiter's refusals.
    INGOT_RATE_PER_KEY=0 $PIN "$bin" serve --listen "127.0.0.1:$port" --db "$WORK/$name/ingot.db" \
        >/dev/null 2>"$WORK/$name.log" &
    PIDS+=($!)
    for _ in $(seq 100); do grep -q 'INGOT_DEV_KEY=' "$WORK/$name.log" 2>/dev/null && break; sleep 0.1; done
    local key
    key=$(grep -o 'INGOT_DEV_KEY=[^ ]*' "$WORK/$name.log" | head -n 1 | cut -d= -f2)
    [ -n "$key" ] || { echo "$name printed no key" >&2; cat "$WORK/$name.log" >&2; exit 1; }
    printf -v "URL_$name" '%s' "http://127.0.0.1:$port"
    printf -v "AUTH_$name" '%s' "Authorization: Bearer $key"
}
start A "$A"
start B "$B"
mkdir -p "$WORK/res"

lg() { $LG_PIN "$LG" --concurrency "$CONC" "$@"; }
for s in A B; do
    url=URL_$s auth=AUTH_$s
    lg --url "${!url}" --header "${!auth}" --method POST --path /users \
        --body '{"username":"seed-{n}","fullName":"Seed User {n}"}' --requests "$SEED" \
        --save-ids "$WORK/res/seed-$s" --id-field userId --label "seed/$s" >/dev/null
done
log "seeded $SEED users into each; A=$A B=$B"

# run SERVER OP REP: one measured run, its RESULT line appended to $WORK/res/all.
run() {
    local s=$1 op=$2 rep=$3 url auth out
    url=URL_$s auth=AUTH_$s
    url=${!url} auth=${!auth}
    case "$op" in
    create) out=$(lg --url "$url" --header "$auth" --method POST --path /users \
        --body "{\"username\":\"r$rep-{n}\",\"fullName\":\"Run $rep User {n}\"}" \
        --requests "$WRITES" --seconds 30 --save-ids "$WORK/res/del-$s-$rep" --id-field userId \
        --label "$s/$op/$rep") ;;
    get) out=$(lg --url "$url" --header "$auth" --path '/users/{id}' --ids "$WORK/res/seed-$s" \
        --seconds "$SECS" --label "$s/$op/$rep") ;;
    list) out=$(lg --url "$url" --header "$auth" --path '/users?limit=30' --seconds "$SECS" \
        --label "$s/$op/$rep") ;;
    token) out=$(lg --url "$url" --header "$auth" --path '/users/{id}/token' --ids "$WORK/res/seed-$s" \
        --seconds "$SECS" --label "$s/$op/$rep") ;;
    delete) out=$(lg --url "$url" --header "$auth" --method DELETE --path '/users/{id}' \
        --ids "$WORK/res/del-$s-$rep" --id-order once --seconds 30 --label "$s/$op/$rep") ;;
    esac
    echo "$out" >>"$WORK/res/all"
}

for rep in $(seq "$REPS"); do
    for op in create get list token delete; do
        run A "$op" "$rep"
        run B "$op" "$rep"
    done
    log "repetition $rep of $REPS done"
done

python3 - "$WORK/res/all" <<'EOF'
import sys, statistics, re
runs = {}
for line in open(sys.argv[1]):
    if not line.startswith("RESULT"):
        continue
    f = dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
    s, op, _ = f["label"].split("/")
    runs.setdefault((s, op), []).append((float(f["rps"]), float(f["p99_ms"])))
print(f"{'op':8} {'A req/s':>10} {'B req/s':>10} {'B/A':>6} {'A p99 ms':>9} {'B p99 ms':>9}")
for op in ["create", "get", "list", "token", "delete"]:
    a, b = runs.get(("A", op), []), runs.get(("B", op), [])
    if not a or not b:
        continue
    ar, br = statistics.median(r for r, _ in a), statistics.median(r for r, _ in b)
    ap, bp = statistics.median(p for _, p in a), statistics.median(p for _, p in b)
    print(f"{op:8} {ar:10.0f} {br:10.0f} {br / ar:6.2f} {ap:9.2f} {bp:9.2f}")
EOF
