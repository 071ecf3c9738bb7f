#!/usr/bin/env bash
# Builds the runtime images without pulling anything: each is `FROM scratch` with one binary,
# the shared libraries it links (found with ldd) and a few files of /etc. For machines with
# no registry; `deploy/Dockerfile` builds the same cutover image from a Debian base where one is.
#
#   deploy/image.sh cutover [BINARY]   # cutover:<version> from BINARY (default: a release build;
#                                      # CUTOVER_IMAGE_TAG=T tags it cutover:T instead)
#   deploy/image.sh prometheus         # cutover-prometheus:<version> from Debian's package
#
# The cutover binary is stripped on the way in (its debug info is kept beside it as
# BINARY.debug, for symbols); the image runs as uid 10001 with its data in /var/lib/cutover.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() { sed -n '5,7p' "$0" | sed 's/^# *//' >&2; exit 2; }
what=${1:-}; [[ -n $what ]] || usage

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
mkdir -p "$root/etc" "$root/tmp" "$stage/data"
chmod 1777 "$root/tmp"

# The user the daemons run as, and name resolution from /etc/hosts then DNS (glibc has both
# built in since 2.34; Docker writes /etc/hosts and /etc/resolv.conf into every container).
cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
cutover:x:10001:10001:cutover:/var/lib/cutover:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
cutover:x:10001:
nogroup:x:65534:
GROUP
echo 'hosts: files dns' > "$root/etc/nsswitch.conf"

# copy_with_libs FILE DEST: FILE to DEST inside the root, with every library it links and the
# dynamic loader at their own paths.
copy_with_libs() {
  local file=$1 dest=$2
  install -D -m 0755 "$file" "$root$dest"
  local libs
  libs=$(ldd "$file" 2>/dev/null | grep -o '/[^ ]*' || true)
  for lib in $libs; do
    [[ -e $lib ]] || continue
    install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
  done
}

case $what in
  cutover)
    bin=${2:-target/release/cutover}
    if [[ ! -x $bin ]]; then
      echo "image.sh: $bin does not exist; building it (cargo build --release)" >&2
      cargo build --release --locked --bin cutover
    fi
    version=$("$bin" --version | awk '{print $2}')
    # Keep the debug info aside (gdb finds it through the debuglink), ship the binary without.
    if [[ ! -e $bin.debug || $bin -nt $bin.debug ]]; then
      objcopy --only-keep-debug "$bin" "$bin.debug"
    fi
    objcopy --strip-all --add-gnu-debuglink="$bin.debug" "$bin" "$stage/cutover"
    copy_with_libs "$stage/cutover" /usr/local/bin/cutover
    cat > "$stage/Dockerfile" <<'DOCKERFILE'
FROM scratch
ADD root.tar /
COPY --chown=10001:10001 data/ /var/lib/cutover/
USER 10001:10001
WORKDIR /var/lib/cutover
VOLUME /var/lib/cutover
ENV CUTOVER_HEALTH_URL=http://127.0.0.1:7070/healthz
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 CMD ["cutover", "health"]
ENTRYPOINT ["/usr/local/bin/cutover"]
CMD ["--help"]
DOCKERFILE
    tag=cutover:${CUTOVER_IMAGE_TAG:-$version}
    ;;
  prometheus)
    # Debian's package, unpacked: the server binary and its libraries.
    (cd "$stage" && { apt-get download prometheus >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get download prometheus >/dev/null; }; })
    dpkg-deb -x "$stage"/prometheus_*.deb "$stage/deb"
    version=$(dpkg-deb -f "$stage"/prometheus_*.deb Version | sed 's/[+~-].*//')
    copy_with_libs "$stage/deb/usr/bin/prometheus" /usr/bin/prometheus
    mkdir -p "$root/etc/prometheus"
    cat > "$stage/Dockerfile" <<'DOCKERFILE'
FROM scratch
ADD root.tar /
COPY --chown=10001:10001 data/ /prometheus/
USER 10001:10001
VOLUME /prometheus
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
DOCKERFILE
    tag=cutover-prometheus:$version
    ;;
  *) usage ;;
esac

# Everything belongs to root but the data directory, which is the daemon's.
tar --owner=0 --group=0 --numeric-owner -C "$root" -cf "$stage/root.tar" .
# (The client's notice that the classic builder is deprecated is noise here: it is shown
# only when the build fails.)
if ! log=$(docker build --quiet --tag "$tag" "$stage" 2>&1); then
  echo "$log" >&2
  exit 1
fi
size=$(docker image inspect "$tag" --format '{{.Size}}')
echo "built $tag ($((size / 1024 / 1024)) MiB)"
