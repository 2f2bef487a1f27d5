# shellcheck shell=bash
# The base environment of scripts/devenv: MariaDB, RabbitMQ, neutron-server (ML2,
# linuxbridge, noauth) with the linuxbridge and DHCP agents, and a Docker engine with a
# busybox image. Sourced by scripts/devenv.

# ---------------------------------------------------------------- MariaDB
mysql_cli() { mariadb --protocol=socket -S "$DIR/mysql/mysqld.sock" -uroot "$@"; }
up_mariadb() {
  if running mariadb; then return 0; fi
  mkdir -p "$DIR/mysql"
  if [ ! -d "$DIR/mysql/data/mysql" ]; then
    log "initialising MariaDB in $DIR/mysql/data"
    note_change "initialised MariaDB"
    mariadb-install-db --user=root --datadir="$DIR/mysql/data" --auth-root-authentication-method=socket \
      >"$DIR/log/mariadb-init.log" 2>&1 || die "mariadb-install-db failed: see $DIR/log/mariadb-init.log"
  fi
  log "starting MariaDB on 127.0.0.1:$DB_PORT"
  start_bg mariadb "$DIR/log/mariadb.log" mariadbd --no-defaults --user=root \
    --datadir="$DIR/mysql/data" --socket="$DIR/mysql/mysqld.sock" --port="$DB_PORT" \
    --bind-address=127.0.0.1 --pid-file="$DIR/mysql/mysqld.pid" --skip-log-bin \
    --innodb-flush-log-at-trx-commit=2 --max-connections=500
  wait_for 60 mysql_cli -e 'select 1' || die "MariaDB did not start: see $DIR/log/mariadb.log"
  mysql_cli -e "CREATE DATABASE IF NOT EXISTS neutron;
    CREATE USER IF NOT EXISTS 'neutron'@'127.0.0.1' IDENTIFIED BY 'neutron';
    GRANT ALL ON neutron.* TO 'neutron'@'127.0.0.1'; FLUSH PRIVILEGES;"
}

# ---------------------------------------------------------------- RabbitMQ
up_rabbitmq() {
  if running rabbitmq; then return 0; fi
  mkdir -p "$DIR/rabbitmq/mnesia" "$DIR/rabbitmq/log"
  chown -R rabbitmq:rabbitmq "$DIR/rabbitmq"
  log "starting RabbitMQ on 127.0.0.1:$RABBIT_PORT"
  # As user rabbitmq, without Debian's wrapper: its `su` puts the server in a session of
  # its own, out of reach of `down`. The node and the Erlang distribution listen on loopback only.
  start_bg rabbitmq "$DIR/log/rabbitmq.log" env \
    RABBITMQ_NODENAME="kuryrdev@localhost" RABBITMQ_NODE_PORT="$RABBIT_PORT" \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_DIST_PORT="$RABBIT_DIST_PORT" \
    RABBITMQ_MNESIA_BASE="$DIR/rabbitmq/mnesia" RABBITMQ_LOG_BASE="$DIR/rabbitmq/log" \
    RABBITMQ_PID_FILE="$DIR/rabbitmq/rabbit.pid" ERL_EPMD_ADDRESS=127.0.0.1 \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$DIR/rabbitmq/enabled_plugins" HOME=/var/lib/rabbitmq \
    setpriv --reuid rabbitmq --regid rabbitmq --init-groups /usr/lib/rabbitmq/bin/rabbitmq-server
  wait_for 90 tcp_open "$RABBIT_PORT" || die "RabbitMQ did not start: see $DIR/log/rabbitmq.log and $DIR/rabbitmq/log"
}

# ---------------------------------------------------------------- Neutron
write_ebtables_shim() {
  # With Debian's ebtables-nft, the linuxbridge agent cannot delete its own
  # `--among-src` MAC rule (nft lists MACs without leading zeros and rejects the delete),
  # so every port it processes a second time fails and the agent resyncs forever, leaving
  # new ports DOWN. The agent (through privsep) finds `ebtables` on PATH: this shim,
  # first on the agent's PATH, flushes that per-port chain instead, which has the same
  # effect (the chain's policy is DROP), and passes every other call through.
  write_config "$DIR/neutron/bin/ebtables" <<'EOF2'
#!/bin/sh
case " $* " in
  *" -D neutronMAC-"*" --among-src "*)
    chain=$(printf '%s\n' "$@" | awk 'prev == "-D" { print; exit } { prev = $0 }')
    /usr/sbin/ebtables -t nat --concurrent -F "$chain" &&
      exec /usr/sbin/ebtables -t nat --concurrent -A "$chain" -j DROP
    ;;
