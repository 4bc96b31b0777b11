#!/usr/bin/env bash
# Start-up to the first 200 of GET /Product/prod-00001, as benches/compare/run.sh measures it
# (`startup`), without Harper: build the storefront (release), load N products and their cart
# items once (load.py), stop cleanly, then time RUNS fresh starts on that directory with
# --no-seed, polling every 5 ms. Prints each run, the median, and a breakdown of one more
# start (RUST_LOG=debug start-up stages, with their elapsed milliseconds).
#
#   benches/startup/run.sh                 # RUNS=5 N=1000 PORT=9961
#   RUNS=11 KEEP=/tmp/sf benches/startup/run.sh   # keep (and reuse) the loaded directory
#   STOREFRONT=path/to/storefront NO_BUILD=1 benches/startup/run.sh   # another binary
#   WRITES=20000 benches/startup/run.sh    # also PUT that many cart items before stopping
#                                          # (a longer journal, as after the compare benches)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
RUNS="${RUNS:-5}" N="${N:-1000}" PORT="${PORT:-9961}" WRITES="${WRITES:-0}"
ADMIN="${ADMIN:-admin:pw}"
LOAD="${LOAD:-/work/shared/harper-peer/load.py}"
BIN="${STOREFRONT:-${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/storefront}"
log() { printf '%s\n' "$*" >&2; }

if [[ "${NO_BUILD:-}" != 1 ]]; then
  (cd "$ROOT" && cargo build --release --example storefront -q)
fi

DATA="${KEEP:-}"
if [[ -z "$DATA" ]]; then
  DATA="$(mktemp -d /tmp/startup-bench.XXXXXX)"
  trap 'rm -rf "$DATA"' EXIT
fi
mkdir -p "$DATA"; DATA="$DATA/data"

wait_up() { # url -> 0 once it answers (any status)
  for _ in $(seq 2000); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.01
  done
  return 1
}

if [[ ! -e "$DATA/version" ]]; then
  log "loading $N products into $DATA"
  HARPER_ADMIN="$ADMIN" "$BIN" --addr "127.0.0.1:$PORT" --data "$DATA" --no-seed >"$DATA.load.log" 2>&1 &
  pid=$!
  wait_up "http://127.0.0.1:$PORT/health" || { cat "$DATA.load.log" >&2; exit 1; }
  # Some cart items are refused (409, the stock rule), as in benches/compare/run.sh.
  python3 "$LOAD" "http://127.0.0.1:$PORT" "$N" --auth "$ADMIN" --quiet 2>/dev/null \
    || log "load.py: some cart items refused (the stock rule); continuing"
  if (( WRITES > 0 )); then
    log "posting $WRITES more cart items"
    python3 - "$PORT" "$ADMIN" "$WRITES" "$N" <<'PY'
import base64, http.client, json, sys
port, auth, n, products = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
h = {"authorization": "Basic " + base64.b64encode(auth.encode()).decode(),
     "content-type": "application/json"}
c = http.client.HTTPConnection("127.0.0.1", port)
for j in range(n):
    i = (j % products) + 1
    if i % 4 == 0: i += 1  # in stock
    body = json.dumps({"productId": f"prod-{i:05d}", "sessionId": f"s-{j % 50}", "quantity": 1})
    c.request("PUT", f"/CartItem/w-{j:07d}", body, h); c.getresponse().read()
PY
  fi
  kill -TERM "$pid"; wait "$pid" || true
fi
log "data: $(du -sh "$DATA" | cut -f1), journals: $(ls "$DATA"/*.jnl 2>/dev/null | wc -l) ($(cat "$DATA"/*.jnl 2>/dev/null | wc -c) bytes)"

# One timed start (as benches/compare/run.sh's `startup`): milliseconds to the first 200.
startup() {
  python3 - "$PORT" "$@" <<'PY'
import http.client, os, subprocess, sys, time
port, cmd = int(sys.argv[1]), sys.argv[2:]
err = open(os.environ.get("STARTUP_LOG", os.devnull), "w")
t0 = time.monotonic()
p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
while True:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        c.request("GET", "/Product/prod-00001")
        if c.getresponse().status == 200:
            break
    except OSError:
        pass
    if time.monotonic() - t0 > 120:
        print("nan"); sys.exit(0)
    time.sleep(0.005)
print(f"{(time.monotonic() - t0) * 1000:.0f}")
p.terminate(); p.wait()
PY
}

ms=()
for _ in $(seq "$RUNS"); do
  ms+=("$(HARPER_ADMIN="$ADMIN" startup "$BIN" --addr "127.0.0.1:$PORT" --data "$DATA" --no-seed)")
done
median="$(printf '%s\n' "${ms[@]}" | sort -n | sed -n "$(( (RUNS + 1) / 2 ))p")"
echo "start-up to the first 200 (ms): ${ms[*]}"
echo "median: $median ms ($RUNS runs, load average $(cut -d' ' -f1-3 /proc/loadavg))"

# Breakdown: one more start with debug logs (the runtime logs each start-up stage).
BLOG="$(mktemp /tmp/startup-log.XXXXXX)"
total="$(STARTUP_LOG="$BLOG" RUST_LOG="${BREAKDOWN_LOG:-warn,harper=debug,storefront=debug}" \
  HARPER_ADMIN="$ADMIN" startup "$BIN" --addr "127.0.0.1:$PORT" --data "$DATA" --no-seed)"
echo "breakdown (one start, $total ms to the first 200; stages as logged):"
grep -E 'start-up|startup' "$BLOG" | sed 's/\x1b\[[0-9;]*m//g' | sed 's/^/  /' || true
rm -f "$BLOG"
