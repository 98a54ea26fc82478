#!/usr/bin/env bash
# ingot at size: the read operations on a small database and on one with 1,000,000 users and
# 10,000,000 error logs, side by side, in run.sh's setup (the server pinned to one core, wrk to
# the other, 16 keep-alive connections, 8 s runs, median of three). Both servers are loaded
# first, then each run goes to one of them with the other stopped (SIGSTOP), alternating small
# big / big small, so that the two sizes share the machine's moods alike.
#
#   bash tests/bench/scale.sh          # about 15 minutes on 2 cores, ~6 GB of disk under /tmp
#
# Users are loaded through the real API (POST /users/batch, 1000 a call). Error logs are seeded
# with the server stopped, by tests/bench/seed.rs, with the code a failing run writes them with
# (store::error_logs::new_log and insert), dated over the last 30 days and written oldest first
# as a server writes them, 1,000 to a workflow id and 10 to a user at both sizes (20 workflows
# small, 10,000 big), so logs-wf and logs-user ask the same of each size. Then, for each size:
#   get          GET /users/{random id}
#   list         GET /users?limit=50                       (the first page)
#   list-deep    GET /users?limit=50&cursor={random id}    (a page anywhere, by the cursor)
#   token        GET /users/{random id}/token
#   logs         GET /logs?limit=50                        (newest first, with totalItems)
#   logs-user    GET /logs?limit=50&associatedUserId={random user}
#   logs-wf      GET /logs?limit=50&workflowId={random workflow}
#   logs-deep    GET /logs?limit=50&cursor={a nextCursor}  (a page anywhere in the newest 500,000,
#                the cursors taken beforehand from /logs?limit=1&skip=K, K at random)
#   logs-skip    GET /logs?limit=50&skip=5000              (paging by skip reads what it skips)
# and the peak RSS of each server (VmHWM) over the whole run.
# Knobs: SCALE_USERS (1000000), SCALE_LOGS (10000000), SMALL_USERS (2000), SMALL_LOGS (20000),
# BENCH_SECONDS (8), BENCH_REPS (3), BENCH_SERVER_CPU (1), BENCH_WRK_CPU (0).
set -euo pipefail

BIG_USERS=${SCALE_USERS:-1000000}
BIG_LOGS=${SCALE_LOGS:-10000000}
SMALL_USERS=${SMALL_USERS:-2000}
SMALL_LOGS=${SMALL_LOGS:-20000}
SECS=${BENCH_SECONDS:-8}
REPS=${BENCH_REPS:-3}
SERVER_CPU=${BENCH_SERVER_CPU:-1}
WRK_CPU=${BENCH_WRK_CPU:-0}
OPS="get list list-deep token logs logs-user logs-wf logs-deep logs-skip"

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=$(mktemp -d /tmp/ingot-scale.XXXXXX)
log() { echo "[scale $(date +%H:%M:%S)] $*" >&2; }

(cd "$ROOT" && cargo build --release --bin ingot --example seed 2>&1 | tail -n 1) >&2
INGOT="$ROOT/target/release/ingot"
SEED="$ROOT/target/release/examples/seed"
command -v wrk >/dev/null || { log "installing wrk"; apt-get install -y -qq wrk >/dev/null; }
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
declare -A PIDS=() URLS=() KEYS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -CONT "$p" 2>/dev/null && kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
    if [ -z "${BENCH_KEEP:-}" ]; then rm -rf "$WORK"; else echo "kept $WORK" >&2; fi
}
trap cleanup EXIT

