# shellcheck shell=bash
# The containerd profile of scripts/devenv: Debian 12's containerd 1.6 with its CRI plugin,
# a daemon of our own (not the system's, not dockerd's) with its config, root, state and
# API socket under $CTR_DIR, so tests (tests/containerd.rs) can run Kubernetes-style pods
# through the CRI gRPC API with kuryr-cni as the pod network. CRI reads its conflist from
# $CTR_DIR/net.d and its plugins from $CTR_DIR/cni-bin: the tests put both there (the
# profile only adds `loopback`, which CRI runs for every pod). No registry is reachable:
# the busybox and pause images are an OCI archive made here and imported. The tests stop
# and start the daemon with $CTR_DIR/stop and $CTR_DIR/start; pods' shims outlive it, as
# under a kubelet. Sourced by scripts/devenv.
CTR_DIR=$DIR/containerd
CTR_CONF=$CTR_DIR/config.toml
CTR_SOCK=$CTR_DIR/containerd.sock
CTR_IMAGE=localhost/kuryr-busybox:latest
CTR_PAUSE=localhost/kuryr-pause:1
# native: plain copies, no overlay mounts (as podman's vfs); the images are tiny.
CTR_SNAPSHOTTER=native

ctr_cmd() { ctr --address "$CTR_SOCK" -n k8s.io "$@"; }
ctr_answers() { ctr --address "$CTR_SOCK" version >/dev/null 2>&1; }

ctr_config() {
  # restrict_oom_score_adj: no CAP_SYS_RESOURCE here, CRI's -998 for sandboxes would fail.
  # netns_mounts_under_state_dir: pods' netns files under $CTR_DIR, not /run/netns.
  write_config "$CTR_CONF" <<EOF
# Written by scripts/devenv (containerd profile).
version = 2
root = "$CTR_DIR/root"
state = "$CTR_DIR/state"
# Snapshotters that cannot work here: not even tried (their errors would fill the log).
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = "$CTR_SOCK"

[plugins."io.containerd.internal.v1.opt"]
  path = "$CTR_DIR/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$CTR_PAUSE"
  stream_server_address = "127.0.0.1"
  disable_apparmor = true
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "$CTR_SNAPSHOTTER"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # No systemd here: cgroupfs. runc's state beside ours, not in /run/containerd.
        SystemdCgroup = false
        Root = "$CTR_DIR/state/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CTR_DIR/cni-bin"
    conf_dir = "$CTR_DIR/net.d"
    max_conf_num = 1
EOF
  # Found by pid file and command line (a pid the kernel gave to another process is not
  # ours). Only that pid is signalled: the shims, in its session, keep the pods running.
  local alive
  alive=$(cat <<EOF
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
alive() {
  p=\$(cat $CTR_DIR/containerd.pid 2>/dev/null) &&
    [ "\$(tr '\\0' ' ' 2>/dev/null <"/proc/\$p/cmdline")" = "containerd --config $CTR_CONF " ]
}
EOF
)
  write_config "$CTR_DIR/start" <<EOF
#!/bin/bash
# Written by scripts/devenv (containerd profile): start this containerd unless it runs,
# and wait until its CRI answers (it serves a moment before CRI has recovered its pods).
$alive
cri_ready() {
  /usr/bin/python3 -c 'import grpc, sys
grpc.insecure_channel("unix://" + sys.argv[1]).unary_unary(
    "/runtime.v1.RuntimeService/Version")(b"", timeout=2)' $CTR_SOCK 2>/dev/null
}
if ! alive; then
  setsid containerd --config $CTR_CONF >>$DIR/log/containerd.log 2>&1 </dev/null &
  echo \$! >$CTR_DIR/containerd.pid
fi
for _ in \$(seq 120); do
  cri_ready && exit 0
  alive || break
  sleep 0.25
done
echo "containerd's CRI did not answer on $CTR_SOCK; $DIR/log/containerd.log ends:" >&2
tail -n 20 $DIR/log/containerd.log >&2
exit 1
EOF
  write_config "$CTR_DIR/stop" <<EOF
#!/bin/bash
# Written by scripts/devenv (containerd profile): stop this containerd (SIGTERM, SIGKILL
# after 12 s); the pods' shims and containers keep running.
$alive
# Exited: gone, or a zombie its new parent has not reaped yet (its files are closed).
exited() { [ ! -e "/proc/\$p" ] || grep -q '^State:.*Z' "/proc/\$p/status" 2>/dev/null; }
if alive; then
  kill -TERM "\$p"
  for _ in \$(seq 120); do exited && break; sleep 0.1; done
  if ! exited; then kill -KILL "\$p"; sleep 0.5; fi
fi
rm -f $CTR_DIR/containerd.pid
EOF
  chmod 0755 "$CTR_DIR/start" "$CTR_DIR/stop"
}

