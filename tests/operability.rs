//! Operator features against the real environment: metrics and health endpoints,
//! `kuryr doctor` passing and failing.

mod common;

use std::process::Command;

use common::{docker, docker_try, Kuryr};

fn get(k: &Kuryr, path: &str) -> (u16, String) {
    common::raw_http(&k.socket, "GET", path, "")
}

#[test]
fn metrics_count_a_real_container_start() {
    common::require_docker();
    let p = common::unique("kt");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let k = Kuryr::plugin(&p)
        .extra(&format!("metrics_listen = 127.0.0.1:{port}\n"))
        .start();
    let net = common::unique("km-");
    let ct = common::unique("kmc-");
    common::kuryr_network(&p, "10.33.0.0/24", "10.33.0.1", &net);
    common::run_container(&ct, &net, &[]);
    let (s, text) = get(&k, "/metrics");
    assert_eq!(s, 200);
    for needle in [
        r#"kuryr_libnetwork_calls_total{method="NetworkDriver.CreateEndpoint",status="200"} 1"#,
        r#"kuryr_libnetwork_calls_total{method="NetworkDriver.Join",status="200"} 1"#,
        r#"kuryr_neutron_requests_total{method="POST",resource="ports",status="201"}"#,
        "kuryr_libnetwork_call_duration_seconds_bucket",
        "kuryr_neutron_request_duration_seconds_count",
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
    // Prometheus' own linter (Debian's prometheus package) finds nothing to say.
    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package)");
    std::io::Write::write_all(&mut lint.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let lint = lint.wait_with_output().unwrap();
    assert!(
        lint.status.success() && lint.stdout.is_empty() && lint.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
    // The same on the TCP metrics listener, which serves nothing else.
    let out = Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{port}/metrics")])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("kuryr_libnetwork_calls_total"));
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            &format!("http://127.0.0.1:{port}/Plugin.Activate"),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "405",
        "plugin calls are not served there"
    );
    assert_eq!(get(&k, "/healthz").0, 200);
    assert_eq!(get(&k, "/readyz").0, 200);
    docker(&["rm", "-f", &ct]);
    docker(&["network", "rm", &net]);
}

#[test]
fn readyz_fails_when_neutron_is_gone() {
    // A stand-in Neutron (fault injection): answers kuryr's start-up, then only 503s.
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for (i, c) in l.incoming().enumerate() {
            let Ok(mut c) = c else { continue };
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let (status, body) = if i == 0 {
                (
                    "200 OK",
                    r#"{"extensions": [{"alias": "subnet_allocation"}, {"alias": "standard-attr-tag"}]}"#,
                )
            } else {
                (
                    "503 Service Unavailable",
                    r#"{"NeutronError": {"message": "neutron is down"}}"#,
                )
            };
            let _ = write!(c, "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("k.sock");
    let k = Kuryr::at(sock.clone()).conf(&format!("[DEFAULT]\nunix_socket = {}\n[neutron]\nendpoint = http://127.0.0.1:{port}\ntimeout = 2\n", sock.display())).start();
    assert_eq!(get(&k, "/healthz").0, 200);
    let (s, body) = get(&k, "/readyz");
    assert_eq!(s, 503, "{body}");
    assert!(body.contains("neutron is down"), "{body}");
}

fn doctor(conf: &str, plugin: &str) -> (bool, String) {
    common::kuryr_doctor(conf, plugin, &[])
}

#[test]
fn doctor_passes_on_a_working_setup() {
    common::require_docker();
    let p = common::unique("kt");
    let k = Kuryr::plugin(&p).start();
    // Docker activates a plugin when a network first uses it.
    let net = common::unique("kdoc-");
    common::kuryr_network(&p, "10.34.0.0/24", "10.34.0.1", &net);
    let conf = std::fs::read_to_string(k.dir.path().join("kuryr.conf")).unwrap();
    let (ok, out) = doctor(&conf, &p);
    let _ = docker_try(&["network", "rm", &net]);
    assert!(ok, "{out}");
    assert!(out.contains("[ ok ] Neutron reachable"), "{out}");
    assert!(out.contains("[ ok ] L2 agent for this host"), "{out}");
    assert!(out.contains("[ ok ] dockerd lists the plugin"), "{out}");
    let version = docker_try(&["version", "--format", "{{.Server.Version}}"]);
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    assert!(
        out.contains(&format!("[ ok ] Docker engine: {version} (API")),
        "{out}"
    );
    assert!(out.contains("[ ok ] bridged traffic and iptables"), "{out}");
    assert!(
        out.contains(&format!(
            "{} answers; 0 attachment(s) on this host",
            k.cni_socket.display()
        )),
        "{out}"
    );
    assert!(out.contains("all checks passed"), "{out}");
}

#[test]
fn doctor_fails_with_fixes_on_a_broken_setup() {
    // Wrong host name: no agent; a socket nobody serves.
    let (ok, out) = doctor(
        &format!(
            "[DEFAULT]\nhost = no-agent-here\nunix_socket = /run/docker/plugins/nobody-serves-this.sock\n[neutron]\nendpoint = {}\n",
            common::neutron_url()
        ),
        "nobody-serves-this",
    );
    assert!(!ok, "{out}");
    assert!(out.contains("[FAIL] L2 agent for this host"), "{out}");
    assert!(out.contains("fix: run the Neutron L2 agent here"), "{out}");
    assert!(out.contains("[FAIL] plugin socket"), "{out}");
    // Neutron unreachable, password never printed.
    let (ok, out) = doctor(
        "[neutron]\nauth_type = password\nauth_url = http://127.0.0.1:9/v3\nusername = u\npassword = doctor-Secret-9\nproject_name = p\ntimeout = 2\n",
        "kuryr",
    );
    assert!(!ok);
    assert!(out.contains("[FAIL] Neutron reachable"), "{out}");
    assert!(!out.contains("doctor-Secret-9"), "{out}");
    // Nested driver on a host whose NIC is no Neutron port: told so, with the fix, and no
    // L2 agent is asked for (a VM has none).
    let nic = common::unique("kdn");
    let _g = common::veth(&nic);
    let (ok, out) = doctor(
        &format!(
            "[DEFAULT]\ndefault_port_driver = nested\nenabled_port_drivers = nested\n\
             [binding]\ndriver = macvlan\nlink_iface = {nic}\n[neutron]\nendpoint = {}\n",
            common::neutron_url()
        ),
        "kuryr",
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("[FAIL] VM port for the nested driver"),
        "{out}"
    );
    assert!(
        out.contains("the nested drivers run inside a Nova VM"),
        "{out}"
    );
    assert!(!out.contains("L2 agent for this host"), "{out}");
    // A config error is a failed check too.
    let (ok, out) = doctor(
        "[neutron]\nendpoint = http://x:1\nenable_dhcp = maybe\n",
        "kuryr",
    );
    assert!(!ok);
    assert!(out.contains("[FAIL] configuration parses"), "{out}");
}

/// With the sriov port driver enabled, doctor looks for the SR-IOV NIC agent of this host
/// (`scripts/devenv sriov` runs one): found, or a warning with the fix.
#[test]
fn doctor_checks_the_sriov_agent_when_sriov_is_enabled() {
    let conf = |host: &str| {
        format!(
            "[DEFAULT]\nhost = {host}\nenabled_port_drivers = veth,sriov\n[neutron]\nendpoint = {}\n",
            common::neutron_url()
        )
    };
    let host = std::env::var("KURYR_TEST_SRIOV_HOST")
        .unwrap_or_else(|_| format!("{}-sriov", kuryr::config::hostname()));
    let (_, out) = doctor(&conf(&host), "kuryr");
    assert!(
        out.contains("[ ok ] SR-IOV NIC agent for this host"),
        "{out}"
    );
    let (_, out) = doctor(&conf("no-agent-here"), "kuryr");
    assert!(
        out.contains("[warn] SR-IOV NIC agent for this host"),
        "{out}"
    );
    assert!(
        out.contains("fix: run neutron-sriov-nic-agent here"),
        "{out}"
    );
    // A mapped PF that is not here (or has no VFs) is a failure with the fix.
    let (ok, out) = doctor(
        &format!(
            "{}[sriov]\nphysical_device_mappings = physnet1:knopf0\n",
            conf(&host)
        ),
        "kuryr",
    );
    assert!(!ok);
    assert!(out.contains("[FAIL] SR-IOV physical functions"), "{out}");
    assert!(out.contains("PF knopf0"), "{out}");
    assert!(
        out.contains("fix: fix [sriov] physical_device_mappings"),
        "{out}"
    );
    // Without the driver, no such check.
    let (_, out) = doctor(
        &format!("[neutron]\nendpoint = {}\n", common::neutron_url()),
        "kuryr",
    );
    assert!(!out.contains("SR-IOV NIC agent"), "{out}");
}
