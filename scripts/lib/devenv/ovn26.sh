# shellcheck shell=bash
# The ovn26 profile of scripts/devenv: the newest Neutron Debian ships (26, 2025.1) on
# ML2/OVN, with OVN 25.03 and Open vSwitch 3.5, from a Debian 13 root made by
# debootstrap, as a host of its own: network namespace kovn26 holds OVN's databases and
# ovn-northd, Open vSwitch (userspace datapath) with ovn-controller (chassis kovn26,
# host name kovn26-ovn), neutron-server (database neutron26 on the base's MariaDB,
# reached through its unix socket) and a Docker engine (the machine's, with its own
# data-root, exec-root, socket and plugin directory, as the multihost hosts). Everything
# from the root runs chrooted into it in that namespace. Neutron listens on
# 127.0.0.1:$O26_PORT in the namespace, and a relay gives the machine's loopback the same
# address, so one URL serves the tests and a kuryr inside. Sourced by scripts/devenv.
O26_DIR=$DIR/ovn26
O26_ROOT=$O26_DIR/root
O26_NS=kovn26
O26_PORT=${KURYR_DEVENV_NEUTRON26_PORT:-9699}
O26_HOST=kovn26-ovn
O26_SUITE=trixie
O26_PACKAGES=(neutron-common python3-neutron python3-pymysql ovn-central ovn-host openvswitch-switch iproute2 procps)