esac
exec /usr/sbin/ebtables "$@"
EOF2
  chmod +x "$DIR/neutron/bin/ebtables"
}

write_neutron_config() {
  mkdir -p "$DIR/neutron/state" "$DIR/neutron/lock"
  write_ebtables_shim
  write_config "$DIR/neutron/neutron.conf" <<EOF
[DEFAULT]
bind_host = 127.0.0.1
bind_port = $NEUTRON_PORT
core_plugin = ml2
# qos: policies on networks and ports (kuryr's neutron.qos_policy option); the agent's
# qos extension puts their bandwidth limits on the taps as tc policers. router: routers
# and floating IPs (kuryr's neutron.floating_network option; the l3 profile runs the agent).
service_plugins = trunk,qos,router
auth_strategy = noauth
api_workers = 1
rpc_workers = 1
rpc_state_report_workers = 1
state_path = $DIR/neutron/state
transport_url = rabbit://guest:guest@127.0.0.1:$RABBIT_PORT/
host = $HOST_NAME
allow_overlapping_ips = true
dhcp_agents_per_network = 1
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
debug = false
use_stderr = true
[database]
connection = mysql+pymysql://neutron:neutron@127.0.0.1:$DB_PORT/neutron
max_pool_size = 20
max_overflow = 40
[oslo_concurrency]
lock_path = $DIR/neutron/lock
[agent]
root_helper = env
report_interval = 5
[experimental]
linuxbridge = true
EOF
  write_config "$DIR/neutron/ml2_conf.ini" <<EOF
[ml2]
type_drivers = local,flat,vlan,vxlan
tenant_network_types = local
# l2population: agents of the multihost profile learn each other's VTEPs over RPC (no
# multicast needed on the underlay). Tenant networks stay local; the two-host test asks
# for a vxlan network explicitly.
# openvswitch: binds ports of hosts with an OVS agent (the ovs profile); inert otherwise.
# sriovnicswitch: binds direct/macvtap ports of hosts with an SR-IOV NIC agent (the sriov
# profile), on the VLAN networks of physical network kuryr-sriov.
mechanism_drivers = linuxbridge,openvswitch,l2population,sriovnicswitch
# tag_ports_during_bulk_creation: ports keep the tags they are created with (kuryr's
# pool ports are made with their tag in the one bulk request).
extension_drivers = port_security,qos,tag_ports_during_bulk_creation
[ml2_type_vxlan]
vni_ranges = 1:1000
[ml2_type_vlan]
network_vlan_ranges = kuryr-sriov:100:199
[securitygroup]
enable_security_group = true
EOF
  write_config "$DIR/neutron/linuxbridge_agent.ini" <<EOF
[linux_bridge]
physical_interface_mappings =
[vxlan]
enable_vxlan = false
[agent]
polling_interval = 1
extensions = qos
[securitygroup]
# noop, or iptables with the firewall profile (scripts/lib/devenv/firewall.sh).
firewall_driver = $LB_FIREWALL
enable_security_group = true
EOF
  write_config "$DIR/neutron/dhcp_agent.ini" <<EOF
[DEFAULT]
interface_driver = linuxbridge
dhcp_driver = neutron.agent.linux.dhcp.Dnsmasq
enable_isolated_metadata = false
EOF
  # What runs on an older configuration is restarted (an upgraded checkout).
  local n=$DIR/neutron
  restart_if_changed neutron-server "$n/neutron.conf" "$n/ml2_conf.ini"
  restart_if_changed neutron-keystone "$n/neutron.conf" "$n/ml2_conf.ini"
  restart_if_changed linuxbridge-agent "$n/neutron.conf" "$n/linuxbridge_agent.ini" "$n/bin/ebtables"
  restart_if_changed dhcp-agent "$n/neutron.conf" "$n/dhcp_agent.ini"
}
up_neutron() {
  write_neutron_config
  neutron_server_up neutron-server "$DIR/neutron" "neutron-server on 127.0.0.1:$NEUTRON_PORT" -- \
    "$DIR/neutron/neutron.conf" "$DIR/neutron/ml2_conf.ini"
  wait_for 120 neutron_api extensions \
    || die "neutron-server does not answer: see $DIR/log/neutron-server.log"
  if ! running linuxbridge-agent; then
    log "starting neutron-linuxbridge-agent (host $HOST_NAME)"
    start_bg linuxbridge-agent "$DIR/log/linuxbridge-agent.log" \
      env PATH="$DIR/neutron/bin:$PATH" neutron-linuxbridge-agent \
      --config-file "$DIR/neutron/neutron.conf" --config-file "$DIR/neutron/linuxbridge_agent.ini"
  fi
  local dhcp_started=0
  if ! running dhcp-agent; then
    log "starting neutron-dhcp-agent"
    start_bg dhcp-agent "$DIR/log/dhcp-agent.log" neutron-dhcp-agent \
      --config-file "$DIR/neutron/neutron.conf" --config-file "$DIR/neutron/dhcp_agent.ini"
    dhcp_started=1
  fi
  wait_agent "Linux bridge agent" "$HOST_NAME" "$DIR/log/linuxbridge-agent.log"
  wait_agent "DHCP agent" "$HOST_NAME" "$DIR/log/dhcp-agent.log"
  if [ "$dhcp_started" = 1 ]; then dhcp_warm_up; fi
}

