#!/usr/bin/env bash
# The proxy benchmark (issue #5) at full size: installs what it compares against and drives
# with (nginx and wrk, from the OS packages) when missing, then runs it. Figures go to
# benches/RESULTS.md by hand, with the machine and the date.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
if ((${#need[@]})); then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
fi
if command -v ccache >/dev/null 2>&1; then
  export CC="ccache gcc" CXX="ccache g++"
fi
cargo bench --workspace --bench proxy -- "$@"
