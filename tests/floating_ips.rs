//! Floating IPs through Docker, against the real Neutron and its L3 agent (profile `l3`):
//! a network whose containers get floating IPs (`-o neutron.floating_network=`) behind a
//! router to an external network, and a network namespace on that external network
//! standing in for the outside world. The outside reaches a container at its floating IP;
//! `kuryr inspect` shows it; removal releases it. A user's own floating IP
//! (`--driver-opt neutron.floating_ip=`) is associated and at removal only
//! disassociated. A CNI attachment on the same network (`floatingNetwork` in its config)
//! gets one too, released at DEL. A network that is not external is refused before
//! anything is made.

mod common;

use std::process::Command;

use common::{docker, Kuryr, Netns};
use kuryr::neutron::{
    Filters, FloatingIp, Network, Neutron, Port, SecurityGroup, SecurityGroupRule, Subnet,
};
use serde_json::{json, Value};

/// The outside world's subnet (TEST-NET-2) and the outside namespace's address in it.
const EXT_CIDR: &str = "198.51.100.0/24";
const OUTSIDE_IP: &str = "198.51.100.200";

/// Neutron calls kuryr's client has no typed form for (routers).
async fn api(method: reqwest::Method, path: &str, body: Value) -> Value {
    let mut req = reqwest::Client::new().request(
        method.clone(),
        format!("{}/v2.0/{path}", common::neutron_url()),
    );
    // Neutron refuses a body on DELETE.
    if !body.is_null() {
        req = req.json(&body);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(status.is_success(), "{method} {path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// The outside world's way in: on linuxbridge a port of the external network (the agent
/// puts its tap on the network's bridge), on OVN a device on the physical network's
/// bridge (br-ex, mapped to `extnet`), where the router's gateway answers.
enum Outside {
    /// The id of its port on the external network.
    Port(String),
    /// The name of its device on br-ex.
    OvsPort(String),
}

/// A namespace on the external network, as a machine outside would be.
async fn outside(n: &Neutron, ext: &Network, subnet: &Subnet) -> (Netns, Outside) {
    let ns = Netns::named("kfo-");
    let peer = format!("{}o", &ns.0[..ns.0.len().min(14)]);
    let (tap, mac, way_in) = if common::on_ovn() {
        let tap = format!("{}x", &ns.0[..ns.0.len().min(14)]);
        (tap.clone(), None, Outside::OvsPort(tap))
    } else {
        let port: Port = n
            .create(json!({"network_id": ext.id, "name": "kuryr-test-outside",
                "device_owner": "kuryr-test:outside", "binding:host_id": host_name(),
                "fixed_ips": [{"subnet_id": subnet.id, "ip_address": OUTSIDE_IP}]}))
            .await
            .unwrap();
        let tap = kuryr::names::host_veth(&port.id);
        (
            tap,
            Some(port.mac_address.clone()),
            Outside::Port(port.id.into()),
        )
    };
    common::ip(&[
        "link", "add", &tap, "type", "veth", "peer", "name", &peer, "netns", &ns.0,
    ]);
    common::ip(&["link", "set", &tap, "up"]);
    if common::on_ovn() {
        let rundir = common::devenv_path("KURYR_TEST_OVS_RUNDIR");
        common::ovs::vsctl(&rundir, &["add-port", "br-ex", &tap]);
    }
    let mac = mac.unwrap_or_else(|| "02:00:c6:33:64:c8".into());
    let cmds: [&[&str]; 4] = [
        &["ip", "link", "set", "lo", "up"],
        &["ip", "link", "set", &peer, "address", &mac],
        &[
            "ip",
            "addr",
            "add",
            &format!("{OUTSIDE_IP}/24"),
            "dev",
            &peer,
        ],
        &["ip", "link", "set", &peer, "up"],
    ];
    for c in cmds {
        let out = ns.exec(c);
        assert!(out.status.success(), "{c:?}: {out:?}");
    }
    (ns, way_in)
}

/// Takes the outside's way in away again.
async fn remove_outside(n: &Neutron, way_in: Outside) {
    match way_in {
        Outside::Port(id) => n.delete::<Port>(&id).await.unwrap(),
        Outside::OvsPort(tap) => {
            let rundir = common::devenv_path("KURYR_TEST_OVS_RUNDIR");
            common::ovs::vsctl(&rundir, &["--if-exists", "del-port", "br-ex", &tap]);
            let _ = Command::new("ip").args(["link", "del", &tap]).output();
        }
    }
}

fn pings(ns: &Netns, ip: &str) -> bool {
    ns.exec(&["busybox", "ping", "-c", "1", "-W", "2", ip])
        .status
        .success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_are_reached_from_outside_at_their_floating_ips_released_at_removal() {
    common::require_docker();
    let n = common::neutron().await;
    // On OVN the physical network the devenv's chassis maps to br-ex (a router's gateway
    // needs a chassis serving its network); on linuxbridge a local one.
    let provider = if common::on_ovn() {
        json!({"provider:network_type": "flat", "provider:physical_network": "extnet"})
    } else {
        json!({"provider:network_type": "local"})
    };
    let mut ext_body = json!({"name": common::unique("kt-ext-"), "router:external": true});
    for (k, v) in provider.as_object().unwrap() {
        ext_body[k] = v.clone();
    }
    let ext: Network = n.create(ext_body).await.unwrap();
    let ext_subnet: Subnet = n
        .create(
            json!({"network_id": ext.id, "cidr": EXT_CIDR, "ip_version": 4,
            "gateway_ip": "198.51.100.1", "enable_dhcp": false,
            "allocation_pools": [{"start": "198.51.100.10", "end": "198.51.100.99"}]}),
        )
        .await
        .unwrap();
    let router = api(
        reqwest::Method::POST,
        "routers",
        json!({"router": {"name": common::unique("kt-router-"),
            "external_gateway_info": {"network_id": ext.id}}}),
    )
    .await["router"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    let p = common::unique("kfip");
    let k = Kuryr::plugin(&p).start();

    // Not external: refused, nothing made.
    let inside = common::unique("kt-inside-");
    let internal: Network = n.create(json!({"name": inside})).await.unwrap();
    let before = n.list::<Network>(&Filters::new()).await.unwrap().len();
    let out = common::kuryr_network_try(
        &p,
        &common::unique("kfbad-"),
        &[
            "--subnet",
            "10.253.74.0/24",
            "-o",
            &format!("neutron.floating_network={inside}"),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not external"), "{err}");
    assert_eq!(
        n.list::<Network>(&Filters::new()).await.unwrap().len(),
        before
    );
    n.delete::<Network>(&internal.id).await.unwrap();

    // The agent enforces groups (the firewall profile). The default group lets in only
    // its members (the outside namespace's port here is one, a real outside is not): the
    // containers get a group that lets ping in from anywhere instead, as a user giving
    // containers floating IPs would.
    let ping_in: SecurityGroup = n
        .create(json!({"name": common::unique("kt-ping-in-")}))
        .await
        .unwrap();
    let _: SecurityGroupRule = n
        .create(
            json!({"security_group_id": ping_in.id, "direction": "ingress",
            "ethertype": "IPv4", "protocol": "icmp"}),
        )
        .await
        .unwrap();
    let net = common::unique("kfip-");
    common::kuryr_network_with(
        &p,
        &net,
        &[
            "--subnet",
            "10.253.75.0/24",
            "--gateway",
            "10.253.75.1",
            "-o",
            &format!("neutron.floating_network={}", ext.name),
            "-o",
            &format!("neutron.security_groups={}", ping_in.id),
        ],
    );
    // The router joins the kuryr network's subnet (it takes the gateway address).
    let neutron_net = common::neutron_network_of(&n, &common::network_id(&net)).await;
    let subnet = n
        .list::<Subnet>(&Filters::new().add("network_id", &neutron_net))
        .await
        .unwrap()
        .remove(0);
    api(
        reqwest::Method::PUT,
        &format!("routers/{router}/add_router_interface"),
        json!({"subnet_id": subnet.id}),
    )
    .await;

    // A user's own floating IP, for the second container.
    let theirs: FloatingIp = n
        .create(json!({"floating_network_id": ext.id}))
        .await
        .unwrap();

    let a = common::unique("kfa-");
    common::run_container(&a, &net, &[]);
    let b = common::unique("kfb-");
    let opt = format!("neutron.floating_ip={}", theirs.floating_ip_address);
    common::connected_with(&b, &net, &opt, &["sleep", "600"]);
    docker(&["start", &b]);

    // A CNI attachment on the same Neutron network, its floating IP from the config.
    let c_ns = Netns::named("kfo");
    let c_ctr = common::unique("kfc-");
    let c_conf = json!({"cniVersion": "1.0.0", "name": "kuryr-fip", "type": "kuryr-cni",
        "network": neutron_net, "socket": k.cni_socket, "floatingNetwork": ext.name,
        "securityGroups": [ping_in.id]});
    let c_path = c_ns.path();
    let c_env = |cmd: &'static str| {
        vec![
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", c_ctr.as_str()),
            ("CNI_NETNS", c_path.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", ""),
        ]
    };
    let (code, added) = common::cni::cni(&c_env("ADD"), &c_conf);
    assert_eq!(code, 0, "CNI ADD: {added}\n{}", k.log_text());
    let c_ip = added["ips"][0]["address"]
        .as_str()
        .and_then(|a| a.split('/').next())
        .unwrap_or_default()
        .to_string();
    let c_port = common::port_at(&n, &c_ip).await;
    let c_fips: Vec<FloatingIp> = n
        .list(&Filters::new().add("port_id", &c_port.id))
        .await
        .unwrap();
    assert_eq!(c_fips.len(), 1, "{c_fips:?}");
    assert_eq!(c_fips[0].floating_network_id, ext.id);

    // What the user sees, and what Neutron has.
    let a_fip = common::kuryr_inspect(&a)["ports"][0]["floating_ips"][0]
        .as_str()
        .unwrap_or_else(|| panic!("no floating IP shown for {a}"))
        .to_string();
    let shown_b = common::kuryr_inspect(&b);
    assert_eq!(
        shown_b["ports"][0]["floating_ips"],
        json!([theirs.floating_ip_address]),
        "{shown_b}"
    );
    let a_ip = common::container_ip(&a, &net);
    let fips: Vec<FloatingIp> = n
        .list(&Filters::new().add("floating_ip_address", a_fip.as_str()))
        .await
        .unwrap();
    assert_eq!(fips.len(), 1);
    assert_eq!(fips[0].floating_network_id, ext.id);
    assert!(fips[0]
        .description
        .starts_with(kuryr::names::FIP_DESCRIPTION_PREFIX));
    let a_fip_id = fips[0].id.clone();

    // The outside reaches both containers at their floating IPs, through the router's NAT.
    let (ns, outside_port) = outside(&n, &ext, &ext_subnet).await;
    for (ct, fip) in [
        (&a, &a_fip),
        (&b, &theirs.floating_ip_address),
        (&c_ctr, &c_fips[0].floating_ip_address),
    ] {
        assert!(
            common::wait_until(90, || pings(&ns, fip).then_some(())).is_some(),
            "the outside cannot reach {ct} at {fip} (fixed {a_ip}); router: {}",
            String::from_utf8_lossy(
                &Command::new("ip")
                    .args(["netns", "exec", &format!("qrouter-{router}"), "ip", "addr"])
                    .output()
                    .unwrap()
                    .stdout
            )
        );
    }

    for ct in [&a, &b] {
        docker(&["rm", "-f", ct]);
    }
    // kuryr's floating IP is released; the user's stays, on no port.
    let gone = n.get::<FloatingIp>(&a_fip_id).await;
    assert!(
        gone.is_err_and(|e| e.is_not_found()),
        "{a_fip} not released"
    );
    let still: FloatingIp = n.get(&theirs.id).await.unwrap();
    assert_eq!(still.port_id, None);
    assert!(!pings(&ns, &a_fip));
    // CNI DEL releases the attachment's.
    let (code, out) = common::cni::cni(&c_env("DEL"), &c_conf);
    assert_eq!(code, 0, "CNI DEL: {out}");
    let gone = n.get::<FloatingIp>(&c_fips[0].id).await;
    assert!(
        gone.is_err_and(|e| e.is_not_found()),
        "the CNI attachment's floating IP was not released"
    );
    drop(c_ns);

    api(
        reqwest::Method::PUT,
        &format!("routers/{router}/remove_router_interface"),
        json!({"subnet_id": subnet.id}),
    )
    .await;
    docker(&["network", "rm", &net]);
    n.delete::<FloatingIp>(&theirs.id).await.unwrap();
    remove_outside(&n, outside_port).await;
    drop(ns);
    api(
        reqwest::Method::DELETE,
        &format!("routers/{router}"),
        Value::Null,
    )
    .await;
    n.delete::<Network>(&ext.id).await.unwrap();
    n.delete::<SecurityGroup>(&ping_in.id).await.unwrap();
}
