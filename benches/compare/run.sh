#!/usr/bin/env bash
# Our storefront against the real Harper 4.7.29 and against ceiling servers (issue 6).
# Same data (load.py, N_PRODUCTS products), same wrk load, run in alternation, on loopback.
# Prints one markdown table (ours, Harper, ratio) and a second one (ours against the ceilings).
# See benches/compare/README.md for what each row means.
#
# Usage: benches/compare/run.sh
#   env: WRK_DURATION=10s WRK_CONNS=32 N_PRODUCTS=1000 STARTUP_RUNS=5
#        ROUNDS=3 (each throughput row runs once per round, ours next to the other side;
#        the tables give the median round and the median of the per-round ratios)
#        FANOUT_SECONDS=5 FANOUT_SUBS=1000 FANOUT_RATE=200 (the fan-out row; FANOUT=0 skips it)
#        HARPER=0 skips the real Harper, CEILING=0 skips the ceilings,
#        PEER_DIR=/tmp/harper-peer-compare (persistent copy of ../shared/harper-peer; npm runs once;
#        its data is wiped and Harper reinstalled on every run so both sides hold the same records)
#        OURS_PORT=9976 HARPER_PORT=9986 (+ HARPER_OPS_PORT=9985 HARPER_MQTT_PORT=1983) CEIL_PORT=9996
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
HERE="$ROOT/benches/compare"
PEER_SRC="${PEER_SRC:-$ROOT/../shared/harper-peer}"
PEER="${PEER_DIR:-/tmp/harper-peer-compare}"
D="${WRK_DURATION:-10s}"; C="${WRK_CONNS:-32}"; N="${N_PRODUCTS:-1000}"
STARTUP_RUNS="${STARTUP_RUNS:-5}"; ROUNDS="${ROUNDS:-3}"
OURS_PORT="${OURS_PORT:-9976}"; HARPER_PORT="${HARPER_PORT:-9986}"; CEIL_PORT="${CEIL_PORT:-9996}"
export HARPER_HTTP_PORT="$HARPER_PORT" HARPER_OPS_PORT="${HARPER_OPS_PORT:-9985}" HARPER_MQTT_PORT="${HARPER_MQTT_PORT:-1983}"
# Our storefront creates its admin from HARPER_ADMIN (once security lands; ignored before).
ADMIN="admin:compare-secret"
AUTH="Authorization: Basic $(printf %s "$ADMIN" | base64 -w0)"
WORK="$(mktemp -d /tmp/harper-compare.XXXXXX)"
R="$WORK/results"; : >"$R"
OURS_URL="http://127.0.0.1:$OURS_PORT"; HARPER_URL="http://127.0.0.1:$HARPER_PORT"; CEIL_URL="http://127.0.0.1:$CEIL_PORT"
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }

STARTED_HARPER=0
cleanup() {
  for p in "${OURS_PID:-}" "${CEIL_PID:-}"; do
    [[ -n "$p" ]] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true
  done
  [[ "$STARTED_HARPER" == 1 ]] && (cd "$PEER" && ./stop.sh >/dev/null 2>&1) || true
  rm -rf "$WORK"
}
trap cleanup EXIT
log() { echo "# $*" >&2; }
put() { echo "$1=$2" >>"$R"; } # a result for the tables

wait_200() { # url [tries of 0.1 s] [any: any HTTP answer will do]
  local code
  for _ in $(seq "${2:-300}"); do
    code="$(curl -s -o /dev/null -w '%{http_code}' "$1" || true)"
    [[ "$code" == 200 || ( -n "${3:-}" && "$code" != 000 ) ]] && return 0
    sleep 0.1
  done
  return 1
}
bench_exe() { # name -> path of the release bench binary
  (cd "$ROOT" && cargo build --release --bench "$1" --message-format=json) | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == sys.argv[1] and m.get("executable"):
        print(m["executable"])' "$1"
}