ctr_json_blob() { # ctr_json_blob BLOBS JSON: stored by digest; prints "sha256:HEX SIZE"
  local d; d=$(printf '%s' "$2" | sha256sum | cut -d' ' -f1)
  printf '%s' "$2" >"$1/$d"
  echo "sha256:$d $(printf '%s' "$2" | wc -c)"
}
# An OCI image layout holding both images on one busybox layer (no registry, no docker).
# The pause image's shell stays PID 1 and exits at once on SIGTERM or SIGINT.
ctr_import_images() {
  local have; have=$(ctr_cmd images ls -q)
  if grep -qxF "$CTR_IMAGE" <<<"$have" && grep -qxF "$CTR_PAUSE" <<<"$have"; then return 0; fi
  log "importing $CTR_IMAGE and $CTR_PAUSE into containerd (k8s.io)"
  note_change "imported $CTR_IMAGE and $CTR_PAUSE into containerd"
  local work blobs layer size arch index="" name args cfg cfgsize man mansize
  work=$(mktemp -d); blobs=$work/oci/blobs/sha256
  mkdir -p "$blobs"
  busybox_root "$work/root"
  ln -s busybox "$work/root/bin/httpd"
  tar -C "$work/root" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf "$work/layer" .
  layer=sha256:$(sha256sum <"$work/layer" | cut -d' ' -f1); size=$(stat -c %s "$work/layer")
  mv "$work/layer" "$blobs/${layer#sha256:}"
  arch=$(dpkg --print-architecture)
  for name in "$CTR_IMAGE" "$CTR_PAUSE"; do
    args='"Cmd":["sh"]'
    [ "$name" = "$CTR_PAUSE" ] && args="\"Entrypoint\":[\"sh\",\"-c\",\"trap 'exit 0' TERM INT; while :; do sleep 3600 & wait; done\"]"
    read -r cfg cfgsize < <(ctr_json_blob "$blobs" "{\"architecture\":\"$arch\",\"os\":\"linux\",\"config\":{\"Env\":[\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"],$args},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"$layer\"]}}")
    read -r man mansize < <(ctr_json_blob "$blobs" "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"$cfg\",\"size\":$cfgsize},\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"$layer\",\"size\":$size}]}")
    index+="${index:+,}{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"$man\",\"size\":$mansize,\"annotations\":{\"io.containerd.image.name\":\"$name\"}}"
  done
  printf '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"
  printf '{"schemaVersion":2,"manifests":[%s]}' "$index" >"$work/oci/index.json"
  tar -C "$work/oci" -c oci-layout index.json blobs \
    | ctr_cmd images import --snapshotter "$CTR_SNAPSHOTTER" - >>"$DIR/log/containerd.log" 2>&1 \
    || { rm -rf "$work"; die "ctr images import failed: see $DIR/log/containerd.log"; }
  rm -rf "$work"
}

