//! The `kuryr-cni` binary driven as a container runtime drives it, against a real
//! `kuryr serve`, the real Neutron (linuxbridge agent) and real network namespaces: two
//! "containers" get ports, addresses and routes and ping each other; CHECK, DEL, GC and
//! every error path answer the spec's JSON and exit code.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::cni::{cni, conf, env, pings, tcp_reaches, TestNet};
use common::{Kuryr, Netns};
use serde_json::{json, Value};

fn addrs_in(ns: &Netns) -> String {
    String::from_utf8_lossy(&ns.exec(&["ip", "-o", "addr", "show", "dev", "eth0"]).stdout)
        .to_string()
}

#[tokio::test]
async fn two_namespaces_on_a_neutron_network_ping_and_leave_nothing() {
    let k = Kuryr::private().start();
    let net = TestNet::new("10.253.60.0/24", "10.253.60.1").await;
    let (a, b) = (Netns::new(), Netns::new());
    let (ca, cb) = (common::unique("ctr-a-"), common::unique("ctr-b-"));
    let c = conf(&k, &net.name, json!({}));

    let (code, ra) = cni(&env("ADD", &ca, &a.path()), &c);
    assert_eq!(code, 0, "ADD: {ra}\n{}", k.log_text());
    assert_eq!(ra["cniVersion"], "1.0.0");
    assert_eq!(ra["interfaces"][1]["name"], "eth0");
    assert_eq!(ra["interfaces"][1]["sandbox"], json!(a.path()));
    let ip_a = ra["ips"][0]["address"].as_str().unwrap().to_string();
    assert!(
        ip_a.starts_with("10.253.60.") && ip_a.ends_with("/24"),
        "{ra}"
    );
    assert_eq!(ra["ips"][0]["gateway"], "10.253.60.1");
    assert!(addrs_in(&a).contains(&ip_a), "{}", addrs_in(&a));
    // The default route via the subnet's gateway is in the namespace.
    let routes = String::from_utf8_lossy(&a.exec(&["ip", "route"]).stdout).to_string();
    assert!(
        routes.contains("default via 10.253.60.1 dev eth0"),
        "{routes}"
    );

    // The second one asks for its address and MAC, as Podman's --ip/--mac-address do.
    let args = "IgnoreUnknown=1;IP=10.253.60.77;MAC=02:00:0a:fd:3c:4d";
    let b_path = b.path();
    let mut eb = env("ADD", &cb, &b_path);
    eb[4] = ("CNI_ARGS", args);
    let (code, rb) = cni(&eb, &c);
    assert_eq!(code, 0, "ADD with IP/MAC: {rb}\n{}", k.log_text());
    assert_eq!(rb["ips"][0]["address"], "10.253.60.77/24");
    assert_eq!(rb["interfaces"][1]["mac"], "02:00:0a:fd:3c:4d");
    let link =
        String::from_utf8_lossy(&b.exec(&["ip", "-o", "link", "show", "eth0"]).stdout).to_string();
    assert!(link.contains("02:00:0a:fd:3c:4d"), "{link}");

    let ports = net.ports().await;
    assert_eq!(ports.len(), 2);
    for p in &ports {
        assert!(p.tags.iter().any(|t| t == kuryr::names::TAG_CNI), "{p:?}");
        assert!(p.vif_type.is_bound(), "{p:?}");
    }
    assert!(
        pings(&a, "10.253.60.77"),
        "a cannot reach b\n{}",
        k.log_text()
    );
    // TCP as well as ping (on OVN's userspace datapath only with the tx checksum off).
    assert!(
        tcp_reaches(&a, &b, "10.253.60.77"),
        "no TCP from a to b\n{}",
        k.log_text()
    );
    // doctor counts them.
    let doctor = Command::new(env!("CARGO_BIN_EXE_kuryr"))
        .args(["doctor", "--config-file"])
        .arg(k.dir.path().join("kuryr.conf"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&doctor.stdout);
    assert!(out.contains("2 attachment(s) on this host"), "{out}");

    // CHECK against the result ADD gave.
    let (code, v) = cni(
        &env("CHECK", &ca, &a.path()),
        &conf(&k, &net.name, json!({"prevResult": ra})),
    );
    assert_eq!((code, &v), (0, &Value::Null), "CHECK");
    // The same name again in a namespace that has it: refused, nothing new in Neutron.
    let (code, v) = cni(&env("ADD", &common::unique("ctr-c-"), &a.path()), &c);
    assert_eq!(code, 1, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("already exists"), "{v}");
    assert_eq!(net.ports().await.len(), 2, "the refused ADD left a port");

    // GC with only b valid takes a away.
    let valid = conf(
        &k,
        &net.name,
        json!({"cni.dev/valid-attachments": [{"containerID": cb, "ifname": "eth0"}]}),
    );
    let (code, v) = cni(&[("CNI_COMMAND", "GC")], &valid);
    assert_eq!((code, &v), (0, &Value::Null), "GC");
    let left = net.ports().await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].device_id, cb);
    assert!(!addrs_in(&a).contains(&ip_a), "a's interface survived GC");

    // DEL, twice: everything of b goes, the second finds nothing and succeeds.
    for _ in 0..2 {
        let (code, v) = cni(&env("DEL", &cb, &b.path()), &c);
        assert_eq!((code, &v), (0, &Value::Null), "DEL");
    }
    assert!(net.ports().await.is_empty());
    let port_b = &left[0].id;
    assert!(
        common::host_links(&kuryr::names::host_veth(port_b)).is_empty(),
        "host veth of b left"
    );
    let (code, v) = cni(&env("CHECK", &cb, &b.path()), &c);
    assert_eq!(code, 1, "CHECK after DEL passed: {v}");
    net.remove().await;
}

