//! What Docker 28 brought to a remote driver, on the devenv's engine3 (Debian forky's
//! docker.io 28.x, `KURYR_TEST_ENGINE3`) whatever `DOCKER_HOST` says, against the real
//! Neutron: IPv6-only kuryr networks (`EnableIPv4: false`, made through the engine's API
//! as its own CLI's `--ipv4=false` does: the docker CLI here is 20.10's) whose containers
//! ping each other over IPv6, with Neutron's address modes; and `GwAllocCheck`: for a
//! network on an adopted Neutron subnet without a gateway, Docker reserves none.

mod common;

use std::process::{Command, Output};

use common::Kuryr;
use kuryr::neutron::{Filters, Network, Neutron, Port, Subnet};
use serde_json::{json, Value};

/// engine3's API socket.
fn engine() -> String {
    common::devenv_path("KURYR_TEST_ENGINE3")
}

/// The docker CLI, on engine3.
fn d_try(args: &[&str]) -> Output {
    let host = engine();
    let mut all = vec!["-H", host.as_str()];
    all.extend_from_slice(args);
    common::docker_try(&all)
}

fn d(args: &[&str]) -> String {
    let out = d_try(args);
    assert!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes what a test made in engine3, even when the test fails half-way.
#[derive(Default)]
struct Cleanup {
    containers: Vec<String>,
    networks: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = d_try(&["rm", "-f", c]);
        }
        for n in &self.networks {
            let _ = d_try(&["network", "rm", n]);
        }
    }
}

fn plugin() -> (String, Kuryr) {
    let name = common::unique("k28");
    let out = d_try(&["version", "--format", "{{.Server.Version}}"]);
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let major: u32 = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert!(
        major >= 28,
        "engine3 ({}) answers {version:?}: these tests need Docker 28 or later (scripts/devenv up engine3)",
        engine()
    );
    let k = Kuryr::plugin(&name).start();
    (name, k)
}

/// `POST /networks/create` on engine3's API (with curl): an IPv6-only network of `plugin`.
fn ipv6_only_network(plugin: &str, name: &str, subnet: &str, gateway: &str, opts: Value) {
    let sock = engine().trim_start_matches("unix://").to_string();
    let body = json!({
        "Name": name, "Driver": plugin, "EnableIPv4": false, "EnableIPv6": true,
        "IPAM": {"Driver": plugin, "Config": [{"Subnet": subnet, "Gateway": gateway}]},
        "Options": opts, "Labels": {"kuryr-test": ""},
    });
    let out = Command::new("curl")
        .args([
            "-sS",
            "--unix-socket",
            &sock,
            "-H",
            "Content-Type: application/json",
        ])
        .args(["-d", &body.to_string(), "-w", "\n%{http_code}"])
        .arg("http://engine3/v1.48/networks/create")
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.trim_end().ends_with("201"),
        "network create {name}: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run(name: &str, net: &str) {
    d(&common::sleeper_args(name, net, &common::image()));
}

fn inspect(container: &str, net: &str, field: &str) -> String {
    d(&[
        "inspect",
        "-f",
        &format!("{{{{(index .NetworkSettings.Networks \"{net}\").{field}}}}}"),
        container,
    ])
}

async fn ports_at(n: &Neutron, ip: &str) -> Vec<Port> {
    n.list(&Filters::new().add("fixed_ips", format!("ip_address={ip}")))
        .await
        .expect("ports")
}

async fn subnets_of(n: &Neutron, docker_net: &str) -> (String, Vec<Subnet>) {
    let id = d(&["network", "inspect", "-f", "{{.Id}}", docker_net]);
    let net = common::neutron_network_of(n, &id).await;
    let subnets = n
        .list(&Filters::new().add("network_id", &net))
        .await
        .expect("subnets");
    (net, subnets)
}

