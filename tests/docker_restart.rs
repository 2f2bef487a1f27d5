//! dockerd restarted under kuryr networks, on an engine of the test's own (own data-root,
//! exec-root and API socket; the shared dockerd serves the parallel tests and is never
//! restarted). In order:
//! - dockerd restarted: `--restart always` containers come back, the one started with
//!   `--ip` at its address, and ping each other; the endpoints of before are released
//!   (no port or veth left over).
//! - boot order: kuryr killed (SIGKILL) while dockerd is down, dockerd started first and
//!   kuryr seconds later: Docker's restore waits for the plugin, the containers come back.
//! - `live-restore`: dockerd restarted while the containers keep running (same process,
//!   same Neutron port, still connected); kuryr is asked for nothing.
//!
//! Removal then leaves nothing in Neutron and no veth on the host.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{docker_bin, image, unique, wait_until, Kuryr};
use kuryr::names;
use kuryr::neutron::{Filters, Neutron, Port};

/// A dockerd of this test's own: the machine's, or with `KURYR_TEST_DOCKERD_ROOT` (a
/// Debian root holding another docker.io: the devenv's engine3) that root's, run as its
/// own: in a mount namespace whose root is that root (pivot_root), kept between the
/// dockerd runs as a host keeps its mounts (the containers' network namespaces are
/// mounts that a live restore finds again).
struct Engine {
    /// The root dockerd runs in ("" for the machine's); paths below are the machine's.
    root: String,
    /// The directory holding that mount namespace (`mnt`), on a private mount.
    ns: Option<PathBuf>,
    data: tempfile::TempDir,
    exec: PathBuf,
    sock: PathBuf,
    /// Its default bridge: a dockerd with `--bridge=none` in the host's network
    /// namespace deletes docker0, the shared engine's.
    bridge: String,
    child: Option<Child>,
}

impl Engine {
    fn new() -> Engine {
        let root = std::env::var("KURYR_TEST_DOCKERD_ROOT").unwrap_or_default();
        let data = tempfile::Builder::new()
            .prefix("kuryr-test-dockerd-")
            .tempdir_in(format!("{root}/var/tmp"))
            .expect("data-root");
        // Short: containerd's sockets live under the exec-root (108-byte path limit).
        let exec = PathBuf::from(format!("{root}/run/{}", unique("kte-")));
        let sock = exec.join("docker.sock");
        let bridge = unique("ktb");
        common::ip(&["link", "add", &bridge, "type", "bridge"]);
        common::ip(&["addr", "add", "172.30.251.1/24", "dev", &bridge]);
        common::ip(&["link", "set", &bridge, "up"]);
        let ns = (!root.is_empty()).then(|| mount_namespace(&root));
        Engine {
            root,
            ns,
            data,
            exec,
            sock,
            bridge,
            child: None,
        }
    }

    fn start(&mut self, live_restore: bool) {
        self.spawn(live_restore);
        self.wait_up();
    }

