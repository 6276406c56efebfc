package runner

import "github.com/nixlayer/nixlayer/shellstate"

// driver is the bash program every sandboxed step runs (as `bash [flags] -c
// driver nixlayer MODE PHASE LAST`). It sources the structured attributes
// and the stdenv like nixpkgs' default builder does and then, by MODE:
//
//   - probe: asks the stdenv's own genericBuild for the phase list by
//     replacing runPhase with a recorder (fd 5), and captures the shell
//     state before and after, so side effects of genericBuild carry over;
//   - phase: restores the state left by earlier phases (a script on fd 3),
//     runs `runPhase PHASE`, and captures the state (fd 4). The stdenv's
//     EXIT trap runs only after the last phase or on failure, as it would
//     in a single-process build.
//
// Its own variables start with __nl_ and are never carried over.
const driver = `__nl_mode=$1 __nl_phase=$2 __nl_last=$3
# The body of the oldest setup.sh's genericBuild loop (before runPhase
# existed, ~2023), for one phase.
__nl_oldRunPhase() {
	curPhase=$1
	case "$curPhase" in
	unpackPhase) [ -z "${dontUnpack:-}" ] || return 0 ;;
	patchPhase) [ -z "${dontPatch:-}" ] || return 0 ;;
	configurePhase) [ -z "${dontConfigure:-}" ] || return 0 ;;
	buildPhase) [ -z "${dontBuild:-}" ] || return 0 ;;
	checkPhase) [ -n "${doCheck:-}" ] || return 0 ;;
	installPhase) [ -z "${dontInstall:-}" ] || return 0 ;;
	fixupPhase) [ -z "${dontFixup:-}" ] || return 0 ;;
	installCheckPhase) [ -n "${doInstallCheck:-}" ] || return 0 ;;
	distPhase) [ -n "${doDist:-}" ] || return 0 ;;
	esac
	if [ -n "${NIX_LOG_FD:-}" ]; then
		echo "@nix { \"action\": \"setPhase\", \"phase\": \"$curPhase\" }" >&"$NIX_LOG_FD"
	fi
	if declare -F showPhaseHeader >/dev/null; then showPhaseHeader "$curPhase"; fi
	if declare -F dumpVars >/dev/null; then dumpVars; fi
	eval "${!curPhase:-$curPhase}"
	if [ "$curPhase" = unpackPhase ]; then
		cd "${sourceRoot:-.}"
	fi
}
__nl_dump='` + shellstate.DumpCommand + `'
if [ -e "${NIX_ATTRS_SH_FILE:-}" ]; then
	source "$NIX_ATTRS_SH_FILE"
elif [ -f .attrs.sh ]; then
	source .attrs.sh
fi
source "$stdenv/setup"
eval "$__nl_dump"
case "$__nl_mode" in
probe)
	if ! declare -F genericBuild >/dev/null; then
		echo "nixlayer: this stdenv has no genericBuild" >&2
		exit 97
	fi
	if declare -F runPhase >/dev/null; then
		__nl_rp=$(declare -f runPhase)
		runPhase() { printf '%s\n' "$*" >&5; }
		genericBuild
		eval "$__nl_rp"
	else
		# The oldest setup.sh inlines the loop in genericBuild: compute its
		# phase list the same way.
		if [ -z "${phases[*]:-}" ]; then
			phases="${prePhases[*]:-} unpackPhase patchPhase ${preConfigurePhases[*]:-} configurePhase ${preBuildPhases[*]:-} buildPhase checkPhase ${preInstallPhases[*]:-} installPhase ${preFixupPhases[*]:-} fixupPhase installCheckPhase ${preDistPhases[*]:-} distPhase ${postPhases[*]:-}"
		fi
		printf '%s\n' ${phases[*]} >&5
	fi
	trap - EXIT
	eval "$__nl_dump"
	exit 0
	;;
phase)
	source /dev/fd/3
	exec 3<&-
	eval "__nl_t=($(trap -p EXIT))"
	__nl_orig=${__nl_t[2]:-}
	__nl_status() { return "$1"; }
	trap '__nl_rc=$?; eval "$__nl_dump"; trap - EXIT; set +e; __nl_status $__nl_rc; eval "$__nl_orig"; exit $__nl_rc' EXIT
	if declare -F runPhase >/dev/null; then
		runPhase "$__nl_phase"
	else
		__nl_oldRunPhase "$__nl_phase"
	fi
	# Reached only when the phase returned: an exit in its code ends the
	# whole build in Nix, which the runner must know.
	printf 'returned\n' >&5
	if [[ $__nl_last != 1 ]]; then
		trap - EXIT
		eval "$__nl_dump"
	fi
	exit 0
	;;
shell)
	source /dev/fd/3
	exec 3<&-
	trap - EXIT
	;;
esac
`
