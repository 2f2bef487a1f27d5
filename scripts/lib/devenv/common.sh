# shellcheck shell=bash
# What scripts/devenv and its profiles share: logging, services (each started in a session
# of its own, found again by pid file), packages, config files that are replaced only when
# their content changes, and the record of every change `up` makes, which
# `scripts/devenv verify` reads to prove a second `up` changes nothing.
# Sourced by scripts/devenv after DIR is set.

log() { printf '[devenv] %s\n' "$*" >&2; }
die() { printf '[devenv] ERROR: %s\n' "$*" >&2; exit 1; }

CHANGES_FILE="$DIR/run/changes"
# Files this invocation rewrote, one per line: a file, not a variable, because
# write_config often runs at the end of a pipeline (a subshell). $$ is the same there.
WRITTEN_FILE="$DIR/run/written.$$"
trap 'rm -f "$WRITTEN_FILE"' EXIT
note_change() { # note_change WHAT: `up` started, installed, created or rewrote something
  mkdir -p "$DIR/run"
  printf '%s\n' "$*" >>"$CHANGES_FILE"
}

pidfile() { echo "$DIR/run/$1.pid"; }
proc_start() { # proc_start PID: when the process started (clock ticks after boot); "" if gone
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  # Field 22; the fields after the command's ")" start at field 3.
  stat=${stat##*) }
  # shellcheck disable=SC2086 # split into fields on purpose
  set -- $stat
  echo "${20}"
}
running() { # running NAME: a process of the session we started for NAME is alive
  # (wrappers such as rabbitmq-server's may exit and leave their children running).
  local f sid; f=$(pidfile "$1")
  [ -s "$f" ] || return 1
  sid=$(cat "$f")
  # After a reboot, or when everything was killed, the kernel may have given the number
  # to an unrelated session leader (a login shell): not ours, and never to be killed.
  # (While the session has members the number cannot be reused.)
  if [ -s "$f.start" ] && [ -e "/proc/$sid" ] && [ "$(proc_start "$sid")" != "$(cat "$f.start")" ]; then
    return 1
  fi
  pgrep -s "$sid" >/dev/null 2>&1
}
wait_for() { # wait_for SECONDS COMMAND...: until COMMAND succeeds; 1 if it never did
  local secs=$1; shift
  local i
  for ((i = 0; i < secs * 4; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.25
  done
  return 1
}
tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
start_bg() { # start_bg NAME LOGFILE COMMAND...: detached, pid recorded
  local name=$1 logf=$2; shift 2
  setsid "$@" >>"$logf" 2>&1 </dev/null &
  echo $! >"$(pidfile "$name")"
  proc_start $! >"$(pidfile "$name").start"
  note_change "started $name"
}
stop_service() { # stop_service NAME: all of the session started for NAME
  local name=$1
  if running "$name"; then
    log "stopping $name"
    local sid; sid=$(cat "$(pidfile "$name")")
    pkill -TERM -s "$sid" 2>/dev/null || true
    wait_for 30 session_gone "$sid" || pkill -KILL -s "$sid" 2>/dev/null || true
  fi
  rm -f "$(pidfile "$name")" "$(pidfile "$name").start"
}
session_gone() { ! pgrep -s "$1" >/dev/null; }

write_config() { # write_config FILE < CONTENT: replaced (0644) only when the content differs
  local f=$1 tmp
  mkdir -p "$(dirname "$f")"
  tmp=$(mktemp "$f.XXXXXX")
  cat >"$tmp"
  if [ -f "$f" ] && cmp -s "$tmp" "$f"; then
    rm -f "$tmp"
    return 0
  fi
  chmod 0644 "$tmp"
  mv -f "$tmp" "$f"
  printf '%s\n' "$f" >>"$WRITTEN_FILE"
  note_change "wrote $f"
}
restart_if_changed() { # restart_if_changed NAME FILE...: stop NAME if it runs on a file just rewritten
  local name=$1 f; shift
  running "$name" || return 0
  [ -f "$WRITTEN_FILE" ] || return 0
  for f in "$@"; do
    if grep -qxF -- "$f" "$WRITTEN_FILE"; then
      log "configuration changed ($f): restarting $name"
      note_change "restarted $name"
      stop_service "$name"
      return 0
    fi
  done
}

installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }
install_packages() { # install_packages PACKAGE...: those not installed yet
  local missing=() p
  for p in "$@"; do
    installed "$p" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "packages missing (${missing[*]}) and not root"
  mkdir -p "$DIR/log"
  log "installing: ${missing[*]}"
  note_change "installed ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Package scripts must not start the distribution's own services: we run our own.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get update -q >>"$DIR/log/apt.log" 2>&1 \
    || { rm -f /usr/sbin/policy-rc.d; die "apt-get update failed: see $DIR/log/apt.log"; }
  apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$DIR/log/apt.log" 2>&1 \
    || { rm -f /usr/sbin/policy-rc.d; die "apt-get install ${missing[*]} failed: see $DIR/log/apt.log"; }
  rm -f /usr/sbin/policy-rc.d
}

iptables_ensure() { # iptables_ensure CHAIN RULE...: the rule first in CHAIN, added once
  local chain=$1; shift
  iptables -N "$chain" 2>/dev/null || true
  if ! iptables -C "$chain" "$@" 2>/dev/null; then
    iptables -I "$chain" "$@"
    note_change "iptables: $chain $*"
  fi
}

iptables_absent() { # iptables_absent CHAIN RULE...: the rule removed from CHAIN, if there
  local chain=$1; shift
  while iptables -C "$chain" "$@" 2>/dev/null; do
    iptables -D "$chain" "$@"
    note_change "iptables: removed $chain $*"
  done
}

agent_conf() { # agent_conf HOST FOLDER: FOLDER/neutron.conf, the base's for an agent of HOST
  mkdir -p "$2/state" "$2/lock"
  sed -e "s/^host = .*/host = $1/" -e "s|^state_path = .*|state_path = $2/state|" \
    -e "s|^lock_path = .*|lock_path = $2/lock|" "$DIR/neutron/neutron.conf" | write_config "$2/neutron.conf"
}

neutron_api() { curl -fsS -m 5 "http://127.0.0.1:$NEUTRON_PORT/v2.0/$1"; }
# agent_alive TYPE HOST: Neutron lists an alive agent of that type for that host. (The
# answer is read whole, not piped into `grep -q`: with pipefail, curl's SIGPIPE would read
# as "not alive".)
agent_alive() {
  local body
  body=$(neutron_api "agents?agent_type=${1// /%20}&host=$2") || return 1
  [[ $body =~ \"alive\":\ *true ]]
}
wait_agent() { # wait_agent TYPE HOST LOG
  wait_for 90 agent_alive "$1" "$2" \
    || die "the $1 of host $2 did not report alive: see $3"
}

# ovn_chassis WHAT SYSTEM_ID HOSTNAME SB_REMOTE ENCAP_IP VSCTL...: make the Open vSwitch
# that VSCTL... (an ovs-vsctl command line) reaches an OVN chassis with br-int on the
# userspace datapath; only the external_ids that differ are written.
ovn_chassis() {
  local what=$1 sysid=$2 host=$3 remote=$4 encap=$5; shift 5
  local kv
  for kv in "system-id=$sysid" "hostname=$host" "ovn-remote=$remote" ovn-encap-type=geneve \
            "ovn-encap-ip=$encap" ovn-bridge=br-int ovn-bridge-datapath-type=netdev; do
    ovs_external_id "$what" "${kv%%=*}" "${kv#*=}" "$@"
  done
}

# ovs_external_id WHAT KEY VALUE VSCTL...: external_ids:KEY of the Open_vSwitch row that
# VSCTL... reaches, written only when it differs.
ovs_external_id() {
  local what=$1 key=external_ids:$2 val=$3 have; shift 3
  have=$("$@" --if-exists get Open_vSwitch . "$key" 2>/dev/null | tr -d '"' || true)
  if [ "$have" != "$val" ]; then
    "$@" set Open_vSwitch . "$key=\"$val\""
    note_change "$what OVS: $key=$val"
  fi
}

# neutron_server_up NAME STATE_DIR WHAT [PREFIX...] -- CONFIG_FILE...: unless service NAME
# runs, creates Neutron's schema once (STATE_DIR/db-synced) and starts neutron-server
# (log $DIR/log/NAME.log); PREFIX runs both (e.g. in another root and namespace).
neutron_server_up() {
  local name=$1 state=$2 what=$3; shift 3
  local prefix=() conf=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do prefix+=("$1"); shift; done
  shift
  local f
  for f in "$@"; do conf+=(--config-file "$f"); done
  running "$name" && return 0
  if [ ! -f "$state/db-synced" ]; then
    log "creating the database schema of $what"
    note_change "created the schema of $what"
    "${prefix[@]}" neutron-db-manage "${conf[@]}" upgrade heads >"$DIR/log/$name-db-manage.log" 2>&1 \
      || die "neutron-db-manage failed: see $DIR/log/$name-db-manage.log"
    touch "$state/db-synced"
  fi
  log "starting $what"
  start_bg "$name" "$DIR/log/$name.log" "${prefix[@]}" neutron-server "${conf[@]}"
}
