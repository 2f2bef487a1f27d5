# shellcheck shell=bash
# The firewall profile of scripts/devenv: the base's linuxbridge agent enforces security
# groups with Neutron's iptables firewall driver (ipset for remote-group rules) instead of
# the no-op driver, so what a container's groups allow is what reaches it. It is a switch
# of the base rather than an agent of its own (one linuxbridge agent per host): cmd_up
# reads it before the base comes up (LB_FIREWALL), and a later `up` without it goes back
# to noop. Sourced by scripts/devenv.

firewall_pre() { install_packages ipset; }

# The agent's iptables manager hooked its chains into FORWARD (the per-port chains come
# with the ports) and br_netfilter hands bridged frames to iptables.
firewall_ready() {
  iptables -C FORWARD -j neutron-linuxbri-FORWARD 2>/dev/null &&
    [ "$(cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null)" = 1 ]
}

up_firewall() {
  wait_for 60 firewall_ready \
    || die "the linuxbridge agent set up no iptables firewall: see $DIR/log/linuxbridge-agent.log"
  log "firewall profile ready: the linuxbridge agent (host $HOST_NAME) enforces security groups (iptables)"
}
