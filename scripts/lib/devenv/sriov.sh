# shellcheck shell=bash
# The sriov profile of scripts/devenv (on top of the base). Sourced by scripts/devenv.
# No SR-IOV NIC here: the agent maps physical network kuryr-sriov to a PCI NIC that has no
# VFs (it only reads sysfs and `ip link show` of it), reports alive as host $SRIOV_HOST,
# and ML2's sriovnicswitch driver then binds direct ports of that host. Programming a VF
# is what no machine here can do; the tests stop at the kernel's answer.
SRIOV_DIR=$DIR/sriov
SRIOV_HOST=${KURYR_DEVENV_SRIOV_HOST:-$HOST_NAME-sriov}
SRIOV_PHYSNET=kuryr-sriov
sriov_pf() { # a NIC of this machine with a PCI device behind it
  local d
  if [ -n "${KURYR_DEVENV_SRIOV_PF:-}" ]; then echo "$KURYR_DEVENV_SRIOV_PF"; return; fi
  for d in /sys/class/net/*; do
    [ -e "$d/device" ] && { basename "$d"; return; }
  done
  return 1
}
up_sriov() {
  install_packages neutron-sriov-agent
  local pf
  pf=$(sriov_pf) || die "no NIC with a PCI device here for the SR-IOV agent (set KURYR_DEVENV_SRIOV_PF)"
  agent_conf "$SRIOV_HOST" "$SRIOV_DIR"
  write_config "$SRIOV_DIR/sriov_agent.ini" <<SRIOVEOF
[sriov_nic]
physical_device_mappings = $SRIOV_PHYSNET:$pf
[agent]
polling_interval = 2
[securitygroup]
firewall_driver = noop
SRIOVEOF
  restart_if_changed sriov-agent "$SRIOV_DIR/neutron.conf" "$SRIOV_DIR/sriov_agent.ini"
  if ! running sriov-agent; then
    log "starting neutron-sriov-nic-agent (host $SRIOV_HOST, $SRIOV_PHYSNET on $pf)"
    start_bg sriov-agent "$DIR/log/sriov-agent.log" neutron-sriov-nic-agent \
      --config-file "$SRIOV_DIR/neutron.conf" --config-file "$SRIOV_DIR/sriov_agent.ini"
  fi
  wait_agent "NIC Switch agent" "$SRIOV_HOST" "$DIR/log/sriov-agent.log"
  log "sriov profile ready: host $SRIOV_HOST, physical network $SRIOV_PHYSNET (VLANs 100-199)"
}

