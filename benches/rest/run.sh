#!/usr/bin/env bash
# REST throughput side by side: the real Harper (../shared/harper-peer) and our storefront,
# same data (load.py, 1000 products), same wrk commands, run in alternation.
#
# Usage: benches/rest/run.sh            (env: WRK_DURATION=10s WRK_CONNS=32 N_PRODUCTS=1000
#                                         HARPER=0 to skip the real Harper)
# Prints one table: req/s, p50 and p99 for each server, and our/Harper ratios.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PEER_SRC="${PEER_SRC:-$ROOT/../shared/harper-peer}"
D="${WRK_DURATION:-10s}"; C="${WRK_CONNS:-32}"; N="${N_PRODUCTS:-1000}"
OURS_PORT="${OURS_PORT:-9936}"; HARPER_PORT="${HARPER_PORT:-9926}"
WORK="$(mktemp -d /tmp/harper-rest-bench.XXXXXX)"
PEER="${PEER_DIR:-/tmp/harper-peer-bench}"

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }

cleanup() {
  [[ -n "${OURS_PID:-}" ]] && kill "$OURS_PID" 2>/dev/null && wait "$OURS_PID" 2>/dev/null || true
  [[ -f "$PEER/stop.sh" && "${HARPER:-1}" != 0 ]] && (cd "$PEER" && ./stop.sh >/dev/null 2>&1) || true
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "# building the storefront (release)" >&2
(cd "$ROOT" && cargo build --release --example storefront >&2)
"${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/storefront" --addr "127.0.0.1:$OURS_PORT" --data "$WORK/ours" --no-seed >"$WORK/ours.log" 2>&1 &
OURS_PID=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$OURS_PORT/Product" && break; sleep 0.1; done
# The storefront refuses load.py's cart items for out-of-stock products (409, its stock
# rule); the products, which the benchmark reads, all load.
python3 "$PEER_SRC/load.py" "http://127.0.0.1:$OURS_PORT" "$N" --quiet >&2 \
  || echo "# load.py: some rows were refused (above); continuing" >&2

if [[ "${HARPER:-1}" != 0 ]]; then
  echo "# starting the real Harper (first run installs it with npm)" >&2
  # A persistent copy: shared/ is read-only, and npm installs Harper only once.
  [[ -d "$PEER" ]] || cp -r "$PEER_SRC" "$PEER"
  (cd "$PEER" && HARPER_HTTP_PORT="$HARPER_PORT" ./start.sh >&2)
  python3 "$PEER/load.py" "http://127.0.0.1:$HARPER_PORT" "$N" --quiet >&2
fi

# name | our path | Harper's path (Harper needs directive forms) | wrk script
CASES=(
  "GET by id|/Product/prod-00001|/Product/prod-00001|"
  "categoryId query|/Product/?categoryId=electronics&inStock=true&limit=20|/Product/?categoryId=electronics&inStock=true&limit(20)|"
  "sorted price query|/Product/?price=lt=100&inStock=true&sort=name|/Product/?price=lt=100&inStock=true&sort(+name)|"
  "POST /CartItem/|/CartItem/|/CartItem/|$ROOT/benches/rest/post-cartitem.lua"
)

run_wrk() { # url script -> "rps p50 p99"
  local args=(-t1 -c"$C" -d"$D" --latency)
  [[ -n "$2" ]] && args+=(-s "$2")
  wrk "${args[@]}" "$1" >/dev/null 2>&1 || true # warm-up run shares the command
  wrk "${args[@]}" "$1" | awk '
    /Requests\/sec/ {rps=$2}
    /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
    /Non-2xx/ {bad=$NF}
    END {printf "%s %s %s %s\n", rps, p50, p99, (bad==""?0:bad)}'
}

printf '# %s, nproc=%s, wrk -t1 -c%s -d%s, %s products\n' "$(date -u +%FT%TZ)" "$(nproc)" "$C" "$D" "$N"
printf '| endpoint | ours req/s | ours p50 | ours p99 | Harper req/s | Harper p50 | Harper p99 | ratio |\n|---|---|---|---|---|---|---|---|\n'
for c in "${CASES[@]}"; do
  IFS='|' read -r name ours harper script <<<"$c"
  read -r ors op50 op99 obad < <(run_wrk "http://127.0.0.1:$OURS_PORT$ours" "$script")
  if [[ "${HARPER:-1}" != 0 ]]; then
    read -r hrs hp50 hp99 hbad < <(run_wrk "http://127.0.0.1:$HARPER_PORT$harper" "$script")
    ratio=$(python3 -c "print(f'{float(\"$ors\")/float(\"$hrs\"):.1f}x')" 2>/dev/null || echo "?")
  else
    hrs=-; hp50=-; hp99=-; hbad=0; ratio=-
  fi
  printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$ors" "$op50" "$op99" "$hrs" "$hp50" "$hp99" "$ratio"
  [[ "$obad" != 0 ]] && echo "  (ours: $obad non-2xx responses)"
  [[ "$hbad" != 0 ]] && echo "  (Harper: $hbad non-2xx responses)"
done
echo "RSS ours: $(ps -o rss= -p "$OURS_PID" | tr -d ' ') KiB"
[[ -f "$PEER/run/harper.pid" ]] && echo "RSS Harper: $(ps -o rss= -p "$(cat "$PEER/run/harper.pid")" | tr -d ' ') KiB" || true