# start SIZE DIR: serve DIR/ingot.db pinned, on a free port; waits until it listens (and, on a
# new database, until the request-signing key is made, so that no run shares the core with
# making it). Sets PIDS[SIZE] and URLS[SIZE], and URL for the loaders below.
start() {
    local port
    port=$(free_port)
    INGOT_RATE_PER_USER=0 taskset -c "$SERVER_CPU" "$INGOT" serve --listen "127.0.0.1:$port" \
        --db "$2/ingot.db" >/dev/null 2>>"$2/ingot.log" &
    PIDS[$1]=$!
    URLS[$1]="http://127.0.0.1:$port"
    URL=${URLS[$1]}
    for _ in $(seq 600); do grep -q "listening on http://127.0.0.1:$port" "$2/ingot.log" 2>/dev/null && break; sleep 0.1; done
    if grep -q INGOT_DEV_KEY "$2/ingot.log"; then
        for _ in $(seq 600); do grep -q "request-signing key" "$2/ingot.log" && break; sleep 0.1; done
    fi
}
stop() { kill "${PIDS[$1]}"; wait "${PIDS[$1]}" 2>/dev/null || true; PIDS[$1]=; }

# users DIR N: N users through POST /users/batch (4 clients, 1000 a call); their ids to DIR/ids.
users() {
    python3 - "$URL" "$KEY" "$2" "$1/ids" <<'EOF'
import http.client, json, sys, threading, time, urllib.parse
url, key, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
host = urllib.parse.urlparse(url)
batches = list(range(0, n, 1000))
ids, lock = [], threading.Lock()
def work(mine):
    c = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
    for start in mine:
        body = json.dumps({"users": [{"username": f"scale-{i}@example.com", "fullName": f"Scale User {i}"}
                                     for i in range(start, min(start + 1000, n))]})
        c.request("POST", "/users/batch", body, {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        r = c.getresponse()
        data = json.loads(r.read())
        assert r.status == 200 and not data["invalidUsers"], data
        with lock:
            ids.extend(u["userId"] for u in data["createdUsers"])
t0 = time.time()
threads = [threading.Thread(target=work, args=(batches[i::4],)) for i in range(4)]
for t in threads: t.start()
for t in threads: t.join()
secs = time.time() - t0
open(out, "w").write("\n".join(ids) + "\n")
print(f"loaded {len(ids)} users through /users/batch in {secs:.1f} s ({len(ids)/secs:,.0f}/s)", file=sys.stderr)
EOF
}

# cursors DIR N: N nextCursors of /logs pages at random depths (the newest 500,000 at most), to
# DIR/cursors.
cursors() {
    python3 - "$URL" "$KEY" "$2" "$1/cursors" <<'EOF'
import http.client, json, random, sys, urllib.parse
url, key, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
host = urllib.parse.urlparse(url)
c = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
def get(path):
    c.request("GET", path, headers={"Authorization": f"Bearer {key}"})
    r = c.getresponse()
    data = json.loads(r.read())
    assert r.status == 200, data
    return data
total = get("/logs?limit=1")["pagination"]["totalItems"]
deepest = min(total - 100, 500_000)
found = [get(f"/logs?limit=1&skip={random.randrange(deepest)}")["nextCursor"] for _ in range(n)]
open(out, "w").write("\n".join(found) + "\n")
EOF
}

# run SIZE OP REP: one measured run on SIZE's server, the other stopped; its RESULT line to
# $WORK/all.
run() {
    local size=$1 op=$2 rep=$3 dir="$WORK/$1" path ids other
    ids="$dir/sample"
    case "$op" in
    get) path='/users/{id}' ;;
    list) path='/users?limit=50' ;;
    list-deep) path='/users?limit=50&cursor={id}' ;;
    token) path='/users/{id}/token' ;;
    logs) path='/logs?limit=50' ;;
    logs-user) path='/logs?limit=50&associatedUserId={id}' ;;
    logs-wf) path='/logs?limit=50&workflowId={id}'; ids="$dir/ingot.workflows" ;;
    logs-deep) path='/logs?limit=50&cursor={id}'; ids="$dir/cursors" ;;
    logs-skip) path='/logs?limit=50&skip=5000' ;;
    esac
    if [ "$size" = small ]; then other=${PIDS[big]}; else other=${PIDS[small]}; fi
    kill -STOP "$other"
    OP=path URL_PATH=$path AUTH="Bearer ${KEYS[$size]}" IDS=$ids LABEL="$size/$op/$rep" \
        taskset -c "$WRK_CPU" wrk -t 2 -c 16 -d "${SECS}s" --timeout 30s \
        -s "$HERE/wrk/ops.lua" "${URLS[$size]}" | grep '^RESULT' | tee -a "$WORK/all" >&2
    kill -CONT "$other"
}

