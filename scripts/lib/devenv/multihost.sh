# shellcheck shell=bash
# The multihost profile of scripts/devenv (on top of the base). Sourced by scripts/devenv.
# Two "hosts" on this machine: a network namespace each, with its own linuxbridge agent
# and dockerd. Neutron's API and RabbitMQ stay on the root namespace's loopback; socat
# relays carry them into each namespace's loopback through unix sockets under $MH_DIR.
# With the ovn profile up, each host is also an OVN chassis (mh-a-ovn, mh-b-ovn): its own
# Open vSwitch (userspace datapath) and ovn-controller in its namespace, Geneve between
# the two over a second underlay whose addresses sit on an OVS bridge (br-phy: the
# userspace datapath sends tunnel packets only through its own ports), and a relay to
# the OVN Neutron (9698) as to the other.
MH_DIR=$DIR/multihost
MH_HOSTS=(a b)
mh_ip() { case $1 in a) echo 10.99.0.1 ;; b) echo 10.99.0.2 ;; esac; }
mh_services() {
  local h
  echo mh-relay-neutron mh-relay-rabbit
  echo mh-relay-neutron-ovn
  for h in "${MH_HOSTS[@]}"; do
    echo "mh-$h-dockerd mh-$h-dockerd3 mh-$h-agent mh-$h-relay-neutron mh-$h-relay-rabbit"
    echo "mh-$h-ovn-controller mh-$h-vswitchd mh-$h-ovsdb mh-$h-relay-neutron-ovn"
  done
}
mh_ovn_ip() { case $1 in a) echo 10.98.0.1 ;; b) echo 10.98.0.2 ;; esac; }
mh_vsctl() { # mh_vsctl HOST ARGS...: that host's Open vSwitch
  local h=$1; shift
  OVS_RUNDIR="$MH_DIR/$h/ovs" ovs-vsctl --db="unix:$MH_DIR/$h/ovs/db.sock" "$@"
}
mh_ovn_alive() { # mh_ovn_alive HOST: the OVN Neutron lists that host's chassis alive
  local body
  body=$(curl -fsS -m 5 "http://127.0.0.1:$NEUTRON_OVN_PORT/v2.0/agents?host=mh-$1-ovn") || return 1
  [[ $body =~ \"alive\":\ *true ]]
}
mh_docker_ok() { DOCKER_HOST="unix://$MH_DIR/$1/docker.sock" "$DOCKER" version >/dev/null 2>&1; }
# Each host's second engine (with engine3 up): that profile's Docker release.
mh3_sock() { echo "$MH_DIR/$1/engine3/docker.sock"; }
mh3_docker_ok() { DOCKER_HOST="unix://$(mh3_sock "$1")" "$DOCKER" version >/dev/null 2>&1; }

up_multihost() {
  mkdir -p "$MH_DIR"
  # Root side of the relays: one unix socket per service.
  if ! running mh-relay-neutron; then
    start_bg mh-relay-neutron "$DIR/log/mh-relay.log" socat \
      "UNIX-LISTEN:$MH_DIR/neutron.sock,fork,unlink-early,mode=600" "TCP:127.0.0.1:$NEUTRON_PORT"
  fi
  if ! running mh-relay-rabbit; then
    start_bg mh-relay-rabbit "$DIR/log/mh-relay.log" socat \
      "UNIX-LISTEN:$MH_DIR/rabbit.sock,fork,unlink-early,mode=600" "TCP:127.0.0.1:$RABBIT_PORT"
  fi
  # The underlay: one veth between the two namespaces.
  local h ns
  for h in "${MH_HOSTS[@]}"; do
    ns=kmh-$h
    if [ ! -e "/run/netns/$ns" ]; then ip netns add "$ns"; note_change "created namespace $ns"; fi
    ip -n "$ns" link set lo up
  done
  if ! ip -n kmh-a link show kmh-u >/dev/null 2>&1; then
    log "creating the underlay kmh-a/kmh-u <-> kmh-b/kmh-u"
    note_change "created the underlay"
    ip link add kmh-ua type veth peer name kmh-ub
    ip link set kmh-ua netns kmh-a
    ip link set kmh-ub netns kmh-b
    ip -n kmh-a link set kmh-ua name kmh-u
    ip -n kmh-b link set kmh-ub name kmh-u
  fi
  for h in "${MH_HOSTS[@]}"; do
    ns=kmh-$h
    ip -n "$ns" addr replace "$(mh_ip "$h")/24" dev kmh-u
    ip -n "$ns" link set kmh-u up
    mkdir -p "$MH_DIR/$h/plugins" "$MH_DIR/$h/docker" "$MH_DIR/$h/exec" "$MH_DIR/$h/state" "$MH_DIR/$h/lock"
    # Namespace side of the relays: the usual loopback addresses.
    if ! running "mh-$h-relay-neutron"; then
      start_bg "mh-$h-relay-neutron" "$DIR/log/mh-relay.log" ip netns exec "$ns" socat \
        "TCP-LISTEN:$NEUTRON_PORT,bind=127.0.0.1,fork,reuseaddr" "UNIX-CONNECT:$MH_DIR/neutron.sock"
    fi
    if ! running "mh-$h-relay-rabbit"; then
      start_bg "mh-$h-relay-rabbit" "$DIR/log/mh-relay.log" ip netns exec "$ns" socat \
        "TCP-LISTEN:$RABBIT_PORT,bind=127.0.0.1,fork,reuseaddr" "UNIX-CONNECT:$MH_DIR/rabbit.sock"
    fi
    # The host's agent: its own name, state and VTEP address.
    agent_conf "mh-$h" "$MH_DIR/$h"
    write_config "$MH_DIR/$h/linuxbridge_agent.ini" <<MHEOF
[linux_bridge]
physical_interface_mappings =
[vxlan]
enable_vxlan = true
local_ip = $(mh_ip "$h")
l2_population = true
[agent]
polling_interval = 1
[securitygroup]
firewall_driver = noop
enable_security_group = true
MHEOF
    restart_if_changed "mh-$h-agent" "$MH_DIR/$h/neutron.conf" "$MH_DIR/$h/linuxbridge_agent.ini"
    if ! running "mh-$h-agent"; then
      log "starting the linuxbridge agent of host mh-$h (VTEP $(mh_ip "$h"))"
      start_bg "mh-$h-agent" "$DIR/log/mh-$h-agent.log" ip netns exec "$ns" \
        env PATH="$DIR/neutron/bin:$PATH" neutron-linuxbridge-agent \
        --config-file "$MH_DIR/$h/neutron.conf" --config-file "$MH_DIR/$h/linuxbridge_agent.ini"
    fi
    # The host's Docker engine. Docker looks for plugin sockets in /run/docker/plugins
    # whatever its exec-root: a private mount namespace gives each engine its own
    # directory there, so each host's kuryr registers as plugin `kuryr`, as on real hosts.
    if ! mh_docker_ok "$h"; then
      log "starting dockerd of host mh-$h (unix://$MH_DIR/$h/docker.sock)"
      # nsenter, not `ip netns exec`: the latter remounts /sys, hiding the cgroup mounts
      # dockerd needs (the agent, which reads /sys/class/net, does use `ip netns exec`).
      # shellcheck disable=SC2016 # $1..$4 are the inner sh's own arguments, expanded by it
      start_bg "mh-$h-dockerd" "$DIR/log/mh-$h-dockerd.log" nsenter --net="/run/netns/$ns" \
        unshare --mount --propagation private sh -c '
          mkdir -p /run/docker/plugins && mount --bind "$1" /run/docker/plugins &&
          exec dockerd --data-root "$2" --exec-root "$3" --pidfile "$3/dockerd.pid" \
            -H "unix://$4" --bridge=none --iptables=false --ip6tables=false' \
        sh "$MH_DIR/$h/plugins" "$MH_DIR/$h/docker" "$MH_DIR/$h/exec" "$MH_DIR/$h/docker.sock"
    fi
  done
  for h in "${MH_HOSTS[@]}"; do
    wait_for 60 mh_docker_ok "$h" || die "dockerd of mh-$h did not start: see $DIR/log/mh-$h-dockerd.log"
    DOCKER_HOST="unix://$MH_DIR/$h/docker.sock" import_image
    wait_agent "Linux bridge agent" "mh-$h" "$DIR/log/mh-$h-agent.log"
  done
  if running neutron-ovn; then up_multihost_ovn; fi
  if engine_ok engine3; then up_multihost_engine3; fi
  log "multihost profile ready: hosts mh-a, mh-b (namespaces kmh-a, kmh-b; docker -H unix://$MH_DIR/<a|b>/docker.sock)"
}

# Each host's second Docker engine: engine3's release (28.x), run from engine3's root as
# that root's own (pivot_dockerd) in the host's namespace, beside its Debian 12 engine.
# Same plugin directory (kuryr's socket), its own data-root, exec-root and API socket,
# all under $MH_DIR/<h>/engine3; $MH_DIR/<h> is at the same path inside the root, so
# a path a test gives it (a plugin's config, the host's Open vSwitch) means the same.
up_multihost_engine3() {
  local h d
  for h in "${MH_HOSTS[@]}"; do
    d=$MH_DIR/$h/engine3
    mkdir -p "$d"
    if ! mh3_docker_ok "$h"; then
      log "starting the Docker 28 engine of host mh-$h (unix://$(mh3_sock "$h"))"
      # Pid files of an engine that was killed (see engine_up).
      rm -f "$d/docker.sock" "$d/dockerd.pid" "$d/exec/containerd/containerd.pid"
      pivot_dockerd "mh-$h-dockerd3" "$DIR/log/mh-$h-dockerd3.log" "$E3_ROOT" "$MH_DIR/$h/plugins" \
        "kmh-$h" "$MH_DIR/$h" --data-root "$d/docker" --exec-root "$d/exec" --pidfile "$d/dockerd.pid" \
        -H "unix://$d/docker.sock" --bridge=none --iptables=false --ip6tables=false
    fi
  done
  for h in "${MH_HOSTS[@]}"; do
    wait_for 60 mh3_docker_ok "$h" || die "the Docker 28 engine of mh-$h did not start: see $DIR/log/mh-$h-dockerd3.log"
    DOCKER_HOST="unix://$(mh3_sock "$h")" import_image
  done
  log "multihost hosts run Docker $(DOCKER_HOST="unix://$(mh3_sock a)" "$DOCKER" version --format '{{.Server.Version}}') too (docker -H unix://$MH_DIR/<a|b>/engine3/docker.sock)"
}

# Each host as an OVN chassis of the ovn profile's Neutron (see the header).
up_multihost_ovn() {
  local h ns
  if ! running mh-relay-neutron-ovn; then
    start_bg mh-relay-neutron-ovn "$DIR/log/mh-relay.log" socat \
      "UNIX-LISTEN:$MH_DIR/neutron-ovn.sock,fork,unlink-early,mode=600" "TCP:127.0.0.1:$NEUTRON_OVN_PORT"
  fi
  if ! ip -n kmh-a link show kmh-o >/dev/null 2>&1; then
    log "creating the OVN underlay kmh-a/kmh-o <-> kmh-b/kmh-o"
    note_change "created the OVN underlay"
    ip link add kmh-oa type veth peer name kmh-ob
    ip link set kmh-oa netns kmh-a
    ip link set kmh-ob netns kmh-b
    ip -n kmh-a link set kmh-oa name kmh-o
    ip -n kmh-b link set kmh-ob name kmh-o
  fi
  for h in "${MH_HOSTS[@]}"; do
    ns=kmh-$h
    mkdir -p "$MH_DIR/$h/ovs"
    if ! running "mh-$h-relay-neutron-ovn"; then
      start_bg "mh-$h-relay-neutron-ovn" "$DIR/log/mh-relay.log" ip netns exec "$ns" socat \
        "TCP-LISTEN:$NEUTRON_OVN_PORT,bind=127.0.0.1,fork,reuseaddr" "UNIX-CONNECT:$MH_DIR/neutron-ovn.sock"
    fi
    if [ ! -f "$MH_DIR/$h/ovs/conf.db" ]; then
      ovsdb-tool create "$MH_DIR/$h/ovs/conf.db" /usr/share/openvswitch/vswitch.ovsschema
      note_change "created host mh-$h's OVS database"
    fi
    if ! running "mh-$h-ovsdb"; then
      start_bg "mh-$h-ovsdb" "$DIR/log/mh-$h-ovsdb.log" ip netns exec "$ns" env OVS_RUNDIR="$MH_DIR/$h/ovs" \
        ovsdb-server "$MH_DIR/$h/ovs/conf.db" --remote="punix:$MH_DIR/$h/ovs/db.sock" \
        --unixctl="$MH_DIR/$h/ovs/ovsdb-server.ctl"
      wait_for 20 mh_vsctl "$h" --no-wait show || die "host mh-$h's ovsdb-server did not start: see $DIR/log/mh-$h-ovsdb.log"
      mh_vsctl "$h" --no-wait init
    fi
    if ! running "mh-$h-vswitchd"; then
      start_bg "mh-$h-vswitchd" "$DIR/log/mh-$h-vswitchd.log" ip netns exec "$ns" env OVS_RUNDIR="$MH_DIR/$h/ovs" \
        ovs-vswitchd "unix:$MH_DIR/$h/ovs/db.sock" --unixctl="$MH_DIR/$h/ovs/ovs-vswitchd.ctl"
    fi
    if ! mh_vsctl "$h" br-exists br-phy; then
      mh_vsctl "$h" add-br br-phy -- set Bridge br-phy datapath_type=netdev -- add-port br-phy kmh-o
      note_change "created host mh-$h's br-phy"
    fi
    # The tunnel endpoint's address on br-phy (its device is remade with ovs-vswitchd).
    wait_for 20 ip -n "$ns" link show br-phy || die "host mh-$h's br-phy has no device: see $DIR/log/mh-$h-vswitchd.log"
    ip -n "$ns" link set kmh-o up
    ip -n "$ns" addr replace "$(mh_ovn_ip "$h")/24" dev br-phy
    ip -n "$ns" link set br-phy up
    ovn_chassis "host mh-$h's" "mh-$h" "mh-$h-ovn" "unix:$OVN_DIR/run/ovnsb_db.sock" "$(mh_ovn_ip "$h")" mh_vsctl "$h"
    if ! running "mh-$h-ovn-controller"; then
      log "starting ovn-controller of host mh-$h (chassis mh-$h, host mh-$h-ovn, Geneve $(mh_ovn_ip "$h"))"
      start_bg "mh-$h-ovn-controller" "$DIR/log/mh-$h-ovn-controller.log" ip netns exec "$ns" \
        env OVS_RUNDIR="$MH_DIR/$h/ovs" OVN_RUNDIR="$MH_DIR/$h/ovs" ovn-controller "unix:$MH_DIR/$h/ovs/db.sock"
    fi
  done
  for h in "${MH_HOSTS[@]}"; do
    wait_for 60 mh_ovn_alive "$h" \
      || die "the OVN Neutron lists no alive chassis of host mh-$h-ovn: see $DIR/log/mh-$h-ovn-controller.log"
  done
  log "multihost hosts are OVN chassis too: mh-a-ovn, mh-b-ovn (OVS_RUNDIR=$MH_DIR/<a|b>/ovs)"
}

down_multihost() {
  local name h
  for name in $(mh_services); do stop_service "$name"; done
  for h in "${MH_HOSTS[@]}"; do
    if [ -e "/run/netns/kmh-$h" ]; then
      # Unmount what the engine left (container filesystems, netns files) before removal.
      grep -o " $MH_DIR/$h/[^ ]*" /proc/mounts 2>/dev/null | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
      ip netns del "kmh-$h" 2>/dev/null || true
    fi
  done
}

status_multihost() {
  local name
  for name in $(mh_services); do
    if running "$name"; then
      printf '%-18s running (pid %s)\n' "$name" "$(cat "$(pidfile "$name")")"
    else
      case $name in
        *-dockerd3) printf '%-18s stopped (profiles: scripts/devenv multihost engine3)\n' "$name" ;;
        *) printf '%-18s stopped (profile: scripts/devenv multihost)\n' "$name" ;;
      esac
    fi
  done
}

