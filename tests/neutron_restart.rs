//! A real neutron-server stopped and started again under a Docker lifecycle. The test
//! runs a neutron-server of its own (the devenv's configuration and database, its own
//! port and RabbitMQ vhost), so the one the parallel tests share keeps running. It is
//! killed outright: connections are refused, and the connections kuryr keeps pooled die
//! with it.
//!
//! While it is down `docker run` fails with kuryr's `Err` naming Neutron, `/readyz` says
//! why, and `docker rm` still succeeds; once it is back the
//! next `docker run` works with no restart of kuryr, an endpoint bookkeeping Neutron
//! missed is written, and removing the network leaves nothing, the port whose release
//! Neutron missed included.

mod common;

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{docker, docker_try, unique, wait_until, Kuryr};
use kuryr::names;
use kuryr::neutron::{Filters, Network, Port};

/// A neutron-server of this test's own, in its own process group (it forks workers). Its
/// message bus is a RabbitMQ vhost of its own: killed, it must not take with it RPC calls
/// of the agents the other tests rely on (they poll their taps and ask the shared server).
struct Server {
    dir: tempfile::TempDir,
    port: u16,
    vhost: String,
    child: Option<Child>,
}

/// The devenv's RabbitMQ node.
fn rabbitmqctl(args: &[&str]) {
    let out = Command::new("rabbitmqctl")
        .args(["-n", "kuryrdev@localhost"])
        .args(args)
        .output()
        .expect("rabbitmqctl");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Server {
    fn new() -> Server {
        let conf_dir = PathBuf::from(common::devenv_path("KURYR_TEST_NEUTRON_CONF_DIR"));
        let base = std::fs::read_to_string(conf_dir.join("neutron.conf"))
            .expect("the devenv's neutron.conf (scripts/devenv up)");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let vhost = format!("kuryr-test-{port}");
        rabbitmqctl(&["add_vhost", &vhost]);
        rabbitmqctl(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"]);
        let conf: String = base
            .lines()
            .map(|l| {
                if l.starts_with("bind_port") {
                    format!("bind_port = {port}")
                } else if let Some(url) = l.strip_prefix("transport_url = ") {
                    format!(
                        "transport_url = {}{vhost}",
                        url.trim_end_matches('/').to_string() + "/"
                    )
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert!(conf.contains(&format!("bind_port = {port}")), "{conf}");
        assert!(conf.contains(&format!("/{vhost}\n")), "{conf}");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("neutron.conf"), conf + "\n").expect("conf");
        std::fs::copy(
            conf_dir.join("ml2_conf.ini"),
            dir.path().join("ml2_conf.ini"),
        )
        .expect("ml2_conf.ini");
        Server {
            dir,
            port,
            vhost,
            child: None,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `GET /v2.0/extensions` answers 200.
    fn answers(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        if s.write_all(b"GET /v2.0/extensions HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut head = [0u8; 12];
        s.read_exact(&mut head).is_ok() && head.ends_with(b" 200")
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("log");
        let child = Command::new("neutron-server")
            .arg("--config-file")
            .arg(self.dir.path().join("neutron.conf"))
            .arg("--config-file")
            .arg(self.dir.path().join("ml2_conf.ini"))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("neutron-server");
        self.child = Some(child);
        let up = wait_until(180, || self.answers().then_some(()));
        assert!(
            up.is_some(),
            "neutron-server did not start:\n{}",
            self.log()
        );
    }

    /// SIGKILL to the whole process group: no clean shutdown, every connection dies.
    fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) of the process group our own child leads.
        unsafe {
            libc::kill(-(child.id() as i32), libc::SIGKILL);
        }
        let _ = child.wait();
        let gone = wait_until(30, || {
            std::net::TcpStream::connect(("127.0.0.1", self.port))
                .is_err()
                .then_some(())
        });
        assert!(gone.is_some(), "port {} still accepts", self.port);
    }

    fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- neutron-server log (tail) ----\n{}", self.log());
        }
        self.kill();
        let _ = Command::new("rabbitmqctl")
            .args(["-n", "kuryrdev@localhost", "delete_vhost", &self.vhost])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neutron_server_stopped_and_started_again() {
    common::require_docker();
    let n = common::neutron().await;
    let mut server = Server::new();
    server.start();
    let plugin = unique("ktn");
    let k = Kuryr::plugin(&plugin)
        .conf(&format!(
            "[DEFAULT]\nunix_socket = /run/docker/plugins/{plugin}.sock\n[neutron]\nauth_type = none\nendpoint = {}\n",
            server.url()
        ))
        .start();
    let net = unique("kn-");
    common::kuryr_network(&plugin, "10.41.2.0/24", "10.41.2.1", &net);
    let docker_net = common::network_id(&net);
    let (c1, c2, c3) = (unique("kn1-"), unique("kn2-"), unique("kn3-"));
    common::run_container(&c1, &net, &[]);
    let ip1 = common::container_ip(&c1, &net);

    server.kill();
    let out = common::run_container_try(&c2, &net);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "docker run with Neutron down");
    assert!(err.contains("Neutron"), "not kuryr's Err: {err}");
    let (_, v) = common::raw_call(&k.socket, "GET", "/readyz", "");
    assert!(
        v.to_string().contains("Neutron"),
        "/readyz with Neutron down: {v}"
    );

    server.start();
    let out = common::run_container_try(&c3, &net);
    assert!(
        out.status.success(),
        "the first docker run once Neutron is back: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        k.log_text()
    );
    let ping = wait_until(60, || {
        docker_try(&["exec", &c3, "ping", "-c", "1", "-W", "1", &ip1])
            .status
            .success()
            .then_some(())
    });
    assert!(ping.is_some(), "{c3} cannot ping {c1} at {ip1}");
    // c1's bookkeeping (due a second after its start, when Neutron was going down) is
    // tried again until Neutron takes it.
    let ep1 = docker(&[
        "inspect",
        "-f",
        &format!("{{{{(index .NetworkSettings.Networks \"{net}\").EndpointID}}}}"),
        &c1,
    ]);
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let ports: Vec<Port> = n
            .list(&Filters::new().tags(&names::id_tags(&ep1)))
            .await
            .expect("ports");
        if ports.len() == 1 && ports[0].device_id == ep1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{c1}'s bookkeeping never written: {ports:?}\n{}",
            k.log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let neutron_net = common::neutron_network_of(&n, &docker_net).await;
    let veths: Vec<String> = n
        .list::<Port>(&Filters::new().add("network_id", &neutron_net))
        .await
        .expect("ports")
        .iter()
        .filter(|p| !p.device_owner.starts_with("network:"))
        .map(|p| names::host_veth(&p.id))
        .collect();
    assert_eq!(veths.len(), 2, "{veths:?}");

    // c1's release while Neutron is down is missed; the network's removal sweeps it.
    server.kill();
    let out = docker_try(&["rm", "-f", &c1]);
    assert!(
        out.status.success(),
        "docker rm with Neutron down: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = docker_try(&["rm", "-f", &c2]);
    server.start();
    docker(&["rm", "-f", &c3]);
    docker(&["network", "rm", &net]);
    let left: Vec<Port> = n
        .list(&Filters::new().add("network_id", &neutron_net))
        .await
        .expect("ports");
    assert!(left.is_empty(), "ports left: {left:?}");
    let gone: Vec<Network> = n
        .list(&Filters::new().add("id", &neutron_net))
        .await
        .expect("networks");
    assert!(gone.is_empty(), "network left");
    for v in &veths {
        assert!(common::host_links(v).is_empty(), "{v} left");
    }
    drop(k);
}
