#!/usr/bin/env bash
# Fuzzes a real `cutover node` against its own OpenAPI description (node/openapi.json, served
# at /openapi.json) with schemathesis: no 500, every status a documented one, every content
# type, header and body as documented. Fails on any finding, or if a node dies or panics.
#
#   tests/schemathesis/run.sh CUTOVER_BIN [--max-time SECONDS] [--nodes 1|2] [schemathesis run options…]
#
# It builds nothing: give it the binary cargo built (target/debug/cutover after
# `cargo test --workspace`). The nodes run on free loopback ports with temporary stores and
# are stopped at the end. With --nodes 2 they form a cluster and the first one is fuzzed, so
# about half the requests are forwarded to the second. schemathesis is installed with pip at
# the version pinned in requirements.txt when another one (or none) is installed.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

bin=${1:-}
[[ $bin == */* ]] && bin=$(cd "$(dirname "$bin")" 2>/dev/null && pwd)/$(basename "$bin")
if [[ -z $bin || ! -x $bin ]]; then
  echo "run.sh: give the path of a built cutover binary (e.g. target/debug/cutover), got '${bin}'" >&2
  exit 2
fi
shift
max_time=30
nodes=1
passed=()
while (($#)); do
  case $1 in
    --max-time) max_time=$2; shift 2 ;;
    --nodes) nodes=$2; shift 2 ;;
    *) passed+=("$1"); shift ;;
  esac
done
if [[ $nodes != 1 && $nodes != 2 ]]; then
  echo "run.sh: --nodes is 1 (one node) or 2 (a cluster), got '$nodes'" >&2
  exit 2
fi

pinned=$(sed -n 's/^schemathesis==//p' "$here/requirements.txt")
installed=$(python3 -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null || true)
if [[ $installed != "$pinned" ]]; then
  echo "run.sh: installing schemathesis $pinned (found '${installed:-none}')"
  python3 -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/cutover-schemathesis.XXXXXX")
pids=()
stop() {
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap stop EXIT

# Free loopback ports (HTTP and gRPC of each node), held at once so that they differ.
read -r -a ports < <(python3 -c '
import socket, sys
held = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in held: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in held))' $((2 * nodes)))
args=()
if ((nodes == 2)); then
  "$bin" cluster init --partitions 8 --output "$work/cluster.toml" \
    "n0=127.0.0.1:${ports[0]},127.0.0.1:${ports[1]}" \
    "n1=127.0.0.1:${ports[2]},127.0.0.1:${ports[3]}" >/dev/null
fi
for ((i = 0; i < nodes; i++)); do
  args=(node --data-dir "$work/n$i" --http "127.0.0.1:${ports[2 * i]}"
    --grpc "127.0.0.1:${ports[2 * i + 1]}" --sync os)
  ((nodes == 2)) && args+=(--cluster "$work/cluster.toml" --name "n$i")
  "$bin" "${args[@]}" >"$work/n$i.log" 2>&1 &
  pids+=($!)
done

ready() { python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)" "$1/readyz" 2>/dev/null; }
alive() { # every node still runs, else its log
  local i
  for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      echo "run.sh: node n$i exited:" >&2
      tail -n 50 "$work/n$i.log" >&2
      return 1
    fi
  done
}
for ((i = 0; i < nodes; i++)); do
  url="http://127.0.0.1:${ports[2 * i]}"
  for _ in $(seq 300); do
    ready "$url" && break
    alive || exit 1
    sleep 0.1
  done
  ready "$url" || { echo "run.sh: n$i was not ready within 30 s" >&2; cat "$work/n$i.log" >&2; exit 1; }
done
base="http://127.0.0.1:${ports[0]}"

status=0
# From the temporary folder: schemathesis keeps what it found for `st replay` in ./.schemathesis.
cd "$work"
python3 -m schemathesis.cli run "$base/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --max-time "$max_time" \
  --generation-database none \
  --no-color \
  "${passed[@]}" || status=$?

alive || exit 1
if grep -n "panicked" "$work"/n*.log >&2; then
  echo "run.sh: a node panicked during the run (above)" >&2
  exit 1
fi
if ((status != 0)); then
  echo "run.sh: schemathesis found problems (exit $status)" >&2
  exit "$status"
fi
echo "run.sh: no findings in ${max_time} s against $base ($nodes node(s))"
