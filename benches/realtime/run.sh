#!/usr/bin/env bash
# WebSocket fan-out side by side (issue 4): our storefront, a bare warp WebSocket server
# (benches/fanout.rs `bare`: same bytes, same sockets, no storage) and the real Harper
# (../shared/harper-peer), same data (load.py), one server at a time, on this machine.
#
#   a: A_SUBS=10000 subscribers on /Product/<id> over N_PRODUCTS=1000 records, A_RATE=1000 PUT/s
#   b: B_SUBS=1000 subscribers on /Product/, B_RATE=100 PUT/s
#   w: the same writes with no subscriber (CPU per write, subtracted for the "net" column)
#
# Usage: benches/realtime/run.sh   (env: FANOUT_SECONDS=20 A_SUBS A_RATE B_SUBS B_RATE
#                                   N_PRODUCTS HARPER=0 to skip the real Harper, BARE=0,
#                                   DRIVER_THREADS=2, PAUSE=3 seconds between runs)
# Prints the driver's reports, then one table and the ratios against the targets
# (p99 < 20 ms; CPU per delivery within 3x of the bare server's).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PEER_SRC="${PEER_SRC:-$ROOT/../shared/harper-peer}"
PEER="${PEER_DIR:-/tmp/harper-peer-bench}"
SECS="${FANOUT_SECONDS:-20}"; N="${N_PRODUCTS:-1000}"; PAUSE="${PAUSE:-3}"
A_SUBS="${A_SUBS:-10000}"; A_RATE="${A_RATE:-1000}"; B_SUBS="${B_SUBS:-1000}"; B_RATE="${B_RATE:-100}"
OURS_PORT="${OURS_PORT:-9937}"; BARE_PORT="${BARE_PORT:-9947}"; HARPER_PORT="${HARPER_PORT:-9926}"
WORK="$(mktemp -d /tmp/harper-fanout-bench.XXXXXX)"
RESULTS="$WORK/results"; : >"$RESULTS"

# 10,000 client sockets in the driver, as many in the server under test.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

STARTED_HARPER=0
cleanup() {
  for p in "${OURS_PID:-}" "${BARE_PID:-}"; do
    [[ -n "$p" ]] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true
  done
  [[ "$STARTED_HARPER" == 1 ]] && (cd "$PEER" && ./stop.sh >/dev/null 2>&1) || true
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_port() { for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.1; done; return 1; }

echo "# building the storefront and the fan-out driver (release)" >&2
(cd "$ROOT" && cargo build --release --example storefront >&2)
FANOUT="$(cd "$ROOT" && cargo build --release --bench fanout --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "fanout" and m.get("executable"):
        print(m["executable"])')"
[[ -x "$FANOUT" ]] || { echo "could not build benches/fanout.rs" >&2; exit 1; }

declare -A URL PID INITIAL_B
"${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/storefront" --addr "127.0.0.1:$OURS_PORT" --data "$WORK/ours" --no-seed >"$WORK/ours.log" 2>&1 &
OURS_PID=$!
wait_port "$OURS_PORT"
# The storefront refuses load.py's cart items for out-of-stock products (409, its stock
# rule); the products, which the benchmark reads, all load.
python3 "$PEER_SRC/load.py" "http://127.0.0.1:$OURS_PORT" "$N" --quiet >&2 \
  || echo "# load.py: some rows were refused (above); continuing" >&2
SERVERS=(ours); URL[ours]="http://127.0.0.1:$OURS_PORT"; PID[ours]=$OURS_PID; INITIAL_B[ours]=$N

if [[ "${BARE:-1}" != 0 ]]; then
  "$FANOUT" bare --addr "127.0.0.1:$BARE_PORT" >"$WORK/bare.log" 2>&1 &
  BARE_PID=$!
  wait_port "$BARE_PORT"
  SERVERS+=(bare); URL[bare]="http://127.0.0.1:$BARE_PORT"; PID[bare]=$BARE_PID; INITIAL_B[bare]=0
fi

if [[ "${HARPER:-1}" != 0 ]]; then
  echo "# starting the real Harper (first run installs it with npm)" >&2
  # A persistent copy: shared/ is read-only, and npm installs Harper only once.
  [[ -d "$PEER" ]] || cp -r "$PEER_SRC" "$PEER"
  pidfile="$PEER/run/harper.pid"
  if ! { [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }; then STARTED_HARPER=1; fi
  if (cd "$PEER" && HARPER_HTTP_PORT="$HARPER_PORT" ./start.sh >&2) \
    && python3 "$PEER/load.py" "http://127.0.0.1:$HARPER_PORT" "$N" --quiet >&2; then
    SERVERS+=(harper); URL[harper]="http://127.0.0.1:$HARPER_PORT"; PID[harper]="$(cat "$pidfile")"; INITIAL_B[harper]=$N
  else
    echo "# the real Harper did not start; going on without it" >&2
  fi
fi

run() { # server scenario(a|b|wa|wb)
  local s=$1 sc=$2 args=()
  case $sc in
    a) args=(--scenario a --subs "$A_SUBS" --rate "$A_RATE") ;;
    b) args=(--scenario b --subs "$B_SUBS" --rate "$B_RATE" --initial "${INITIAL_B[$s]}") ;;
    wa) args=(--scenario a --subs 0 --rate "$A_RATE") ;;
    wb) args=(--scenario b --subs 0 --rate "$B_RATE") ;;
  esac
  [[ $s == bare && $sc == a ]] && args+=(--initial 0)
  echo "# $s, scenario $sc" >&2
  "$FANOUT" drive --url "${URL[$s]}" --pid "${PID[$s]}" --label "$s" --seconds "$SECS" \
    --records "$N" --threads "${DRIVER_THREADS:-2}" "${args[@]}" >"$WORK/out" || true
  grep -v '^RESULT' "$WORK/out" >&2 || true
  grep '^RESULT' "$WORK/out" | sed "s/scenario=[ab]/scenario=$sc/" >>"$RESULTS" \
    || echo "RESULT label=$s scenario=$sc failed=1" >>"$RESULTS"
  sleep "$PAUSE" # the server closes the driver's sockets
}

