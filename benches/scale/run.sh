#!/usr/bin/env bash
# Scale (issue 6): the same requests against two storefronts holding load.py's products,
# N_SMALL (1,000) and N_LARGE (1,000,000), run in alternation in one session, with the
# ratio small/large of req/s (1.0 = no slower at scale; the target is within 1.5x).
#
# Products are load.py's own records (its `product_record`, imported as a module), written
# to a JSON array and loaded with the storefront's bulk import rather than 1M PUTs.
#
#   benches/scale/run.sh                      # N_SMALL=1000 N_LARGE=1000000 WRK_DURATION=5s
#   N_LARGE=100000 benches/scale/run.sh
#   KEEP=1 benches/scale/run.sh               # keep the data directories in $WORK for a rerun
#   WORK=/tmp/harper-scale benches/scale/run.sh   # reuse data directories from a kept run
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
LOAD="${LOAD:-$ROOT/../shared/harper-peer/load.py}"
N_SMALL="${N_SMALL:-1000}" N_LARGE="${N_LARGE:-1000000}"
D="${WRK_DURATION:-5s}" C="${WRK_CONNS:-32}"
SMALL_PORT="${SMALL_PORT:-9971}" LARGE_PORT="${LARGE_PORT:-9972}"
WORK="${WORK:-/tmp/harper-scale}"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/storefront"
log() { printf '# %s\n' "$*" >&2; }

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
(cd "$ROOT" && cargo build --release --example storefront -q)
mkdir -p "$WORK"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  [[ "${KEEP:-}" == 1 ]] || rm -rf "$WORK"
}
trap cleanup EXIT

# data N -> $WORK/dataN holding load.py's categories and N products (made once per WORK).
data() {
  local n=$1 dir="$WORK/data$1"
  [[ -f "$dir/.loaded" ]] && return 0
  rm -rf "$dir"
  python3 - "$LOAD" "$n" "$WORK/categories.json" "$WORK/products$n.json" <<'PY'
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("load", sys.argv[1])
load = importlib.util.module_from_spec(spec); spec.loader.exec_module(load)
n = int(sys.argv[2])
with open(sys.argv[3], "w") as f:
    json.dump(load.category_records(), f)
with open(sys.argv[4], "w") as f:
    f.write("[\n")
    for i in range(1, n + 1):
        if i > 1:
            f.write(",\n")
        f.write(json.dumps(load.product_record(i), separators=(",", ":")))
    f.write("\n]\n")
PY
  local t0=$SECONDS
  "$BIN" --data "$dir" import "$WORK/categories.json" --table Category >/dev/null
  "$BIN" --data "$dir" import "$WORK/products$n.json" --table Product >"$WORK/import$n.log" 2>&1 \
    || { cat "$WORK/import$n.log" >&2; exit 1; }
  log "imported $n products in $((SECONDS - t0)) s ($(du -sh "$dir" | cut -f1) on disk)"
  rm -f "$WORK/products$n.json"
  touch "$dir/.loaded"
}
data "$N_SMALL"
data "$N_LARGE"

serve() { # n port -> pid in $served
  "$BIN" --addr "127.0.0.1:$2" --data "$WORK/data$1" --no-seed >"$WORK/serve$1.log" 2>&1 &
  served=$!; pids+=("$served")
  for _ in $(seq 600); do
    # Alive, so the answer is its own (not an older server's on the same port).
    kill -0 "$served" 2>/dev/null || break
    curl -s -o /dev/null "http://127.0.0.1:$2/health" && return 0; sleep 0.05
  done
  log "the storefront on $WORK/data$1 did not start"; cat "$WORK/serve$1.log" >&2; exit 1
}
serve "$N_SMALL" "$SMALL_PORT"
serve "$N_LARGE" "$LARGE_PORT"

# rows url -> the number of records the query answers (a JSON array's length)
rows() { curl -s "$1" | python3 -c 'import json,sys; v=json.load(sys.stdin); print(len(v) if isinstance(v, list) else 1)'; }
rps() { # url n [wrk script] -> req/s and p99 of the second of two identical wrk runs (the first warms up)
  local args=(-t1 -c"$C" -d"$D"); [[ -n "${3:-}" ]] && args+=(-s "$3")
  SCALE_N=$2 wrk "${args[@]}" "$1" >/dev/null 2>&1 || true
  SCALE_N=$2 wrk "${args[@]}" --latency "$1" 2>&1 | awk '/Requests\/sec/ {r=$2} /^ +99%/ {p=$2} END {print r, p}'
}
LISTING='categoryId=electronics&inStock=true&sort(+name)&limit(24)&select(id,name,price,imageUrl)'
# label | path | wrk script (random-id.lua: a uniformly random product of the server's N)
CASES=(
  "GET by id (one product)|/Product/prod-00001|"
  "GET by id (random products)|/Product/prod-00001|$ROOT/benches/scale/random-id.lua"
  "categoryId query, limit 20|/Product/?categoryId=electronics&inStock=true&limit=20|"
  "price range, limit 20|/Product/?price=lt=100&inStock=true&limit=20|"
  "listing page (sort by name, limit 24)|/Product/?$LISTING|"
)
echo "| request | rows $N_SMALL / $N_LARGE | $N_SMALL products: req/s, p99 | $N_LARGE products: req/s, p99 | ratio small/large |"
echo "|---|---|---|---|---|"
for c in "${CASES[@]}"; do
  IFS='|' read -r label path script <<<"$c"
  rs=$(rows "http://127.0.0.1:$SMALL_PORT$path"); rl=$(rows "http://127.0.0.1:$LARGE_PORT$path")
  read -r s sp < <(rps "http://127.0.0.1:$SMALL_PORT$path" "$N_SMALL" "$script")
  read -r l lp < <(rps "http://127.0.0.1:$LARGE_PORT$path" "$N_LARGE" "$script")
  ratio=$(python3 -c "print(f'{float(\"$s\") / float(\"$l\"):.2f}x')" 2>/dev/null || echo "-")
  echo "| $label | $rs / $rl | $s, $sp | $l, $lp | $ratio |"
done
log "resident memory: $N_SMALL products $(( $(ps -o rss= -p "${pids[0]}") / 1024 )) MiB, $N_LARGE products $(( $(ps -o rss= -p "${pids[1]}") / 1024 )) MiB"
