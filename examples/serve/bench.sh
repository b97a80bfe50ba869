#!/usr/bin/env bash
# The serving benchmarks (BENCHMARKS.md): Troupe vs a bare actix-web server
# (the limit) in the same run, each app at concurrency 1, 16 and 64 with
# wrk, alternating; then cold start and idle memory of `troupe serve run`.
# Ray Serve is measured with ../shared/peers/ray/bench.sh (see BENCHMARKS.md).
#
# Usage: examples/serve/bench.sh [SECONDS=15] [OUT=/tmp/troupe-serve-bench]
# Needs wrk (Debian: apt-get install -y wrk). Traffic: 127.0.0.1:8000 only.
set -euo pipefail
DUR=${1:-15}
OUT=${2:-/tmp/troupe-serve-bench}
cd "$(dirname "$0")/../.."
cargo build --release --locked -p troupe-examples --bin troupe-chain --bin troupe-bare-http >&2
BIN=target/release
mkdir -p "$OUT"
PORT=127.0.0.1:8000

wait_http() { # URL: until it answers 200, at most 30 s
  for _ in $(seq 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$1" || true)" = 200 ] && return 0
    sleep 0.1
  done
  echo "no 200 from $1" >&2; return 1
}

load() { # NAME CONC: wrk against / ; prints "req/s p50_ms p99_ms"
  wrk -t1 -c"$2" -d"${DUR}s" --timeout 10s --latency "http://$PORT/" > "$OUT/$1-c$2.txt"
  python3 - "$OUT/$1-c$2.txt" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
def ms(label):
    m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)" % label, t, re.M)
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
print(f"{rps:.0f} {ms('50'):.2f} {ms('99'):.2f} {errors.group(1) if errors else 0}")
PY
}

echo "app conc | bare req/s p50 p99 | troupe req/s p50 p99 non2xx | ratio"
for app in noop noop-2 noop-chain; do
  for c in 1 16 64; do
    "$BIN/troupe-bare-http" "$PORT" > /dev/null & BARE=$!
    wait_http "http://$PORT/"
    read -r b_rps b_p50 b_p99 _ <<< "$(load "bare-$app" "$c")"
    kill "$BARE"; wait "$BARE" 2>/dev/null || true

    RUST_LOG=warn "$BIN/troupe-chain" serve run "$app" --http-listen "$PORT" > /dev/null 2>&1 & TR=$!
    wait_http "http://$PORT/"
    read -r t_rps t_p50 t_p99 t_err <<< "$(load "troupe-$app" "$c")"
    kill -INT "$TR"; wait "$TR" 2>/dev/null || true
    python3 -c "print('$app $c | $b_rps $b_p50 $b_p99 | $t_rps $t_p50 $t_p99 $t_err | %.2f' % ($t_rps / $b_rps))"
  done
done

# Cold start: `serve run` to the first HTTP 200; idle RSS with noop.
for rep in 1 2 3; do
  start=$(date +%s.%N)
  RUST_LOG=warn "$BIN/troupe-chain" serve run noop --http-listen "$PORT" > /dev/null 2>&1 & TR=$!
  wait_http "http://$PORT/"
  end=$(date +%s.%N)
  sleep 5
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$TR/status")
  python3 -c "print('cold start rep $rep: first 200 after %.0f ms; idle RSS %.1f MiB' % (($end - $start) * 1000, $rss / 1024))"
  kill -INT "$TR"; wait "$TR" 2>/dev/null || true
done
