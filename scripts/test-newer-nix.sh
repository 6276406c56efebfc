#!/usr/bin/env bash
# Run nixlayer's end-to-end hook tests (hook/e2e_test.go) against a newer Nix:
# Debian trixie's nix-bin (2.26) in a debootstrap chroot. The binaries are
# built on the host (bookworm's glibc is older, so they run on trixie); the
# chroot only needs Nix, bubblewrap and the fixtures' tools.
#
#   sudo bash scripts/test-newer-nix.sh [CHROOT_DIR]      # default /var/tmp/nixlayer-trixie
#   SUITE=sid MIRROR=http://deb.debian.org/debian TESTS='TestHookBuildsHello' bash scripts/test-newer-nix.sh
#
# The chroot is kept for the next run (delete it to start over). Nix's
# sandbox and bubblewrap need user namespaces and pivot_root, which a plain
# chroot(2) forbids; so the tree is entered with bubblewrap instead.
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
    echo "test-newer-nix.sh: must run as root (debootstrap, chroot, Nix's store)" >&2
    exit 1
fi

root=${1:-/var/tmp/nixlayer-trixie}
suite=${SUITE:-trixie}
mirror=${MIRROR:-http://deb.debian.org/debian}
tests=${TESTS:-'TestHook|TestPrePost'}
repo=$(cd "$(dirname "$0")/.." && pwd)
export DEBIAN_FRONTEND=noninteractive

if ! command -v debootstrap >/dev/null; then
    apt-get install -y -q --no-install-recommends debootstrap ||
        { apt-get update -q && apt-get install -y -q --no-install-recommends debootstrap; }
fi

# debootstrap's own resolver cannot install nix-bin (it depends on a virtual
# package), so the base system comes first and apt installs the rest.
if [[ ! -e $root/debootstrap-done ]]; then
    echo "test-newer-nix: debootstrap $suite into $root"
    debootstrap --variant=minbase "$suite" "$root" "$mirror"
    touch "$root/debootstrap-done"
fi

# in_chroot CMD…: run a command in the tree. Not chroot(2): inside a chroot
# the kernel refuses user namespaces (bubblewrap, Nix's sandbox) and Nix's
# pivot_root. bubblewrap (as root: no user namespace) pivots into it.
in_chroot() {
    cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
    mkdir -p "$root/tmp" && chmod 1777 "$root/tmp"
    bwrap --bind "$root" / --dev-bind /dev /dev --bind /proc /proc --bind /sys /sys \
        --cap-add ALL --die-with-parent --chdir / \
        /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root TMPDIR=/tmp DEBIAN_FRONTEND=noninteractive "$@"
}

if [[ ! -e $root/packages-done ]]; then
    echo "test-newer-nix: installing Nix and the fixtures' tools in the chroot"
    in_chroot bash -c 'apt-get update -q && apt-get install -y -q --no-install-recommends \
        nix-bin bubblewrap bash-static gcc libc6-dev make patch tar gzip xz-utils passwd'
    touch "$root/packages-done"
fi

echo "test-newer-nix: building nixlayer and the hook tests on the host"
work=$root/opt/nixlayer
rm -rf "$work"
mkdir -p "$work/bin" "$work/hook"
(cd "$repo" && go build -o "$work/bin/nixlayer" ./cmd/nixlayer && go test -c -o "$work/hook/hook.test" ./hook)
cp -r "$repo/testdata" "$work/testdata"

# Inside the chroot: build users and nix.conf as scripts/install-deps.sh
# sets them up on bookworm; then the tests.
cat >"$root/opt/nixlayer/run.sh" <<'EOF'
set -euo pipefail
getent group nixbld >/dev/null || groupadd --system nixbld
for i in $(seq 1 10); do
    getent passwd "nixbld$i" >/dev/null ||
        useradd --system --no-create-home --home-dir /var/empty --shell /usr/sbin/nologin \
            --gid nixbld --groups nixbld "nixbld$i"
done
mkdir -p /etc/nix
# trixie is merged-/usr: /bin, /lib, /lib64 are symlinks, which Nix 2.26
# cannot bind as sandbox paths; bind their targets at those names instead.
cat >/etc/nix/nix.conf <<'CONF'
sandbox = true
extra-sandbox-paths = /usr /bin=/usr/bin /lib=/usr/lib /lib64=/usr/lib64 /etc/alternatives
build-users-group = nixbld
substituters =
CONF
nix --version
cd /opt/nixlayer/hook
NIXLAYER_E2E=1 NIXLAYER_HOOK_BIN=/opt/nixlayer/bin/nixlayer \
    ./hook.test -test.v -test.count=1 -test.timeout=20m -test.run "$1"
EOF

echo "test-newer-nix: running the hook tests in $root"
in_chroot bash /opt/nixlayer/run.sh "$tests"