up_containerd() {
  install_packages containerd runc containernetworking-plugins python3-grpcio
  mkdir -p "$CTR_DIR/net.d" "$CTR_DIR/cni-bin"
  if [ "$(readlink "$CTR_DIR/cni-bin/loopback")" != /usr/lib/cni/loopback ]; then
    ln -sfn /usr/lib/cni/loopback "$CTR_DIR/cni-bin/loopback"
    note_change "linked $CTR_DIR/cni-bin/loopback"
  fi
  ctr_config
  if ctr_answers && grep -qxF "$CTR_CONF" "$WRITTEN_FILE" 2>/dev/null; then
    log "configuration changed ($CTR_CONF): restarting containerd"
    note_change "restarted containerd"
    "$CTR_DIR/stop"
  fi
  if ! ctr_answers; then
    log "starting containerd ($CTR_SOCK)"
    note_change "started containerd"
    "$CTR_DIR/start" || die "containerd did not start: see $DIR/log/containerd.log"
  fi
  # Read whole (with pipefail, grep -q's early exit would fail ctr on SIGPIPE).
  local plugins; plugins=$(ctr --address "$CTR_SOCK" plugins ls)
  awk '$1 == "io.containerd.grpc.v1" && $2 == "cri" && $4 == "ok" { f = 1 } END { exit !f }' <<<"$plugins" \
    || die "containerd's CRI plugin did not load: see $DIR/log/containerd.log"
  ctr_import_images
  log "containerd $(containerd --version | awk '{print $3}') ready (CRI on $CTR_SOCK, CNI conf $CTR_DIR/net.d)"
}

# Every task and container of k8s.io (CRI's pods), removed behind CRI's back: it needs a
# restart to forget them. Prints how many containers there were.
ctr_rm_all() {
  local ids id
  mapfile -t ids < <(ctr_cmd containers ls -q 2>/dev/null)
  for id in "${ids[@]}"; do
    timeout 30 ctr --address "$CTR_SOCK" -n k8s.io tasks delete -f "$id" >/dev/null 2>&1 || true
    timeout 30 ctr --address "$CTR_SOCK" -n k8s.io containers delete "$id" >/dev/null 2>&1 || true
  done
  echo "${#ids[@]}"
}
ctr_umount_all() { # mounts under $CTR_DIR (rootfs binds, pods' netns), innermost first
  local m
  while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done < <(
    awk -v d="$CTR_DIR/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r)
}

# Between test runs: no pods left, an empty net.d; the images and the daemon stay.
reset_containerd() {
  [ -d "$CTR_DIR/net.d" ] && ctr_answers || return 0
  if [ "$(ctr_rm_all)" != 0 ]; then
    "$CTR_DIR/stop"
    ctr_umount_all
    "$CTR_DIR/start" || die "containerd did not restart: see $DIR/log/containerd.log"
  fi
  rm -f "$CTR_DIR/net.d/"*
}

down_containerd() {
  [ -x "$CTR_DIR/start" ] || return 0
  # Pods left running while it was stopped (a test's restart cut short): it removes them.
  if ! ctr_answers && pgrep -f -- "containerd-shim-runc-v2 .*-address $CTR_SOCK" >/dev/null; then
    "$CTR_DIR/start" || true
  fi
  if ctr_answers; then log "stopping containerd (pods, then the daemon)"; ctr_rm_all >/dev/null; fi
  if [ -x "$CTR_DIR/stop" ]; then "$CTR_DIR/stop"; fi
  # Shims of containers it could not remove (or left while it was stopped): their
  # containers (each its own pid namespace) first, then the shims.
  local shims
  mapfile -t shims < <(pgrep -f -- "containerd-shim-runc-v2 .*-address $CTR_SOCK" || true)
  if [ ${#shims[@]} -gt 0 ]; then
    pkill -KILL -P "$(IFS=,; echo "${shims[*]}")" 2>/dev/null || true
    kill -KILL "${shims[@]}" 2>/dev/null || true
    sleep 0.5
  fi
  ctr_umount_all
}

status_containerd() {
  if ctr_answers; then
    printf '%-18s running (pid %s, CRI on %s)\n' containerd "$(cat "$CTR_DIR/containerd.pid" 2>/dev/null)" "$CTR_SOCK"
  else
    printf '%-18s stopped (profile: scripts/devenv containerd)\n' containerd
  fi
}
