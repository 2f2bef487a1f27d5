//! Podman 5 (Debian 13's 5.4 with netavark 1.14: no CNI backend) on kuryr through the
//! netavark plugin `kuryr-netavark`, installed as the driver `kuryr`:
//! `podman network create -d kuryr --subnet ...` makes the Neutron network, containers
//! get Neutron ports (the address Neutron picks, or the `--ip` asked for), ping each
//! other, `-p` is refused with what to do, and removing the containers leaves nothing.
//! Podman runs in the devenv's podman5 profile (its own mount namespace, this host's
//! network namespace); the plugin reaches the daemon through a socket in its root.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::cni::TestNet;
use common::podman4::Podman;
use common::Kuryr;
use kuryr::neutron::{Network, Port, Subnet};
use serde_json::Value;

/// One test at a time: `kuryr gc --apply` (grace 0) judges every port of this host, and
/// would take another test's container that is starting right now for a leak.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The profile's Podman 5, with `kuryr-netavark` installed as its plugin `kuryr`.
struct Podman5 {
    bin: String,
    root: PathBuf,
    image: String,
    containers: Vec<String>,
    networks: Vec<String>,
}

impl Podman5 {
    fn new() -> Podman5 {
        let root = PathBuf::from(common::devenv_path("KURYR_TEST_PODMAN5_ROOT"));
        let dir = root.join("usr/libexec/netavark");
        std::fs::create_dir_all(&dir).unwrap();
        // Written aside and renamed in: a test running podman meanwhile never execs a
        // half-written plugin.
        let tmp = dir.join(format!(".{}", common::unique("kuryr-")));
        std::fs::copy(env!("CARGO_BIN_EXE_kuryr-netavark"), &tmp).unwrap();
        std::fs::rename(&tmp, dir.join("kuryr")).unwrap();
        Podman5 {
            bin: common::devenv_path("KURYR_TEST_PODMAN5"),
            root,
            image: common::devenv_path("KURYR_TEST_PODMAN5_IMAGE"),
            containers: Vec::new(),
            networks: Vec::new(),
        }
    }

    /// A daemon socket the plugin reaches: (path on the host, path inside the root).
    fn socket(&self) -> (PathBuf, String) {
        let inside = format!("/var/lib/kuryr/{}.sock", common::unique("p5-"));
        (self.root.join(inside.trim_start_matches('/')), inside)
    }

    /// kuryr.conf's line naming Podman's network store, as the host sees it.
    fn store_option(&self) -> String {
        format!(
            "netavark_network_dir = {}",
            self.root.join("etc/containers/networks").display()
        )
    }

