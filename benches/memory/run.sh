#!/usr/bin/env bash
# Resident memory of the storefront, idle after loading N products and after wrk load (as
# benches/compare/run.sh measures `rss_idle_ours` / `rss_after_ours`, without Harper), with
# the req/s of each wrk run, so a memory change can be weighed against throughput. Also prints
# the storage's own memory gauges from /metrics (block cache, memtables).
#
#   benches/memory/run.sh                       # N=1000 D=5s C=32 PORT=9963, one round
#   ROUNDS=3 benches/memory/run.sh              # repeat the load runs (RSS after each round)
#   STOREFRONT=path/to/storefront NO_BUILD=1 benches/memory/run.sh   # another binary
#   MALLOC_ARENA_MAX=2 benches/memory/run.sh    # environment reaches the server
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
N="${N:-1000}" D="${D:-5s}" C="${C:-32}" PORT="${PORT:-9963}" ROUNDS="${ROUNDS:-1}"
ADMIN="${ADMIN:-admin:pw}"
AUTH="Authorization: Basic $(printf %s "$ADMIN" | base64 -w0)"
LOAD="${LOAD:-/work/shared/harper-peer/load.py}"
BIN="${STOREFRONT:-${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/storefront}"
URL="http://127.0.0.1:$PORT"
log() { printf '# %s\n' "$*" >&2; }

if [[ "${NO_BUILD:-}" != 1 ]]; then
  (cd "$ROOT" && cargo build --release --example storefront -q)
fi
DATA="$(mktemp -d /tmp/memory-bench.XXXXXX)"
cleanup() { [[ -n "${pid:-}" ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$DATA"; }
trap cleanup EXIT

HARPER_ADMIN="$ADMIN" "$BIN" --addr "127.0.0.1:$PORT" --data "$DATA/data" --no-seed >"$DATA/log" 2>&1 &
pid=$!
for _ in $(seq 500); do curl -s -o /dev/null "$URL/health" && break; sleep 0.02; done
python3 "$LOAD" "$URL" "$N" --auth "$ADMIN" --quiet 2>/dev/null || log "load.py: some cart items refused (the stock rule)"

rss() { echo "$(( $(ps -o rss= -p "$pid") / 1024 ))"; }
settle() { # until the server uses under 10% of a core (a compaction or flush may still run)
  local t0 t1
  for _ in $(seq 60); do
    t0=$(awk '{print $14 + $15}' "/proc/$pid/stat"); sleep 0.5
    t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    (( t1 - t0 < 5 )) && return 0
  done
}
gauges() { curl -s "$URL/metrics" -H "$AUTH" | grep -E '^harper_storage_(cache|memtable|journal)' | tr '\n' ' ' || true; }
sleep 1; settle
echo "idle after loading $N products: RSS $(rss) MiB  $(gauges)"

wrk_rps() { # label url [wrk args..]
  local label=$1 url=$2; shift 2
  local out; out="$(wrk -t1 -c"$C" -d"$D" "$@" "$url" 2>&1)"
  echo "  $label: $(awk '/Requests\/sec/ {print $2}' <<<"$out") req/s $(grep -E 'Non-2xx' <<<"$out" | tr -s ' ' || true)"
}
for r in $(seq "$ROUNDS"); do
  wrk_rps "GET /Product/prod-00001" "$URL/Product/prod-00001"
  wrk_rps "GET category listing" "$URL/Product/?categoryId=electronics&inStock=true&limit=20"
  wrk_rps "POST /CartItem/" "$URL/CartItem/" -s "$ROOT/benches/rest/post-cartitem.lua" -H "$AUTH"
  sleep 1; settle
  echo "after load round $r: RSS $(rss) MiB  $(gauges)"
done
sleep 3; settle
echo "after load, 3 s idle: RSS $(rss) MiB  $(gauges)"