log "building the storefront, the ceiling servers and the fan-out driver (release)"
(cd "$ROOT" && cargo build --release --example storefront --bench ceiling --bench fanout >&2)
# A private copy: another build in the same target directory must not swap it mid-run.
cp "${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/storefront" "$WORK/storefront"
STOREFRONT="$WORK/storefront"
CEILING_EXE="$(bench_exe ceiling)"; FANOUT_EXE="$(bench_exe fanout)"
[[ -x "$CEILING_EXE" && -x "$FANOUT_EXE" ]] || { echo "could not build benches/ceiling.rs or benches/fanout.rs" >&2; exit 1; }

settle() { # pid: wait (up to 120 s) until the server is idle: a query wrk gave up on may still run
  local t0 t1
  for _ in $(seq 240); do
    t0=$(awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0); sleep 0.5
    t1=$(awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0)
    (( t1 - t0 < 5 )) && return 0 # under 10% of a core
  done
  log "server $1 still busy after 120 s"
}

start_ours() {
  HARPER_ADMIN="$ADMIN" "$STOREFRONT" --addr "127.0.0.1:$OURS_PORT" --data "$WORK/ours" --no-seed >>"$WORK/ours.log" 2>&1 &
  OURS_PID=$!
}
stop_ours() { kill "$OURS_PID" 2>/dev/null || true; wait "$OURS_PID" 2>/dev/null || true; OURS_PID=; }

log "starting our storefront and loading $N products"
start_ours
wait_200 "$OURS_URL/health" || { echo "our storefront did not start; log:" >&2; cat "$WORK/ours.log" >&2; exit 1; }
# The storefront refuses load.py's cart items for out-of-stock products (409, its stock rule,
# about a quarter of them); Harper stores them. Products and categories, which the benchmark
# reads, are identical.
python3 "$PEER_SRC/load.py" "$OURS_URL" "$N" --auth "$ADMIN" --quiet 2>"$WORK/load-ours.err" \
  || log "load.py (ours): $(head -1 "$WORK/load-ours.err") (the stock rule; continuing)"

HAVE_HARPER=0
if [[ "${HARPER:-1}" != 0 ]]; then
  log "starting the real Harper on $HARPER_URL (first run installs it with npm)"
  # A persistent copy: shared/ is read-only, and npm installs Harper only once.
  if [[ ! -d "$PEER" ]]; then
    cp -r "$PEER_SRC" "$PEER"
    # Reuse another bench's npm install when there is one (saves the download).
    [[ -d /tmp/harper-peer-bench/node_modules/harperdb ]] && cp -r /tmp/harper-peer-bench/node_modules "$PEER/" || true
  fi
  (cd "$PEER" && ./stop.sh >/dev/null 2>&1 || true)
  rm -rf "$PEER/data" # a fresh install: the same records as ours, nothing left from earlier runs
  STARTED_HARPER=1
  if (cd "$PEER" && ./start.sh >"$WORK/harper-start.out" 2>&1) \
    && python3 "$PEER/load.py" "$HARPER_URL" "$N" --quiet >&2; then
    HAVE_HARPER=1; HARPER_PID="$(cat "$PEER/run/harper.pid")"
  else
    log "the real Harper did not start; going on without it"; cat "$WORK/harper-start.out" >&2 || true
  fi
fi

rss() { ps -o rss= -p "$1" 2>/dev/null | tr -d ' ' || echo nan; }
sleep 3; settle "$OURS_PID"; if [[ $HAVE_HARPER == 1 ]]; then settle "$HARPER_PID"; fi
put rss_idle_ours "$(rss "$OURS_PID")"
if [[ $HAVE_HARPER == 1 ]]; then put rss_idle_harper "$(rss "$HARPER_PID")"; fi

