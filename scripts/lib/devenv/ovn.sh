# shellcheck shell=bash
# The ovn profile of scripts/devenv: the backend OpenStack clouds run today. ML2/OVN
# beside the base's ML2/linuxbridge, so both backends serve in one run:
# - OVN's northbound and southbound databases and ovn-northd, on unix sockets under
#   $OVN_DIR;
# - this host's Open vSwitch (shared with the ovs profile, userspace datapath) made an
#   OVN chassis: ovn-controller owns br-int (datapath_type=netdev) and reports as chassis
#   $OVN_CHASSIS with host name $OVN_HOST, which is NOT the kernel's host name, as on
#   clouds whose deployment tool names chassis by FQDN: kuryr must find it itself; it
#   hosts the routers' gateways, to physical network `extnet` on its bridge br-ex;
# - a second neutron-server on 127.0.0.1:$NEUTRON_OVN_PORT (database neutron_ovn on the
#   base's MariaDB) with mechanism_drivers = ovn: OVN's native DHCP, security groups as
#   OVN ACLs, the OVN L3 router (routers and floating IPs), QoS and trunks. No RabbitMQ,
#   no agent: ovn-controller claiming a port's OVS interface is what turns it ACTIVE.
# Sourced by scripts/devenv.
OVN_DIR=$DIR/ovn
# shellcheck disable=SC2153 # OVS_DIR: the ovs profile's (ovs.sh), whose Open vSwitch this shares
: "${OVS_DIR:?}"
NEUTRON_OVN_PORT=${KURYR_DEVENV_NEUTRON_OVN_PORT:-9698}
OVN_CHASSIS=kuryr-devenv
OVN_HOST=${KURYR_DEVENV_OVN_HOST:-$HOST_NAME-ovn}

ovn_nbctl() { OVN_RUNDIR="$OVN_DIR/run" ovn-nbctl --db="unix:$OVN_DIR/run/ovnnb_db.sock" "$@"; }
ovn_sbctl() { OVN_RUNDIR="$OVN_DIR/run" ovn-sbctl --db="unix:$OVN_DIR/run/ovnsb_db.sock" "$@"; }
neutron_ovn_api() { curl -fsS -m 5 "http://127.0.0.1:$NEUTRON_OVN_PORT/v2.0/$1"; }
ovn_agent_alive() {
  local body
  body=$(neutron_ovn_api "agents?host=$OVN_HOST") || return 1
  [[ $body =~ \"alive\":\ *true ]]
}

up_ovn_db() { # up_ovn_db nb|sb: one OVN database server
  local db=$1 schema name
  case $db in
    nb) schema=/usr/share/ovn/ovn-nb.ovsschema; name=OVN_Northbound ;;
    sb) schema=/usr/share/ovn/ovn-sb.ovsschema; name=OVN_Southbound ;;
  esac
  if [ ! -f "$OVN_DIR/ovn${db}_db.db" ]; then
    ovsdb-tool create "$OVN_DIR/ovn${db}_db.db" "$schema"
    note_change "created the OVN $db database"
  fi
  if ! running "ovn-$db"; then
    log "starting the OVN $db database (unix:$OVN_DIR/run/ovn${db}_db.sock)"
    start_bg "ovn-$db" "$DIR/log/ovn-$db.log" env OVS_RUNDIR="$OVN_DIR/run" \
      ovsdb-server "$OVN_DIR/ovn${db}_db.db" --remote="punix:$OVN_DIR/run/ovn${db}_db.sock" \
      --remote="db:$name,$( [ "$db" = nb ] && echo NB_Global || echo SB_Global ),connections" \
      --unixctl="$OVN_DIR/run/ovn${db}_db.ctl"
    if [ "$db" = nb ]; then
      wait_for 20 ovn_nbctl --no-wait show || die "the OVN nb database did not start: see $DIR/log/ovn-nb.log"
      ovn_nbctl --no-wait init
    else
      wait_for 20 ovn_sbctl show || die "the OVN sb database did not start: see $DIR/log/ovn-sb.log"
      ovn_sbctl init
    fi
  fi
}

