# shellcheck shell=bash
# The engine2 profile of scripts/devenv: a second, current Docker engine beside Debian
# 12's 20.10. Debian 13's docker.io (26.x) in a Debian 13 root made with debootstrap under
# the state dir, run as that root's own (pivot_root in a mount namespace of its own) with
# its own data-root, exec-root, API socket and default bridge, and no iptables (the host
# engine owns those). It finds kuryr's plugin sockets through a bind mount of the host's
# /run/docker/plugins. Sourced by scripts/devenv.
E2_DIR=$DIR/engine2
E2_ROOT=$E2_DIR/root
E2_SOCK=$E2_ROOT/run/engine2/docker.sock
E2_SUITE=trixie
# Its default bridge: dockerd run with --bridge=none in this network namespace deletes
# docker0, the host engine's.
E2_BRIDGE=ke2br0
E2_BRIDGE_IP=172.30.250.1/24

e2_docker_ok() { DOCKER_HOST="unix://$E2_SOCK" "$DOCKER" version >/dev/null 2>&1; }

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

up_engine2() {
  install_packages debootstrap
  mkdir -p "$E2_DIR"
  if [ ! -x "$E2_ROOT/usr/sbin/dockerd" ]; then
    local mirror; mirror=$(e2_mirror)
    log "building a Debian 13 root with docker.io under $E2_ROOT (debootstrap from $mirror)"
    note_change "built the engine2 root"
    rm -rf --one-file-system "$E2_ROOT"
    debootstrap --variant=minbase --include=docker.io "$E2_SUITE" "$E2_ROOT" "$mirror" \
      >"$DIR/log/engine2-debootstrap.log" 2>&1 \
      || die "debootstrap failed: see $DIR/log/engine2-debootstrap.log"
  fi
  if ! ip link show "$E2_BRIDGE" >/dev/null 2>&1; then
    ip link add "$E2_BRIDGE" type bridge
    note_change "created bridge $E2_BRIDGE"
  fi
  ip addr replace "$E2_BRIDGE_IP" dev "$E2_BRIDGE"
  ip link set "$E2_BRIDGE" up
  if ! e2_docker_ok; then
    log "starting the second Docker engine (unix://$E2_SOCK)"
    mkdir -p "$E2_ROOT/run/engine2" "$E2_ROOT/run/docker/plugins" "$E2_ROOT/.oldroot"
    rm -f "$E2_SOCK"
    # In a mount namespace of its own whose root *is* the Debian 13 root (pivot_root,
    # not chroot: under a chroot runc would give containers the host's root). The host's
    # /proc, /sys, /dev and plugin directory are bound in first; every mount stays in
    # that namespace and goes with it. The API socket is a file of the root's own disk,
    # so the host reaches it at $E2_SOCK.
    # shellcheck disable=SC2016 # $1 and $2 are the inner sh's own arguments, expanded by it
    start_bg engine2-dockerd "$DIR/log/engine2-dockerd.log" \
      unshare --mount --propagation private sh -c '
        set -e
        r=$1
        mount --bind "$r" "$r"
        mount --rbind /proc "$r/proc"
        mount --rbind /sys "$r/sys"
        mount --rbind /dev "$r/dev"
        mount --bind /run/docker/plugins "$r/run/docker/plugins"
        cd "$r"
        pivot_root . .oldroot
        cd /
        umount -l /.oldroot
        exec dockerd --data-root /var/lib/docker --exec-root /run/engine2/exec \
          --pidfile /run/engine2/dockerd.pid -H unix:///run/engine2/docker.sock \
          --bridge=$2 --iptables=false --ip6tables=false' sh "$E2_ROOT" "$E2_BRIDGE"
  fi
  wait_for 60 e2_docker_ok || die "the second Docker engine did not start: see $DIR/log/engine2-dockerd.log"
  DOCKER_HOST="unix://$E2_SOCK" import_image
  log "engine2 profile ready: Docker $(DOCKER_HOST="unix://$E2_SOCK" "$DOCKER" version --format '{{.Server.Version}}') at unix://$E2_SOCK"
}

status_engine2() {
  if running engine2-dockerd; then
    printf '%-18s running (pid %s, unix://%s)\n' engine2-dockerd "$(cat "$(pidfile engine2-dockerd)")" "$E2_SOCK"
  else
    printf '%-18s stopped (profile: scripts/devenv engine2)\n' engine2-dockerd
  fi
}
