# shellcheck shell=bash
# Sourced by every script of the project: under `set -e`, a failing command must never end
# a script without a word. On any failure this prints the command, the script and line it
# failed at, its exit status, and which log to read (FAILTRAP_LOGS, set by the caller as it
# goes). errtrace (-E) carries the trap into functions and command substitutions, so a
# failure inside $(...) is reported there and again at the line that used it.
#
#   . "$(dirname "$0")/lib/failtrap.sh"   (path relative to the sourcing script)
#   FAILTRAP_LOGS="/var/tmp/kuryr-devenv/log/"    (optional: where to look)
set -Eeuo pipefail
FAILTRAP_LOGS=${FAILTRAP_LOGS:-}
failtrap_report() {
  local rc=$1 cmd=$2 src=$3 line=$4
  {
    printf '\n%s: FAILED (exit %s) at %s line %s:\n    %s\n' "${0##*/}" "$rc" "$src" "$line" "$cmd"
    if [ -n "$FAILTRAP_LOGS" ]; then printf '  logs: %s\n' "$FAILTRAP_LOGS"; fi
  } >&2
}
trap 'failtrap_report "$?" "$BASH_COMMAND" "${BASH_SOURCE[0]:-$0}" "$LINENO"' ERR