# ovn_neutron_conf PORT STATE_PATH LOCK_PATH DB_URL: neutron.conf of an ML2/OVN
# neutron-server on 127.0.0.1:PORT, no Keystone.
ovn_neutron_conf() {
  cat <<EOF
[DEFAULT]
bind_host = 127.0.0.1
bind_port = $1
core_plugin = ml2
service_plugins = ovn-router,qos,trunk
auth_strategy = noauth
allow_overlapping_ips = true
# ML2/OVN needs no message bus; without one, requests that notify would wait for RabbitMQ.
transport_url = fake:/
api_workers = 1
rpc_workers = 0
rpc_state_report_workers = 0
state_path = $2
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
debug = false
use_stderr = true
[database]
connection = $4
max_pool_size = 20
max_overflow = 40
[oslo_concurrency]
lock_path = $3
EOF
}

# ovn_ml2_conf NB SB: ML2's configuration for ML2/OVN on these databases (the same for
# Neutron 21 and 26).
ovn_ml2_conf() {
  cat <<EOF
[ml2]
type_drivers = local,flat,geneve
tenant_network_types = geneve
mechanism_drivers = ovn
# tag_ports_during_bulk_creation: ML2/OVN does not list the extension, but ports keep
# the tags they are created with when the driver is loaded (kuryr's pool ports).
extension_drivers = port_security,qos,tag_ports_during_bulk_creation
overlay_ip_version = 4
[ml2_type_geneve]
vni_ranges = 1:65536
# OVN's own header needs 38 bytes; the default 30 makes neutron-server exit.
max_header_size = 38
[ml2_type_flat]
flat_networks = *
[securitygroup]
enable_security_group = true
[ovn]
ovn_nb_connection = $1
ovn_sb_connection = $2
ovn_metadata_enabled = false
neutron_sync_mode = off
ovn_l3_scheduler = leastloaded
EOF
}

write_neutron_ovn_config() {
  local n=$OVN_DIR/neutron
  mkdir -p "$n/state" "$n/lock"
  ovn_neutron_conf "$NEUTRON_OVN_PORT" "$n/state" "$n/lock" \
    "mysql+pymysql://neutron:neutron@127.0.0.1:$DB_PORT/neutron_ovn" | write_config "$n/neutron.conf"
  ovn_ml2_conf "unix:$OVN_DIR/run/ovnnb_db.sock" "unix:$OVN_DIR/run/ovnsb_db.sock" | write_config "$n/ml2_conf.ini"
  restart_if_changed neutron-ovn "$n/neutron.conf" "$n/ml2_conf.ini"
}