    fn try_run(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .args(args)
            .output()
            .expect("podman5")
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self.try_run(args);
        assert!(
            out.status.success(),
            "podman {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `podman run -d` of the busybox image sleeping on `net` (ping needs NET_RAW, which
    /// Podman 5 does not grant by default).
    fn container(&mut self, name: &str, net: &str, extra: &[&str]) -> Output {
        self.containers.push(name.to_string());
        let mut args = vec!["run", "-d", "--name", name, "--cap-add", "NET_RAW"];
        args.extend_from_slice(&["--network", net]);
        args.extend_from_slice(extra);
        args.extend_from_slice(&[self.image.as_str(), "sleep", "600"]);
        self.try_run(&args)
    }

    fn inspect(&self, name: &str) -> Value {
        let v: Value = serde_json::from_str(&self.run(&["inspect", name])).unwrap();
        v[0].clone()
    }

    fn ip_of(&self, name: &str) -> String {
        let out = self.run(&["exec", name, "ip", "-o", "-4", "addr", "show", "eth0"]);
        out.split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .and_then(|a| a.split('/').next())
            .unwrap_or_default()
            .to_string()
    }

    fn pings(&self, from: &str, to: &str) -> bool {
        common::wait_until(90, || {
            let out = self.try_run(&["exec", from, "ping", "-c", "1", "-W", "1", to]);
            out.status.success().then_some(())
        })
        .is_some()
    }
}

impl Drop for Podman5 {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = self.try_run(&["rm", "-f", "-t", "0", c]);
        }
        for n in &self.networks {
            let _ = self.try_run(&["network", "rm", "-f", n]);
        }
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// The kuryr ports of Neutron network `net_id` (a pool's included).
async fn ports_on(n: &kuryr::neutron::Neutron, net_id: &str) -> Vec<Port> {
    n.list(&kuryr::neutron::Filters::new().add("network_id", net_id))
        .await
        .unwrap()
        .into_iter()
        .filter(|p: &Port| p.device_owner == kuryr::names::DEVICE_OWNER)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman5_containers_get_neutron_ports_ping_each_other_and_leave_nothing() {
    let _one = SERIAL.lock().await;
    let mut pm = Podman5::new();
    let (host_sock, inside_sock) = pm.socket();
    let dir = tempfile::tempdir().unwrap();
    let k = Kuryr::at(dir.path().join("k.sock"))
        .cni_socket(&host_sock)
        .extra(&pm.store_option())
        .start();
    let n = common::neutron().await;

    // The network: made in Neutron from --subnet, its ids stored by Podman.
    let pnet = common::unique("kp5-");
    pm.networks.push(pnet.clone());
    let sock_opt = format!("kuryr.socket={inside_sock}");
    pm.run(&[
        "network",
        "create",
        "--label",
        "kuryr-test",
        "-d",
        "kuryr",
        "--subnet",
        "10.253.81.0/24",
        "-o",
        &sock_opt,
        &pnet,
    ]);
    let stored: Value = serde_json::from_str(&pm.run(&["network", "inspect", &pnet])).unwrap();
    let net_id = stored[0]["options"]["neutron.net.uuid"]
        .as_str()
        .unwrap_or_else(|| panic!("no Neutron network in {stored}\n{}", k.log_text()))
        .to_string();
    let net: Network = n.get(&net_id).await.unwrap();
    let subnets: Vec<Subnet> = n
        .list(&kuryr::neutron::Filters::new().add("network_id", &net_id))
        .await
        .unwrap();
    assert_eq!(subnets.len(), 1);
    assert_eq!(subnets[0].cidr.to_string(), "10.253.81.0/24");

    // Two containers: one on the address Neutron picks, one on the address it asks for.
    let (a, b) = (common::unique("p5a-"), common::unique("p5b-"));
    let out = pm.container(&a, &pnet, &[]);
    assert!(
        out.status.success(),
        "podman run: {}\n{}",
        stderr(&out),
        k.log_text()
    );
    // An address no port holds: Neutron picks the others' (a's, DHCP's or OVN's metadata
    // port) at random in the whole subnet kuryr made from --subnet.
    let held: Vec<String> = n
        .list::<Port>(&kuryr::neutron::Filters::new().add("network_id", &net_id))
        .await
        .unwrap()
        .iter()
        .flat_map(|p| p.fixed_ips.iter().map(|f| f.ip_address.to_string()))
        .collect();
    let b_ip = (77..250)
        .map(|i| format!("10.253.81.{i}"))
        .find(|ip| !held.contains(ip))
        .unwrap();
    let out = pm.container(
        &b,
        &pnet,
        &["--ip", &b_ip, "--mac-address", "02:00:0a:fd:51:4d"],
    );
    assert!(
        out.status.success(),
        "podman run --ip: {}\n{}",
        stderr(&out),
        k.log_text()
    );
    let a_ip = pm.ip_of(&a);
    assert_eq!(pm.ip_of(&b), b_ip);
    let link = pm.run(&["exec", &b, "ip", "-o", "link", "show", "eth0"]);
    assert!(link.contains("02:00:0a:fd:51:4d"), "{link}");
    // What Podman shows is the container's Neutron port.
    let shown = pm.inspect(&a)["NetworkSettings"]["Networks"][&pnet]["IPAddress"].clone();
    assert_eq!(shown, Value::from(a_ip.clone()));
    let ports = ports_on(&n, &net.id).await;
    let addrs: Vec<String> = ports
        .iter()
        .flat_map(|p| p.fixed_ips.iter().map(|f| f.ip_address.to_string()))
        .collect();
    assert!(addrs.contains(&a_ip), "{a_ip} is no port's: {addrs:?}");
    let b_port = ports
        .iter()
        .find(|p| p.mac_address == "02:00:0a:fd:51:4d")
        .expect("b's port has its MAC");
    assert_eq!(b_port.fixed_ips[0].ip_address.to_string(), b_ip);
    assert!(pm.pings(&a, &b_ip), "a cannot reach b");

    // A second kuryr network connected to a running container: eth1, with its own port
    // (the default route stays eth0's); disconnected: the port goes.
    let second = common::unique("kp5n-");
    let out = create_network(
        &mut pm,
        &second,
        &inside_sock,
        &["--subnet", "10.253.85.0/24"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let second_id = neutron_id_of(&pm, &second);
    let out = pm.try_run(&["network", "connect", &second, &a]);
    assert!(
        out.status.success(),
        "network connect: {}\n{}",
        stderr(&out),
        k.log_text()
    );
    let eth1 = pm.run(&["exec", &a, "ip", "-o", "-4", "addr", "show", "eth1"]);
    assert!(eth1.contains("inet 10.253.85."), "{eth1}");
    let route = pm.run(&["exec", &a, "ip", "route", "show", "default"]);
    assert!(route.contains("dev eth0"), "{route}");
    assert_eq!(ports_on(&n, &second_id).await.len(), 1);
    pm.run(&["network", "disconnect", &second, &a]);
    assert!(
        ports_on(&n, &second_id).await.is_empty(),
        "disconnect left the port"
    );

    // -p: refused, with what to do, and nothing made.
    let c = common::unique("p5c-");
    let out = pm.container(&c, &pnet, &["-p", "18080:80"]);
    assert!(
        !out.status.success(),
        "podman run -p succeeded on a kuryr network"
    );
    assert!(
        stderr(&out).contains("do not publish ports"),
        "{}",
        stderr(&out)
    );
    assert_eq!(ports_on(&n, &net.id).await.len(), ports.len());

    // Removed: the teardowns take every port and veth of theirs away.
    pm.run(&["rm", "-f", "-t", "0", &a, &b, &c]);
    pm.containers.clear();
    let left: Vec<Port> = ports_on(&n, &net.id)
        .await
        .into_iter()
        .filter(|p| p.name != kuryr::driver::port_pool::POOL_PORT_NAME)
        .collect();
    assert!(left.is_empty(), "ports left after podman rm: {left:?}");
    for p in &ports {
        assert!(
            common::host_links(&kuryr::names::host_veth(&p.id)).is_empty(),
            "veth of {} left",
            p.id
        );
    }
    // `podman network rm` never calls a plugin: the daemon sees the networks gone from
    // Podman's store and removes the Neutron networks it made for them.
    let conf = std::fs::read_to_string(k.dir.path().join("kuryr.conf")).unwrap();
    let report = common::kuryr_gc(&conf, &[]);
    assert!(!report.contains(net.id.as_str()), "{report}");
    pm.run(&["network", "rm", &pnet, &second]);
    pm.networks.clear();
    for id in [net.id.as_str(), second_id.as_str()] {
        let mut gone = false;
        for _ in 0..60 {
            if n.get::<Network>(id).await.is_err() {
                gone = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        assert!(
            gone,
            "Neutron network {id} outlived its Podman network\n{}",
            k.log_text()
        );
    }
    drop(k);
    let _ = std::fs::remove_file(&host_sock);
}

/// `podman network create -d kuryr` with the daemon's socket and `args`; its output.
fn create_network(pm: &mut Podman5, name: &str, socket: &str, args: &[&str]) -> Output {
    pm.networks.push(name.to_string());
    let sock_opt = format!("kuryr.socket={socket}");
    // Labelled: `scripts/devenv reset` removes what an interrupted run left.
    let mut all = vec![
        "network",
        "create",
        "--label",
        "kuryr-test",
        "-d",
        "kuryr",
        "-o",
        sock_opt.as_str(),
    ];
    all.extend_from_slice(args);
    all.push(name);
    pm.try_run(&all)
}

fn neutron_id_of(pm: &Podman5, name: &str) -> String {
    let stored: Value = serde_json::from_str(&pm.run(&["network", "inspect", name])).unwrap();
    stored[0]["options"]["neutron.net.uuid"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kuryr_killed_mid_setup_then_the_container_removed_and_gc_leave_nothing() {
    let _one = SERIAL.lock().await;
    let mut pm = Podman5::new();
    let (host_sock, inside_sock) = pm.socket();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("k.sock");
    let k = Kuryr::at(sock.clone())
        .cni_socket(&host_sock)
        .extra(&pm.store_option())
        .start();
    let n = common::neutron().await;
    let pnet = common::unique("kp5k-");
    let out = create_network(
        &mut pm,
        &pnet,
        &inside_sock,
        &["--subnet", "10.253.82.0/24"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let net_id = neutron_id_of(&pm, &pnet);
    let conf = std::fs::read_to_string(k.dir.path().join("kuryr.conf")).unwrap();
    drop(k);

    // kuryr dies once the container's port is made, before anything is wired.
    let mut k = Kuryr::at(sock)
        .cni_socket(&host_sock)
        .extra(&pm.store_option())
        .envs(&[("KURYR_TEST_KILL_AT", "CNI.ADD.after_port")])
        .start();
    let c = common::unique("p5k-");
    let out = pm.container(&c, &pnet, &[]);
    assert!(
        !out.status.success(),
        "podman run succeeded with its kuryr killed"
    );
    assert!(
        stderr(&out).contains("plugin \"kuryr\" failed") && stderr(&out).contains("kuryr daemon"),
        "{}",
        stderr(&out)
    );
    assert!(k.child.wait().is_ok());
    assert_eq!(
        ports_on(&n, &net_id).await.len(),
        1,
        "the killed setup left no port"
    );
    // A failed setup gets no teardown: the container goes, then gc.
    pm.run(&["rm", "-f", "-t", "0", &c]);
    pm.containers.clear();
    common::kuryr_gc(&conf, &["--apply"]);
    assert!(ports_on(&n, &net_id).await.is_empty(), "gc left the port");
    pm.run(&["network", "rm", &pnet]);
    pm.networks.clear();
    common::kuryr_gc(&conf, &["--apply"]);
    assert!(
        n.get::<Network>(&net_id).await.is_err(),
        "gc left the network"
    );
    let _ = std::fs::remove_file(&host_sock);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_users_read_what_went_wrong_and_nothing_is_left() {
    let _one = SERIAL.lock().await;
    let mut pm = Podman5::new();
    let (host_sock, inside_sock) = pm.socket();
    let n = common::neutron().await;
    let fails_with = |out: &Output, what: &str| {
        assert!(!out.status.success(), "succeeded; expected: {what}");
        assert!(
            stderr(out).contains(what),
            "{}\nexpected: {what}",
            stderr(out)
        );
    };
    // No daemon on the socket the network names.
    let name = common::unique("kp5e-");
    let out = create_network(
        &mut pm,
        &name,
        &inside_sock,
        &["--subnet", "10.253.83.0/24"],
    );
    fails_with(
        &out,
        &format!("kuryr daemon not reachable at {inside_sock}"),
    );
    let dir = tempfile::tempdir().unwrap();
    let k = Kuryr::at(dir.path().join("k.sock"))
        .cni_socket(&host_sock)
        .extra(&pm.store_option())
        .start();
    let out = create_network(&mut pm, &name, &inside_sock, &["-o", "vlan=5"]);
    fails_with(&out, "option \"vlan\" is not one of kuryr's");
    let out = create_network(&mut pm, &name, &inside_sock, &[]);
    fails_with(&out, "needs a Neutron network");
    let out = create_network(
        &mut pm,
        &name,
        &inside_sock,
        &["-o", "neutron.net.name=kp5-no-such-net"],
    );
    fails_with(&out, "kp5-no-such-net");
    // A network, then a container asking for an address off its subnet.
    let out = create_network(
        &mut pm,
        &name,
        &inside_sock,
        &["--subnet", "10.253.83.0/24"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let net_id = neutron_id_of(&pm, &name);
    let c = common::unique("p5e-");
    let out = pm.container(&c, &name, &["--ip", "10.253.99.9"]);
    fails_with(&out, "10.253.99.9 is on none of the subnets");
    assert!(ports_on(&n, &net_id).await.is_empty());
    pm.run(&["rm", "-f", "-t", "0", &c]);
    pm.containers.clear();
    pm.run(&["network", "rm", &name]);
    pm.networks.clear();
    let conf = std::fs::read_to_string(k.dir.path().join("kuryr.conf")).unwrap();
    common::kuryr_gc(&conf, &["--apply"]);
    assert!(
        n.get::<Network>(&net_id).await.is_err(),
        "gc left the network"
    );
    drop(k);
    let _ = std::fs::remove_file(&host_sock);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman5_podman4_and_docker_containers_share_a_neutron_network() {
    let _one = SERIAL.lock().await;
    common::require_docker();
    let plugin = common::unique("kp5d");
    let mut p5 = Podman5::new();
    let (host_sock, inside_sock) = p5.socket();
    let k = Kuryr::plugin(&plugin).cni_socket(&host_sock).start();
    let net = TestNet::new("10.253.84.0/24", "10.253.84.1").await;

    // Podman 5 on the existing Neutron network, by id.
    let p5net = common::unique("kp5s-");
    let by_id = format!("neutron.net.uuid={}", net.id);
    let out = create_network(&mut p5, &p5net, &inside_sock, &["-o", &by_id]);
    assert!(out.status.success(), "{}\n{}", stderr(&out), k.log_text());
    let a = common::unique("p5s-");
    let out = p5.container(&a, &p5net, &[]);
    assert!(out.status.success(), "{}\n{}", stderr(&out), k.log_text());
    let a_ip = p5.ip_of(&a);

    // Podman 4 (CNI) on it; its kuryr-cni runs on the host, where the socket is this path.
    let mut p4 = Podman::new();
    let p4net = common::unique("kp4s-");
    p4.network(&p4net, &net.name, &host_sock);
    let b = common::unique("p4s-");
    let out = p4.container(&b, &p4net, &[]);
    assert!(out.status.success(), "{}\n{}", stderr(&out), k.log_text());
    let b_ip = p4.ip_of(&b);

    // Docker on it.
    let dnet = common::unique("kp5dn-");
    common::kuryr_network_with(
        &plugin,
        &dnet,
        &[
            "--subnet",
            "10.253.84.0/24",
            "--gateway",
            "10.253.84.1",
            "-o",
            &by_id,
        ],
    );
    let d = common::unique("p5d-");
    common::run_container(&d, &dnet, &[]);
    let d_ip = common::container_ip(&d, &dnet);

    assert!(
        p5.pings(&a, &b_ip),
        "podman 5 cannot reach podman 4 at {b_ip}"
    );
    assert!(
        p5.pings(&a, &d_ip),
        "podman 5 cannot reach docker at {d_ip}"
    );
    assert!(
        p4.pings(&b, &a_ip),
        "podman 4 cannot reach podman 5 at {a_ip}"
    );
    let back = common::wait_until(60, || {
        common::docker_try(&["exec", &d, "ping", "-c", "1", "-W", "1", &a_ip])
            .status
            .success()
            .then_some(())
    });
    assert!(back.is_some(), "docker cannot reach podman 5 at {a_ip}");

    common::docker(&["rm", "-f", &d]);
    common::docker(&["network", "rm", &dnet]);
    p5.run(&["rm", "-f", "-t", "0", &a]);
    p5.containers.clear();
    p4.run(&["rm", "-f", "-t", "0", &b]);
    p4.containers.clear();
    p5.run(&["network", "rm", &p5net]);
    p5.networks.clear();
    let left = ports_on(&net.n, &net.id).await;
    assert!(
        left.iter()
            .all(|p| p.name == kuryr::driver::port_pool::POOL_PORT_NAME),
        "{left:?}"
    );
    drop(k);
    let _ = std::fs::remove_file(&host_sock);
    net.remove().await;
}
