#!/usr/bin/env bash
# Durable POST /CartItem/ throughput of several builds, alternated on fresh data: each label
# names a `ceiling` bench executable (copy `target/release/deps/ceiling-*` aside before
# rebuilding). MODE=sync-app (default) is our App with Durability::Sync; MODE=durable is
# the one-fdatasync-per-write ceiling. Prints req/s, p99, fsyncs and writes per round.
#
# Usage: benches/durable/ab.sh before=/tmp/ceiling-old after=/tmp/ceiling-new
#        env: ROUNDS=3 D=5s MODE=sync-app PORT=9977
set -u
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WORK="$(mktemp -d /tmp/harper-durable.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
ADMIN="admin:compare-secret"; AUTH="Authorization: Basic $(printf %s "$ADMIN" | base64 -w0)"
PORT=${PORT:-9977}; ROUNDS=${ROUNDS:-3}; D=${D:-5s}; MODE=${MODE:-sync-app}
for r in $(seq $ROUNDS); do
 for pair in "$@"; do
  label=${pair%%=*}; exe=${pair#*=}
  rm -rf "$WORK/data-$label"
  HARPER_ADMIN="$ADMIN" "$exe" $MODE --addr 127.0.0.1:$PORT --data "$WORK/data-$label" --products 1000 >"$WORK/$label.log" 2>&1 &
  pid=$!
  for _ in $(seq 200); do curl -s -o /dev/null http://127.0.0.1:$PORT/ && break; sleep 0.1; done
  sleep 0.5
  wrk -t1 -c32 -d2s -s "$ROOT/benches/rest/post-cartitem.lua" -H "$AUTH" http://127.0.0.1:$PORT/CartItem/ >/dev/null 2>&1
  f0=$(curl -s -H "$AUTH" http://127.0.0.1:$PORT/metrics | awk '/^harper_storage_fsyncs_total/{print $2}')
  out=$(wrk -t1 -c32 -d$D --latency -s "$ROOT/benches/rest/post-cartitem.lua" -H "$AUTH" http://127.0.0.1:$PORT/CartItem/)
  f1=$(curl -s -H "$AUTH" http://127.0.0.1:$PORT/metrics | awk '/^harper_storage_fsyncs_total/{print $2}')
  rps=$(awk '/Requests\/sec/{print $2}' <<<"$out"); p99=$(awk '/ 99%/{print $2}' <<<"$out"); non=$(awk '/Non-2xx/{print $NF}' <<<"$out")
  reqs=$(awk '/requests in/{print $1}' <<<"$out")
  echo "round $r $label: $rps req/s p99 $p99 fsyncs $((${f1:-0}-${f0:-0})) writes $reqs non-2xx ${non:-0}"
  kill $pid; wait $pid 2>/dev/null
 done
done