# The DHCP agent starts its privsep daemon at its first privileged call; several networks
# arriving at once then race that start (seen here: "greenlet.error: cannot switch to a
# different thread", after which the agent serves no network and ports stay BUILD). One
# network served first starts it alone.
dhcp_warm_up() {
  log "warming up the DHCP agent (one network served before the tests' burst)"
  NEUTRON="http://127.0.0.1:$NEUTRON_PORT/v2.0" /usr/bin/python3 - <<'PY' >>"$DIR/log/dhcp-agent.log" 2>&1 \
    || die "the DHCP agent served no network within 120 s: see $DIR/log/dhcp-agent.log"
import json, os, time, urllib.request
base = os.environ["NEUTRON"]
def call(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        raw = r.read()
    return json.loads(raw) if raw else None
net = call("POST", "/networks", {"network": {"name": "kuryr-devenv-dhcp-warm-up"}})["network"]
try:
    call("POST", "/subnets", {"subnet": {"network_id": net["id"], "ip_version": 4,
                                         "cidr": "10.255.255.0/29", "enable_dhcp": True}})
    deadline = time.time() + 120
    while True:
        ports = call("GET", "/ports?device_owner=network:dhcp&network_id=" + net["id"])["ports"]
        if any(p["status"] == "ACTIVE" for p in ports):
            break
        if time.time() > deadline:
            raise SystemExit("DHCP port never ACTIVE")
        time.sleep(1)
finally:
    call("DELETE", "/networks/" + net["id"])
PY
}

# ---------------------------------------------------------------- Docker
busybox_root() { # busybox_root DIR: a root of Debian's static busybox and its applets
  local root=$1 a
  mkdir -p "$root/bin" "$root/etc" "$root/tmp"
  cp /bin/busybox "$root/bin/busybox"
  for a in sh ip ping ping6 nc sleep cat wget ifconfig route ls echo hostname udhcpc \
           arp ps grep sed head tail true false kill env top; do
    ln -s busybox "$root/bin/$a"
  done
}
import_image() { # into the engine of $DOCKER_HOST (default: the machine's)
  if ! "$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1; then
    log "importing $IMAGE from Debian's static busybox"
    note_change "imported $IMAGE${DOCKER_HOST:+ into $DOCKER_HOST}"
    local root; root=$(mktemp -d)
    busybox_root "$root"
    tar -C "$root" -c . | "$DOCKER" import -c 'CMD ["sh"]' - "$IMAGE" >/dev/null \
      || die "docker import failed"
    rm -rf "$root"
  fi
}
docker_ok() { "$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1; }
up_docker() {
  if ! docker_ok; then
    log "starting dockerd"
    mkdir -p "$DIR/docker"
    start_bg dockerd "$DIR/log/dockerd.log" dockerd --data-root "$DIR/docker" \
      --pidfile "$DIR/run/dockerd.docker.pid"
    wait_for 60 docker_ok || die "dockerd did not start: see $DIR/log/dockerd.log"
  fi
  import_image
  # Docker sets FORWARD to DROP and loads br_netfilter: frames between ports of Neutron's
  # linuxbridge bridges (brq*) would be dropped. With the no-op firewall, accept them in
  # DOCKER-USER, which Docker evaluates first and never flushes. With the firewall profile
  # that rule would bypass the agent's per-port chains (later in FORWARD), which accept
  # what the groups allow: it must not be there.
  if [ "$LB_FIREWALL" = noop ]; then
    iptables_ensure DOCKER-USER -i brq+ -o brq+ -j ACCEPT
  else
    iptables_absent DOCKER-USER -i brq+ -o brq+ -j ACCEPT
  fi
}

