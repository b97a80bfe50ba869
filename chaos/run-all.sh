#!/usr/bin/env bash
# Runs every fault-class scenario of chaos/scenarios/ (or the ones named)
# with the release build of the serve examples' binary, one after another,
# and prints the per-class table CHAOS.md keeps. Needs root for network
# namespaces (without it, partitions are reported unavailable).
#   bash chaos/run-all.sh                    # all but smoke and soak
#   bash chaos/run-all.sh kill-leader soak   # just these
set -uo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p troupe-examples --bin troupe-chain >&2 || exit 1
BIN=target/release/troupe-chain
OUT=${OUT:-chaos-out}
if [ $# -eq 0 ]; then
  set -- $(ls chaos/scenarios/*.yaml | xargs -n1 basename | sed 's/\.yaml$//' | grep -vx 'smoke\|soak')
fi
for name in "$@"; do
  echo "== $name" >&2
  "$BIN" chaos run "chaos/scenarios/$name.yaml" --out "$OUT/$name" > "$OUT-$name.txt" 2>&1
  echo "   exit $? ($(tail -1 "$OUT-$name.txt"))" >&2
done
python3 - "$OUT" "$@" <<'PY'
import json, sys
out, names = sys.argv[1], sys.argv[2:]
print("| scenario | class | requests | failed (by kind) | success % | 95% bound on failures | longest gap | p99 / max ms | recovery | verdict |")
print("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |")
for n in names:
    try:
        r = json.load(open(f"{out}/{n}/report.json"))
    except OSError:
        print(f"| {n} | (no report: see {out}-{n}.txt) | | | | | | | | |"); continue
    failed = [c["name"] for c in r["checks"] if not c["passed"]]
    verdict = "PASS" if not failed else "FAIL: " + ", ".join(failed)
    for c in r["classes"]:
        kinds = ", ".join(f"{k} {v}" for k, v in c["failures"].items()) or "-"
        rec = "-" if c.get("recovery_ms") is None else f'{c["recovery_ms"]/1000:.1f} s'
        print(f'| {n} | {c["label"]} | {c["requests"]} | {sum(c["failures"].values())} ({kinds}) | '
              f'{100*c["success_rate"]:.4f} | {100*c["failure_rate_upper_95"]:.4f}% | '
              f'{c["longest_gap_ms"]/1000:.2f} s | {c["p99_ms"]:.0f} / {c["max_ms"]:.0f} | {rec} | {verdict} |')
        verdict = ""
    if r.get("unavailable"):
        print(f'| {n} | unavailable: {"; ".join(r["unavailable"])} | | | | | | | | |')
PY