run_wrk() { # key url script server-pid [wrk args..] -> results key_rps key_p50 key_p99 key_bad key_to
  local key=$1 url=$2 script=$3 pid=$4; shift 4
  local args=(-t1 -c"$C" -d"$D" --timeout "${WRK_TIMEOUT:-30s}" --latency "$@")
  [[ -n "$script" ]] && args+=(-s "$script")
  wrk "${args[@]}" "$url" >/dev/null 2>&1 || true # warm-up: the same command
  settle "$pid"
  wrk "${args[@]}" "$url" >"$WORK/wrk.out" 2>&1 || true
  awk -v k="$key" '
    /Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Non-2xx/ {bad=$NF}
    /Socket errors/ {to=$NF} / requests in / {n=$1}
    END {printf "%s_rps=%s\n%s_p50=%s\n%s_p99=%s\n%s_bad=%s\n%s_to=%s\n%s_n=%s\n", k, (rps==""?"nan":rps), k, p50, k, p99, k, (bad==""?0:bad), k, (to==""?0:to), k, (n==""?0:n)}' \
    "$WORK/wrk.out" >>"$R"
  log "$key: $(grep -E 'Requests/sec|Socket errors|Non-2xx' "$WORK/wrk.out" | tr -s ' ' | tr '\n' ';')"
  settle "$pid"
}

# key | our path | Harper's path | wrk script
LISTING='categoryId=electronics&inStock=true&sort(+name)&limit(24)&select(id,name,price,imageUrl)'
CASES=(
  "get|/Product/prod-00001|/Product/prod-00001|"
  "cat|/Product/?categoryId=electronics&inStock=true&limit=20|/Product/?categoryId=electronics&inStock=true&limit(20)|"
  "price|/Product/?price=lt=100&inStock=true&sort=name|/Product/?price=lt=100&inStock=true&sort(+name)|"
  "listing|/Product/?$LISTING|/Product/?$LISTING|"
  "post|/CartItem/|/CartItem/|$ROOT/benches/rest/post-cartitem.lua"
  "mix|/|/|$HERE/mix.lua"
)
export MIX_PRODUCTS="$N"
for round in $(seq "$ROUNDS"); do
  if (( round > 1 )); then
    # The last round's checkouts (the mix row) took stock: restock ours (load.py rewrites
    # every product), or the cart rows would meet more 409s round after round.
    python3 "$PEER_SRC/load.py" "$OURS_URL" "$N" --auth "$ADMIN" --quiet 2>/dev/null || true
    settle "$OURS_PID"
  fi
  for c in "${CASES[@]}"; do
    IFS='|' read -r key ours harper script <<<"$c"
    # Reads go out anonymous, as a shopper's do; rows that write carry the admin's credentials.
    creds=(); [[ -n "$script" ]] && creds=(-H "$AUTH")
    MIX_TARGET=ours run_wrk "${key}_ours_r$round" "$OURS_URL$ours" "$script" "$OURS_PID" "${creds[@]}"
    if [[ $HAVE_HARPER == 1 ]]; then MIX_TARGET=harper run_wrk "${key}_harper_r$round" "$HARPER_URL$harper" "$script" "$HARPER_PID"; fi
  done
done
sleep 3
put rss_after_ours "$(rss "$OURS_PID")"
if [[ $HAVE_HARPER == 1 ]]; then put rss_after_harper "$(rss "$HARPER_PID")"; fi

# WebSocket fan-out: the existing driver, a short scenario-a run (subscribers on /Product/<id>).
if [[ "${FANOUT:-1}" != 0 ]]; then
  fan() { # label url pid
    log "fan-out: $1"
    "$FANOUT_EXE" drive --url "$2" --pid "$3" --label "$1" --seconds "${FANOUT_SECONDS:-5}" \
      --records "$(( N < 1000 ? N : 1000 ))" --threads 2 --scenario a \
      --subs "${FANOUT_SUBS:-1000}" --rate "${FANOUT_RATE:-200}" >"$WORK/fan.out" 2>&1 || true
    local line; line="$(grep '^RESULT' "$WORK/fan.out" || true)"
    if [[ -z "$line" ]]; then tail -5 "$WORK/fan.out" >&2; return 0; fi
    put "fan_$1_writes" "$(grep -oE ' writes=[^ ]+' <<<"$line" | cut -d= -f2)"
    put "fan_$1_p99" "$(grep -oE 'p99_ms=[^ ]+' <<<"$line" | head -1 | cut -d= -f2)"
    put "fan_$1_recv" "$(grep -oE ' received=[^ ]+' <<<"$line" | cut -d= -f2)/$(grep -oE ' expected=[^ ]+' <<<"$line" | cut -d= -f2)"
    sleep 2 # the server closes the driver's sockets
  }
  # The driver's writes are PUTs: ours needs the admin (reqwest sends the URL's user:password).
  fan ours "http://$ADMIN@127.0.0.1:$OURS_PORT" "$OURS_PID"
  if [[ $HAVE_HARPER == 1 ]]; then fan harper "$HARPER_URL" "$HARPER_PID"; fi
