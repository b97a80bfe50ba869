#!/usr/bin/env bash
# Troupe GCS vs etcd 3.4 on loopback, same run, alternating.
#
#   gcs/bench/run.sh                # writes, reads, failover (~5 min)
#   gcs/bench/run.sh soak           # 10-min soak, 500 puts/s (--minutes N, --rate N, --keys N)
#   gcs/bench/run.sh bench --secs 10 --rounds 3 --trials 20
#
# Installs what is missing (etcd-server, protobuf-compiler via apt), builds
# the release `troupe` binary of the main workspace and this bench crate
# (its own workspace, target dir target-bench/), then runs it. Results are
# markdown tables on stdout; progress and build output go to stderr.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
mode="${1:-bench}"
[ $# -gt 0 ] && shift

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
missing=()
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler) # etcd-client's build.rs runs protoc
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2
fi
if pgrep -x etcd >/dev/null 2>&1; then
  echo "warning: an etcd process is already running (a system service?); it competes for CPU" >&2
fi

echo "building troupe (release)" >&2
(cd "$root" && CARGO_TARGET_DIR="$root/target" cargo build --release -p troupe --bin troupe >&2)
echo "building troupe-gcs-bench (release)" >&2
(cd "$here" && CARGO_TARGET_DIR="$root/target-bench" cargo build --release >&2)

exec "$root/target-bench/release/troupe-gcs-bench" "$mode" --troupe-bin "$root/target/release/troupe" "$@"
