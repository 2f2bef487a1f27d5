# shellcheck shell=bash
# The l3 profile of scripts/devenv (on top of the base): neutron-l3-agent on this host
# (legacy routers: a qrouter-<id> namespace each, NAT by iptables in it; linuxbridge
# interface driver, so its qr-/qg- ports are plugged by the base's linuxbridge agent), for
# floating IPs. The base already runs the router service plugin. External networks are the
# tests' own (router:external, of type local: no physical interface is needed); the
# "outside world" is a network namespace with a port on one. Sourced by scripts/devenv.
L3_DIR=$DIR/l3

up_l3() {
  install_packages neutron-l3-agent conntrack
  mkdir -p "$L3_DIR"
  write_config "$L3_DIR/l3_agent.ini" <<L3EOF
[DEFAULT]
interface_driver = linuxbridge
agent_mode = legacy
# No metadata service here.
enable_metadata_proxy = false
L3EOF
  restart_if_changed l3-agent "$DIR/neutron/neutron.conf" "$L3_DIR/l3_agent.ini"
  if ! running l3-agent; then
    log "starting neutron-l3-agent (host $HOST_NAME)"
    start_bg l3-agent "$DIR/log/l3-agent.log" neutron-l3-agent \
      --config-file "$DIR/neutron/neutron.conf" --config-file "$L3_DIR/l3_agent.ini"
  fi
  wait_agent "L3 agent" "$HOST_NAME" "$DIR/log/l3-agent.log"
  log "l3 profile ready: neutron-l3-agent (host $HOST_NAME, legacy routers)"
}
