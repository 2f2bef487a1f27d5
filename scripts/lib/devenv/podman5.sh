# shellcheck shell=bash
# The podman5 profile of scripts/devenv: Debian 13's Podman 5.4 with netavark 1.14 (no CNI
# backend: a netavark plugin is the only way in), from a Debian 13 root made by
# debootstrap. It runs in a persistent mount namespace whose root *is* that root (held by
# an nsfs bind mount, $P5_NS/mnt), in the machine's network namespace, where kuryr and
# Neutron's bridges are. The wrapper $P5_PODMAN runs `podman ARGS` in there. The host
# reaches the root's files under $P5_ROOT: netavark plugins go in
# $P5_ROOT/usr/libexec/netavark, and a plugin reaches a host daemon through sockets under
# $P5_ROOT/var/lib/kuryr (/var/lib/kuryr inside). The container netns files live in the
# namespace's own /run (/run/netns/netns-*). Sourced by scripts/devenv.
P5_DIR=$DIR/podman5
P5_ROOT=$P5_DIR/root
P5_NS=$P5_DIR/ns
P5_PODMAN=$P5_DIR/podman
P5_IMAGE=localhost/kuryr-busybox:latest
P5_SUITE=trixie
P5_PACKAGES=podman,netavark,crun,conmon,catatonit,busybox-static,iproute2,nftables,ca-certificates

p5_mounted() { awk -v m="$1" -v t="${2:-}" '$2 == m && (t == "" || $3 == t) { f = 1 } END { exit !f }' /proc/mounts; }
# The namespace is there and was set up to the end (the marker is in its own /run).
p5_ns_ok() {
  p5_mounted "$P5_NS/mnt" nsfs && nsenter --mount="$P5_NS/mnt" -- test -e /run/kuryr-devenv-podman5
}
p5_version() { # the root's podman package version, read without entering the namespace
  # shellcheck disable=SC2016 # dpkg-query's own field syntax
  dpkg-query --admindir="$P5_ROOT/var/lib/dpkg" -W -f='${Version}' podman 2>/dev/null || true
}

p5_build_root() {
  local mirror; mirror=$(e2_mirror)
  log "building a Debian 13 root with Podman 5 under $P5_ROOT (debootstrap from $mirror)"
  note_change "built the podman5 root"
  rm -rf --one-file-system "$P5_ROOT" "$P5_DIR/root-ready"
  debootstrap --variant=minbase --include="$P5_PACKAGES" "$P5_SUITE" "$P5_ROOT" "$mirror" \
    >"$DIR/log/podman5-debootstrap.log" 2>&1 \
    || die "debootstrap failed: see $DIR/log/podman5-debootstrap.log"
  touch "$P5_DIR/root-ready"
}

p5_config() {
  # Default network none: the default bridge would put podman0, nftables rules and
  # ip_forward into the machine's network namespace, beside Neutron's bridges.
  write_config "$P5_ROOT/etc/containers/containers.conf" <<'EOF'
# Written by scripts/devenv (podman5 profile).
[containers]
netns = "none"
[network]
network_backend = "netavark"
[engine]
# No systemd in the root: crun cannot reach sd-bus, journald is not there.
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "crun"
EOF
  # vfs: no overlay mounts; the store is on the root's own disk, the runroot in the
  # namespace's tmpfs /run (volatile, as a real /run).
  write_config "$P5_ROOT/etc/containers/storage.conf" <<'EOF'
# Written by scripts/devenv (podman5 profile).
[storage]
driver = "vfs"
graphroot = "/var/lib/containers/storage"
runroot = "/run/containers/storage"
EOF
  write_config "$P5_PODMAN" <<EOF
#!/bin/bash
# Debian 13's Podman 5 of scripts/devenv's podman5 profile, run in its mount namespace
# with a clean environment; the caller's KURYR_* variables reach podman and its plugins.
vars=()
for v in "\${!KURYR_@}"; do vars+=("\$v=\${!v}"); done
exec nsenter --mount=$P5_NS/mnt -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \\
  PODMAN_IGNORE_CGROUPSV1_WARNING=1 "\${vars[@]}" podman "\$@"
EOF
  chmod 0755 "$P5_PODMAN"
}

