#!/usr/bin/env bash
# Soak (reliability): SOAK_SECONDS (default 600) of mixed load against the release storefront,
# with subscribers held open the whole time, sampling the server's resident memory.
#
#   load:        wrk, SOAK_CONNECTIONS (default 16) threads of one connection each, mix.lua:
#                per 20 requests 8 listing queries, 6 product GETs, 4 POST /CartItem/, 1
#                checkout (POST /Cart/<session>/checkout), 1 restock (PATCH stockQuantity)
#   subscribers: subscribers.py, SOAK_SSE (200) Server-Sent Events + SOAK_WS (100) WebSockets
#                on /Product/<id> and /Product/?categoryId=..; ended ones reconnect
#   memory:      VmRSS of the server every SOAK_SAMPLE (10) seconds into $SOAK_OUT/rss.csv
#                (elapsed_s,rss_kb,subscriptions,commits from /metrics)
#
# The storefront creates its admin from HARPER_ADMIN=admin:soak-secret; every request sends
# that as Basic credentials. Prints a summary: responses by kind and status, errors (non-2xx
# other than the expected 409 stock refusals and 404 checkouts of carts whose adds were all
# refused), latency, subscriber figures, and RSS at start, middle, end and its maximum.
#
# Usage: benches/soak/run.sh   (env: SOAK_SECONDS SOAK_CONNECTIONS SOAK_SSE SOAK_WS
#                               SOAK_SAMPLE SOAK_PORT=9961 SOAK_OUT=<temp dir, kept>)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
HERE="$ROOT/benches/soak"
SECS="${SOAK_SECONDS:-600}"; CONN="${SOAK_CONNECTIONS:-16}"
N_SSE="${SOAK_SSE:-200}"; N_WS="${SOAK_WS:-100}"; SAMPLE="${SOAK_SAMPLE:-10}"
PORT="${SOAK_PORT:-9961}"
OUT="${SOAK_OUT:-$(mktemp -d /tmp/harper-soak.XXXXXX)}"; mkdir -p "$OUT"
ADMIN="admin:soak-secret"
AUTH="Basic $(printf '%s' "$ADMIN" | base64)"
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; }
ulimit -n 8192 2>/dev/null || true

cleanup() {
  for p in "${SUBS_PID:-}" "${SERVER_PID:-}"; do
    [[ -n "$p" ]] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true
  done
}
trap cleanup EXIT

echo "# building the storefront (release)" >&2
(cd "$ROOT" && cargo build --release --example storefront >&2)
EXE="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/storefront"

rm -rf "$OUT/data"
HARPER_ADMIN="$ADMIN" RUST_LOG=warn "$EXE" --addr "127.0.0.1:$PORT" --data "$OUT/data" \
  >"$OUT/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:$PORT/health" && break; sleep 0.1; done
curl -sf -o /dev/null "http://127.0.0.1:$PORT/health" || { echo "the storefront did not start" >&2; cat "$OUT/server.log" >&2; exit 1; }

metric() { # name -> value from /metrics (empty when absent)
  curl -s -m 5 "http://127.0.0.1:$PORT/metrics" | awk -v n="$1" '$1 == n { print $2; exit }'
}
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$SERVER_PID/status" 2>/dev/null || echo 0; }

echo "elapsed_s,rss_kb,subscriptions,commits" >"$OUT/rss.csv"
echo "0,$(rss_kb),$(metric harper_subscriptions),$(metric harper_commits_total)" >>"$OUT/rss.csv"

echo "# soak: ${SECS}s, $CONN connections, $N_SSE SSE + $N_WS WebSocket subscribers; output in $OUT" >&2
python3 "$HERE/subscribers.py" "127.0.0.1:$PORT" "$((SECS + 5))" --sse "$N_SSE" --ws "$N_WS" \
  --auth "$AUTH" >"$OUT/subscribers.json" 2>"$OUT/subscribers.err" &
SUBS_PID=$!
sleep 2
SOAK_AUTH="$AUTH" wrk -t "$CONN" -c "$CONN" -d "${SECS}s" --timeout 10s -s "$HERE/mix.lua" \
  "http://127.0.0.1:$PORT" >"$OUT/wrk.txt" 2>&1 &
WRK_PID=$!
started=$(date +%s)
while kill -0 "$WRK_PID" 2>/dev/null; do
  sleep "$SAMPLE"
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "the storefront died" >&2; break; }
  echo "$(( $(date +%s) - started )),$(rss_kb),$(metric harper_subscriptions),$(metric harper_commits_total)" >>"$OUT/rss.csv"
done
wait "$WRK_PID" || true
wait "$SUBS_PID" || true
SUBS_PID=""
curl -s "http://127.0.0.1:$PORT/metrics" >"$OUT/metrics.txt" || true
alive=yes; kill -0 "$SERVER_PID" 2>/dev/null || alive=no

python3 - "$OUT" "$alive" <<'PY'
import csv, json, sys
out, alive = sys.argv[1], sys.argv[2]
wrk = open(f"{out}/wrk.txt").read()
statuses, errors_line, latency = {}, "", ""
for line in wrk.splitlines():
    if line.startswith("STATUS "):
        _, kind, code, n = line.split()
        statuses[(kind, int(code))] = int(n)
    elif line.startswith("ERRORS "):
        errors_line = line
    elif line.startswith("LATENCY "):
        latency = line
req_line = next((l.strip() for l in wrk.splitlines() if "requests in" in l), "")
rps_line = next((l.strip() for l in wrk.splitlines() if l.startswith("Requests/sec")), "")
total = sum(statuses.values())
expected = lambda kind, code: code == 409 or (kind == "checkout" and code == 404)
errors = {k: n for k, n in statuses.items() if not 200 <= k[1] < 300 and not expected(*k)}
print("== soak summary")
print(f"server alive at the end: {alive}")
print(f"wrk: {req_line}; {rps_line}")
print(f"wrk: {latency}")
print(f"wrk: {errors_line}")
print("responses by kind and status:")
for (kind, code), n in sorted(statuses.items()):
    print(f"  {kind:9} {code}  {n}")
print(f"errors (non-2xx other than 409 stock refusals and 404 empty-cart checkouts): "
      f"{sum(errors.values())} of {total}" + (f" {errors}" if errors else ""))
try:
    subs = json.load(open(f"{out}/subscribers.json"))
    print(f"subscribers: {subs}")
except Exception as e:
    print(f"subscribers: no report ({e})")
rows = list(csv.DictReader(open(f"{out}/rss.csv")))
mb = lambda r: int(r["rss_kb"] or 0) / 1024
if rows:
    mid = rows[len(rows) // 2]
    print(f"RSS MB: start {mb(rows[0]):.1f} (t=0), middle {mb(mid):.1f} (t={mid['elapsed_s']}s), "
          f"end {mb(rows[-1]):.1f} (t={rows[-1]['elapsed_s']}s), max {max(map(mb, rows)):.1f}; "
          f"{len(rows)} samples in {out}/rss.csv")
    print(f"subscriptions open (server's count) at the samples: "
          f"{[r['subscriptions'] for r in rows]}")
PY
