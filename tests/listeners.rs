//! Listeners: unix socket permissions and clean-up, TCP only when configured, TLS, and
//! the discovery files Docker reads.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::Kuryr;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn unix_socket_is_0660_and_removed_at_exit() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("nested/kuryr.sock");
    let mut k = Kuryr::at(sock.clone()).start();
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    // A second instance must not steal a live socket.
    let conf = k.dir.path().join("kuryr.conf");
    let out = Command::new(env!("CARGO_BIN_EXE_kuryr"))
        .args(["serve", "--config-file"])
        .arg(&conf)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("served by another process"));
    k.stop();
    assert!(!sock.exists(), "socket removed on SIGTERM");
}

#[test]
fn tcp_listener_and_spec_file() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let disc = dir.path().join("plugins");
    let k = Kuryr::at(dir.path().join("k.sock"))
        .extra(&format!("kuryr_uri = http://127.0.0.1:{port}\n"))
        .args(&["--discovery-dir", disc.to_str().unwrap()])
        .start();
    let spec = std::fs::read_to_string(disc.join("kuryr.spec")).unwrap();
    assert_eq!(spec.trim(), format!("http://127.0.0.1:{port}"));
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"POST /Plugin.Activate HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        out.contains("application/vnd.docker.plugins.v1+json"),
        "{out}"
    );
    assert!(out.contains("IpamDriver"), "{out}");
    drop(k);
    assert!(!disc.join("kuryr.spec").exists(), "spec removed at exit");
}

#[tokio::test]
async fn tls_listener_and_json_file() {
    let dir = tempfile::tempdir().unwrap();
    let [ca, cert, key, _, _] = common::make_certs(dir.path());
    let port = free_port();
    let disc = dir.path().join("plugins");
    let _k = Kuryr::at(dir.path().join("k.sock")).extra(&format!(
            "kuryr_uri = https://127.0.0.1:{port}\nenable_ssl = true\nssl_cert_file = {}\nssl_key_file = {}\nssl_ca_file = {}\n",
            cert.display(), key.display(), ca.display()
        )).args(&["--discovery-dir", disc.to_str().unwrap()]).start();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(disc.join("kuryr.json")).unwrap()).unwrap();
    assert_eq!(v["Addr"], format!("https://127.0.0.1:{port}"));
    assert_eq!(v["TLSConfig"]["CAFile"], ca.to_str().unwrap());
    kuryr::tls::install_crypto_provider();
    let root = reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(root)
        .build()
        .unwrap();
    let r = client
        .post(format!("https://127.0.0.1:{port}/Plugin.Activate"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("NetworkDriver"));
    // A client that connects and never says a word holds up nobody else: handshakes run
    // side by side (the handshake timeout is 10 s).
    let _idle = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let fresh = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap())
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let r = fresh
        .post(format!("https://127.0.0.1:{port}/Plugin.Activate"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "waited {:?} behind an idle client",
        started.elapsed()
    );
    // Plain HTTP on the TLS port gets nowhere.
    let plain = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/Plugin.Activate"))
        .send()
        .await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
}

#[test]
fn bad_certificate_fails_start() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("kuryr.conf");
    std::fs::write(
        &conf,
        "[DEFAULT]\nkuryr_uri = https://127.0.0.1:1\nenable_ssl = true\nssl_cert_file = /nonexistent/cert.pem\n[neutron]\nendpoint = http://127.0.0.1:9696\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kuryr"))
        .args(["serve", "--config-file"])
        .arg(&conf)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ssl_cert_file"));
}