fi

# Ceilings: one server at a time on CEIL_PORT, the same wrk commands as above.
if [[ "${CEILING:-1}" != 0 ]]; then
  ceil() { # mode key path script
    HARPER_ADMIN="$ADMIN" "$CEILING_EXE" "$1" --addr "127.0.0.1:$CEIL_PORT" --data "$WORK/ceil-$1" --products "$N" >"$WORK/ceil.log" 2>&1 &
    CEIL_PID=$!
    local any=; [[ "$1" == durable || "$1" == sync-app ]] && any=1
    if wait_200 "$CEIL_URL$3" 600 "$any"; then
      local creds=(); [[ -n "$4" ]] && creds=(-H "$AUTH")
      sleep 0.5; run_wrk "$2" "$CEIL_URL$3" "$4" "$CEIL_PID" "${creds[@]}"
    else
      log "ceiling $1 did not start"; cat "$WORK/ceil.log" >&2
    fi
    kill "$CEIL_PID" 2>/dev/null || true; wait "$CEIL_PID" 2>/dev/null || true; CEIL_PID=
  }
  log "ceiling servers"
  # Ours again beside each ceiling (the machine is shared: adjacent runs compare best).
  for round in $(seq "$ROUNDS"); do
    ceil bare "ceil_bare_r$round" /Product/prod-00001 ""
    run_wrk "get_ours_c_r$round" "$OURS_URL/Product/prod-00001" "" "$OURS_PID"
    ceil get "ceil_get_r$round" /Product/prod-00001 ""
    run_wrk "cat_ours_c_r$round" "$OURS_URL/Product/?categoryId=electronics&inStock=true&limit=20" "" "$OURS_PID"
    ceil query "ceil_cat_r$round" "/Product/?categoryId=electronics&inStock=true&limit=20" ""
    ceil durable "ceil_durable_r$round" /CartItem/ "$ROOT/benches/rest/post-cartitem.lua"
    # Our engine with every commit fdatasync'ed (the storefront binary has no durability option).
    ceil sync-app "ours_sync_post_r$round" /CartItem/ "$ROOT/benches/rest/post-cartitem.lua"
  done
fi


# Start-up to the first 200 of GET /Product/prod-00001: a fresh process on the loaded data.
startup() { # label command... -> one line of milliseconds per run
  python3 - "$@" <<'EOF'
import http.client, subprocess, sys, time
url_port, cmd = int(sys.argv[1]), sys.argv[2:]
t0 = time.monotonic()
p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
while True:
    try:
        c = http.client.HTTPConnection("127.0.0.1", url_port, timeout=1)
        c.request("GET", "/Product/prod-00001")
        if c.getresponse().status == 200:
            break
    except OSError:
        pass
    if time.monotonic() - t0 > 120:
        print("nan"); sys.exit(0)
    time.sleep(0.005)
print(f"{(time.monotonic() - t0) * 1000:.0f}")
if cmd[0].endswith("start.sh"):
    p.wait()  # start.sh returns once Harper is up; Harper itself runs detached
else:
    p.terminate(); p.wait()
EOF
}
log "start-up times ($STARTUP_RUNS runs each)"
stop_ours
ours_ms=(); harper_ms=()
for _ in $(seq "$STARTUP_RUNS"); do
  ours_ms+=("$(HARPER_ADMIN="$ADMIN" startup "$OURS_PORT" "$STOREFRONT" --addr "127.0.0.1:$OURS_PORT" --data "$WORK/ours" --no-seed)")