up_ovn() {
  install_packages ovn-central ovn-host openvswitch-switch ethtool
  mkdir -p "$OVN_DIR/run"
  up_ovn_db nb
  up_ovn_db sb
  if ! running ovn-northd; then
    log "starting ovn-northd"
    start_bg ovn-northd "$DIR/log/ovn-northd.log" env OVN_RUNDIR="$OVN_DIR/run" \
      ovn-northd --ovnnb-db="unix:$OVN_DIR/run/ovnnb_db.sock" \
      --ovnsb-db="unix:$OVN_DIR/run/ovnsb_db.sock" --unixctl="$OVN_DIR/run/ovn-northd.ctl"
  fi
  up_ovsdb
  # This Open vSwitch as an OVN chassis. Geneve to itself on loopback: the one chassis
  # here (the multihost hosts have their own).
  ovn_chassis "this host's" "$OVN_CHASSIS" "$OVN_HOST" "unix:$OVN_DIR/run/ovnsb_db.sock" 127.0.0.1 ovs_vsctl
  # The outside world: physical network `extnet` on br-ex, where a test puts a namespace
  # standing in for it; this chassis hosts the routers' gateways (and their NAT) to it.
  ovs_vsctl --may-exist add-br br-ex -- set Bridge br-ex datapath_type=netdev
  ovs_external_id "this host's" ovn-bridge-mappings extnet:br-ex ovs_vsctl
  ovs_external_id "this host's" ovn-cms-options enable-chassis-as-gw ovs_vsctl
  if ! running ovn-controller; then
    log "starting ovn-controller (chassis $OVN_CHASSIS, host $OVN_HOST)"
    start_bg ovn-controller "$DIR/log/ovn-controller.log" \
      env OVS_RUNDIR="$OVS_DIR/run" OVN_RUNDIR="$OVN_DIR/run" \
      ovn-controller "unix:$OVS_DIR/run/db.sock"
  fi
  wait_for 20 ovs_vsctl br-exists br-int || die "ovn-controller made no br-int: see $DIR/log/ovn-controller.log"
  # Neutron 21 reads a chassis' gateway options from its southbound row's external_ids,
  # where OVN before 22.09 copied them; OVN 23.03 keeps them in other_config only. Without
  # them Neutron schedules a router's gateway on every chassis (the multihost ones too,
  # which have no extnet), and the NAT lands where the outside is not.
  wait_for 20 ovn_sbctl get Chassis "$OVN_CHASSIS" name || die "no chassis $OVN_CHASSIS in OVN: see $DIR/log/ovn-controller.log"
  local kv key val have
  for kv in ovn-cms-options=enable-chassis-as-gw ovn-bridge-mappings=extnet:br-ex; do
    key=external_ids:${kv%%=*}; val=${kv#*=}
    have=$(ovn_sbctl --if-exists get Chassis "$OVN_CHASSIS" "$key" 2>/dev/null | tr -d '"' || true)
    if [ "$have" != "$val" ]; then
      ovn_sbctl set Chassis "$OVN_CHASSIS" "$key=\"$val\""
      note_change "OVN chassis $OVN_CHASSIS: $key=$val"
    fi
  done
  # An OVS agent that once had br-int (an older ovs profile) left its controller and
  # OpenFlow versions there: ovn-controller's own connection is then refused.
  if [ "$(ovs_vsctl get Bridge br-int controller)" != "[]" ] || [ "$(ovs_vsctl get Bridge br-int protocols)" != "[]" ]; then
    ovs_vsctl del-controller br-int -- clear Bridge br-int protocols
    note_change "cleared an OVS agent's controller from br-int"
  fi

  mysql_cli -e "CREATE DATABASE IF NOT EXISTS neutron_ovn;
    GRANT ALL ON neutron_ovn.* TO 'neutron'@'127.0.0.1'; FLUSH PRIVILEGES;"
  write_neutron_ovn_config
  neutron_server_up neutron-ovn "$OVN_DIR/neutron" "neutron-server (ML2/OVN) on 127.0.0.1:$NEUTRON_OVN_PORT" -- \
    "$OVN_DIR/neutron/neutron.conf" "$OVN_DIR/neutron/ml2_conf.ini"
  wait_for 120 neutron_ovn_api extensions \
    || die "neutron-server (ML2/OVN) does not answer: see $DIR/log/neutron-ovn.log"
  wait_for 60 ovn_agent_alive \
    || die "Neutron lists no alive OVN controller for host $OVN_HOST: see $DIR/log/ovn-controller.log and $DIR/log/neutron-ovn.log"
  log "ovn profile ready: neutron http://127.0.0.1:$NEUTRON_OVN_PORT (ML2/OVN), chassis $OVN_CHASSIS (host $OVN_HOST), br-int, OVS_RUNDIR=$OVS_DIR/run"
}

down_ovn() {
  local name
  for name in neutron-ovn ovn-controller ovn-northd ovn-sb ovn-nb; do
    stop_service "$name"
  done
}

status_ovn() {
  local name
  for name in ovn-nb ovn-sb ovn-northd ovn-controller neutron-ovn; do
    if running "$name"; then
      printf '%-18s running (pid %s)\n' "$name" "$(cat "$(pidfile "$name")")"
    else
      printf '%-18s stopped (profile: scripts/devenv ovn)\n' "$name"
    fi
  done
}