# o26 CMD...: CMD of the root, chrooted, in the namespace.
o26() { nsenter --net="/run/netns/$O26_NS" chroot "$O26_ROOT" "$@"; }
o26_vsctl() { o26 ovs-vsctl --db=unix:/run/openvswitch/db.sock "$@"; }
o26_api() { curl -fsS -m 5 "http://127.0.0.1:$O26_PORT/v2.0/$1"; }
o26_docker_ok() { DOCKER_HOST="unix://$O26_DIR/docker.sock" "$DOCKER" version >/dev/null 2>&1; }
o26_alive() {
  local body
  body=$(o26_api "agents?host=$O26_HOST") || return 1
  [[ $body =~ \"alive\":\ *true ]]
}
o26_mounted() { awk -v m="$1" '$2 == m { found = 1 } END { exit !found }' /proc/mounts; }

o26_build_root() {
  local mirror; mirror=$(e2_mirror)
  log "building a Debian 13 root with Neutron 26 and OVN under $O26_ROOT (debootstrap from $mirror)"
  note_change "built the ovn26 root"
  rm -rf --one-file-system "$O26_ROOT"
  debootstrap --variant=minbase "$O26_SUITE" "$O26_ROOT" "$mirror" \
    >"$DIR/log/ovn26-debootstrap.log" 2>&1 \
    || die "debootstrap failed: see $DIR/log/ovn26-debootstrap.log"
  # Package scripts must not start the root's services: this profile runs its own.
  printf '#!/bin/sh\nexit 101\n' >"$O26_ROOT/usr/sbin/policy-rc.d"
  chmod +x "$O26_ROOT/usr/sbin/policy-rc.d"
  mount --rbind /proc "$O26_ROOT/proc"
  chroot "$O26_ROOT" env DEBIAN_FRONTEND=noninteractive sh -c \
    "apt-get update -q && apt-get install -y -q --no-install-recommends ${O26_PACKAGES[*]}" \
    >>"$DIR/log/ovn26-debootstrap.log" 2>&1 \
    || { umount -l "$O26_ROOT/proc"; die "installing Neutron 26 in the root failed: see $DIR/log/ovn26-debootstrap.log"; }
  umount -l "$O26_ROOT/proc"
  touch "$O26_DIR/root-ready"
}

o26_config() {
  local etc=$O26_ROOT/etc/kuryr-devenv
  ovn_neutron_conf "$O26_PORT" /var/lib/neutron /var/lib/neutron/lock \
    "mysql+pymysql://neutron:neutron@localhost/neutron26?unix_socket=/run/mysql-host/mysqld.sock" \
    | write_config "$etc/neutron.conf"
  ovn_ml2_conf unix:/run/ovn/ovnnb_db.sock unix:/run/ovn/ovnsb_db.sock | write_config "$etc/ml2_conf.ini"
  restart_if_changed o26-neutron "$etc/neutron.conf" "$etc/ml2_conf.ini"
}

up_ovn26() {
  install_packages debootstrap
  mkdir -p "$O26_DIR"
  [ -f "$O26_DIR/root-ready" ] || o26_build_root
  if [ ! -e "/run/netns/$O26_NS" ]; then ip netns add "$O26_NS"; note_change "created namespace $O26_NS"; fi
  ip -n "$O26_NS" link set lo up
  # What the root's programs need of the machine: /proc, /dev (tap devices of the
  # userspace datapath), and MariaDB's socket directory.
  mkdir -p "$O26_ROOT/run/mysql-host" "$O26_ROOT/run/openvswitch" "$O26_ROOT/run/ovn" \
    "$O26_ROOT/var/lib/neutron/lock" "$O26_DIR/plugins" "$O26_DIR/docker" "$O26_DIR/exec"
  o26_mounted "$O26_ROOT/proc" || mount --rbind /proc "$O26_ROOT/proc"
  o26_mounted "$O26_ROOT/dev" || mount --rbind /dev "$O26_ROOT/dev"
  o26_mounted "$O26_ROOT/run/mysql-host" || mount --bind "$DIR/mysql" "$O26_ROOT/run/mysql-host"
  mysql_cli -e "CREATE DATABASE IF NOT EXISTS neutron26;
    CREATE USER IF NOT EXISTS 'neutron'@'localhost' IDENTIFIED BY 'neutron';
    GRANT ALL ON neutron26.* TO 'neutron'@'localhost'; FLUSH PRIVILEGES;"
  local db
  for db in nb sb; do
    if [ ! -f "$O26_ROOT/var/lib/ovn/ovn${db}_db.db" ]; then
      mkdir -p "$O26_ROOT/var/lib/ovn"
      o26 ovsdb-tool create "/var/lib/ovn/ovn${db}_db.db" "/usr/share/ovn/ovn-$db.ovsschema"
      note_change "created the ovn26 $db database"
    fi
    if ! running "o26-$db"; then
      start_bg "o26-$db" "$DIR/log/ovn26-$db.log" nsenter --net="/run/netns/$O26_NS" chroot "$O26_ROOT" \
        ovsdb-server "/var/lib/ovn/ovn${db}_db.db" --remote="punix:/run/ovn/ovn${db}_db.sock" \
        --unixctl="/run/ovn/ovn${db}_db.ctl"
    fi
  done
  wait_for 20 o26 ovn-nbctl --db=unix:/run/ovn/ovnnb_db.sock --no-wait init \
    || die "the ovn26 nb database did not start: see $DIR/log/ovn26-nb.log"
  wait_for 20 o26 ovn-sbctl --db=unix:/run/ovn/ovnsb_db.sock init \
    || die "the ovn26 sb database did not start: see $DIR/log/ovn26-sb.log"
  if ! running o26-northd; then
    start_bg o26-northd "$DIR/log/ovn26-northd.log" nsenter --net="/run/netns/$O26_NS" chroot "$O26_ROOT" \
      ovn-northd --ovnnb-db=unix:/run/ovn/ovnnb_db.sock --ovnsb-db=unix:/run/ovn/ovnsb_db.sock \
      --unixctl=/run/ovn/ovn-northd.ctl
  fi
  if [ ! -f "$O26_ROOT/var/lib/openvswitch/conf.db" ]; then
    mkdir -p "$O26_ROOT/var/lib/openvswitch"
    o26 ovsdb-tool create /var/lib/openvswitch/conf.db /usr/share/openvswitch/vswitch.ovsschema
    note_change "created the ovn26 OVS database"
  fi
  if ! running o26-ovsdb; then
    start_bg o26-ovsdb "$DIR/log/ovn26-ovsdb.log" nsenter --net="/run/netns/$O26_NS" chroot "$O26_ROOT" \
      ovsdb-server /var/lib/openvswitch/conf.db --remote=punix:/run/openvswitch/db.sock \
      --unixctl=/run/openvswitch/ovsdb-server.ctl
    wait_for 20 o26_vsctl --no-wait show || die "the ovn26 ovsdb-server did not start: see $DIR/log/ovn26-ovsdb.log"
    o26_vsctl --no-wait init
  fi
  if ! running o26-vswitchd; then
    # A sysfs of the namespace's own, under the root, for this daemon alone.
    # shellcheck disable=SC2016 # $1 is the inner sh's own argument, expanded by it
    start_bg o26-vswitchd "$DIR/log/ovn26-vswitchd.log" nsenter --net="/run/netns/$O26_NS" \
      unshare --mount --propagation private sh -c \
      'mount -t sysfs sysfs "$1/sys" && exec chroot "$1" ovs-vswitchd unix:/run/openvswitch/db.sock --unixctl=/run/openvswitch/ovs-vswitchd.ctl' \
      sh "$O26_ROOT"
  fi
  ovn_chassis "the ovn26" kovn26 "$O26_HOST" unix:/run/ovn/ovnsb_db.sock 127.0.0.1 o26_vsctl
  if ! running o26-ovn-controller; then
    start_bg o26-ovn-controller "$DIR/log/ovn26-ovn-controller.log" nsenter --net="/run/netns/$O26_NS" \
      chroot "$O26_ROOT" ovn-controller unix:/run/openvswitch/db.sock
  fi
  o26_config
  neutron_server_up o26-neutron "$O26_DIR" "neutron-server 26 (ML2/OVN) on 127.0.0.1:$O26_PORT in $O26_NS" \
    nsenter --net="/run/netns/$O26_NS" chroot "$O26_ROOT" -- \
    /etc/kuryr-devenv/neutron.conf /etc/kuryr-devenv/ml2_conf.ini
  # The machine's loopback reaches it at the same address (tests, kuryr gc).
  if ! running o26-relay-in; then
    start_bg o26-relay-in "$DIR/log/ovn26-relay.log" nsenter --net="/run/netns/$O26_NS" socat \
      "UNIX-LISTEN:$O26_DIR/neutron.sock,fork,unlink-early,mode=600" "TCP:127.0.0.1:$O26_PORT"
  fi
  if ! running o26-relay-out; then
    start_bg o26-relay-out "$DIR/log/ovn26-relay.log" socat \
      "TCP-LISTEN:$O26_PORT,bind=127.0.0.1,fork,reuseaddr" "UNIX-CONNECT:$O26_DIR/neutron.sock"
  fi
  if ! o26_docker_ok; then
    log "starting dockerd of host kovn26 (unix://$O26_DIR/docker.sock)"
    # shellcheck disable=SC2016 # $1..$3 are the inner sh's own arguments, expanded by it
    start_bg o26-dockerd "$DIR/log/ovn26-dockerd.log" nsenter --net="/run/netns/$O26_NS" \
      unshare --mount --propagation private sh -c '
        mkdir -p /run/docker/plugins && mount --bind "$1/plugins" /run/docker/plugins &&
        exec dockerd --data-root "$1/docker" --exec-root "$1/exec" --pidfile "$1/exec/dockerd.pid" \
          -H "unix://$1/docker.sock" --iptables=false --ip6tables=false' \
      sh "$O26_DIR"
  fi
  wait_for 120 o26_api extensions || die "neutron-server 26 does not answer: see $DIR/log/o26-neutron.log"
  wait_for 60 o26_alive || die "Neutron 26 lists no alive chassis of host $O26_HOST: see $DIR/log/ovn26-ovn-controller.log"
  wait_for 60 o26_docker_ok || die "dockerd of kovn26 did not start: see $DIR/log/ovn26-dockerd.log"
  DOCKER_HOST="unix://$O26_DIR/docker.sock" import_image
  # shellcheck disable=SC2016 # dpkg-query's own field syntax
  local fmt='${Version}'
  log "ovn26 profile ready: Neutron $(o26 dpkg-query -W -f="$fmt" python3-neutron) with OVN $(o26 dpkg-query -W -f="$fmt" ovn-central) at http://127.0.0.1:$O26_PORT (namespace $O26_NS, chassis host $O26_HOST), docker -H unix://$O26_DIR/docker.sock"
}

down_ovn26() {
  local name
  for name in o26-dockerd o26-relay-out o26-relay-in o26-neutron o26-ovn-controller o26-vswitchd o26-ovsdb o26-northd o26-sb o26-nb; do
    stop_service "$name"
  done
  local m
  while read -r m; do umount -l "$m" 2>/dev/null || true; done < <(
    awk -v d="$O26_DIR/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r)
  if [ -e "/run/netns/$O26_NS" ]; then ip netns del "$O26_NS" 2>/dev/null || true; fi
}
