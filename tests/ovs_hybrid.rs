//! Open vSwitch hybrid plug against the real Open vSwitch and OVS agent of
//! `scripts/devenv ovs`. Neutron asks for it (`ovs_hybrid_plug: true` in vif_details) only
//! when the agent runs the iptables_hybrid firewall; the profile's agent runs none, so
//! the test binds real ports to the agent's host and plugs them with that detail set, as
//! CreateEndpoint does: the veth's host end on a Linux bridge `qbr<port>`, joined to
//! br-int by the `qvb`/`qvo` pair, `qvo` carrying the iface-id the agent wires. The agent
//! must report both ports ACTIVE, two network namespaces must ping through the path, and
//! unplugging must leave nothing behind.

mod common;

use std::process::Command;

use common::cnm::hexid;
use common::ovs::{agent_bridge_ports, external_id, ovs_env};
use common::{ip, wait_until};
use kuryr::host::binding::BindContext;
use kuryr::host::{PlugRequest, Plumber, Plumbing};
use kuryr::names;
use kuryr::neutron::{Network, Neutron, Port, Subnet};
use serde_json::json;

/// The master of a link, by name ("" when none).
fn master_of(link: &str) -> String {
    let out = Command::new("ip")
        .args(["-o", "link", "show", link])
        .output()
        .expect("ip");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .skip_while(|w| *w != "master")
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// Whatever a failed run leaves of a hybrid plug (qbr, qvb/qvo, the qvo port on the agent bridge),
/// removed on drop; after a clean unplug there is nothing left to remove.
struct HybridGuard {
    rundir: String,
    ports: Vec<String>,
}

impl Drop for HybridGuard {
    fn drop(&mut self) {
        for id in &self.ports {
            let short = &id[..11];
            let _ = Command::new("ovs-vsctl")
                .env("OVS_RUNDIR", &self.rundir)
                .args([
                    "--if-exists",
                    "del-port",
                    &common::ovs::agent_bridge(),
                    &format!("qvo{short}"),
                ])
                .output();
            for l in [
                format!("qvb{short}"),
                format!("qbr{short}"),
                names::host_veth(id),
            ] {
                let _ = Command::new("ip").args(["link", "del", &l]).output();
            }
        }
    }
}

/// A network namespace, deleted on drop.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

async fn bound_port(n: &Neutron, net: &Network, subnet: &Subnet, host: &str) -> Port {
    let p: Port = n
        .create(json!({"network_id": net.id, "name": "kuryr-test-hybrid",
            "fixed_ips": [{"subnet_id": subnet.id}]}))
        .await
        .unwrap();
    n.update(
        &p.id,
        json!({"binding:host_id": host, "device_owner": names::DEVICE_OWNER, "device_id": hexid()}),
    )
    .await
    .unwrap()
}

fn hybrid_context(p: &Port) -> BindContext {
    let mut details = p.vif_details.clone();
    details.insert("ovs_hybrid_plug".into(), json!(true));
    BindContext {
        vif_type: p.vif_type.clone(),
        vif_details: details,
        port_id: p.id.to_string(),
        endpoint_id: p.device_id.clone(),
        mac: p.mac_address.clone(),
        network_id: p.network_id.to_string(),
        project_id: p.project_id.clone(),
        ifname: String::new(),
        ipv4: vec![],
    }
}

#[test]
fn hybrid_plug_reaches_br_int_through_qbr_and_carries_traffic() {
    let (host, rundir) = ovs_env();
    // The plumber runs ovs-vsctl, which finds this ovsdb through OVS_RUNDIR. Set before
    // any other thread of this process exists (one test in this binary).
    std::env::set_var("OVS_RUNDIR", &rundir);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let n = common::neutron().await;
        let net: Network = n
            .create(json!({"name": common::unique("kuryr-hybrid-")}))
            .await
            .unwrap();
        let third = (uuid::Uuid::new_v4().as_bytes()[0] % 200) + 20;
        let subnet: Subnet = n
            .create(json!({"network_id": net.id, "ip_version": 4,
                "cidr": format!("10.214.{third}.0/24"), "enable_dhcp": false}))
            .await
            .unwrap();
        let ports = [
            bound_port(&n, &net, &subnet, &host).await,
            bound_port(&n, &net, &subnet, &host).await,
        ];
        // A plug that fails half-way: its bridge is not there, so ovs-vsctl refuses the
        // qvo port after qbr, qvb and qvo were made.
        let mut broken = hybrid_context(&ports[0]);
        broken.port_id = uuid::Uuid::new_v4().to_string();
        broken
            .vif_details
            .insert("bridge_name".into(), json!("br-kt-missing"));
        let mut guarded: Vec<String> = ports.iter().map(|p| p.id.to_string()).collect();
        guarded.push(broken.port_id.clone());
        let _cleanup = HybridGuard {
            rundir: rundir.clone(),
            ports: guarded,
        };
        let plumber = Plumber::new("/nonexistent".into(), host.clone()).unwrap();
        let failed = plumber
            .plug(&PlugRequest {
                bind: broken.clone(),
                mtu: None,
                netns: None,
            })
            .await;
        assert!(failed.is_err(), "plugged onto a missing bridge");
        let short = &broken.port_id[..11];
        for link in [
            format!("qbr{short}"),
            format!("qvb{short}"),
            format!("qvo{short}"),
            names::host_veth(&broken.port_id),
        ] {
            assert!(
                common::host_links(&link).is_empty(),
                "{link} left by a failed hybrid plug"
            );
        }
        let mut spaces = Vec::new();
        for p in &ports {
            assert_eq!(p.vif_type, "ovs", "{p:#?}");
            plumber
                .plug(&PlugRequest {
                    bind: hybrid_context(p),
                    mtu: None,
                    netns: None,
                })
                .await
                .unwrap();
            let short = &p.id[..11];
            let (qbr, qvb, qvo) = (
                format!("qbr{short}"),
                format!("qvb{short}"),
                format!("qvo{short}"),
            );
            // tap and qvb on qbr, qvo on the agent bridge with the agent's external ids.
            assert_eq!(master_of(&names::host_veth(&p.id)), qbr);
            assert_eq!(master_of(&qvb), qbr);
            assert!(
                agent_bridge_ports(&rundir).contains(&qvo),
                "{qvo} not on the agent bridge"
            );
            assert_eq!(external_id(&rundir, &qvo, "iface-id"), p.id);
            assert_eq!(
                external_id(&rundir, &qvo, "attached-mac").to_ascii_lowercase(),
                p.mac_address.to_ascii_lowercase()
            );
            assert_eq!(external_id(&rundir, &qvo, "vm-id"), p.device_id);
            // The container end, in a namespace of its own with the port's address.
            let ns = Netns(format!("khy{}", &p.id[..8]));
            ip(&["netns", "add", &ns.0]);
            let cont = names::container_veth(&p.id);
            ip(&["link", "set", &cont, "netns", &ns.0]);
            let addr = format!("{}/24", p.fixed_ips[0].ip_address);
            ip(&["-n", &ns.0, "addr", "add", &addr, "dev", &cont]);
            ip(&["-n", &ns.0, "link", "set", &cont, "up"]);
            spaces.push(ns);
        }

        // The agent found both qvo ports by iface-id and wired them.
        for p in &ports {
            let mut status = String::new();
            for _ in 0..60 {
                status = n.get::<Port>(&p.id).await.unwrap().status.to_string();
                if status == "ACTIVE" {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            assert_eq!(status, "ACTIVE", "port {} never ACTIVE", p.id);
        }
        let target = &ports[1].fixed_ips[0].ip_address.to_string();
        let pinged = wait_until(30, || {
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &spaces[0].0,
                    // The host has no ping of its own; devenv installs busybox-static.
                    "busybox",
                    "ping",
                    "-c",
                    "1",
                    "-W",
                    "1",
                    target,
                ])
                .output()
                .ok()?
                .status
                .success()
                .then_some(())
        });
        assert!(pinged.is_some(), "no ping through qbr/qvb/qvo/agent bridge");

        for p in &ports {
            plumber.unplug(&hybrid_context(p)).await.unwrap();
            let short = &p.id[..11];
            for link in [
                format!("qbr{short}"),
                format!("qvb{short}"),
                format!("qvo{short}"),
                names::host_veth(&p.id),
            ] {
                assert!(
                    common::host_links(&link).is_empty(),
                    "{link} left after unplug"
                );
            }
            assert!(!agent_bridge_ports(&rundir).contains(&format!("qvo{short}")));
            n.delete::<Port>(&p.id).await.unwrap();
        }
        n.delete::<Network>(&net.id).await.unwrap();
    });
}
