//! Neutron misbehaving under a real Docker lifecycle: answering 500, unreachable, too
//! slow. kuryr sends Docker a clear error quickly, leaves nothing behind once Docker has
//! removed the network, and works again as soon as Neutron is back. The faults come from
//! a proxy in front of the real neutron-server.

mod common;

use std::time::{Duration, Instant};

use common::{docker, docker_try, Kuryr};
use kuryr::neutron::{Filters, Network, Port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PASS: u8 = 0;
const ERROR_500: u8 = 1;
const DOWN: u8 = 2;
const SLOW: u8 = 3;

/// A proxy to the real Neutron whose behaviour `mode` picks. A change of mode takes
/// effect for every request: connections that pass through are closed when it changes,
/// so the client's pooled connections cannot dodge a fault.
async fn fault_proxy(mode: tokio::sync::watch::Receiver<u8>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let upstream = common::neutron_url()
        .trim_start_matches("http://")
        .to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut c, _)) = l.accept().await else {
                return;
            };
            let mut changes = mode.clone();
            let (mode, upstream) = (*changes.borrow_and_update(), upstream.clone());
            tokio::spawn(async move {
                match mode {
                    DOWN => drop(c),
                    ERROR_500 => {
                        let mut buf = [0u8; 8192];
                        let _ = c.read(&mut buf).await;
                        let body = r#"{"NeutronError": {"type": "Boom", "message": "injected failure", "detail": ""}}"#;
                        let _ = c
                            .write_all(format!("HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes())
                            .await;
                    }
                    _ => {
                        if mode == SLOW {
                            tokio::time::sleep(Duration::from_secs(6)).await;
                        }
                        let Ok(mut up) = TcpStream::connect(upstream).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut c, &mut up) => {}
                            _ = changes.changed() => {}
                        }
                    }
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neutron_faults_during_container_starts() {
    common::require_docker();
    let n = common::neutron().await;
    let (mode, modes) = tokio::sync::watch::channel(PASS);
    let port = fault_proxy(modes).await;
    let p = common::unique("kt");
    let sock = std::path::PathBuf::from(format!("/run/docker/plugins/{p}.sock"));
    let _k = Kuryr::at(sock.clone()).conf(&format!("[DEFAULT]\nunix_socket = {}\n[neutron]\nendpoint = http://127.0.0.1:{port}\ntimeout = 3\n", sock.display())).start();
    let net = common::unique("ko-");
    common::kuryr_network(&p, "10.42.0.0/24", "10.42.0.1", &net);
    let docker_id = common::network_id(&net);
    let neutron_net = common::neutron_network_of(&n, &docker_id).await;

    for (fault, expect) in [
        (ERROR_500, "injected failure"),
        (DOWN, "Neutron did not answer"),
        (SLOW, "Neutron did not answer"),
    ] {
        let _ = mode.send(fault);
        let ct = common::unique("koc-");
        let started = Instant::now();
        let out = common::run_container_try(&ct, &net);
        let took = started.elapsed();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "fault {fault}: docker run must fail");
        assert!(
            err.contains(expect),
            "fault {fault}: the error says why: {err}"
        );
        // Well inside Docker's patience (it retries a dead plugin for ~30 s).
        assert!(
            took < Duration::from_secs(25),
            "fault {fault}: answered after {took:?}"
        );
        let _ = docker_try(&["rm", "-f", &ct]);
        if fault == SLOW {
            // The port create kuryr gave up on still reaches Neutron, late: a port
            // nobody holds, for the network's removal to sweep.
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let ports: Vec<Port> = n
                    .list(&Filters::new().add("network_id", &neutron_net))
                    .await
                    .unwrap();
                if ports
                    .iter()
                    .any(|p| !p.device_owner.starts_with("network:"))
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the late port create never reached Neutron: {ports:?}"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }

    // Neutron is back: the next start works, and the container can be removed.
    let _ = mode.send(PASS);
    let ct = common::unique("koc-");
    common::run_container(&ct, &net, &[]);
    let ip = common::container_ip(&ct, &net);
    assert!(ip.starts_with("10.42.0."));
    docker(&["rm", "-f", &ct]);
    docker(&["network", "rm", &net]);
    // What the timed-out request still made at Neutron went with the network.
    let left: Vec<Port> = n
        .list(&Filters::new().add("network_id", &neutron_net))
        .await
        .unwrap();
    assert!(
        left.iter().all(|p| p.device_owner.starts_with("network:")),
        "{left:?}"
    );
    assert!(n
        .get::<Network>(&neutron_net)
        .await
        .unwrap_err()
        .is_not_found());
}

/// Neutron unreachable when kuryr starts (at boot, Neutron may come up after dockerd):
/// kuryr listens at once, answers what needs no Neutron, gives the rest a clear `Err`
/// quickly, says why in `/readyz`, and works as soon as Neutron answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kuryr_listens_before_neutron_answers() {
    let (mode, modes) = tokio::sync::watch::channel(DOWN);
    let port = fault_proxy(modes).await;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("k.sock");
    let started = Instant::now();
    let k = Kuryr::at(sock.clone())
        .conf(&format!(
            "[DEFAULT]\nunix_socket = {}\n[neutron]\nendpoint = http://127.0.0.1:{port}\ntimeout = 3\n",
            sock.display()
        ))
        .listen_only()
        .start();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "listening took {:?}",
        started.elapsed()
    );
    let (s, v) = k.call("Plugin.Activate", &serde_json::json!({}));
    assert_eq!(
        (s, v["Implements"][0].as_str()),
        (200, Some("NetworkDriver"))
    );
    let (s, _) = k.call("NetworkDriver.GetCapabilities", &serde_json::json!({}));
    assert_eq!(s, 200);
    let t = Instant::now();
    let (s, v) = k.call(
        "IpamDriver.RequestPool",
        &serde_json::json!({"Pool": "10.43.0.0/24"}),
    );
    assert_eq!(s, 503, "{v}");
    assert!(
        v["Err"]
            .as_str()
            .unwrap_or_default()
            .contains("not connected to Neutron"),
        "{v}"
    );
    // A call during the first attempt to connect waits for it, at most 5 s (that
    // attempt's retries take longer on a busy machine); never to Docker's deadline.
    assert!(
        t.elapsed() < Duration::from_secs(6),
        "the Err took {:?}",
        t.elapsed()
    );
    let (s, why) = common::raw_http(&sock, "GET", "/readyz", "");
    assert_eq!(s, 503);
    assert!(why.contains("Neutron"), "{why}");

    // Neutron answers: within its retry interval kuryr connects and serves.
    let _ = mode.send(PASS);
    let ready = common::wait_until(20, || {
        let (s, _) = common::raw_http(&sock, "GET", "/readyz", "");
        (s == 200).then_some(())
    });
    assert!(ready.is_some(), "never ready: {}", k.log_text());
    let (s, pool) = k.call(
        "IpamDriver.RequestPool",
        &serde_json::json!({"Pool": "10.43.0.0/24"}),
    );
    assert_eq!(s, 200, "{pool}");
    let (s, _) = k.call(
        "IpamDriver.ReleasePool",
        &serde_json::json!({"PoolID": pool["PoolID"]}),
    );
    assert_eq!(s, 200);
}
