#!/usr/bin/env bash
# Install the host dependencies of nixlayer's tests and configure Nix (2.8,
# Debian's nix-bin) for sandboxed builds. Idempotent, non-interactive; run as root.
#
#   bash scripts/install-deps.sh            # install + configure + verify
#   NIXLAYER_SKIP_VERIFY=1 bash scripts/install-deps.sh
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps.sh: must run as root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive

packages=(nix-bin bubblewrap bash-static gcc make tmux neovim skopeo patch tar gzip xz-utils libbtrfs-dev bc lld-14 shellcheck docker-registry apache2-utils jq zsh fish)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$p")
    fi
done

if ((${#missing[@]})); then
    echo "install-deps: installing ${missing[*]}"
    # apt-get update only when the package lists are missing or the install fails.
    if ! compgen -G '/var/lib/apt/lists/*_Packages' >/dev/null; then
        apt-get update -q
    fi
    if ! apt-get install -y -q --no-install-recommends "${missing[@]}"; then
        apt-get update -q
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
else
    echo "install-deps: all packages present"
fi

# --- build users -------------------------------------------------------------
if ! getent group nixbld >/dev/null; then
    groupadd --system nixbld
fi
for i in $(seq 1 10); do
    u="nixbld$i"
    if ! getent passwd "$u" >/dev/null; then
        useradd --system --no-create-home --home-dir /var/empty \
            --shell /usr/sbin/nologin --gid nixbld --groups nixbld \
            --comment "Nix build user $i" "$u"
    fi
    # make sure existing users are members of nixbld
    if ! id -nG "$u" | tr ' ' '\n' | grep -qx nixbld; then
        usermod -a -G nixbld "$u"
    fi
done

# --- nix.conf ----------------------------------------------------------------
conf=/etc/nix/nix.conf
mkdir -p /etc/nix
touch "$conf"
declare -A want=(
    [sandbox]="true"
    [extra-sandbox-paths]="/usr /bin /lib /lib64 /etc/alternatives"
    [build-users-group]="nixbld"
    # No internet here: skip the cache.nixos.org lookup (~4 s of retries per build).
    [substituters]=""
)
tmp=$(mktemp)
# Drop the keys we manage (and the Debian comment about the sandbox not working),
# keep everything else verbatim.
awk '
    /^[[:space:]]*(sandbox|extra-sandbox-paths|build-users-group|substituters)[[:space:]]*=/ { next }
    /So far the sandbox feature does not seem to work on Debian/ { skip=2 }
    skip > 0 { skip--; next }
    /^# managed by nixlayer scripts\/install-deps.sh/ { next }
    { print }
' "$conf" | cat -s >"$tmp"
{
    cat "$tmp"
    echo "# managed by nixlayer scripts/install-deps.sh"
    for k in sandbox extra-sandbox-paths build-users-group substituters; do
        echo "$k = ${want[$k]}" | sed 's/ *$//'
    done
} >"$tmp.new"
if ! cmp -s "$tmp.new" "$conf"; then
    cp "$tmp.new" "$conf"
    echo "install-deps: updated $conf"
fi
rm -f "$tmp" "$tmp.new"

# If a nix-daemon is running it must re-read nix.conf.
if pid=$(pgrep -x nix-daemon | head -n1) && [[ -n $pid ]]; then
    if command -v systemctl >/dev/null && systemctl is-active -q nix-daemon 2>/dev/null; then
        systemctl restart nix-daemon || true
    fi
fi

# --- multi-user Nix: nix-daemon, and unprivileged users for the tests -------
# Most Nix users run nix-daemon and edit as a normal user; the tests do the
# same (nixlayer daemon serves them). Start nix-daemon as a multi-user
# install does: systemd where it runs, else detached.
if ! nix --extra-experimental-features nix-command store ping --store daemon >/dev/null 2>&1; then
    if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1 &&
        systemctl list-unit-files nix-daemon.socket >/dev/null 2>&1; then
        systemctl enable --now nix-daemon.socket
    else
        setsid nix-daemon >/var/log/nix-daemon.log 2>&1 </dev/null &
        for _ in $(seq 50); do
            nix --extra-experimental-features nix-command store ping --store daemon >/dev/null 2>&1 && break
            sleep 0.1
        done
    fi
    echo "install-deps: nix-daemon started"
fi
# nixlayer-test builds through nixlayer daemon; nixlayer-test2 is another
# allowed user; nixlayer-denied is outside the tests' allowed-users.
for u in nixlayer-test nixlayer-test2 nixlayer-denied; do
    if ! getent passwd "$u" >/dev/null; then
        useradd --create-home --shell /bin/bash --comment "nixlayer test user" "$u"
        echo "install-deps: created user $u"
    fi
done

# --- verify --------------------------------------------------------------------
if [[ -z ${NIXLAYER_SKIP_VERIFY:-} ]]; then
    [[ -x /bin/bash-static ]] || { echo "install-deps: /bin/bash-static missing" >&2; exit 1; }
    [[ $(nix show-config --extra-experimental-features nix-command 2>/dev/null | awk -F' = ' '$1=="sandbox"{print $2}') == true ]] ||
        { echo "install-deps: nix sandbox not enabled" >&2; exit 1; }
    # A sandboxed build must see the sandbox (/build) and the host tools, and no network.
    # The nonce makes the derivation new on every run, so it really builds.
    nonce="$(date +%s%N)"
    expr='derivation {
        name = "nixlayer-sandbox-check";
        system = builtins.currentSystem;
        builder = builtins.path { path = /bin/bash-static; name = "bash"; };
        nonce = "'"$nonce"'";
        args = [ "-ec" "[ \"$PWD\" = /build ] || exit 11; [ \"$(/usr/bin/id -u)\" != 0 ] || exit 12; [ -x /usr/bin/gcc ] || exit 13; /usr/bin/mkdir -p $out; echo ok > $out/ok" ];
    }'
    out=$(nix-build --no-out-link -E "$expr" 2>&1) || { echo "$out" >&2; echo "install-deps: sandboxed build failed" >&2; exit 1; }
    out=$(tail -n1 <<<"$out")
    [[ $(cat "$out/ok") == ok ]] || { echo "install-deps: sandboxed build produced no output" >&2; exit 1; }
    nix-store --delete "$out" >/dev/null 2>&1 || true
    echo "install-deps: sandboxed nix build OK"
fi
