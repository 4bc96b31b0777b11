#!/usr/bin/env bash
# GraphQL beside REST on the same server, in one run: the seeded storefront (release build),
# the same wrk command against each endpoint in alternation (GraphQL through
# GET /graphql?query=..., selecting every stored attribute, as the REST answer holds).
#
# Usage: benches/graphql/run.sh   (env: WRK_DURATION=10s WRK_CONNS=32 PORT=9946)
# Prints one table: req/s, p50 and p99 for each, and the GraphQL/REST ratio.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
D="${WRK_DURATION:-10s}"; C="${WRK_CONNS:-32}"; PORT="${PORT:-9946}"
WORK="$(mktemp -d /tmp/harper-graphql-bench.XXXXXX)"

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }

cleanup() {
  [[ -n "${PID:-}" ]] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "# building the storefront (release)" >&2
(cd "$ROOT" && cargo build --release --example storefront >&2)
"${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/storefront" --addr "127.0.0.1:$PORT" --data "$WORK/data" >"$WORK/log" 2>&1 &
PID=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/Product" && break; sleep 0.1; done

FIELDS="id name description price categoryId inStock stockQuantity imageUrl createdAt"
enc() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }
BY_ID="/graphql?query=$(enc "{ Product(id: \"prod-00001\") { $FIELDS } }")"
BY_CAT="/graphql?query=$(enc "{ Product(categoryId: \"electronics\", inStock: true, limit: 20) { $FIELDS } }")"
# The answers must hold data, not errors.
curl -sf "http://127.0.0.1:$PORT$BY_ID" | grep -q '"prod-00001"' || { echo "GraphQL by id failed" >&2; exit 1; }
curl -sf "http://127.0.0.1:$PORT$BY_CAT" | grep -q '"electronics"' || { echo "GraphQL query failed" >&2; exit 1; }

# name | REST path | GraphQL path
CASES=(
  "one product by id|/Product/prod-00001|$BY_ID"
  "categoryId=electronics&inStock=true, 20|/Product/?categoryId=electronics&inStock=true&limit=20|$BY_CAT"
)

run_wrk() { # url -> "rps p50 p99 non2xx"
  wrk -t1 -c"$C" -d"$D" --latency "$1" >/dev/null 2>&1 || true # warm-up
  wrk -t1 -c"$C" -d"$D" --latency "$1" | awk '
    /Requests\/sec/ {rps=$2}
    /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
    /Non-2xx/ {bad=$NF}
    END {printf "%s %s %s %s\n", rps, p50, p99, (bad==""?0:bad)}'
}

printf '# %s, nproc=%s, wrk -t1 -c%s -d%s\n' "$(date -u +%FT%TZ)" "$(nproc)" "$C" "$D"
printf '| query | REST req/s | REST p50 | REST p99 | GraphQL req/s | GraphQL p50 | GraphQL p99 | GraphQL/REST |\n|---|---|---|---|---|---|---|---|\n'
for c in "${CASES[@]}"; do
  IFS='|' read -r name rest gql <<<"$c"
  read -r rrs rp50 rp99 rbad < <(run_wrk "http://127.0.0.1:$PORT$rest")
  read -r grs gp50 gp99 gbad < <(run_wrk "http://127.0.0.1:$PORT$gql")
  ratio=$(python3 -c "print(f'{float(\"$grs\")/float(\"$rrs\"):.2f}')" 2>/dev/null || echo "?")
  printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$rrs" "$rp50" "$rp99" "$grs" "$gp50" "$gp99" "$ratio"
  if [[ "$rbad" != 0 ]]; then echo "  (REST: $rbad non-2xx responses)"; fi
  if [[ "$gbad" != 0 ]]; then echo "  (GraphQL: $gbad non-2xx responses)"; fi
done
