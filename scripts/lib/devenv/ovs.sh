# shellcheck shell=bash
# The ovs profile of scripts/devenv (on top of the base). Sourced by scripts/devenv.
# Open vSwitch without its kernel module: ovsdb-server and ovs-vswitchd run by hand with
# the userspace datapath, and neutron-openvswitch-agent reports as host `$OVS_HOST`, so
# ports bound to that host get binding:vif_type = ovs. Its integration bridge is
# `$OVS_BRIDGE` (datapath_type=netdev), not br-int: br-int is ovn-controller's (the ovn
# profile) on the same Open vSwitch, and Neutron names the agent's bridge in each port's
# vif_details (`bridge_name`), which kuryr follows.
OVS_DIR=$DIR/ovs
OVS_HOST=${KURYR_DEVENV_OVS_HOST:-$HOST_NAME-ovs}
OVS_BRIDGE=br-ovs
ovs_vsctl() { OVS_RUNDIR="$OVS_DIR/run" ovs-vsctl --db="unix:$OVS_DIR/run/db.sock" "$@"; }
# This host's Open vSwitch, shared by the ovs profile (its agent's bridge $OVS_BRIDGE) and
# the ovn profile (ovn-controller's br-int): one ovs-vswitchd per network namespace, since
# the userspace datapath's own device (ovs-netdev) has one name.
up_ovsdb() {
  install_packages openvswitch-switch
  mkdir -p "$OVS_DIR/run"
  if [ ! -f "$OVS_DIR/conf.db" ]; then
    ovsdb-tool create "$OVS_DIR/conf.db" /usr/share/openvswitch/vswitch.ovsschema
    note_change "created the OVS database"
  fi
  if ! running ovsdb-server; then
    log "starting ovsdb-server (unix:$OVS_DIR/run/db.sock)"
    start_bg ovsdb-server "$DIR/log/ovsdb-server.log" env OVS_RUNDIR="$OVS_DIR/run" \
      ovsdb-server "$OVS_DIR/conf.db" --remote="punix:$OVS_DIR/run/db.sock" \
      --unixctl="$OVS_DIR/run/ovsdb-server.ctl"
    wait_for 20 ovs_vsctl --no-wait show || die "ovsdb-server did not start: see $DIR/log/ovsdb-server.log"
    ovs_vsctl --no-wait init
  fi
  if ! running ovs-vswitchd; then
    log "starting ovs-vswitchd (userspace datapath)"
    start_bg ovs-vswitchd "$DIR/log/ovs-vswitchd.log" env OVS_RUNDIR="$OVS_DIR/run" \
      ovs-vswitchd "unix:$OVS_DIR/run/db.sock" --unixctl="$OVS_DIR/run/ovs-vswitchd.ctl"
  fi
}
up_ovs() {
  install_packages neutron-openvswitch-agent
  up_ovsdb
  ovs_vsctl --may-exist add-br "$OVS_BRIDGE" -- set Bridge "$OVS_BRIDGE" datapath_type=netdev
  # Hybrid plug puts each port behind a Linux bridge qbr*; with br_netfilter and Docker's
  # FORWARD DROP its frames need the same pass as brq* (the iptables_hybrid firewall driver
  # would program per-port rules there instead; this profile's agent runs none).
  iptables_ensure DOCKER-USER -i qbr+ -o qbr+ -j ACCEPT
  agent_conf "$OVS_HOST" "$OVS_DIR"
  write_config "$OVS_DIR/openvswitch_agent.ini" <<OVSEOF
[ovs]
integration_bridge = $OVS_BRIDGE
datapath_type = netdev
ovsdb_connection = unix:$OVS_DIR/run/db.sock
of_listen_address = 127.0.0.1
of_listen_port = ${KURYR_DEVENV_OF_PORT:-16633}
bridge_mappings =
[agent]
tunnel_types =
polling_interval = 1
[securitygroup]
firewall_driver = noop
enable_security_group = true
OVSEOF
  restart_if_changed ovs-agent "$OVS_DIR/neutron.conf" "$OVS_DIR/openvswitch_agent.ini"
  if ! running ovs-agent; then
    log "starting neutron-openvswitch-agent (host $OVS_HOST)"
    start_bg ovs-agent "$DIR/log/ovs-agent.log" env OVS_RUNDIR="$OVS_DIR/run" \
      neutron-openvswitch-agent --config-file "$OVS_DIR/neutron.conf" \
      --config-file "$OVS_DIR/openvswitch_agent.ini"
  fi
  wait_agent "Open vSwitch agent" "$OVS_HOST" "$DIR/log/ovs-agent.log"
  log "ovs profile ready: host $OVS_HOST, $OVS_BRIDGE (netdev), OVS_RUNDIR=$OVS_DIR/run"
}