/// The EUI-64 address of `mac` in a /64 `prefix` (`fd00:28:2::`): what SLAAC gives it.
fn eui64(prefix: &str, mac: &str) -> std::net::Ipv6Addr {
    let b: Vec<u8> = mac
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).expect("mac"))
        .collect();
    let p: std::net::Ipv6Addr = prefix.parse().expect("prefix");
    let s = p.segments();
    std::net::Ipv6Addr::new(
        s[0],
        s[1],
        s[2],
        s[3],
        u16::from_be_bytes([b[0] ^ 0x02, b[1]]),
        u16::from_be_bytes([b[2], 0xff]),
        u16::from_be_bytes([0xfe, b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
    )
}

/// `--ipv6 --ipv4=false` on a kuryr network: one v6 subnet in Neutron (DHCPv6-stateful,
/// as asked), containers with an IPv6 address that is their port's and no IPv4 one, a
/// ping over IPv6, and nothing left in Neutron once the containers and the network go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv6_only_network_pings_over_ipv6_and_leaves_nothing() {
    let n = common::neutron().await;
    let (p, _k) = plugin();
    let mut c = Cleanup::default();
    let net = common::unique("k6-");
    c.networks.push(net.clone());
    ipv6_only_network(
        &p,
        &net,
        "fd00:28:1::/64",
        "fd00:28:1::1",
        json!({"neutron.subnet.v6.address_mode": "dhcpv6-stateful"}),
    );
    assert_eq!(
        d(&[
            "network",
            "inspect",
            "-f",
            "{{.EnableIPv4}} {{.EnableIPv6}}",
            &net
        ]),
        "false true"
    );
    let (neutron_net, subnets) = subnets_of(&n, &net).await;
    assert_eq!(subnets.len(), 1, "one subnet, IPv6: {subnets:?}");
    assert_eq!(subnets[0].ip_version, 6);
    assert_eq!(subnets[0].cidr.to_string(), "fd00:28:1::/64");
    assert_eq!(
        subnets[0].gateway_ip.map(|g| g.to_string()).as_deref(),
        Some("fd00:28:1::1")
    );
    assert_eq!(
        subnets[0].ipv6_address_mode.as_deref(),
        Some("dhcpv6-stateful")
    );
    let (a, b) = (common::unique("k6a-"), common::unique("k6b-"));
    c.containers.extend([a.clone(), b.clone()]);
    run(&a, &net);
    run(&b, &net);
    let mut v6s = vec![];
    for ct in [&a, &b] {
        let v6 = inspect(ct, &net, "GlobalIPv6Address");
        assert!(v6.starts_with("fd00:28:1::"), "{ct}: {v6:?}");
        assert_eq!(
            inspect(ct, &net, "IPAddress"),
            "",
            "{ct} has no IPv4 address"
        );
        let v4 = d(&["exec", ct, "ip", "-4", "addr", "show", "dev", "eth0"]);
        assert!(!v4.contains("inet "), "{ct}: {v4}");
        let routes = d(&["exec", ct, "ip", "-6", "route"]);
        assert!(routes.contains("default via fd00:28:1::1"), "{routes}");
        let ports = ports_at(&n, &v6).await;
        assert_eq!(ports.len(), 1, "one port holds {v6}: {ports:?}");
        assert_eq!(ports[0].fixed_ips.len(), 1, "{:?}", ports[0].fixed_ips);
        let mac = inspect(ct, &net, "MacAddress");
        assert_eq!(ports[0].mac_address, mac, "{ct} has its port's MAC");
        v6s.push(v6);
    }
    let pinged = common::wait_until(30, || {
        d_try(&["exec", &a, "ping", "-c", "1", "-W", "1", &v6s[1]])
            .status
            .success()
            .then_some(())
    });
    assert!(pinged.is_some(), "{a} cannot ping {b} at {}", v6s[1]);
    d(&["rm", "-f", &a, &b]);
    c.containers.clear();
    for v6 in &v6s {
        assert!(ports_at(&n, v6).await.is_empty(), "{v6}'s port left");
    }
    d(&["network", "rm", &net]);
    c.networks.clear();
    assert!(
        n.get::<Network>(&neutron_net).await.is_err(),
        "Neutron network {neutron_net} left"
    );
    let left: Vec<Subnet> = n
        .list(&Filters::new().add("cidr", "fd00:28:1::/64"))
        .await
        .expect("subnets");
    assert!(left.is_empty(), "{left:?}");
}