done
put start_ours "$(printf '%s\n' "${ours_ms[@]}" | sort -n | sed -n "$(( (STARTUP_RUNS + 1) / 2 ))p")"
put start_ours_all "$(IFS=,; echo "${ours_ms[*]}")"
if [[ $HAVE_HARPER == 1 ]]; then
  for _ in $(seq "$STARTUP_RUNS"); do
    (cd "$PEER" && ./stop.sh >/dev/null 2>&1)
    harper_ms+=("$(cd "$PEER" && startup "$HARPER_PORT" ./start.sh)")
  done
  put start_harper "$(printf '%s\n' "${harper_ms[@]}" | sort -n | sed -n "$(( (STARTUP_RUNS + 1) / 2 ))p")"
  put start_harper_all "$(IFS=,; echo "${harper_ms[*]}")"
  (cd "$PEER" && ./stop.sh >/dev/null 2>&1) || true
fi

printf '\n# %s, nproc=%s, load average %s, wrk -t1 -c%s -d%s (after a warm-up run), %s rounds, %s products; ours = storefront (release), Harper = harperdb 4.7.29 (%s threads)\n\n' \
  "$(date -u +%FT%TZ)" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" "$C" "$D" "$ROUNDS" "$N" "${HARPER_THREADS:-default}"
python3 - "$R" "$HAVE_HARPER" "$ROUNDS" <<'EOF'
import math, statistics, sys
r = dict(l.rstrip("\n").split("=", 1) for l in open(sys.argv[1]) if "=" in l)
have_harper = sys.argv[2] == "1"
rounds = int(sys.argv[3])
def num(k):
    try: return float(r[k])
    except (KeyError, ValueError): return math.nan
def rps(k):
    v = num(f"{k}_rps")
    if math.isnan(v): return "-"
    if v == 0: return "0 req/s: no answer completed within the run (try a longer WRK_DURATION)"
    bad, to = r.get(f"{k}_bad", "0"), r.get(f"{k}_to", "0")
    return (f"{v:,.0f} req/s (p50 {r.get(k + '_p50', '?')}, p99 {r.get(k + '_p99', '?')})"
            + (f", {bad} non-2xx" if bad != "0" else "") + (f", {to} timeouts" if to != "0" else ""))
def ratio(a, b):
    return "-" if math.isnan(a) or math.isnan(b) or b == 0 else f"{a / b:.2f}x"
def failing(k):
    """Why a throughput run does not count: more than 10% of its answers were errors."""
    n, bad = num(k + "_n"), num(k + "_bad")
    return f"n/a: {bad / n:.0%} non-2xx" if n > 0 and bad / n > 0.1 else None
def runs(k):
    """The per-round keys of a throughput row."""
    return [f"{k}_r{i}" for i in range(1, rounds + 1)]
