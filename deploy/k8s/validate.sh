#!/usr/bin/env bash
# Validates the Kubernetes manifests of deploy/k8s offline; no cluster is contacted.
#
#   bash deploy/k8s/validate.sh              # this folder
#   bash deploy/k8s/validate.sh DIR          # another copy of it
#   bash deploy/k8s/validate.sh --self-test  # then also break copies on purpose (test_check.py)
#
# 1. every manifest against the OpenAPI schemas of Kubernetes $K8S_VERSION (default 1.29.0),
#    strictly (an unknown field is an error) with kubernetes-validate, which is installed with
#    pip into a folder of its own when python3 cannot import it; cert-manager's kinds, which
#    it has no schema for, are left to check.py;
# 2. kustomization.yaml builds (`kubectl kustomize`, offline; skipped when kubectl is absent);
# 3. check.py: what a schema cannot see (cluster files, partitions, ports, flags, the plan,
#    TLS and the certificates' names). Set CUTOVER_BIN to a built cutover binary to compare
#    every flag with its --help, and to pass each cluster file and plan through `cutover
#    cluster check` and `cutover plan check`; without it those are skipped (check.py says so
#    for the flags).
# Exits non-zero, naming the file and the problem, at the first step that fails.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
k8s_version=${K8S_VERSION:-1.29.0}
validator=kubernetes-validate==1.37.0 # its schemas run from Kubernetes 1.25 to 1.37
deps=${CUTOVER_K8S_DEPS:-${XDG_CACHE_HOME:-$HOME/.cache}/cutover-k8s-validate/1.37.0}
python=${PYTHON:-python3}

dir=$here
self_test=false
for arg in "$@"; do
  case $arg in
    --self-test) self_test=true ;;
    -h | --help) sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "validate.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
    *) dir=$(cd "$arg" && pwd) ;;
  esac
done

importable() { "$python" -c 'import kubernetes_validate, yaml' 2>/dev/null; }

if ! importable; then
  export PYTHONPATH="$deps${PYTHONPATH:+:$PYTHONPATH}"
  if ! importable; then
    echo "validate.sh: installing $validator into $deps with pip"
    # --target keeps it out of the system's packages (and needs no virtualenv).
    PIP_ROOT_USER_ACTION=ignore "$python" -m pip install --quiet --disable-pip-version-check \
      --target "$deps" "$validator"
    importable || { echo "validate.sh: kubernetes-validate still cannot be imported from $deps" >&2; exit 1; }
  fi
fi

cd "$dir"
mapfile -t files < <(find . -name '*.yaml' ! -name kustomization.yaml | sed 's|^\./||' | sort)
if [ "${#files[@]}" -eq 0 ]; then
  echo "validate.sh: no manifests in $dir" >&2
  exit 1
fi

echo "validate.sh: ${#files[@]} files against the Kubernetes $k8s_version schemas (strict)"
status=0
out=$("$python" -m kubernetes_validate --strict --quiet -k "$k8s_version" "${files[@]}" 2>&1) || status=$?
# cert-manager's Certificate and Issuer (examples/certificates.yaml) are custom resources, which
# kubernetes-validate has no schema for: check.py checks their fields instead. Any other
# version or kind of cert-manager's stays an error, since check.py would not check it.
cert_manager="^WARN [^ ]+ Couldn't find schema for kind (Certificate|Issuer|ClusterIssuer)"
cert_manager+=" with api version cert-manager\.io/v1 for kubernetes version [0-9.]+$"
out=$(printf '%s\n' "$out" | grep -Ev "$cert_manager" || true)
if [ -n "$out" ]; then
  printf '%s\n' "$out" >&2
fi
# kubernetes-validate only warns, and exits 0, for a kind or apiVersion it has no schema for:
# here that is an error, since Kubernetes $k8s_version would refuse it.
if [ "$status" -ne 0 ] || [ -n "$out" ]; then
  echo "validate.sh: the manifests above do not validate against Kubernetes $k8s_version" >&2
  exit 1
fi

if command -v kubectl >/dev/null 2>&1; then
  echo "validate.sh: kustomization.yaml builds (kubectl kustomize, offline)"
  if ! kubectl kustomize . >/dev/null; then
    echo "validate.sh: kustomization.yaml in $dir does not build" >&2
    exit 1
  fi
else
  echo "validate.sh: kubectl not found: the kustomization build is not checked (the files it lists are)"
fi

"$python" "$here/check.py" "$dir"

# Each cluster file as the node itself reads it (`cutover cluster check`), and each plan as
# the orchestrator reads it at `upgrade start` (`cutover plan check`), with CUTOVER_BIN.
if [ -n "${CUTOVER_BIN:-}" ]; then
  tomls=$(mktemp -d)
  trap 'rm -rf "$tomls"' EXIT
  mkdir "$tomls/cluster" "$tomls/plan"
  "$python" - "$tomls" "${files[@]}" <<'PY'
import sys, yaml
out, files = sys.argv[1], sys.argv[2:]
for f in files:
    for doc in yaml.safe_load_all(open(f)):
        if doc and doc.get("kind") == "ConfigMap":
            for key, text in (doc.get("data") or {}).items():
                kind = "cluster" if "[[node]]" in text else "plan" if key == "plan.toml" else None
                if key.endswith(".toml") and kind:
                    name = f"{doc['metadata']['name']}-{key}"
                    open(f"{out}/{kind}/{name}", "w").write(text)
PY
  for kind in cluster plan; do
    for file in "$tomls/$kind"/*.toml; do
      [ -e "$file" ] || continue
      if ! "$CUTOVER_BIN" "$kind" check "$file" >/dev/null; then
        echo "validate.sh: $(basename "$file"): \`cutover $kind check\` refuses it (above)" >&2
        exit 1
      fi
      echo "validate.sh: $(basename "$file") passes \`cutover $kind check\`"
    done
  done
fi

if $self_test; then
  "$python" "$here/test_check.py"
fi
echo "validate.sh: all checks passed in ${SECONDS}s"