for size in small big; do
    dir="$WORK/$size"
    mkdir -p "$dir"
    if [ $size = small ]; then nu=$SMALL_USERS; nl=$SMALL_LOGS; else nu=$BIG_USERS; nl=$BIG_LOGS; fi
    log "$size: $nu users, $nl error logs"
    start $size "$dir"
    KEYS[$size]=$(grep -o 'INGOT_DEV_KEY=[^ ]*' "$dir/ingot.log" | head -n 1 | cut -d= -f2)
    KEY=${KEYS[$size]}
    users "$dir" "$nu"
    stop $size
    log "$size: seeding $nl error logs with the server stopped"
    # 1,000 logs a workflow at both sizes, so that logs-wf asks the same of each.
    "$SEED" "$dir/ingot.db" "$nl" $(( nl / 1000 > 0 ? nl / 1000 : 1 )) >>"$WORK/seeded"
    log "$size: $(tail -n 1 "$WORK/seeded"); database $(du -sh "$dir" | cut -f1)"
    start $size "$dir"
    cursors "$dir" 200
    shuf -n 100000 "$dir/ids" >"$dir/sample"
done
for rep in $(seq "$REPS"); do
    if [ $((rep % 2)) = 1 ]; then order="small big"; else order="big small"; fi
    for op in $OPS; do
        for size in $order; do run $size $op $rep; done
    done
    log "repetition $rep of $REPS done"
done
for size in small big; do
    grep VmHWM "/proc/${PIDS[$size]}/status" | awk -v s="$size" '{print "RSS size=" s " peak_kib=" $2}' >>"$WORK/all"
done

python3 - "$WORK/all" "$BIG_USERS" "$BIG_LOGS" "$SMALL_USERS" "$SMALL_LOGS" "$SECS" "$REPS" <<'EOF'
import statistics, sys
path, bu, bl, su, sl, secs, reps = sys.argv[1:]
rows, rss = {}, {}
for line in open(path):
    kv = dict(p.split("=", 1) for p in line.split()[1:])
    if line.startswith("RSS"):
        rss[kv["size"]] = int(kv["peak_kib"]) / 1024
    elif line.startswith("RESULT"):
        size, op, _ = kv["label"].split("/")
        rows.setdefault((size, op), []).append(kv)
med = lambda s, op, k: statistics.median(float(r[k]) for r in rows[(s, op)])
print()
print(f"ingot at size, one core, wrk on another, 16 connections, {secs} s runs, median of {reps}:")
print(f"small = {int(su):,} users and {int(sl):,} error logs; big = {int(bu):,} users and {int(bl):,} error logs")
hdr = f"{'op':<10} {'small req/s':>12} {'big req/s':>10} {'big/small':>9} | {'small p99':>10} {'big p99':>9} | errors"
print(hdr)
print("-" * len(hdr))
for op in ["get", "list", "list-deep", "token", "logs", "logs-user", "logs-wf", "logs-deep", "logs-skip"]:
    if ("small", op) not in rows or ("big", op) not in rows:
        continue
    s, b = med("small", op, "rps"), med("big", op, "rps")
    e = sum(int(r["errors"]) for r in rows[("small", op)] + rows[("big", op)])
    print(f"{op:<10} {s:>12,.0f} {b:>10,.0f} {b/s:>8.2f}x | {med('small',op,'p99_ms'):>7.2f} ms "
          f"{med('big',op,'p99_ms'):>6.2f} ms | {e}")
print(f"peak RSS of the server: small {rss.get('small', 0):.0f} MiB, big {rss.get('big', 0):.0f} MiB")
EOF