for sc in a b wa wb; do
  for s in "${SERVERS[@]}"; do run "$s" "$sc"; done
done

printf '\n# %s, nproc=%s, load average %s, %s s per run, driver and server share the machine\n' \
  "$(date -u +%FT%TZ)" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" "$SECS"
printf '# a: %s subscribers on /Product/<id> over %s records, %s PUT/s; b: %s subscribers on /Product/, %s PUT/s\n' \
  "$A_SUBS" "$N" "$A_RATE" "$B_SUBS" "$B_RATE"
python3 - "$RESULTS" <<'EOF'
import math, sys
runs = {}
for line in open(sys.argv[1]):
    kv = dict(p.split("=", 1) for p in line.split()[1:])
    runs[(kv["label"], kv["scenario"])] = kv
f = lambda r, k: float(r.get(k, "nan"))
servers = [s for s in ("ours", "bare", "harper") if (s, "a") in runs]

def net(s, sc):
    """CPU per delivery minus the same writes' CPU without subscribers."""
    r, w = runs.get((s, sc)), runs.get((s, "w" + sc))
    if not r or not w or f(r, "received") == 0:
        return math.nan
    return (f(r, "cpu_s") - f(r, "writes") * f(w, "us_per_write") / 1e6) * 1e6 / f(r, "received")

print("| scen. | server | writes/s | deliveries/s | received/expected | p50 ms | p99 ms | max ms | CPU µs/delivery | net of writes | CPU µs/write (no subs) | RSS MiB | CPU s: driver / machine |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for sc in ("a", "b"):
    for s in servers:
        r = runs.get((s, sc), {})
        if "failed" in r or not r:
            print(f"| {sc} | {s} | failed | | | | | | | | | | |"); continue
        w = runs.get((s, "w" + sc), {})
        print(f"| {sc} | {s} | {f(r,'writes')/f(r,'write_s'):,.0f} | {f(r,'received')/f(r,'window_s'):,.0f} | {r['received']}/{r['expected']} | "
              f"{f(r,'p50_ms'):.2f} | {f(r,'p99_ms'):.2f} | {f(r,'max_ms'):.1f} | {f(r,'us_per_msg'):.2f} | "
              f"{net(s, sc):.2f} | {f(w,'us_per_write'):.0f} | {int(r['rss_kib'])//1024} | "
              f"{f(r,'driver_cpu_s'):.1f} / {f(r,'machine_cpu_s'):.1f} |")
print()
for sc in ("a", "b"):
    o = runs.get(("ours", sc), {})
    if not o or "failed" in o:
        continue
    p99 = f(o, "p99_ms")
    line = [f"{sc}: ours p99 {p99:.2f} ms ({'met' if p99 < 20 else 'MISSED'}: < 20 ms)"]
    b = runs.get(("bare", sc))
    if b and "failed" not in b:
        ratio, nratio = f(o, "us_per_msg") / f(b, "us_per_msg"), net("ours", sc) / net("bare", sc)
        line.append(f"CPU/delivery ours/bare {ratio:.2f}x, net of writes {nratio:.2f}x "
                    f"({'met' if ratio <= 3 else 'MISSED'}: <= 3x)")
    h = runs.get(("harper", sc))
    if h and "failed" not in h:
        line.append(f"Harper/ours: p99 {f(h, 'p99_ms') / p99:.1f}x, CPU/delivery {f(h,'us_per_msg') / f(o,'us_per_msg'):.1f}x")
    print("; ".join(line))
EOF
