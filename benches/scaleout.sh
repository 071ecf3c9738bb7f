#!/usr/bin/env bash
# Scale-out, measured: cycle 1 of an upgrade (identity transform, partitions split evenly)
# from N blue nodes to N green nodes for N = 1, 2, 4, every node a container capped at
# `--cpus` (0.2 by default, checked with `docker inspect` before measuring), the pipelines
# running inside the green nodes. Prints each rate and its ratio to 1 → 1's.
#
#   benches/scaleout.sh [--docs 1000000] [--cpus 0.2] [--sizes "1 2 4"] [--image cutover:0.1.0]
#
# It needs Docker and the image (`deploy/image.sh cutover` builds it from a release build).
# Blue is loaded through its HTTP API before the caps are set, with `--sync os`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

docs=1000000 cpus=0.2 sizes="1 2 4" image=""
while (($#)); do
  case $1 in
    --docs) docs=$2; shift 2 ;;
    --cpus) cpus=$2; shift 2 ;;
    --sizes) sizes=$2; shift 2 ;;
    --image) image=$2; shift 2 ;;
    *) sed -n '2,9p' "$0" | sed 's/^# *//' >&2; exit 2 ;;
  esac
done
if [[ -z $image ]]; then
  version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
  image=cutover:$version
fi
docker image inspect "$image" >/dev/null 2>&1 \
  || { echo "scaleout: no image $image; build it with deploy/image.sh cutover" >&2; exit 1; }

others=$(( $(docker ps -q | wc -l) - $(docker ps -q --filter label=cutover-scaleout | wc -l) ))
if ((others > 0)); then
  echo "scaleout: $others other containers are running; the figures need a quiet machine" >&2
  docker ps --format '  {{.Names}}' >&2
  exit 1
fi

net=cutover-scaleout
subnet=172.30.78
config=$(mktemp -d)
chmod 755 "$config"
cleanup_containers() {
  docker ps -aq --filter "label=cutover-scaleout" | xargs -r docker rm -fv >/dev/null
}
cleanup() {
  cleanup_containers
  docker network rm "$net" >/dev/null 2>&1 || true
  rm -rf "$config"
}
trap cleanup EXIT
docker network rm "$net" >/dev/null 2>&1 || true
docker network create --subnet "$subnet.0/24" "$net" >/dev/null

ip() { # colour index → address
  if [[ $1 == blue ]]; then echo "$subnet.$((10 + $2))"; else echo "$subnet.$((50 + $2))"; fi
}
run() { docker run --rm --network "$net" -v "$config:/etc/cutover:ro" "$image" "$@"; }

echo "scale-out: cycle 1 of $docs documents, identity transform, every node capped at $cpus CPU"
echo "machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1); $(date -u +%Y-%m-%d)"
declare -A rate
for n in $sizes; do
  cleanup_containers
  for colour in blue green; do
    members=()
    for i in $(seq 1 "$n"); do members+=("$colour-$i=$(ip $colour "$i"):7070,$(ip $colour "$i"):7071"); done
    docker run --rm "$image" cluster init --partitions 64 "${members[@]}" > "$config/$colour.toml"
  done
  for colour in blue green; do
    for i in $(seq 1 "$n"); do
      extra=()
      [[ $colour == blue ]] && extra+=(--sync os)
      [[ $colour == green && $i == 1 ]] && extra+=(--orchestrate --journal /var/lib/cutover/journal)
      docker run -d --name "scaleout-$colour-$i" --label cutover-scaleout --network "$net" \
        --ip "$(ip $colour "$i")" -v "$config:/etc/cutover:ro" "$image" \
        node --data-dir /var/lib/cutover/store --cluster "/etc/cutover/$colour.toml" \
        --name "$colour-$i" --http 0.0.0.0:7070 --grpc 0.0.0.0:7071 "${extra[@]}" >/dev/null
    done
  done
  targets=() sources=() sinks=()
  for i in $(seq 1 "$n"); do
    targets+=("$(ip blue "$i"):7070")
    sources+=("\"http://$(ip blue "$i"):7071\"")
    sinks+=("\"http://$(ip green "$i"):7071\"")
  done
  for i in $(seq 1 "$n"); do
    for colour in blue green; do
      until run health "http://$(ip $colour "$i"):7070/healthz" 2>/dev/null; do sleep 0.5; done
    done
  done
  started=$(date +%s)
  run load run --target "$(IFS=,; echo "${targets[*]}")" --keys "$docs" --duration 1s \
    --out /tmp/load.json >/dev/null 2>&1
  echo "  $n → $n: blue loaded with $docs documents in $(( $(date +%s) - started )) s"
  (IFS=,; printf 'pause_budget = "1ms"\nmax_cycles = 50\n[blue]\nsources = [%s]\n[green]\nsinks = [%s]\n' \
    "${sources[*]}" "${sinks[*]}") > "$config/plan.toml"
  for colour in blue green; do
    for i in $(seq 1 "$n"); do docker update --cpus "$cpus" "scaleout-$colour-$i" >/dev/null; done
  done
  want=$(awk -v c="$cpus" 'BEGIN { printf "%d", c * 1e9 }')
  for c in $(docker ps -q --filter "label=cutover-scaleout"); do
    got=$(docker inspect --format '{{.HostConfig.NanoCpus}}' "$c")
    [[ $got == "$want" ]] || { echo "scaleout: container $c has NanoCpus $got, not $want" >&2; exit 1; }
  done
  docker exec scaleout-green-1 cutover upgrade start --plan /etc/cutover/plan.toml \
    --orchestrator http://127.0.0.1:7071 >/dev/null
  status=""
  for _ in $(seq 1 1200); do
    status=$(docker exec scaleout-green-1 cutover upgrade status --output json \
      --orchestrator http://127.0.0.1:7071 2>/dev/null || true)
    if python3 -c 'import json,sys; s=json.loads(sys.argv[1]); sys.exit(0 if s["cycles"] else 1)' \
      "$status" 2>/dev/null; then
      break
    fi
    sleep 0.5
  done
  read -r copied micros < <(python3 -c 'import json,sys; c=json.loads(sys.argv[1])["cycles"][0]; print(c["documents"], c["duration_micros"])' "$status")
  rate[$n]=$(awk -v d="$copied" -v u="$micros" 'BEGIN { printf "%.0f", d / (u / 1e6) }')
  echo "  $n → $n: cycle 1 copied $copied documents in $(awk -v u="$micros" 'BEGIN { printf "%.2f", u / 1e6 }') s: ${rate[$n]} docs/s"
  docker exec scaleout-green-1 cutover upgrade abort --reason "scale-out bench done" \
    --orchestrator http://127.0.0.1:7071 >/dev/null 2>&1 || true
done
base=${rate[1]:-}
if [[ -n $base ]]; then
  for n in $sizes; do
    echo "  $n → $n: $(awk -v r="${rate[$n]}" -v b="$base" 'BEGIN { printf "%.2f", r / b }')× the 1 → 1 rate"
  done
fi
