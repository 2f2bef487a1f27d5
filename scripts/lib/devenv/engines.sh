# shellcheck shell=bash
# The engine2 and engine3 profiles of scripts/devenv: current Docker engines beside
# Debian 12's 20.10. engine2 is Debian 13's docker.io (26.x), engine3 Debian forky's
# (28.x): each in a Debian root made with debootstrap under the state dir, run as that
# root's own (pivot_root in a mount namespace of its own) with its own data-root,
# exec-root, API socket and default bridge, and no iptables (the host engine owns those).
# Each finds kuryr's plugin sockets through a bind mount of the host's /run/docker/plugins.
# Sourced by scripts/devenv.
E2_DIR=$DIR/engine2
E2_ROOT=$E2_DIR/root
# shellcheck disable=SC2034 # the sockets are read by scripts/devenv (env)
E2_SOCK=$E2_ROOT/run/engine2/docker.sock
# Their default bridges: dockerd run with --bridge=none in this network namespace deletes
# docker0, the host engine's.
E2_BRIDGE=ke2br0
E3_DIR=$DIR/engine3
E3_ROOT=$E3_DIR/root
# shellcheck disable=SC2034
E3_SOCK=$E3_ROOT/run/engine3/docker.sock
E3_BRIDGE=ke3br0

# The mirror this machine's apt uses (deb822 or one-line sources), else Debian's.
e2_mirror() {
  local m
  m=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  if [ -z "$m" ]; then
    m=$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
  fi
  case "$m" in
    *security*|"") echo http://deb.debian.org/debian ;;
    *) echo "$m" ;;
  esac
}

engine_ok() { DOCKER_HOST="unix://$DIR/$1/root/run/$1/docker.sock" "$DOCKER" version >/dev/null 2>&1; }

# pivot_dockerd SERVICE LOG ROOT PLUGINS NETNS BIND DOCKERD_ARGS...: the dockerd of the
# Debian root ROOT as service SERVICE, in a mount namespace of its own whose root *is*
# ROOT (pivot_root, not chroot: under a chroot runc would give containers the host's
# root). The host's /proc, /sys, /dev and its plugin directory PLUGINS (as
# /run/docker/plugins) are bound in first, and the host's directory BIND (if not empty)
# at the same path; every mount stays in that namespace and goes with it. NETNS (if not
# empty) is the network namespace it runs in. Paths in DOCKERD_ARGS are ROOT's (or BIND's).
pivot_dockerd() {
  local name=$1 logf=$2 root=$3 plugins=$4 netns=$5 bind=$6
  shift 6
  local enter=()
  # nsenter, not `ip netns exec`: the latter remounts /sys, hiding the cgroup mounts
  # dockerd needs.
  if [ -n "$netns" ]; then enter=(nsenter --net="/run/netns/$netns"); fi
  # shellcheck disable=SC2016 # $1.. are the inner sh's own arguments, expanded by it
  start_bg "$name" "$logf" "${enter[@]}" unshare --mount --propagation private sh -c '
    set -e
    r=$1 plugins=$2 bind=$3
    shift 3
    mount --bind "$r" "$r"
    mount --rbind /proc "$r/proc"
    mount --rbind /sys "$r/sys"
    mount --rbind /dev "$r/dev"
    mount --bind "$plugins" "$r/run/docker/plugins"
    if [ -n "$bind" ]; then
      mkdir -p "$r$bind"
      mount --bind "$bind" "$r$bind"
    fi
    cd "$r"
    pivot_root . .oldroot
    cd /
    umount -l /.oldroot
    exec dockerd "$@"' sh "$root" "$plugins" "$bind" "$@"
}

# engine_up NAME SUITE BRIDGE BRIDGE_CIDR [EXEC_ROOT]: Debian SUITE's docker.io as engine
# NAME, its root at $DIR/NAME/root, its API socket at <root>/run/NAME/docker.sock, its
# exec-root EXEC_ROOT (default /run/NAME/exec) inside its root.
engine_up() {
  local name=$1 suite=$2 bridge=$3 bridge_ip=$4 exec=${5:-/run/$1/exec}
  local root=$DIR/$name/root
  # The exec-root as the host sees it (the root's /var/run is a link to its /run).
  local exec_host=$root/${exec#/var/}
  local sock=$root/run/$name/docker.sock
  install_packages debootstrap
  mkdir -p "$DIR/$name"
  if [ ! -x "$root/usr/sbin/dockerd" ]; then
    local mirror; mirror=$(e2_mirror)
    log "building a Debian $suite root with docker.io under $root (debootstrap from $mirror)"
    note_change "built the $name root"
    rm -rf --one-file-system "$root"
    # The sid script serves every suite (bookworm's debootstrap has no script named forky).
    debootstrap --variant=minbase --include=docker.io "$suite" "$root" "$mirror" \
      /usr/share/debootstrap/scripts/sid \
      >"$DIR/log/$name-debootstrap.log" 2>&1 \
      || die "debootstrap failed: see $DIR/log/$name-debootstrap.log"
  fi
  if ! ip link show "$bridge" >/dev/null 2>&1; then
    ip link add "$bridge" type bridge
    note_change "created bridge $bridge"
  fi
  ip addr replace "$bridge_ip" dev "$bridge"
  ip link set "$bridge" up
  if ! engine_ok "$name"; then
    log "starting Docker engine $name (unix://$sock)"
    mkdir -p "$root/run/$name" "$root/run/docker/plugins" "$root/.oldroot"
    # Pid files of an engine that was killed stay in its root; dockerd trusts one whose
    # pid the host has since reused, and waits for a containerd that is not there.
    rm -f "$sock" "$root/run/$name/dockerd.pid" "$exec_host/containerd/containerd.pid"
    # The API socket is a file of the root's own disk: the host reaches it at $sock.
    pivot_dockerd "$name-dockerd" "$DIR/log/$name-dockerd.log" "$root" /run/docker/plugins "" "" \
      --data-root /var/lib/docker --exec-root "$exec" --pidfile "/run/$name/dockerd.pid" \
      -H "unix:///run/$name/docker.sock" --bridge="$bridge" --iptables=false --ip6tables=false
  fi
  wait_for 60 engine_ok "$name" || die "Docker engine $name did not start: see $DIR/log/$name-dockerd.log"
  DOCKER_HOST="unix://$sock" import_image
  log "$name profile ready: Docker $(DOCKER_HOST="unix://$sock" "$DOCKER" version --format '{{.Server.Version}}') at unix://$sock"
}

up_engine2() { engine_up engine2 trixie "$E2_BRIDGE" 172.30.250.1/24; }
# engine3 keeps Docker's default exec-root (in its own root): sandbox keys are
# /var/run/docker/netns/<id> as on a real host, the form the Python reference accepts
# (tests/swap.rs runs on this engine too).
up_engine3() {
  engine_up engine3 forky "$E3_BRIDGE" 172.30.252.1/24 /var/run/docker
  # The multihost hosts' engines of this release, when those hosts are up.
  if mh_docker_ok a && mh_docker_ok b; then up_multihost_engine3; fi
}

engine_status() { # engine_status NAME
  local sock=$DIR/$1/root/run/$1/docker.sock
  if running "$1-dockerd"; then
    printf '%-18s running (pid %s, unix://%s)\n' "$1-dockerd" "$(cat "$(pidfile "$1-dockerd")")" "$sock"
  else
    printf '%-18s stopped (profile: scripts/devenv %s)\n' "$1-dockerd" "$1"
  fi
}
status_engine2() { engine_status engine2; }
status_engine3() { engine_status engine3; }
