# shellcheck shell=bash
# The podman profile of scripts/devenv: Debian 12's Podman 4.3 on its CNI backend, for the
# CNI front-end's end-to-end tests. Installed without recommends (netavark would become
# the default backend), with its own image store under the state dir (vfs: no overlay
# mounts to clean up) holding the busybox image, made as Docker's is. The tests run
# `podman --root $PODMAN_DIR/storage --runroot $PODMAN_DIR/run --storage-driver vfs` with
# a containers.conf of their own (CNI backend, their conflist directory, kuryr-cni's
# directory first in cni_plugin_dirs). Sourced by scripts/devenv.
PODMAN_DIR=$DIR/podman
PODMAN_IMAGE=localhost/kuryr-busybox:latest
PODMAN_CONF=$PODMAN_DIR/containers.conf

podman_cmd() {
  CONTAINERS_CONF=$PODMAN_CONF podman --root "$PODMAN_DIR/storage" --runroot "$PODMAN_DIR/run" \
    --storage-driver vfs --cgroup-manager cgroupfs --events-backend file "$@"
}

up_podman() {
  install_packages podman containernetworking-plugins
  mkdir -p "$PODMAN_DIR/storage" "$PODMAN_DIR/run" "$PODMAN_DIR/net.d"
  # The trap of these machines: podman's default ulimits make runc fail ("error setting
  # rlimits ... operation not permitted").
  local conf
  conf=$(cat <<CONF
[containers]
default_ulimits = []
[network]
network_backend = "cni"
network_config_dir = "$PODMAN_DIR/net.d"
cni_plugin_dirs = ["/usr/lib/cni"]
[engine]
runtime = "runc"
CONF
)
  if [ "$(cat "$PODMAN_CONF" 2>/dev/null || true)" != "$conf" ]; then
    printf '%s\n' "$conf" >"$PODMAN_CONF"
    note_change "wrote $PODMAN_CONF"
  fi
  if ! podman_cmd image exists "$PODMAN_IMAGE"; then
    log "importing $PODMAN_IMAGE into podman's store"
    note_change "imported $PODMAN_IMAGE"
    local root; root=$(mktemp -d)
    busybox_root "$root"
    tar -C "$root" -c . | podman_cmd import -c 'CMD ["sh"]' - "$PODMAN_IMAGE" \
      >>"$DIR/log/podman.log" 2>&1 || { rm -rf "$root"; die "podman import failed: see $DIR/log/podman.log"; }
    rm -rf "$root"
  fi
  log "podman $(podman --version | awk '{print $3}') ready (CNI backend, store $PODMAN_DIR)"
}

# Podman runs no daemon: what it leaves are containers (and their shm mounts under the
# store), removed here so a purge finds nothing mounted.
down_podman() {
  [ -d "$PODMAN_DIR/storage" ] && command -v podman >/dev/null || return 0
  podman_cmd rm -af -t 0 >/dev/null 2>&1 || true
}