    /// Starts dockerd without waiting for its API: it answers only once its restore is
    /// done, and the restore may wait for a plugin.
    fn spawn(&mut self, live_restore: bool) {
        std::fs::create_dir_all(&self.exec).expect("exec-root");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.path().join("dockerd.log"))
            .expect("dockerd log");
        // Paths as dockerd sees them: under its root when it has one.
        let inside = |p: &std::path::Path| -> PathBuf {
            PathBuf::from("/").join(p.strip_prefix(format!("{}/", self.root)).unwrap_or(p))
        };
        let mut cmd = match &self.ns {
            None => Command::new("dockerd"),
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--mount={}", ns.join("mnt").display()))
                    .args(["--", "dockerd"]);
                c
            }
        };
        cmd.arg("--data-root")
            .arg(inside(&self.data.path().join("root")))
            .arg("--exec-root")
            .arg(inside(&self.exec))
            .arg("--pidfile")
            .arg(inside(&self.exec.join("dockerd.pid")))
            .arg("-H")
            .arg(format!("unix://{}", inside(&self.sock).display()))
            .arg(format!("--bridge={}", self.bridge))
            .args([
                "--iptables=false",
                "--ip6tables=false",
                // Containers get a second to stop at shutdown (sleep as PID 1 ignores
                // SIGTERM), not 15.
                "--shutdown-timeout=1",
            ]);
        if live_restore {
            cmd.arg("--live-restore");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("dockerd");
        self.child = Some(child);
    }

    fn wait_up(&self) {
        let up = wait_until(90, || {
            self.docker_try(&["version", "--format", "{{.Server.Version}}"])
                .status
                .success()
                .then_some(())
        });
        assert!(up.is_some(), "dockerd did not start:\n{}", self.log());
    }

    /// SIGTERM, as `systemctl restart docker` does, and waits for it to end.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("dockerd did not stop within 90 s:\n{}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("dockerd.log")).unwrap_or_default()
    }

    fn docker_try(&self, args: &[&str]) -> Output {
        Command::new(docker_bin())
            .arg("-H")
            .arg(format!("unix://{}", self.sock.display()))
            .args(args)
            .output()
            .expect("docker CLI")
    }

    fn docker(&self, args: &[&str]) -> String {
        let out = self.docker_try(args);
        assert!(
            out.status.success(),
            "docker {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The shared engine's test image, loaded into this one.
    fn load_image(&self) {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{d} save {img} | {d} -H unix://{s} load",
                d = docker_bin(),
                img = image(),
                s = self.sock.display()
            ))
            .output()
            .expect("docker save | load");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn inspect(&self, ct: &str, format: &str) -> String {
        self.docker(&["inspect", "-f", format, ct])
    }

    fn ip(&self, ct: &str, net: &str) -> String {
        self.inspect(
            ct,
            &format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}"),
        )
    }

    /// Waits until `ct` runs with an address on `net`; its address.
    fn running(&self, ct: &str, net: &str) -> String {
        let up = wait_until(90, || {
            let out = self.docker_try(&["inspect", "-f", "{{.State.Running}}", ct]);
            (String::from_utf8_lossy(&out.stdout).trim() == "true").then_some(())
        });
        assert!(
            up.is_some(),
            "{ct} did not come back: {}\n{}",
            self.inspect(ct, "{{.State.Status}} {{.State.Error}}"),
            self.log()
        );
        self.ip(ct, net)
    }

    fn pings(&self, from: &str, to: &str) {
        let ok = wait_until(60, || {
            self.docker_try(&["exec", from, "ping", "-c", "1", "-W", "1", to])
                .status
                .success()
                .then_some(())
        });
        assert!(ok.is_some(), "{from} cannot ping {to}");
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.docker_try(&["rm", "-f", "kra", "krb"]);
            let out = self.docker_try(&["network", "ls", "-q", "--filter", "label=kuryr-test"]);
            for n in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = self.docker_try(&["network", "rm", n]);
            }
            if std::thread::panicking() {
                eprintln!("---- dockerd log ----\n{}", self.log());
            }
            self.stop();
        }
        // dockerd mounts its data-root on itself and leaves the mount at exit.
        if let Ok(root) =
            std::ffi::CString::new(self.data.path().join("root").as_os_str().as_encoded_bytes())
        {
            // SAFETY: umount2(2) of a path we made; failure (not mounted) is fine.
            unsafe {
                libc::umount2(root.as_ptr(), libc::MNT_DETACH);
            }
        }
        let _ = std::fs::remove_dir_all(&self.exec);
        if let Some(ns) = &self.ns {
            for m in [ns.join("mnt"), ns.clone()] {
                let _ = Command::new("umount").arg(&m).status();
            }
            let _ = std::fs::remove_dir_all(ns);
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}

/// A mount namespace whose root is `root` (with the machine's /proc, /sys, /dev and
/// plugin directory bound in), held by an nsfs mount at `<dir>/mnt`; the dir.
fn mount_namespace(root: &str) -> PathBuf {
    let dir = PathBuf::from(format!("/run/{}", unique("ktns-")));
    std::fs::create_dir_all(&dir).expect("ns dir");
    let sh = |script: &str, args: &[&str]| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .args(args)
            .output()
            .expect("sh");
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let d = dir.to_str().expect("utf-8 path");
    // unshare --mount=FILE needs FILE on a private mount.
    sh(
        "mount --bind \"$1\" \"$1\" && mount --make-private \"$1\" && touch \"$1/mnt\"",
        &[d],
    );
    sh(
        "unshare --mount=\"$1/mnt\" --propagation private sh -c '
            set -e; r=$1; mount --bind \"$r\" \"$r\"
            mount --rbind /proc \"$r/proc\"; mount --rbind /sys \"$r/sys\"
            mount --rbind /dev \"$r/dev\"
            mount --bind /run/docker/plugins \"$r/run/docker/plugins\"
            cd \"$r\"; pivot_root . .oldroot; cd /; umount -l /.oldroot' sh \"$2\"",
        &[d, root],
    );
    dir
}

/// The container ports on the Neutron network of Docker network `net`.
async fn container_ports(n: &Neutron, e: &Engine, net: &str) -> Vec<Port> {
    let id = e.docker(&["network", "inspect", "-f", "{{.Id}}", net]);
    let neutron_net = common::neutron_network_of(n, &id).await;
    let ports: Vec<Port> = n
        .list(&Filters::new().add("network_id", &neutron_net))
        .await
        .expect("ports");
    ports
        .into_iter()
        .filter(|p| !p.device_owner.starts_with("network:"))
        .collect()
}

