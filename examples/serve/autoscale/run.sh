#!/usr/bin/env bash
# The autoscaling benchmark (BENCHMARKS.md "Autoscaling vs Ray Serve"):
# one system at a time, the same open-loop trace (driver.py), replica
# counts polled 4x a second (poll.py), then analyze.py prints the table.
#
# Usage (from the repo root, after
#   cargo build --release -p troupe-examples --bin troupe-chain
# and Ray Serve in /tmp/raypeer/venv, see ../shared/peers/ray/README.md):
#   bash examples/serve/autoscale/run.sh troupe|ray MIN_REPLICAS [OUT_DIR]
# Outputs in OUT_DIR (default /tmp/autoscale-bench): <sys>-min<N>.{requests.csv,
# replicas.csv,replicas.csv.cpu,log}. Traffic goes to 127.0.0.1 only.
set -euo pipefail
SYS=$1; MIN=$2; OUT=${3:-/tmp/autoscale-bench}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
VENV=${VENV:-/tmp/raypeer/venv}
PY=$VENV/bin/python
TRACE=${TRACE:-warm:10:30,step:120:60,down:30:40,idle:0:50,burst:60:20}
SECONDS_TOTAL=$(echo "$TRACE" | tr ',' '\n' | awk -F: '{s+=$3} END {print s + 40}')
TAG=$SYS-min$MIN
mkdir -p "$OUT"

case $SYS in
troupe)
  sed "s/MIN_REPLICAS/$MIN/" "$HERE/sleepy.yaml" > "$OUT/$TAG.yaml"
  "$ROOT/target/release/troupe-chain" serve run "$OUT/$TAG.yaml" --num-cpus 2 \
    > "$OUT/$TAG.stdout" 2> "$OUT/$TAG.log" &
  NODE=$!
  trap 'kill -INT $NODE 2>/dev/null || true' EXIT
  for _ in $(seq 1 600); do grep -q '^ready ' "$OUT/$TAG.stdout" && break; sleep 0.1; done
  grep -q '^ready ' "$OUT/$TAG.stdout" || { echo "troupe did not start"; cat "$OUT/$TAG.log"; exit 1; }
  ;;
ray)
  export RAY_USAGE_STATS_ENABLED=0
  # Ray starts its workers (controller, proxy, replicas) at nice 15; set
  # RAY_worker_niceness=0 to run them at the driver's priority.
  export RAY_worker_niceness=${RAY_worker_niceness:-15}
  "$VENV/bin/ray" start --head --node-ip-address=127.0.0.1 --num-cpus=2 --disable-usage-stats > "$OUT/$TAG.ray-start" 2>&1
  trap '"$VENV/bin/ray" stop > /dev/null 2>&1 || true' EXIT
  "$PY" "$HERE/ray_sleepy.py" "$MIN" 2> "$OUT/$TAG.deploy-err"
  ;;
*) echo "usage: run.sh troupe|ray MIN_REPLICAS [OUT_DIR]"; exit 2 ;;
esac

sleep 5  # settle: nothing is sent, so a min-0 deployment stays at zero
"$PY" "$HERE/poll.py" "$SYS" "$OUT/$TAG.replicas.csv" "$SECONDS_TOTAL" &
POLL=$!
"$PY" "$HERE/driver.py" http://127.0.0.1:8000/ "$OUT/$TAG.requests.csv" "$TRACE" | tee "$OUT/$TAG.driver"
wait $POLL

case $SYS in
troupe)
  kill -INT $NODE; wait $NODE || true; trap - EXIT
  grep 'autoscaling decision' "$OUT/$TAG.log" > "$OUT/$TAG.decisions" || true
  ;;
ray)
  cat /tmp/ray/session_latest/logs/serve/controller_*.log 2>/dev/null \
    | grep -Ei 'upscal|downscal|scaling' > "$OUT/$TAG.decisions" || true
  "$VENV/bin/ray" stop > /dev/null 2>&1 || true; trap - EXIT
  ;;
esac
"$PY" "$HERE/analyze.py" "$OUT/$TAG" "$TRACE"