def median_run(k):
    """The round with the median req/s (the lower middle one for an even count)."""
    done = sorted((v, rk) for rk in runs(k) if not math.isnan(v := num(rk + "_rps")))
    return done[(len(done) - 1) // 2][1] if done else runs(k)[0]
def show(k):
    return rps(median_run(k)) + (f", median of {rounds}" if rounds > 1 else "")
def ratios(a, b):
    """Ours/theirs per round (each pair ran next to each other); rounds with too many errors
    are left out. Returns (ratios, why none counted)."""
    out, why = [], None
    for ra, rb in zip(runs(a), runs(b)):
        bad = failing(ra) or failing(rb)
        x, y = num(ra + "_rps"), num(rb + "_rps")
        if bad or math.isnan(x) or math.isnan(y) or y == 0:
            why = why or bad
        else:
            out.append(x / y)
    return out, why
def wratio(a, b):
    """The median of the per-round ratios, then each round's."""
    rs, why = ratios(a, b)
    if not rs: return why or "-"
    each = f" ({', '.join(f'{x:.2f}' for x in rs)})" if len(rs) > 1 else ""
    return f"{statistics.median(rs):.2f}x{each}"

rows = [
    ("1. GET by id `/Product/prod-00001`", "get"),
    ("2. categoryId query (`limit=20`; Harper `limit(20)`)", "cat"),
    ("3. sorted price query (`sort=name`; Harper `sort(+name)`)", "price"),
    ("4. listing page: category + inStock + `sort(+name)&limit(24)&select(id,name,price,imageUrl)`", "listing"),
    ("5. POST /CartItem/ (ours: stock-checked, process-durable)", "post"),
    ("6. mix: 70% listing, 20% product page, 8% add to cart, 2% checkout (Harper: DELETE of the session's cart)", "mix"),
]
print("| measure | ours | Harper | ours/Harper |")
print("|---|---|---|---|")
for name, k in rows:
    print(f"| {name} | {show(k + '_ours')} | {show(k + '_harper')} | {wratio(k + '_ours', k + '_harper')} (higher: ours faster) |")
for label, k in (("idle after load", "rss_idle"), ("after the load runs", "rss_after")):
    o, h = num(k + "_ours"), num(k + "_harper")
    mib = lambda v: "-" if math.isnan(v) else f"{v / 1024:,.1f} MiB"
    print(f"| 7. RSS {label} | {mib(o)} | {mib(h)} | {ratio(o, h)} (lower: ours smaller) |")
o, h = num("start_ours"), num("start_harper")
print(f"| 8. start-up to the first 200, median (runs, ms) | {o:.0f} ms ({r.get('start_ours_all', '')}) | "
      + ("-" if math.isnan(h) else f"{h:.0f} ms ({r.get('start_harper_all', '')})") + f" | {ratio(o, h)} (lower: ours faster) |")
o, h = num("fan_ours_p99"), num("fan_harper_p99")
def fan(s, v):
    if f"fan_{s}_recv" not in r: return "-"
    if math.isnan(v): return f"failed: {r.get(f'fan_{s}_writes')} writes accepted, {r.get(f'fan_{s}_recv')} delivered"
    return f"{v:.2f} ms ({r.get(f'fan_{s}_recv')} delivered)"
fo, fh = fan("ours", o), fan("harper", h)
print(f"| 9. WebSocket fan-out delivery p99 | {fo} | {fh} | {ratio(o, h)} (lower: ours faster) |")

print()
print("| ours vs ceiling | ours | ceiling | ours/ceiling | target |")
print("|---|---|---|---|---|")
def crow(name, ours, ceil, target):
    rs, _ = ratios(ours, ceil)
    met = "" if target is None or not rs else (" met" if statistics.median(rs) >= target else " MISSED")
    t = "-" if target is None else f">= {target}x{met}"
    print(f"| {name} | {show(ours)} | {show(ceil)} | {wratio(ours, ceil)} | {t} |")
crow("GET by id vs (a) bare warp, fixed bytes", "get_ours_c", "ceil_bare", 0.85)
crow("GET by id vs (b) warp + fjall get", "get_ours_c", "ceil_get", None)
crow("categoryId query vs (c) warp + fjall index scan, spliced bytes", "cat_ours_c", "ceil_cat", 0.75)
crow("durable POST /CartItem/ vs (d) one fdatasync per write (ours: `sync-app`, Durability::Sync, group commit)", "ours_sync_post", "ceil_durable", 5)
crow("POST /CartItem/ as the storefront runs it (process-durable, no fsync) vs (d)", "post_ours", "ceil_durable", None)
print()
if have_harper:
    print("Notes: Harper has no checkout; the mix sends it `DELETE /CartItem/?sessionId=<s>` in its place "
          "(ours runs a stock-checked checkout transaction). Harper accepts load.py's cart items for "
          "out-of-stock products; ours refuses them (409), so ours holds fewer cart items.")
print("The storefront binary has no durability option (default Durability::Process: no fsync); the durable "
      "row runs our App over the storefront's tables with Durability::Sync (benches/ceiling.rs sync-app), "
      "without the storefront's stock rules.")
EOF