/// SLAAC: Neutron derives a port's address from its MAC (EUI-64), and the container
/// gets that address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slaac_network_gives_containers_their_eui64_address() {
    let n = common::neutron().await;
    let (p, _k) = plugin();
    let mut c = Cleanup::default();
    let net = common::unique("k6s-");
    c.networks.push(net.clone());
    ipv6_only_network(
        &p,
        &net,
        "fd00:28:2::/64",
        "fd00:28:2::1",
        json!({"neutron.subnet.v6.address_mode": "slaac"}),
    );
    let (_, subnets) = subnets_of(&n, &net).await;
    assert_eq!(subnets.len(), 1, "{subnets:?}");
    assert_eq!(subnets[0].ipv6_address_mode.as_deref(), Some("slaac"));
    let ct = common::unique("k6sc-");
    c.containers.push(ct.clone());
    run(&ct, &net);
    let v6 = inspect(&ct, &net, "GlobalIPv6Address");
    let mac = inspect(&ct, &net, "MacAddress");
    assert_eq!(
        v6.parse::<std::net::Ipv6Addr>().ok(),
        Some(eui64("fd00:28:2::", &mac)),
        "{ct}'s address {v6} is not the EUI-64 of {mac}"
    );
    assert_eq!(ports_at(&n, &v6).await.len(), 1);
    d(&["rm", "-f", &ct]);
    c.containers.clear();
    assert!(ports_at(&n, &v6).await.is_empty(), "{v6}'s port left");
}

/// GwAllocCheck: on an adopted Neutron subnet without a gateway (an L2-only segment)
/// Docker 28 reserves no gateway address (where it used to reserve the `0.0.0.0/0`
/// kuryr's IPAM answers, as the reference's) and CreateNetwork names none; a container
/// on it gets its port's address and no default route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_on_a_subnet_without_gateway_reserves_no_gateway() {
    let n = common::neutron().await;
    let (p, k) = plugin();
    let mut c = Cleanup::default();
    let users: Network = n
        .create(json!({"name": common::unique("l2-only-")}))
        .await
        .expect("network");
    let subnet: Subnet = n
        .create(
            json!({"network_id": users.id, "ip_version": 4, "cidr": "10.28.3.0/24",
            "gateway_ip": null, "name": common::unique("l2-only-")}),
        )
        .await
        .expect("subnet");
    let net = common::unique("k28g-");
    c.networks.push(net.clone());
    let net_opt = format!("neutron.net.uuid={}", users.id);
    let subnet_opt = format!("neutron.subnet.uuid={}", subnet.id);
    d(&common::kuryr_network_args(
        &p,
        &net,
        &[
            "--subnet",
            "10.28.3.0/24",
            "-o",
            &net_opt,
            "-o",
            &subnet_opt,
            "--ipam-opt",
            &subnet_opt,
        ],
    ));
    // Docker asked GwAllocCheck and then no gateway address of kuryr's IPAM (with the
    // capability undeclared it asks one, which kuryr answers 0.0.0.0/0).
    let (_, metrics) = common::raw_http(&k.socket, "GET", "/metrics", "");
    assert!(
        metrics.contains(
            r#"kuryr_libnetwork_calls_total{method="NetworkDriver.GwAllocCheck",status="200"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        !metrics.contains(r#"method="IpamDriver.RequestAddress""#),
        "a gateway address was reserved: {metrics}"
    );
    let ct = common::unique("k28gc-");
    c.containers.push(ct.clone());
    run(&ct, &net);
    let ip = inspect(&ct, &net, "IPAddress");
    assert!(ip.starts_with("10.28.3."), "{ip}");
    assert_eq!(inspect(&ct, &net, "Gateway"), "");
    let routes = d(&["exec", &ct, "ip", "route"]);
    assert!(!routes.contains("default"), "{routes}");
    assert_eq!(ports_at(&n, &ip).await.len(), 1);
    d(&["rm", "-f", &ct]);
    c.containers.clear();
    d(&["network", "rm", &net]);
    c.networks.clear();
    // The user's network and subnet stay, as any adopted network's.
    let kept: Subnet = n.get(&subnet.id).await.expect("the user's subnet stays");
    assert!(kept.gateway_ip.is_none());
    n.delete::<Network>(&users.id).await.expect("delete");
}