/// Ports of the two containers only, each with its veth on the host: nothing of an
/// endpoint of before the restart is left. Polls a little: a release may still be on
/// its way.
async fn just_two_endpoints(n: &Neutron, e: &Engine, net: &str, when: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ports = container_ports(n, e, net).await;
        let veths: Vec<String> = ports.iter().map(|p| names::host_veth(&p.id)).collect();
        let plugged = veths.iter().all(|v| !common::host_links(v).is_empty());
        if ports.len() == 2 && plugged {
            let mut ids: Vec<String> = ports.into_iter().map(|p| p.id.into()).collect();
            ids.sort();
            return ids;
        }
        assert!(
            Instant::now() < deadline,
            "{when}: container ports {:?} (veths present: {plugged})",
            ports
                .iter()
                .map(|p| (&p.id, &p.fixed_ips))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_come_back_after_dockerd_restarts() {
    common::require_docker();
    let n = common::neutron().await;
    let plugin = unique("ktr");
    let sock = PathBuf::from(format!("/run/docker/plugins/{plugin}.sock"));
    let mut k = Kuryr::at(sock.clone()).start();
    let mut e = Engine::new();
    e.start(false);
    e.load_image();
    let net = unique("kr-");
    e.docker(&[
        "network",
        "create",
        "--label",
        "kuryr-test",
        "-d",
        &plugin,
        "--ipam-driver",
        &plugin,
        "--subnet",
        "10.41.1.0/24",
        "--gateway",
        "10.41.1.1",
        &net,
    ]);
    let img = image();
    for (ct, extra) in [("kra", vec!["--ip", "10.41.1.10"]), ("krb", vec![])] {
        let mut args = vec![
            "run",
            "-d",
            "--restart",
            "always",
            "--name",
            ct,
            "--network",
            &net,
        ];
        args.extend(extra);
        args.extend([img.as_str(), "sleep", "3600"]);
        e.docker(&args);
    }
    let b_ip = e.ip("krb", &net);
    e.pings("kra", &b_ip);
    let before = just_two_endpoints(&n, &e, &net, "before any restart").await;

    // dockerd restarted: Docker stops the containers (Leave, DeleteEndpoint,
    // ReleaseAddress), then starts them again.
    e.stop();
    e.start(false);
    assert_eq!(e.running("kra", &net), "10.41.1.10", "--ip kept");
    let b_ip = e.running("krb", &net);
    e.pings("kra", &b_ip);
    e.pings("krb", "10.41.1.10");
    let after_restart = just_two_endpoints(&n, &e, &net, "after dockerd restarted").await;
    assert_ne!(
        before, after_restart,
        "the old endpoints' ports were released"
    );

    // Boot order: kuryr dies while dockerd is down, dockerd comes back first and kuryr
    // a few seconds later, within Docker's plugin lookup (it retries for 30 s).
    e.stop();
    k.child.kill().expect("SIGKILL kuryr");
    let _ = k.child.wait();
    e.spawn(true);
    std::thread::sleep(Duration::from_secs(3));
    let k2 = Kuryr::at(sock.clone()).start();
    e.wait_up();
    assert_eq!(e.running("kra", &net), "10.41.1.10", "--ip kept");
    let b_ip = e.running("krb", &net);
    e.pings("kra", &b_ip);
    let after_boot = just_two_endpoints(&n, &e, &net, "kuryr started after dockerd").await;

    // live-restore: the containers keep running through the restart.
    let pid = e.inspect("kra", "{{.State.Pid}}");
    let calls = |k: &Kuryr, m: &str| k.log_text().matches(&format!("method={m} ")).count();
    let methods = [
        "NetworkDriver.CreateEndpoint",
        "NetworkDriver.DeleteEndpoint",
        "IpamDriver.RequestAddress",
        "IpamDriver.ReleaseAddress",
    ];
    let calls_before: Vec<usize> = methods.iter().map(|m| calls(&k2, m)).collect();
    e.stop();
    e.start(true);
    assert_eq!(e.inspect("kra", "{{.State.Pid}}"), pid, "a kept running");
    assert_eq!(e.ip("kra", &net), "10.41.1.10");
    e.pings("kra", &b_ip);
    let after_live = just_two_endpoints(&n, &e, &net, "after a live restore").await;
    assert_eq!(after_boot, after_live, "same ports through a live restore");
    let calls_after: Vec<usize> = methods.iter().map(|m| calls(&k2, m)).collect();
    assert_eq!(
        calls_before, calls_after,
        "calls to kuryr during a live restore ({methods:?})"
    );

    // Removal leaves nothing.
    let id = e.docker(&["network", "inspect", "-f", "{{.Id}}", &net]);
    let neutron_net = common::neutron_network_of(&n, &id).await;
    e.docker(&["rm", "-f", "kra", "krb"]);
    e.docker(&["network", "rm", &net]);
    let left: Vec<Port> = n
        .list(&Filters::new().add("network_id", &neutron_net))
        .await
        .expect("ports");
    assert!(left.is_empty(), "ports left: {left:?}");
    for id in after_live.iter().chain(&before).chain(&after_restart) {
        let v = names::host_veth(id);
        assert!(common::host_links(&v).is_empty(), "{v} left");
    }
    drop(k2);
}
