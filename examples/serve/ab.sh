#!/usr/bin/env bash
# A/B of two troupe-chain binaries (before and after a change), alternating
# in the same session so that the machine's drift hits both alike: for each
# app and concurrency, REPS pairs of `serve run APP` + `wrk -cC -dDUR`,
# then the mean requests/s of each and their ratio (BENCHMARKS.md).
#
# Usage: examples/serve/ab.sh OLD_BIN NEW_BIN
#   e.g. git worktree add /tmp/old 86eed69 && (cd /tmp/old && CARGO_TARGET_DIR=/tmp/old-target \
#          cargo build --release -p troupe-examples --bin troupe-chain)
#        examples/serve/ab.sh /tmp/old-target/release/troupe-chain target/release/troupe-chain
# Env: APPS (noop noop-chain), CONCS (1 16 64), REPS (3), DUR seconds (10).
# Needs wrk. Traffic: 127.0.0.1:8000 only.
set -uo pipefail
OLD=$1 NEW=$2
DUR=${DUR:-10}
PORT=127.0.0.1:8000
run() { # BIN APP CONC: requests/s
  RUST_LOG=warn "$1" serve run "$2" --http-listen "$PORT" > /dev/null 2>&1 & local pid=$!
  for _ in $(seq 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$PORT/" || true)" = 200 ] && break
    sleep 0.1
  done
  wrk -t1 -c"$3" -d"${DUR}s" --timeout 10s "http://$PORT/" | awk '/Requests\/sec/ {print $2}'
  kill "$pid"; wait "$pid" 2>/dev/null
}
for app in ${APPS:-noop noop-chain}; do
  for conc in ${CONCS:-1 16 64}; do
    old=() new=()
    for _ in $(seq "${REPS:-3}"); do
      old+=("$(run "$OLD" "$app" "$conc")")
      new+=("$(run "$NEW" "$app" "$conc")")
    done
    python3 - "$app" "$conc" "${old[*]}" "${new[*]}" <<'PY'
import sys
app, conc, old, new = sys.argv[1], sys.argv[2], [float(x) for x in sys.argv[3].split()], [float(x) for x in sys.argv[4].split()]
o, n = sum(old) / len(old), sum(new) / len(new)
print(f"{app} c{conc}: old {o:,.0f} new {n:,.0f} req/s, new/old {n / o:.3f} (runs: old {old}, new {new})")
PY
  done
done