#[tokio::test]
async fn errors_are_the_specs_json_and_exit_1() {
    let k = Kuryr::private().start();
    let ns = Netns::new();
    let ctr = common::unique("ctr-e-");
    // Unknown network: the exact error, and Neutron untouched.
    let (code, v) = cni(
        &env("ADD", &ctr, &ns.path()),
        &conf(&k, "no-such-network-kuryr", json!({})),
    );
    assert_eq!(code, 1);
    assert_eq!(
        v,
        json!({"cniVersion": "1.0.0", "code": 7,
            "msg": "no Neutron network is named \"no-such-network-kuryr\""})
    );
    // Missing environment.
    let (code, v) = cni(
        &[("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", &ctr)],
        &conf(&k, "x", json!({})),
    );
    assert_eq!((code, v["code"].as_u64()), (1, Some(4)), "{v}");
    assert_eq!(v["msg"], "CNI_NETNS is not set");
    // A config that is not JSON.
    let mut child = Command::new(env!("CARGO_BIN_EXE_kuryr-cni"))
        .env("CNI_COMMAND", "ADD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"{not json").unwrap();
    let out = child.wait_with_output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((out.status.code(), v["code"].as_u64()), (Some(1), Some(6)));
    // An unsupported version.
    let (code, v) = cni(
        &env("ADD", &ctr, &ns.path()),
        &conf(&k, "x", json!({"cniVersion": "0.2.0"})),
    );
    assert_eq!((code, v["code"].as_u64()), (1, Some(1)), "{v}");
    // VERSION needs no daemon.
    let (code, v) = cni(
        &[("CNI_COMMAND", "VERSION")],
        &json!({"cniVersion": "1.1.0"}),
    );
    assert_eq!(code, 0);
    assert_eq!(
        v["supportedVersions"],
        json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    );
    // STATUS: ready.
    let (code, v) = cni(&[("CNI_COMMAND", "STATUS")], &conf(&k, "x", json!({})));
    assert_eq!((code, &v), (0, &Value::Null), "STATUS");
    // Daemon down: 50, for ADD and STATUS alike.
    let down = json!({"cniVersion": "1.1.0", "name": "n", "type": "kuryr-cni",
        "network": "x", "socket": "/run/kuryr/nobody-here.sock"});
    for cmd in ["ADD", "STATUS"] {
        let (code, v) = cni(&env(cmd, &ctr, &ns.path()), &down);
        assert_eq!((code, v["code"].as_u64()), (1, Some(50)), "{cmd}: {v}");
        assert_eq!(
            v["msg"],
            "kuryr daemon not reachable at /run/kuryr/nobody-here.sock"
        );
    }
    assert!(
        common::host_links("tap").iter().all(|l| !l.contains(&ctr)),
        "no link for a failed call"
    );
}

#[tokio::test]
async fn neutron_down_is_status_50_and_add_fails_without_leaving_anything() {
    // A kuryr whose Neutron never answers (a port nothing listens on).
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let sock = dir.join("k.sock");
    let cni_sock = dir.join("cni.sock");
    let text = format!(
        "[DEFAULT]\nunix_socket = {}\ncni_socket = {}\n[neutron]\nauth_type = none\nendpoint = http://127.0.0.1:1\n",
        sock.display(),
        cni_sock.display()
    );
    let _k = Kuryr::at(sock).conf(&text).listen_only().start();
    let wait = common::wait_until(10, || cni_sock.exists().then_some(()));
    assert!(wait.is_some(), "no CNI socket");
    let ns = Netns::new();
    let c = json!({"cniVersion": "1.1.0", "name": "n", "type": "kuryr-cni",
        "network": "x", "socket": cni_sock});
    let (code, v) = cni(&[("CNI_COMMAND", "STATUS")], &c);
    assert_eq!((code, v["code"].as_u64()), (1, Some(50)), "{v}");
    assert!(
        v["msg"]
            .as_str()
            .unwrap()
            .contains("not connected to Neutron"),
        "{v}"
    );
    let (code, v) = cni(&env("ADD", "ctr-down", &ns.path()), &c);
    assert_eq!((code, v["code"].as_u64()), (1, Some(50)), "{v}");
    let links = String::from_utf8_lossy(&ns.exec(&["ip", "-o", "link"]).stdout).to_string();
    assert!(!links.contains("eth0"), "{links}");
}

#[tokio::test]
async fn a_namespace_gone_without_del_is_reported_by_kuryr_gc() {
    let k = Kuryr::private().start();
    let net = TestNet::new("10.253.64.0/24", "10.253.64.1").await;
    let ns = Netns::new();
    let ctr = common::unique("ctr-g-");
    let c = conf(&k, &net.name, json!({}));
    let (code, r) = cni(&env("ADD", &ctr, &ns.path()), &c);
    assert_eq!(code, 0, "{r}");
    let port = net.ports().await.remove(0);
    let conf_text = std::fs::read_to_string(k.dir.path().join("kuryr.conf")).unwrap();
    // Wired: kuryr gc leaves it alone.
    let report = common::kuryr_gc(&conf_text, &[]);
    assert!(!report.contains(port.id.as_str()), "{report}");
    // The container's namespace ends without a DEL: the kernel takes the veth pair.
    drop(ns);
    let veth = kuryr::names::host_veth(&port.id);
    let gone = common::wait_until(10, || common::host_links(&veth).is_empty().then_some(()));
    assert!(gone.is_some(), "{veth} outlived its namespace");
    let report = common::kuryr_gc(&conf_text, &[]);
    assert!(
        report.contains(&format!(
            "port {}: CNI attachment of container {ctr}",
            port.id
        )),
        "{report}"
    );
    let (code, v) = cni(&env("DEL", &ctr, ""), &c);
    assert_eq!((code, &v), (0, &Value::Null));
    net.remove().await;
}

#[tokio::test]
async fn a_config_with_a_cidr_makes_its_network_in_neutron() {
    let k = Kuryr::private().start();
    let n = common::neutron().await;
    let name = common::unique("kuryr-cni-made-");
    let ns = Netns::new();
    let ctr = common::unique("ctr-m-");
    let c = conf(&k, &name, json!({"cidr": "10.253.65.0/24"}));
    let (code, r) = cni(&env("ADD", &ctr, &ns.path()), &c);
    assert_eq!(code, 0, "{r}\n{}", k.log_text());
    assert!(addrs_in(&ns).contains("10.253.65."), "{}", addrs_in(&ns));
    let nets: Vec<kuryr::neutron::Network> = n
        .list(&kuryr::neutron::Filters::new().add("name", name.as_str()))
        .await
        .unwrap();
    assert_eq!(nets.len(), 1);
    assert!(nets[0].tags.iter().any(|t| t == kuryr::names::TAG_CNI_MADE));
    let (code, _) = cni(&env("DEL", &ctr, &ns.path()), &c);
    assert_eq!(code, 0);
    TestNet {
        n,
        id: nets[0].id.to_string(),
        name,
    }
    .remove()
    .await;
}

#[tokio::test]
async fn on_an_ovs_host_the_interfaces_join_br_int_and_ping() {
    let (host, rundir) = common::ovs::ovs_env();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cni_socket = dir.join("cni.sock");
    let conf_text = format!(
        "[DEFAULT]\nunix_socket = {}\ncni_socket = {}\nhost = {host}\ndebug = true\n\
         [neutron]\nauth_type = none\nendpoint = {}\nvif_plugging_is_fatal = true\nvif_plugging_timeout = 30\n",
        dir.join("k.sock").display(),
        cni_socket.display(),
        common::neutron_url()
    );
    let k = Kuryr::at(dir.join("k.sock"))
        .conf(&conf_text)
        .envs(&[("OVS_RUNDIR", &rundir)])
        .start();
    // No DHCP: kuryr sets the address itself, and ACTIVE waits on the agent alone.
    let net = TestNet::without_dhcp("10.253.66.0/24", "10.253.66.1").await;
    let (a, b) = (Netns::new(), Netns::new());
    let c = json!({"cniVersion": "1.0.0", "name": "kuryr-ovs", "type": "kuryr-cni",
        "network": net.name, "socket": cni_socket});
    let mut ips = Vec::new();
    for (ns, ctr) in [(&a, "ctr-ovs-a"), (&b, "ctr-ovs-b")] {
        let (code, r) = cni(&env("ADD", ctr, &ns.path()), &c);
        assert_eq!(code, 0, "ADD: {r}\n{}", k.log_text());
        ips.push(r["ips"][0]["address"].as_str().unwrap().replace("/24", ""));
    }
    let on_bridge = common::ovs::agent_bridge_ports(&rundir);
    let mut taps = Vec::new();
    for p in net.ports().await {
        assert_eq!(p.vif_type, "ovs", "{p:?}");
        let tap = kuryr::names::host_veth(&p.id);
        assert!(
            on_bridge.contains(&tap),
            "{tap} not on the agent bridge: {on_bridge:?}"
        );
        taps.push(tap);
    }
    assert_eq!(taps.len(), 2);
    assert!(
        pings(&a, &ips[1]),
        "no ping through the agent bridge\n{}",
        k.log_text()
    );
    // TCP too: the userspace datapath passes ping and drops segments whose checksum was
    // left to the NIC, so the container end needs tx checksum off in its namespace.
    assert!(
        tcp_reaches(&a, &b, &ips[1]),
        "no TCP through the agent bridge\n{}",
        k.log_text()
    );
    for (ns, ctr) in [(&a, "ctr-ovs-a"), (&b, "ctr-ovs-b")] {
        let (code, v) = cni(&env("DEL", ctr, &ns.path()), &c);
        assert_eq!((code, &v), (0, &Value::Null));
    }
    let left = common::ovs::agent_bridge_ports(&rundir);
    assert!(taps.iter().all(|t| !left.contains(t)), "{left:?}");
    assert!(net.ports().await.is_empty());
    net.remove().await;
}
