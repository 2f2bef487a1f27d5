//! The CNI side of the integration tests: a Neutron network made for a test, and the
//! `kuryr-cni` binary run as a container runtime runs it.

use std::io::Write;
use std::process::{Command, Stdio};

use kuryr::neutron::{Filters, Network, Neutron, Port, Subnet};

use super::{Kuryr, Netns};
use serde_json::{json, Value};

/// A Neutron network with one IPv4 subnet, deleted (with what is left on it) at the end.
pub struct TestNet {
    pub n: Neutron,
    pub id: String,
    pub name: String,
}

impl TestNet {
    /// `cidr` is a /24 whose .2-.63 Neutron hands out itself (the DHCP port, addresses
    /// nobody asked for): an address a test asks for is above them, never taken already.
    pub async fn new(cidr: &str, gw: &str) -> TestNet {
        Self::make(cidr, gw, true).await
    }

    /// As `new`, with DHCP off on the subnet: the port's ACTIVE then waits on the L2
    /// agent alone (Neutron can lose one of two provisioning blocks completed in the
    /// same instant, leaving the port DOWN; seen once in CI on the OVS agent).
    pub async fn without_dhcp(cidr: &str, gw: &str) -> TestNet {
        Self::make(cidr, gw, false).await
    }

    async fn make(cidr: &str, gw: &str, dhcp: bool) -> TestNet {
        let n = super::neutron().await;
        let name = super::unique("kuryr-cni-test-");
        let net: Network = n.create(json!({"name": name})).await.unwrap();
        let base = cidr.rsplit_once('.').map(|(b, _)| b).unwrap_or(cidr);
        let _: Subnet = n
            .create(json!({"network_id": net.id, "cidr": cidr, "ip_version": 4,
                "gateway_ip": gw, "name": format!("{name}-v4"), "enable_dhcp": dhcp,
                "allocation_pools": [{"start": format!("{base}.2"), "end": format!("{base}.63")}]}))
            .await
            .unwrap();
        TestNet {
            n,
            id: net.id.into(),
            name,
        }
    }

    pub async fn ports(&self) -> Vec<Port> {
        self.n
            .list(&Filters::new().add("network_id", self.id.as_str()))
            .await
            .unwrap()
            .into_iter()
            .filter(|p: &Port| p.device_owner == kuryr::names::DEVICE_OWNER)
            .collect()
    }

    pub async fn remove(self) {
        for p in self.ports().await {
            let _ = self.n.delete::<Port>(&p.id).await;
        }
        let subnets: Vec<Subnet> = self
            .n
            .list(&Filters::new().add("network_id", self.id.as_str()))
            .await
            .unwrap_or_default();
        for s in subnets {
            let _ = self.n.delete::<Subnet>(&s.id).await;
        }
        let _ = self.n.delete::<Network>(&self.id).await;
    }
}

/// Runs the plugin binary: exit code and stdout as JSON (Null when empty).
pub fn cni(env: &[(&str, &str)], stdin: &Value) -> (i32, Value) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kuryr-cni"))
        .env_clear()
        .env("CNI_PATH", "/usr/lib/cni")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kuryr-cni");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {text}"))
    };
    (out.status.code().unwrap_or(-1), v)
}

/// A network config of test kuryr `k` for Neutron network `network`, plus `extra`.
pub fn conf(k: &Kuryr, network: &str, extra: Value) -> Value {
    let mut c = json!({"cniVersion": "1.0.0", "name": "kuryr-it", "type": "kuryr-cni",
        "network": network, "socket": k.cni_socket});
    if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        for (key, v) in e {
            c.insert(key.clone(), v.clone());
        }
    }
    c
}

/// The CNI environment of `cmd` for container `ctr` in namespace `ns`, interface eth0.
pub fn env<'a>(cmd: &'a str, ctr: &'a str, ns: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", ctr),
        ("CNI_NETNS", ns),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=test"),
    ]
}

/// Whether `from` reaches `to` (tried for a while: the port may not be ACTIVE yet).
pub fn pings(from: &Netns, to: &str) -> bool {
    super::wait_until(90, || {
        let out = from.exec(&["busybox", "ping", "-c", "1", "-W", "1", to]);
        out.status.success().then_some(())
    })
    .is_some()
}

/// Whether 200,000 bytes served over HTTP (busybox httpd, port 8080) in `server` at `ip`
/// reach `client` (tried for a while: the ports may not be ACTIVE yet). TCP, not ping:
/// OVS's userspace datapath passes ping and drops TCP whose checksum was left to the NIC.
pub fn tcp_reaches(client: &Netns, server: &Netns, ip: &str) -> bool {
    const BYTES: usize = 200_000;
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("f"), vec![0u8; BYTES]).unwrap();
    let mut httpd = Command::new("ip")
        .args([
            "netns", "exec", &server.0, "busybox", "httpd", "-f", "-p", "8080", "-h",
        ])
        .arg(www.path())
        .spawn()
        .expect("busybox httpd");
    let got = super::wait_until(30, || {
        let out = client.exec(&[
            "sh",
            "-c",
            &format!("timeout 10 busybox wget -q -O - http://{ip}:8080/f | wc -c"),
        ]);
        let n: usize = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        (n == BYTES).then_some(())
    });
    let _ = httpd.kill();
    let _ = httpd.wait();
    got.is_some()
}
