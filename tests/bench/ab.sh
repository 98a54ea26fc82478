#!/usr/bin/env bash
# Two ingot binaries side by side, in run.sh's setup: each server pinned to one core
# (BENCH_SERVER_CPU, 1), wrk pinned to the other (BENCH_WRK_CPU, 0), 16 keep-alive connections,
# 8 s runs, the five user operations (create, get, list, token, delete) and a fixed response
# (GET /healthz), alternating A B / B A, medians of the repetitions, and the ratio B/A. For "is
# this change faster?": build the old commit in a worktree, then
#
#   bash tests/bench/ab.sh /path/to/old/ingot target/release/ingot
#
# Each server gets a fresh temp database on a free 127.0.0.1 port and BENCH_SEED users; traffic
# is loopback only. Only one server runs at a time (the other is stopped with SIGSTOP), so the
# two never share the core. Knobs: BENCH_CONNECTIONS (16), BENCH_SECONDS (8), BENCH_REPS (3),
# BENCH_SEED (2000), BENCH_OPS ("create get list token delete fixed"), BENCH_RUNS (a file to
# keep every run's RESULT line in).
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 INGOT_A INGOT_B" >&2; exit 2; }
A=$(realpath "$1")
B=$(realpath "$2")
CONN=${BENCH_CONNECTIONS:-16}
SECS=${BENCH_SECONDS:-8}
REPS=${BENCH_REPS:-3}
SEED=${BENCH_SEED:-2000}
OPS=${BENCH_OPS:-create get list token delete fixed}
SERVER_CPU=${BENCH_SERVER_CPU:-1}
WRK_CPU=${BENCH_WRK_CPU:-0}

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=$(mktemp -d /tmp/ingot-ab.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -CONT "$p" 2>/dev/null && kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
log() { echo "[ab $(date +%H:%M:%S)] $*" >&2; }

(cd "$ROOT" && cargo build --release --example loadgen 2>&1 | tail -n 1) >&2
LG="$ROOT/target/release/examples/loadgen"
command -v wrk >/dev/null || { log "installing wrk"; apt-get install -y -qq wrk >/dev/null; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# start NAME BIN: a server with a fresh database; sets URL_NAME, KEY_NAME and PID_NAME.
start() {
    local name=$1 bin=$2 port key
    port=$(free_port)
    mkdir -p "$WORK/$name"
    INGOT_RATE_PER_USER=0 taskset -c "$SERVER_CPU" "$bin" serve --listen "127.0.0.1:$port" \
        --db "$WORK/$name/ingot.db" >/dev/null 2>"$WORK/$name.log" &
    PIDS+=($!)
    printf -v "PID_$name" '%s' "$!"
    for _ in $(seq 100); do grep -q 'INGOT_DEV_KEY=' "$WORK/$name.log" 2>/dev/null && break; sleep 0.1; done
    # A new database makes its request-signing key in the background (seconds of a core):
    # wait for it, so that no measured run shares the core with it.
    for _ in $(seq 600); do grep -q 'request-signing key' "$WORK/$name.log" && break; sleep 0.1; done
    key=$(grep -o 'INGOT_DEV_KEY=[^ ]*' "$WORK/$name.log" | head -n 1 | cut -d= -f2)
    [ -n "$key" ] || { echo "$name printed no key" >&2; cat "$WORK/$name.log" >&2; exit 1; }
    printf -v "URL_$name" '%s' "http://127.0.0.1:$port"
    printf -v "KEY_$name" '%s' "$key"
    "$LG" --concurrency "$CONN" --url "http://127.0.0.1:$port" --header "Authorization: Bearer $key" \
        --method POST --path /users --body '{"username":"seed-{n}","fullName":"Seed User {n}"}' \
        --requests "$SEED" --save-ids "$WORK/seed-$name" --id-field userId --label "seed/$name" >/dev/null
}
start A "$A"
start B "$B"
log "seeded $SEED users into each; A=$A B=$B"

# run SERVER OP REP: one measured run with only SERVER running, its RESULT line kept.
run() {
    local s=$1 op=$2 rep=$3 url key other
    url=URL_$s key=KEY_$s
    if [ "$s" = A ]; then other=$PID_B; else other=$PID_A; fi
    kill -STOP "$other"
    OP=$op SERVER=ingot AUTH="Bearer ${!key}" IDS="$WORK/seed-$s" REP=$rep PAGE=50 \
        LABEL="$s/$op/$rep" COUNTS="$WORK/made-$s-$rep" taskset -c "$WRK_CPU" \
        wrk -t 2 -c "$CONN" -d "$([ "$op" = delete ] && echo $((SECS / 2)) || echo "$SECS")s" --timeout 10s \
        -s "$HERE/wrk/ops.lua" "${!url}" | grep '^RESULT' >>"$WORK/all"
    kill -CONT "$other"
}

for rep in $(seq "$REPS"); do
    if [ $((rep % 2)) -eq 1 ]; then order="A B"; else order="B A"; fi
    for op in $OPS; do
        for s in $order; do run "$s" "$op" "$rep"; done
    done
    log "repetition $rep of $REPS done"
done

# BENCH_RUNS=FILE keeps every run's RESULT line (for the spread behind a median).
[ -z "${BENCH_RUNS:-}" ] || cp "$WORK/all" "$BENCH_RUNS"
python3 - "$WORK/all" "$A" "$B" <<'EOF'
import sys, statistics
runs = {}
for line in open(sys.argv[1]):
    f = dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
    s, op, _ = f["label"].split("/")
    runs.setdefault((s, op), []).append((float(f["rps"]), float(f["p99_ms"]), int(f["errors"])))
print(f"A = {sys.argv[2]}\nB = {sys.argv[3]}")
print(f"{'op':8} {'A req/s':>10} {'B req/s':>10} {'B/A':>6} {'A p99 ms':>9} {'B p99 ms':>9} {'errors A/B':>10}")
for op in ["create", "get", "list", "token", "delete", "fixed"]:
    a, b = runs.get(("A", op), []), runs.get(("B", op), [])
    if not a or not b:
        continue
    ar, br = statistics.median(r for r, _, _ in a), statistics.median(r for r, _, _ in b)
    ap, bp = statistics.median(p for _, p, _ in a), statistics.median(p for _, p, _ in b)
    ea, eb = sum(e for _, _, e in a), sum(e for _, _, e in b)
    print(f"{op:8} {ar:10.0f} {br:10.0f} {br / ar:6.2f} {ap:9.2f} {bp:9.2f} {ea:>5}/{eb:<5}")
EOF