p5_start_ns() {
  log "starting the podman5 mount namespace ($P5_NS/mnt)"
  note_change "started the podman5 mount namespace"
  # unshare --mount=FILE needs FILE on a private mount.
  mkdir -p "$P5_NS" "$P5_ROOT/.oldroot"
  if ! p5_mounted "$P5_NS"; then
    mount --bind "$P5_NS" "$P5_NS"
    mount --make-private "$P5_NS"
  fi
  if p5_mounted "$P5_NS/mnt"; then umount "$P5_NS/mnt"; fi
  touch "$P5_NS/mnt"
  # pivot_root, not chroot: crun would give containers the host's root otherwise. The
  # host's cgroup2 at /sys/fs/cgroup/unified (hybrid layout) makes crun 1.21 refuse to
  # run ("cgroups in hybrid mode not supported"): this namespace's copy goes, so crun sees
  # plain v1. /dev/shm of its own: Podman's lock segment (/libpod_lock) must not be the
  # host Podman's. The old root is detached, so the namespace holds none of the host's
  # other mounts.
  # shellcheck disable=SC2016 # $1 is the inner sh's own argument, expanded by it
  if ! unshare --mount="$P5_NS/mnt" --propagation private sh -c '
      set -e
      r=$1
      mount --bind "$r" "$r"
      mount -t proc proc "$r/proc"
      mount --rbind /sys "$r/sys"
      if mountpoint -q "$r/sys/fs/cgroup/unified"; then umount "$r/sys/fs/cgroup/unified"; fi
      mount --rbind /dev "$r/dev"
      mount -t tmpfs -o mode=1777,nosuid,nodev shm "$r/dev/shm"
      mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$r/run"
      cd "$r"
      pivot_root . .oldroot
      cd /
      umount -l /.oldroot
      touch /run/kuryr-devenv-podman5' sh "$P5_ROOT" >>"$DIR/log/podman5.log" 2>&1; then
    umount "$P5_NS/mnt" 2>/dev/null || true
    die "setting up the podman5 mount namespace failed: see $DIR/log/podman5.log"
  fi
}

p5_import_image() {
  "$P5_PODMAN" image exists "$P5_IMAGE" && return 0
  log "importing $P5_IMAGE into Podman 5"
  note_change "imported $P5_IMAGE into podman5"
  local root a; root=$(mktemp -d)
  busybox_root "$root"
  # What the tests run: busybox_root lacks httpd.
  for a in true sh ip ping sleep cat nc httpd hostname ls; do
    [ -e "$root/bin/$a" ] || ln -s busybox "$root/bin/$a"
  done
  tar -C "$root" -c . | "$P5_PODMAN" import -c 'CMD ["sh"]' - "$P5_IMAGE" \
    >>"$DIR/log/podman5.log" 2>&1 || { rm -rf "$root"; die "podman5 import failed: see $DIR/log/podman5.log"; }
  rm -rf "$root"
}

up_podman5() {
  install_packages debootstrap
  mkdir -p "$P5_DIR"
  [ -f "$P5_DIR/root-ready" ] || p5_build_root
  # Plugins dropped from the host; sockets of host daemons for them.
  mkdir -p "$P5_ROOT/usr/libexec/netavark" "$P5_ROOT/var/lib/kuryr"
  p5_config
  p5_ns_ok || p5_start_ns
  p5_ns_ok || die "the podman5 mount namespace is not usable: see $DIR/log/podman5.log"
  p5_import_image
  "$P5_PODMAN" run --rm --network none "$P5_IMAGE" true >>"$DIR/log/podman5.log" 2>&1 \
    || die "podman5 cannot run a container: see $DIR/log/podman5.log"
  log "podman5 profile ready: Podman $(p5_version) (netavark) as $P5_PODMAN, plugins in $P5_ROOT/usr/libexec/netavark"
}

# Containers and networks of the tests; the namespace stays (a clean slate, not a down).
reset_podman5() {
  p5_ns_ok || return 0
  "$P5_PODMAN" rm -af -t 0 >/dev/null 2>&1 || true
  "$P5_PODMAN" network ls -q --filter label=kuryr-test 2>/dev/null \
    | xargs -r "$P5_PODMAN" network rm -f >/dev/null 2>&1 || true
}

# Processes in the namespace (conmon, podman) and their descendants (the containers,
# which have mount namespaces of their own).
p5_pids() {
  local ns p pids=() kids
  ns=$(stat -L -c 'mnt:[%i]' "$P5_NS/mnt" 2>/dev/null) || return 0
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$ns" ] && pids+=("${p#/proc/}")
  done
  while [ ${#pids[@]} -gt 0 ]; do
    printf '%s\n' "${pids[@]}"
    kids=$(printf '%s,' "${pids[@]}")
    mapfile -t pids < <(pgrep -P "${kids%,}" || true)
  done
}

down_podman5() {
  if p5_mounted "$P5_NS/mnt" nsfs; then
    log "stopping podman5 (containers, then its mount namespace)"
    if p5_ns_ok; then timeout 60 "$P5_PODMAN" rm -af -t 0 >/dev/null 2>&1 || true; fi
    local pids
    mapfile -t pids < <(p5_pids)
    if [ ${#pids[@]} -gt 0 ]; then kill -KILL "${pids[@]}" 2>/dev/null || true; fi
    umount "$P5_NS/mnt" 2>/dev/null || umount -l "$P5_NS/mnt"
  fi
  if p5_mounted "$P5_NS"; then umount "$P5_NS" 2>/dev/null || umount -l "$P5_NS"; fi
}

status_podman5() {
  if p5_ns_ok; then
    printf '%-18s up (Podman %s, namespace %s): %s\n' podman5 "$(p5_version)" "$P5_NS/mnt" "$P5_PODMAN"
  else
    printf '%-18s stopped (profile: scripts/devenv podman5)\n' podman5
  fi
}
