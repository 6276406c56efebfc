# shellcheck shell=bash
# The program every sandboxed step of a layered build runs, as
#
#   bash [builder flags] -c "$(cat driver.bash)" SCRIPT MODE PHASE LAST DUMP \
#       ORDER SWITCHES ENTERS
#
# SCRIPT is the derivation's builder script ($0, as when Nix runs
# `bash -e SCRIPT`), MODE is probe, phase or shell, PHASE the phase to run,
# LAST 1 for the derivation's last phase, and DUMP the bash command that
# writes one shell-state capture to fd 4 (shellstate.DumpCommand). ORDER,
# SWITCHES and ENTERS describe the stdenv's standard phases (Go's
# phaserules.Standard), which only the oldest setup.sh makes the driver
# handle itself: ORDER is the default phase list, where @NAME stands for
# the phases listed in the variable NAME; SWITCHES holds "PHASE VARIABLE
# if|unless" triples (the phase runs only if VARIABLE is set, or unless it
# is); ENTERS lists the phases after which the loop changes into
# $sourceRoot. It sources
# the structured attributes and the stdenv like the default builder does and
# then, by MODE:
#
#   - probe: asks the stdenv's own genericBuild for the phase list by
#     replacing runPhase with a recorder (fd 5), and captures the shell state
#     before and after, so side effects of genericBuild carry over;
#   - phase: restores the state left by earlier phases (a script on fd 3),
#     runs PHASE, reports "returned" on fd 5 when the phase's code did not
#     exit the builder, and captures the state (fd 4). The stdenv's EXIT trap
#     runs only after the last phase or on failure, as it would in a
#     single-process build;
#   - shell: restores the state and becomes an interactive bash in it.
#
# Its own variables and functions start with __nl_ and are never carried
# over from one phase to the next.

__nl_mode=$1 __nl_phase=$2 __nl_last=$3 __nl_dump=$4
__nl_order=$5 __nl_switches=$6 __nl_enters=$7
# The stdenv is sourced with no arguments, as by the default builder.
set --

# Whether the stdenv's switch for phase $1 turns it off.
__nl_switchedOff() {
	# shellcheck disable=SC2206 # a list of words
	local -a t=($__nl_switches)
	local i v
	for ((i = 0; i + 2 < ${#t[@]}; i += 3)); do
		[[ ${t[i]} == "$1" ]] || continue
		v=${t[i + 1]}
		if [[ ${t[i + 2]} == if ]]; then
			[[ -z ${!v:-} ]] && return 0
		else
			[[ -n ${!v:-} ]] && return 0
		fi
		return 1
	done
	return 1
}

# The body of the oldest setup.sh's genericBuild loop (before runPhase
# existed, ~2023), for one phase.
__nl_oldRunPhase() {
	curPhase=$1
	if __nl_switchedOff "$curPhase"; then
		return 0
	fi
	if [ -n "${NIX_LOG_FD:-}" ]; then
		echo "@nix { \"action\": \"setPhase\", \"phase\": \"$curPhase\" }" >&"$NIX_LOG_FD"
	fi
	if declare -F showPhaseHeader >/dev/null; then showPhaseHeader "$curPhase"; fi
	if declare -F dumpVars >/dev/null; then dumpVars; fi
	eval "${!curPhase:-$curPhase}"
	if [[ " $__nl_enters " == *" $curPhase "* ]]; then
		# shellcheck disable=SC2164 # as the stdenv's loop: set -e decides
		cd "${sourceRoot:-.}"
	fi
}

if [ -e "${NIX_ATTRS_SH_FILE:-}" ]; then
	# shellcheck disable=SC1090
	source "$NIX_ATTRS_SH_FILE"
elif [ -f .attrs.sh ]; then
	# shellcheck disable=SC1091
	source .attrs.sh
fi
# shellcheck disable=SC1091,SC2154 # stdenv comes from the derivation
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
		# shellcheck disable=SC2317 # called by genericBuild
		runPhase() { printf '%s\n' "$*" >&5; }
		genericBuild
		eval "$__nl_rp"
	else
		# The oldest setup.sh inlines the loop in genericBuild: compute its
		# phase list the same way.
		if [ -z "${phases[*]:-}" ]; then
			phases=
			for __nl_w in $__nl_order; do
				if [[ $__nl_w == @* ]]; then
					__nl_v="${__nl_w#@}[*]"
					phases+=" ${!__nl_v:-}"
				else
					phases+=" $__nl_w"
				fi
			done
		fi
		# shellcheck disable=SC2048,SC2086 # a string or an array of words
		printf '%s\n' ${phases[*]} >&5
	fi
	trap - EXIT
	eval "$__nl_dump"
	exit 0
	;;
phase)
	# shellcheck disable=SC1091
	source /dev/fd/3
	exec 3<&-
	eval "__nl_t=($(trap -p EXIT))"
	__nl_orig=${__nl_t[2]:-}
	# shellcheck disable=SC2317 # called by the trap
	__nl_status() { return "$1"; }
	# shellcheck disable=SC2154 # __nl_rc is set by the trap itself
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
	# shellcheck disable=SC1091
	source /dev/fd/3
	exec 3<&-
	trap - EXIT
	# End in an interactive bash that keeps the restored state (a child
	# bash would lose the functions).
	# shellcheck disable=SC2016 # expanded at the prompt
	PS1='[nixlayer ${__nl_phase}] \w\$ '
	set +e +u +o pipefail
	exec 4>&- 5>&-
	echo "nixlayer: shell after ${__nl_phase}; the tree is a throwaway copy. Leave with 'exit'." >&2
	__nl_rc=/tmp/.nixlayer-shellrc
	{
		declare -p | grep -v -e '^declare -[a-zA-Z-]*r'
		declare -f
		echo "cd \"$PWD\""
		echo "PS1='$PS1'"
	} >"$__nl_rc" 2>/dev/null
	exec -a bash /proc/self/exe --noprofile --rcfile "$__nl_rc" -i
	;;
esac
