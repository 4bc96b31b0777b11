#!/usr/bin/env bash
# Instructions per request, counted by callgrind: a figure that does not move with the load
# of a shared machine (wall-clock req/s does). Starts the release storefront under
# valgrind, loads N_PRODUCTS products with ../shared/harper-peer/load.py, then for each
# request: WARMUP requests, counters zeroed, REQUESTS requests on one keep-alive
# connection, counters dumped. Prints instructions per request, and keeps each dump in
# OUT (default /tmp/harper-callgrind) for `callgrind_annotate --inclusive=yes OUT/NAME.out`.
#
# Usage: benches/callgrind/run.sh            env: N_PRODUCTS=1000 REQUESTS=300 WARMUP=50
#        FLUSH=1 also measures each query with records in disk tables (after a restart).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
N="${N_PRODUCTS:-1000}"; REQ="${REQUESTS:-300}"; WARM="${WARMUP:-50}"
OUT="${OUT:-/tmp/harper-callgrind}"; PORT="${PORT:-9966}"
ADMIN="admin:callgrind"
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
rm -rf "$OUT"; mkdir -p "$OUT"
# Symbols and line tables for callgrind_annotate; a target dir of its own keeps the
# ordinary release build untouched.
export CARGO_TARGET_DIR="${CALLGRIND_TARGET_DIR:-$ROOT/target/callgrind}"
(cd "$ROOT" && CARGO_PROFILE_RELEASE_DEBUG=line-tables-only cargo build -q --release --example storefront)
BIN="$CARGO_TARGET_DIR/release/examples/storefront"
DATA="$OUT/data"; PID=
stop() { [[ -n "$PID" ]] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; PID=; }
trap stop EXIT
start() { # under callgrind, counting from the start, dumps written to OUT
  HARPER_ADMIN="$ADMIN" valgrind --tool=callgrind --dump-instr=no --callgrind-out-file="$OUT/run.%p" \
    "$BIN" --addr "127.0.0.1:$PORT" --data "$DATA" --no-seed >>"$OUT/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 600); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/health" && return 0; sleep 0.2; done
  echo "the storefront did not start under valgrind; see $OUT/server.log" >&2; exit 1
}
measure() { # name path-and-query [post]: GETs, or (post) POST /CartItem/ bodies as wrk's
  send "$2" "$WARM" "${3:-}" "warm-$1"
  callgrind_control -z "$PID" >/dev/null 2>&1
  send "$2" "$REQ" "${3:-}" "counted-$1"
  callgrind_control -d "$1" "$PID" >/dev/null 2>&1
  sleep 0.5
  local dump; dump="$(ls -t "$OUT"/run.*.* 2>/dev/null | head -1)"
  mv "$dump" "$OUT/$1.out"
  local total; total="$(grep -m1 '^summary:\|^totals:' "$OUT/$1.out" | awk '{print $2}')"
  printf '| %s | `%s` | %s |\n' "$1" "$2" "$(( total / REQ ))"
}
send() { # path count post phase: one keep-alive connection; every answer must be a 2xx
  python3 - "$PORT" "$1" "$2" "$3" "$4" "$ADMIN" >/dev/null <<'PY'
import base64, http.client, sys
port, path, n, post, phase, admin = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
c = http.client.HTTPConnection("127.0.0.1", port)
auth = {"Authorization": "Basic " + base64.b64encode(admin.encode()).decode(),
        "Content-Type": "application/json"}
for i in range(n):
    if post:
        # A fresh insert for a session of its own (the stock check is per session), as
        # benches/rest/post-cartitem.lua sends them: in-stock products only (i % 4 != 0).
        p = i % 1000 + 1
        p = p - 1 if p % 4 == 0 else p
        body = ('{"productId":"prod-%05d","sessionId":"cg-%s-%d","quantity":1,'
                '"addedAt":"2026-01-01T00:00:00Z"}' % (p, phase, i))
        c.request("POST", path, body, auth)
    else:
        c.request("GET", path)
    r = c.getresponse(); r.read()
    assert 200 <= r.status < 300, (path, r.status)
PY
}
queries() { # suffix
  measure "get-by-id$1" "/Product/prod-00500"
  measure "category$1" "/Product/?categoryId=electronics&inStock=true&limit=20"
  measure "sorted-price$1" "/Product/?price=lt=100&inStock=true&sort=name"
  measure "listing$1" "/Product/?categoryId=electronics&inStock=true&sort(+name)&limit(24)&select(id,name,price,imageUrl)"
  measure "post-cart-item$1" "/CartItem/" post
}
start
python3 "$ROOT/../shared/harper-peer/load.py" "http://127.0.0.1:$PORT" "$N" --auth "$ADMIN" --quiet 2>/dev/null || true
echo "| request | path | instructions per request |"
echo "|---|---|---|"
queries ""
if [[ "${FLUSH:-0}" == 1 ]]; then
  # A clean shutdown flushes the memtables: after the restart every read is a table read.
  stop; start; queries "-tables"
fi
