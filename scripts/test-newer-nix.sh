#!/usr/bin/env bash
# Run nixlayer's end-to-end hook tests (hook/e2e_test.go) against a newer Nix:
# Debian trixie's nix-bin (2.26) in a debootstrap chroot. The binaries are
# built on the host (bookworm's glibc is older, so they run on trixie); the
# chroot only needs Nix, bubblewrap and the fixtures' tools.
#
#   sudo bash scripts/test-newer-nix.sh [CHROOT_DIR]      # default /var/tmp/nixlayer-trixie
#   SUITE=sid MIRROR=http://deb.debian.org/debian TESTS='TestHookBuildsHello' bash scripts/test-newer-nix.sh
#   NIXBLD_BASE=30000: the chroot's build users get uids BASE+1..BASE+10, not the host's
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
    # This machine's clock may run ahead of the mirror's Valid-Until (sid's
    # Release file is re-signed weekly): do not treat it as expired.
    in_chroot bash -c 'apt-get -o Acquire::Check-Valid-Until=false update -q && apt-get install -y -q --no-install-recommends \
        nix-bin bubblewrap bash-static gcc libc6-dev make patch tar gzip xz-utils passwd'
    touch "$root/packages-done"
fi

# Earlier versions of this script configured the sandbox so that Nix
# truncated the chroot's /usr/bin/dash on every build (see the nix.conf
# below): restore any packaged file whose contents changed, from the .deb.
echo "test-newer-nix: checking the chroot's packaged files"
in_chroot bash -c 'set -euo pipefail
files=$({ dpkg --verify 2>/dev/null || true; } | awk '\''NF == 2 && $1 ~ /^..5/ {print $2}'\'')
[[ -n $files ]] || exit 0
for pkg in $(dpkg -S $files | cut -d: -f1 | sort -u); do
    echo "test-newer-nix: restoring the damaged files of $pkg:" $files
    deb=$(ls /var/cache/apt/archives/"${pkg}"_*.deb 2>/dev/null | tail -n 1)
    if [[ -z $deb ]]; then
        (cd /tmp && apt-get download -q "$pkg")
        deb=$(ls /tmp/"${pkg}"_*.deb | tail -n 1)
    fi
    dpkg-deb -x "$deb" /
done
if { dpkg --verify 2>/dev/null || true; } | awk '\''NF == 2 && $1 ~ /^..5/'\'' | grep .; then
    echo "test-newer-nix: the chroot is still damaged; delete it to start over" >&2
    exit 1
fi'

echo "test-newer-nix: building nixlayer and the hook tests on the host"
work=$root/opt/nixlayer
rm -rf "$work"
mkdir -p "$work/bin" "$work/hook" "$work/nixstore"
(cd "$repo" && go build -o "$work/bin/nixlayer" ./cmd/nixlayer && go test -c -o "$work/hook/hook.test" ./hook &&
    go test -c -o "$work/nixstore/nixstore.test" ./nixstore)
cp -r "$repo/testdata" "$work/testdata"

# Inside the chroot: build users and nix.conf as scripts/install-deps.sh
# sets them up on bookworm; then the tests.
cat >"$root/opt/nixlayer/run.sh" <<'EOF'
set -euo pipefail
# The chroot shares the host's kernel and PID namespace, and Nix kills every
# process of a build user's uid before and after each build (killUser: a
# kill(-1, SIGKILL) as that uid). So its build users must not have the uids
# of the host's: with the same uids (both default to 999, 998/995, ...) a
# host nix-build killed the chroot's builders ("failed due to signal 9
# (Killed)") and the other way round.
base=$1
getent group nixbld >/dev/null || groupadd --gid "$base" nixbld
[[ $(getent group nixbld | cut -d: -f3) == "$base" ]] || groupmod --gid "$base" nixbld
for i in $(seq 1 10); do
    uid=$((base + i))
    if ! getent passwd "nixbld$i" >/dev/null; then
        useradd --uid "$uid" --no-create-home --home-dir /var/empty --shell /usr/sbin/nologin \
            --gid nixbld --groups nixbld "nixbld$i"
    elif [[ $(id -u "nixbld$i") != "$uid" ]]; then
        usermod --uid "$uid" --gid nixbld "nixbld$i"
    fi
done
mkdir -p /etc/nix
# trixie is merged-/usr: /bin, /lib, /lib64 are symlinks, which Nix 2.26
# cannot bind as sandbox paths; bind their targets at those names instead.
# This must REPLACE sandbox-paths, not extend it: Debian's Nix 2.26 defaults
# to sandbox-paths = /bin/sh=/usr/bin/bash-static, and Nix binds a file by
# first writing an empty file at the target (as root, following symlinks):
# with /bin bound to the chroot's /usr/bin, the target /bin/sh is the real
# /usr/bin/sh -> dash, so every sandboxed build truncated /usr/bin/dash
# (then `sh` ran nothing: empty gen/ in the hello fixture, pre-build-hook
# wrappers that silently did nothing). Without that entry the sandbox's
# /bin/sh is dash, as on the bookworm host (Nix 2.8 has no default).
cat >/etc/nix/nix.conf <<'CONF'
sandbox = true
sandbox-paths = /usr /bin=/usr/bin /lib=/usr/lib /lib64=/usr/lib64 /etc/alternatives
build-users-group = nixbld
substituters =
CONF
nix --version
# Validity read from this Nix's own database, and result links made in-process,
# must be what its nix-store gives.
(cd /opt/nixlayer/nixstore && ./nixstore.test -test.v -test.count=1 -test.run 'TestValidity|TestRootMade')
cd /opt/nixlayer/hook
NIXLAYER_E2E=1 NIXLAYER_HOOK_BIN=/opt/nixlayer/bin/nixlayer \
    ./hook.test -test.v -test.count=1 -test.timeout=20m -test.run "$2"
EOF

# uids/gid for the chroot's build users that the host does not use (above).
nixbld_base=${NIXBLD_BASE:-30000}
for id in $(seq "$nixbld_base" $((nixbld_base + 10))); do
    if getent passwd "$id" >/dev/null || getent group "$id" >/dev/null; then
        echo "test-newer-nix: uid/gid $id is used on the host; set NIXBLD_BASE to a free range of 11 ids" >&2
        exit 1
    fi
done

echo "test-newer-nix: running the hook tests in $root"
status=0
in_chroot bash /opt/nixlayer/run.sh "$nixbld_base" "$tests" || status=$?
# Nothing may change the chroot's own files (see sandbox-paths above).
if { in_chroot dpkg --verify 2>/dev/null || true; } | awk 'NF == 2 && $1 ~ /^..5/' | grep .; then
    echo "test-newer-nix: the run modified packaged files in the chroot (above)" >&2
    status=1
fi
echo "test-newer-nix: done in ${SECONDS}s, exit status $status"
exit "$status"
