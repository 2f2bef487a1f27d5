//! Shared helpers for the integration tests: the real kuryr binary, the real Neutron and
//! the real dockerd. Nothing here skips: a missing service fails the test with the reason.
#![allow(dead_code)]

pub mod cni;
pub mod cnm;
pub mod cri;
pub mod multihost;
pub mod ovs;
pub mod podman4;
pub mod vm;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kuryr::config::Config;
use kuryr::neutron::Neutron;
use serde_json::Value;

pub fn neutron_url() -> String {
    std::env::var("KURYR_TEST_NEUTRON_URL").unwrap_or_else(|_| "http://127.0.0.1:9696".into())
}

/// A path `scripts/devenv env` exports: set by the test command, whatever the state
/// directory; missing, the test fails saying so (no guess at a default state dir).
/// The Neutron backend the tests run against: `KURYR_TEST_BACKEND` (`linuxbridge`, the
/// default, or `ovn`), which `scripts/test` sets with `KURYR_TEST_NEUTRON_URL`.
pub fn backend() -> String {
    std::env::var("KURYR_TEST_BACKEND").unwrap_or_else(|_| "linuxbridge".into())
}

pub fn on_ovn() -> bool {
    backend() == "ovn"
}

/// The `binding:host_id` kuryr must give ports here: on OVN the host name this host's
/// chassis registered (kuryr finds it itself; it is not the kernel's here), else the
/// kernel's.
pub fn binding_host() -> String {
    if on_ovn() {
        devenv_path("KURYR_TEST_OVN_HOST")
    } else {
        kuryr::config::hostname()
    }
}

/// The `binding:vif_type` Neutron gives a port bound here.
pub fn bound_vif_type() -> &'static str {
    if on_ovn() {
        "ovs"
    } else {
        "bridge"
    }
}

/// Serves `bytes` bytes over HTTP (busybox httpd, port 8080) from container `server` and
/// fetches them from container `client`: what reached it. TCP, not ping: OVS's
/// userspace datapath passes ping and drops TCP whose checksum was left to the NIC.
pub fn tcp_bytes(server: &str, server_ip: &str, client: &str, bytes: usize) -> usize {
    docker(&[
        "exec",
        server,
        "sh",
        "-c",
        &format!("mkdir -p /w && head -c {bytes} /dev/zero > /w/f && httpd -p 8080 -h /w"),
    ]);
    let out = docker_try(&[
        "exec",
        client,
        "sh",
        "-c",
        // (busybox 1.35's `wget -T` crashes: `timeout` bounds it instead.)
        &format!("timeout 20 wget -q -O - http://{server_ip}:8080/f | wc -c"),
    ]);
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// On OVN, the ports of this host's br-int (none on other backends).
pub fn ovn_bridge_ports() -> Vec<String> {
    if !on_ovn() {
        return Vec::new();
    }
    let mut ports = ovs::bridge_ports(&devenv_path("KURYR_TEST_OVS_RUNDIR"), "br-int");
    ports.retain(|p| p != "br-int");
    ports
}

/// On OVN: the OVS interface of port `port_id` (on this host's br-int) and its
/// `external_ids` as ovn-controller and os-vif expect them.
pub fn assert_ovn_interface(port_id: &str, mac: &str) {
    let rundir = devenv_path("KURYR_TEST_OVS_RUNDIR");
    let iface = kuryr::names::host_veth(port_id);
    let ports = ovs::bridge_ports(&rundir, "br-int");
    assert!(ports.contains(&iface), "{iface} not on br-int: {ports:?}");
    assert_eq!(ovs::external_id(&rundir, &iface, "iface-id"), port_id);
    assert_eq!(ovs::external_id(&rundir, &iface, "attached-mac"), mac);
    assert_eq!(ovs::external_id(&rundir, &iface, "iface-status"), "active");
}

pub fn devenv_path(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run the tests through ./scripts/test, or eval \"$(scripts/devenv env)\" first")
    })
}

pub fn docker_bin() -> String {
    std::env::var("KURYR_TEST_DOCKER").unwrap_or_else(|_| "/usr/bin/docker".into())
}

pub fn image() -> String {
    std::env::var("KURYR_TEST_IMAGE").unwrap_or_else(|_| "busybox:latest".into())
}

/// A Neutron client for checks, failing loudly when Neutron does not answer.
pub async fn neutron() -> Neutron {
    let text = format!(
        "[neutron]\nauth_type = none\nendpoint = {}\n",
        neutron_url()
    );
    let cfg = Config::parse("test", &text).expect("test config").config;
    let n = Neutron::new(&cfg.neutron).expect("client");
    if let Err(e) = n.extensions().await {
        panic!(
            "Neutron does not answer at {} ({e}); start it with `scripts/devenv up` (make test does)",
            neutron_url()
        );
    }
    n
}

/// A unique-enough suffix for names in one test run.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// A running `kuryr serve` with its own config and socket; killed on drop.
pub struct Kuryr {
    pub child: Child,
    pub socket: PathBuf,
    /// Its CNI API's socket (each test kuryr its own; `conf` texts get the default).
    pub cni_socket: PathBuf,
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
    /// `cni_socket` is a path `start()` made up for this kuryr alone (under /run/kuryr).
    own_cni_socket: bool,
}

/// How to start a `kuryr serve` for a test: one builder instead of a constructor per
/// combination.
pub struct KuryrBuilder {
    socket: PathBuf,
    /// Lines added to the default test kuryr.conf, or (`conf`) the whole file.
    extra: String,
    text: Option<String>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    netns: Option<String>,
    /// Do not wait for kuryr to reach Neutron (it listens before).
    listen_only: bool,
    cni_socket: Option<PathBuf>,
    /// The directory `private()` put the socket in; the kuryr's own, removed with it.
    dir: Option<tempfile::TempDir>,
}

impl KuryrBuilder {
    /// Lines for the default kuryr.conf: `[DEFAULT]` options, then optionally a
    /// `[neutron]` section whose lines join the test Neutron's.
    pub fn extra(mut self, conf: &str) -> Self {
        self.extra = conf.to_string();
        self
    }

    /// This exact kuryr.conf instead of the default one.
    pub fn conf(mut self, text: &str) -> Self {
        self.text = Some(text.to_string());
        self
    }

    /// Extra `kuryr serve` arguments.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args = args.iter().map(|a| a.to_string()).collect();
        self
    }

    /// Extra environment variables.
    pub fn envs(mut self, env: &[(&str, &str)]) -> Self {
        self.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self
    }

    /// Its CNI (and netavark) API on this socket, not a fresh one under /run/kuryr.
    pub fn cni_socket(mut self, path: &Path) -> Self {
        self.cni_socket = Some(path.to_path_buf());
        self
    }

    /// Returns once the socket answers, before kuryr has reached Neutron.
    pub fn listen_only(mut self) -> Self {
        self.listen_only = true;
        self
    }

    /// Inside network namespace `ns` (another "host").
    pub fn netns(mut self, ns: &str) -> Self {
        self.netns = Some(ns.to_string());
        self
    }

    /// Starts it and waits until its socket answers.
    pub fn start(self) -> Kuryr {
        let own_cni_socket = self.cni_socket.is_none() && self.text.is_none();
        let cni_socket = match (&self.cni_socket, &self.text) {
            (Some(p), _) => p.clone(),
            (None, Some(_)) => PathBuf::from(kuryr::config::DEFAULT_CNI_SOCKET),
            (None, None) => PathBuf::from(format!("/run/kuryr/{}.sock", unique("test-cni"))),
        };
        let text = self.text.clone().unwrap_or_else(|| {
            let (default_extra, neutron_extra) = split_extra(&self.extra);
            format!(
                "[DEFAULT]\nunix_socket = {}\ncni_socket = {}\ndebug = true\n{default_extra}\n[neutron]\nauth_type = none\nendpoint = {}\n{neutron_extra}\n",
                self.socket.display(),
                cni_socket.display(),
                neutron_url()
            )
        });
        // The host under test: a network namespace of its own when the run says so.
        let netns = self.netns.clone().or_else(test_netns);
        let dir = self
            .dir
            .unwrap_or_else(|| tempfile::tempdir().expect("tempdir"));
        let conf = dir.path().join("kuryr.conf");
        std::fs::write(&conf, text).expect("write conf");
        let log = dir.path().join("kuryr.log");
        let logf = std::fs::File::create(&log).expect("log file");
        // In another network namespace (another "host"), through `ip netns exec`, which
        // execs kuryr in place: the child is kuryr itself.
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns, env!("CARGO_BIN_EXE_kuryr")]);
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_kuryr")),
        };
        let child = cmd
            .args(["serve", "--config-file"])
            .arg(&conf)
            .args(&self.args)
            .envs(self.env)
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .expect("spawn kuryr");
        let k = Kuryr {
            child,
            socket: self.socket,
            cni_socket,
            dir,
            log,
            own_cni_socket,
        };
        k.wait_ready(!self.listen_only);
        k
    }
}

impl Kuryr {
    /// Serving plugin `name` (socket `<plugin dir>/<name>.sock`, where the engine under
    /// test finds it: `/run/docker/plugins`, or `KURYR_TEST_PLUGIN_DIR` for an engine of
    /// another host).
    pub fn plugin(name: &str) -> KuryrBuilder {
        let dir =
            std::env::var("KURYR_TEST_PLUGIN_DIR").unwrap_or_else(|_| "/run/docker/plugins".into());
        Self::at(PathBuf::from(format!("{dir}/{name}.sock")))
    }

    /// Listening on `socket`.
    pub fn at(socket: PathBuf) -> KuryrBuilder {
        KuryrBuilder {
            socket,
            extra: String::new(),
            text: None,
            args: Vec::new(),
            env: Vec::new(),
            netns: None,
            listen_only: false,
            cni_socket: None,
            dir: None,
        }
    }

    /// Listening on a socket in a temporary directory of its own (with its config and
    /// log), which goes when the `Kuryr` does: for tests no engine has to find.
    pub fn private() -> KuryrBuilder {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("k.sock");
        KuryrBuilder {
            dir: Some(dir),
            ..Self::at(socket)
        }
    }

    /// Until the socket answers and, with `neutron`, kuryr is connected to Neutron.
    fn wait_ready(&self, neutron: bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if UnixStream::connect(&self.socket).is_ok() {
                let (_, stats) = raw_call(&self.socket, "GET", "/kuryr/stats", "");
                if !neutron || stats["connected"] != false {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("kuryr did not start; log:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One libnetwork call, sent the way Docker sends it (no Content-Type).
    pub fn call(&self, method: &str, body: &Value) -> (u16, Value) {
        raw_call(
            &self.socket,
            "POST",
            &format!("/{method}"),
            &body.to_string(),
        )
    }

    /// `/kuryr/stats`: Neutron requests in all, by kind and by libnetwork method.
    pub fn stats(&self) -> Value {
        raw_call(&self.socket, "GET", "/kuryr/stats", "").1
    }

    /// Neutron requests made while serving `method` (work left to the background is not
    /// counted).
    pub fn call_requests(&self, method: &str) -> u64 {
        self.stats()["by_call"][method].as_u64().unwrap_or(0)
    }

    /// Neutron requests kuryr has made so far.
    pub fn neutron_requests(&self) -> u64 {
        let (_, v) = raw_call(&self.socket, "GET", "/kuryr/stats", "");
        v["neutron_requests"].as_u64().expect("stats")
    }

    pub fn stop(&mut self) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Kuryr {
    fn drop(&mut self) {
        self.stop();
        // A killed kuryr leaves its socket; the one made up for it under /run/kuryr would
        // pile up there. Only when nothing serves it (a later kuryr may have taken it).
        if self.own_cni_socket && UnixStream::connect(&self.cni_socket).is_err() {
            let _ = std::fs::remove_file(&self.cni_socket);
        }
        if std::thread::panicking() {
            eprintln!("---- kuryr log ----\n{}", self.log_text());
        }
    }
}

fn split_extra(extra: &str) -> (String, String) {
    match extra.split_once("[neutron]") {
        Some((a, b)) => (a.to_string(), b.to_string()),
        None => (extra.to_string(), String::new()),
    }
}

/// Raw HTTP/1.1 over the unix socket: status and JSON body.
pub fn raw_call(socket: &Path, method: &str, path: &str, body: &str) -> (u16, Value) {
    let (status, text) = raw_http(socket, method, path, body);
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

pub fn raw_http(socket: &Path, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = UnixStream::connect(socket).expect("connect to kuryr socket");
    s.set_read_timeout(Some(Duration::from_secs(120))).ok();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: plugin\r\nAccept: application/vnd.docker.plugins.v1.2+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    // A server that refuses a huge body may close before reading all of it.
    let _ = s.write_all(req.as_bytes());
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    (status, body)
}

fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

/// Runs the Docker CLI; panics with its output when it fails.
pub fn docker(args: &[&str]) -> String {
    let out = docker_try(args);
    if !out.status.success() {
        panic!(
            "docker {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn docker_try(args: &[&str]) -> Output {
    Command::new(docker_bin())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", docker_bin()))
}

/// Where the engine the tests drive (`DOCKER_HOST`, else the machine's) sees this
/// machine's `/`: "" for the machine's own engine, engine2's or engine3's root (each runs in a
/// root of its own) when DOCKER_HOST names it. A path the engine must open (a plugin's mount
/// source) is written at `engine_root() + path` and given to the engine as `path`.
pub fn engine_root() -> String {
    let Ok(host) = std::env::var("DOCKER_HOST") else {
        return String::new();
    };
    for engine in ["KURYR_TEST_ENGINE2", "KURYR_TEST_ENGINE3"] {
        if std::env::var(engine).ok().as_ref() == Some(&host) {
            return devenv_path(&format!("{engine}_ROOT"));
        }
    }
    String::new()
}

/// Builds kuryr's managed (v2) plugin `name` (contrib/docker-plugin/build) in the engine of
/// DOCKER_HOST, gives it a kuryr.conf for the test Neutron with these `[DEFAULT]` lines
/// (the plugin has its own UTS namespace: the host name comes from the config) and
/// enables it. The returned directory holds the config: keep it while the plugin runs.
pub fn managed_plugin(name: &str, default_extra: &str) -> tempfile::TempDir {
    // Where the engine (engine2 runs in a root of its own) finds it.
    let root = engine_root();
    let etc = tempfile::tempdir_in(format!("{root}/tmp")).expect("tempdir");
    let etc_source = format!(
        "/{}",
        etc.path()
            .strip_prefix(format!("{root}/"))
            .expect("under the engine's root")
            .display()
    );
    // On OVN the plugin binds as this host's chassis, which it finds itself through the
    // host's Open vSwitch: no `host` (its own UTS namespace has another name).
    let host_line = if on_ovn() {
        String::new()
    } else {
        format!("host = {}\n", kuryr::config::hostname())
    };
    std::fs::write(
        etc.path().join("kuryr.conf"),
        format!(
            "[DEFAULT]\n{host_line}{default_extra}[neutron]\nauth_type = none\nendpoint = {}\n",
            neutron_url()
        ),
    )
    .expect("write kuryr.conf");
    // The devenv's Open vSwitch runs under its state dir, not /run/openvswitch.
    let ovs = on_ovn().then(|| devenv_path("KURYR_TEST_OVS_RUNDIR"));
    install_plugin(None, name, &etc_source, ovs.as_deref());
    etc
}

/// Builds kuryr's managed plugin `name` (contrib/docker-plugin/build) in the engine at
/// `docker_host` (None: DOCKER_HOST's), points its `etc` mount at `etc_source` (as that
/// engine sees it) and, when given, its `ovs-run` mount at an Open vSwitch run directory;
/// then enables it.
pub fn install_plugin(docker_host: Option<&str>, name: &str, etc_source: &str, ovs: Option<&str>) {
    let mut build = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/docker-plugin/build"
    ));
    build.args([name, env!("CARGO_BIN_EXE_kuryr")]);
    if let Some(h) = docker_host {
        build.env("DOCKER_HOST", h);
    }
    let out = build.output().expect("contrib/docker-plugin/build");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let engine = |args: &[&str]| {
        let mut all = docker_host.map_or(vec![], |h| vec!["-H", h]);
        all.extend_from_slice(args);
        docker(&all)
    };
    engine(&["plugin", "set", name, &format!("etc.source={etc_source}")]);
    if let Some(rundir) = ovs {
        engine(&[
            "plugin",
            "set",
            name,
            &format!("ovs-run.source={rundir}"),
            "OVS_RUNDIR=/host/run",
        ]);
    }
    engine(&["plugin", "enable", name]);
}

/// `docker network create ARGS` through `engine`, on a swarm manager: right after `swarm
/// init` or `join` (or a `swarm leave` of an earlier run) the engine may still be
/// reconnecting to its manager ("grpc: the client connection is closing", seen in CI for
/// over 30 s). Such a create made nothing and is tried again for up to 90 s; the last error
/// is kept so a manager that never answers says why, and any other error fails the test.
/// Returns the network's id.
pub fn swarm_network_create(engine: impl Fn(&[&str]) -> Output, args: &[&str]) -> String {
    let name = args.last().copied().unwrap_or_default();
    let mut all = vec!["network", "create"];
    all.extend_from_slice(args);
    let mut last_err = String::new();
    wait_until(90, || {
        let out = engine(&all);
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        match out.status.success() {
            true => Some(String::from_utf8_lossy(&out.stdout).trim().to_string()),
            false
                if err.contains("rpc error")
                    && !engine(&["network", "inspect", name]).status.success() =>
            {
                last_err = err;
                std::thread::sleep(Duration::from_secs(1));
                None
            }
            false => panic!("docker network create {name}: {err}"),
        }
    })
    .unwrap_or_else(|| {
        panic!("docker network create {name}: the swarm manager never answered; last: {last_err}")
    })
}

/// The running task containers of swarm service `service`, as `docker` (one engine's CLI)
/// lists them.
pub fn running_tasks(docker: impl Fn(&[&str]) -> String, service: &str) -> Vec<String> {
    let filter = format!("label=com.docker.swarm.service.name={service}");
    docker(&[
        "ps",
        "-q",
        "--filter",
        &filter,
        "--filter",
        "status=running",
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

/// Fails loudly when dockerd is not there.
pub fn require_docker() {
    let out = docker_try(&["version", "--format", "{{.Server.Version}}"]);
    assert!(
        out.status.success(),
        "dockerd does not answer ({}); start it with `scripts/devenv up` (make test does)",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The network namespace of the host under test (`KURYR_TEST_NETNS`: a devenv host such
/// as the ovn26 profile's), None for this machine's own.
pub fn test_netns() -> Option<String> {
    std::env::var("KURYR_TEST_NETNS")
        .ok()
        .filter(|s| !s.is_empty())
}

/// Host interfaces whose name starts with `prefix` (on the host under test).
pub fn host_links(prefix: &str) -> Vec<String> {
    links_in(test_netns().as_deref(), prefix)
}

/// Interfaces of network namespace `netns` (None: this one) whose name starts with `prefix`.
pub fn links_in(netns: Option<&str>, prefix: &str) -> Vec<String> {
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    let out = cmd.args(["-o", "link", "show"]).output().expect("ip link");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// `kuryr gc --grace-seconds 0` with this kuryr.conf (and e.g. `--apply`): its report.
/// Fails the test when gc fails.
pub fn kuryr_gc(conf: &str, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kuryr.conf");
    std::fs::write(&path, conf).expect("write conf");
    let out = Command::new(env!("CARGO_BIN_EXE_kuryr"))
        .args(["gc", "--grace-seconds", "0", "--config-file"])
        .arg(&path)
        .args(extra)
        .output()
        .expect("kuryr gc");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `kuryr doctor --plugin PLUGIN` with this kuryr.conf and environment: whether it
/// passed, and its report.
pub fn kuryr_doctor(conf: &str, plugin: &str, env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kuryr.conf");
    std::fs::write(&path, conf).expect("write conf");
    let out = Command::new(env!("CARGO_BIN_EXE_kuryr"))
        .args(["doctor", "--plugin", plugin, "--config-file"])
        .arg(&path)
        .envs(env.iter().copied())
        .output()
        .expect("kuryr doctor");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `kuryr inspect --json CONTAINER` against the test Neutron and the default dockerd: its
/// answer. Fails the test when it fails.
pub fn kuryr_inspect(container: &str) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kuryr.conf");
    let conf = format!(
        "[neutron]\nauth_type = none\nendpoint = {}\n",
        neutron_url()
    );
    std::fs::write(&path, conf).expect("write conf");
    let out = Command::new(env!("CARGO_BIN_EXE_kuryr"))
        .args(["inspect", "--json", "--config-file"])
        .arg(&path)
        .arg(container)
        .output()
        .expect("kuryr inspect");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("kuryr inspect --json prints JSON")
}

/// A network namespace of the test's own, deleted when dropped.
pub struct Netns(pub String);

impl Netns {
    pub fn new() -> Netns {
        Netns::named("kcni")
    }

    /// `prefix` and a unique suffix (`scripts/devenv purge` knows kcni- and kfo-).
    pub fn named(prefix: &str) -> Netns {
        let name = unique(prefix);
        ip(&["netns", "add", &name]);
        Netns(name)
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }

    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .output()
            .expect("ip netns exec")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// Polls `f` until it returns Some, for up to `secs`.
pub fn wait_until<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The IPv4 address Docker gave `container` on `net`.
pub fn container_ip(container: &str, net: &str) -> String {
    docker(&[
        "inspect",
        "-f",
        &format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}"),
        container,
    ])
}

/// kuryr's port holding `ip` (a container's address).
pub async fn port_at(n: &Neutron, ip: &str) -> kuryr::neutron::Port {
    let ports: Vec<kuryr::neutron::Port> = n
        .list(&kuryr::neutron::Filters::new().add("fixed_ips", format!("ip_address={ip}")))
        .await
        .expect("ports");
    ports
        .into_iter()
        .find(|p| p.device_owner == kuryr::names::DEVICE_OWNER)
        .unwrap_or_else(|| panic!("no kuryr port at {ip}"))
}

/// A labelled container created on no network running `cmd`, then connected to `net`
/// with this endpoint driver option (what Compose's `driver_opts` sends); not started.
pub fn connected_with(name: &str, net: &str, driver_opt: &str, cmd: &[&str]) {
    let image = image();
    let mut args = vec![
        "create",
        "--label",
        "kuryr-test",
        "--name",
        name,
        "--network",
        "none",
        &image,
    ];
    args.extend_from_slice(cmd);
    docker(&args);
    docker(&["network", "disconnect", "none", name]);
    docker(&["network", "connect", "--driver-opt", driver_opt, net, name]);
}

/// The Neutron network kuryr made or adopted for Docker network `docker_net_id` (found
/// by its id tags); exactly one.
pub async fn neutron_network_of(n: &Neutron, docker_net_id: &str) -> String {
    let nets: Vec<kuryr::neutron::Network> = n
        .list(&kuryr::neutron::Filters::new().tags(&kuryr::names::id_tags(docker_net_id)))
        .await
        .expect("networks");
    assert_eq!(
        nets.len(),
        1,
        "Neutron networks of {docker_net_id}: {nets:?}"
    );
    nets[0].id.to_string()
}

/// `docker network create` of a kuryr network served by `plugin`, labelled for clean-up.
pub fn kuryr_network(plugin: &str, cidr: &str, gateway: &str, name: &str) {
    kuryr_network_with(plugin, name, &["--subnet", cidr, "--gateway", gateway]);
}

/// `docker network create` with `plugin` as network and IPAM driver and these arguments.
pub fn kuryr_network_with(plugin: &str, name: &str, args: &[&str]) {
    let out = kuryr_network_try(plugin, name, args);
    assert!(
        out.status.success(),
        "docker network create {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// As `kuryr_network_with`; may fail.
pub fn kuryr_network_try(plugin: &str, name: &str, args: &[&str]) -> Output {
    docker_try(&kuryr_network_args(plugin, name, args))
}

/// `docker network create` arguments of a labelled kuryr network served by `plugin`.
pub fn kuryr_network_args<'a>(plugin: &'a str, name: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec![
        "network",
        "create",
        "--label",
        "kuryr-test",
        "-d",
        plugin,
        "--ipam-driver",
        plugin,
    ];
    all.extend_from_slice(args);
    all.push(name);
    all
}

/// The id Docker gave a network.
pub fn network_id(name: &str) -> String {
    docker(&["network", "inspect", "-f", "{{.Id}}", name])
}

/// `docker run -d` of the test image sleeping, labelled for clean-up; may fail.
pub fn run_container_try(name: &str, net: &str) -> Output {
    let image = image();
    docker_try(&sleeper_args(name, net, &image))
}

/// `docker run` arguments of a labelled, detached test container sleeping on `net`.
pub fn sleeper_args<'a>(name: &'a str, net: &'a str, image: &'a str) -> [&'a str; 11] {
    [
        "run",
        "-d",
        "--label",
        "kuryr-test",
        "--name",
        name,
        "--network",
        net,
        image,
        "sleep",
        "600",
    ]
}

/// `docker run -d` of the test image sleeping, labelled for clean-up.
pub fn run_container(name: &str, net: &str, extra: &[&str]) -> String {
    run_container_cmd(name, net, extra, &["sleep", "600"])
}

/// `docker run -d` of the test image running `cmd`, labelled for clean-up.
pub fn run_container_cmd(name: &str, net: &str, extra: &[&str], cmd: &[&str]) -> String {
    let image = image();
    let mut args = vec![
        "run",
        "-d",
        "--label",
        "kuryr-test",
        "--name",
        name,
        "--network",
        net,
    ];
    args.extend_from_slice(extra);
    args.push(image.as_str());
    args.extend_from_slice(cmd);
    docker(&args)
}

/// A throwaway CA and a server certificate for 127.0.0.1 signed by it, plus a client
/// certificate: (ca.pem, cert.pem, key.pem, client.pem, client-key.pem) in `dir`.
pub fn make_certs(dir: &Path) -> [PathBuf; 5] {
    let p = |n: &str| dir.join(n);
    std::fs::write(p("ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    // Any extension makes a v3 certificate; rustls refuses v1.
    std::fs::write(p("client-ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    let s = |x: PathBuf| x.to_str().unwrap().to_string();
    let steps: Vec<Vec<String>> = vec![
        vec![
            "req".into(),
            "-x509".into(),
            "-newkey".into(),
            "rsa:2048".into(),
            "-nodes".into(),
            "-days".into(),
            "1".into(),
            "-subj".into(),
            "/CN=kuryr-test-ca".into(),
            "-keyout".into(),
            s(p("ca.key")),
            "-out".into(),
            s(p("ca.pem")),
        ],
        vec![
            "req".into(),
            "-newkey".into(),
            "rsa:2048".into(),
            "-nodes".into(),
            "-subj".into(),
            "/CN=127.0.0.1".into(),
            "-keyout".into(),
            s(p("key.pem")),
            "-out".into(),
            s(p("srv.csr")),
        ],
        vec![
            "x509".into(),
            "-req".into(),
            "-in".into(),
            s(p("srv.csr")),
            "-CA".into(),
            s(p("ca.pem")),
            "-CAkey".into(),
            s(p("ca.key")),
            "-CAcreateserial".into(),
            "-days".into(),
            "1".into(),
            "-extfile".into(),
            s(p("ext")),
            "-out".into(),
            s(p("cert.pem")),
        ],
        vec![
            "req".into(),
            "-newkey".into(),
            "rsa:2048".into(),
            "-nodes".into(),
            "-subj".into(),
            "/CN=kuryr-client".into(),
            "-keyout".into(),
            s(p("client-key.pem")),
            "-out".into(),
            s(p("client.csr")),
        ],
        vec![
            "x509".into(),
            "-req".into(),
            "-in".into(),
            s(p("client.csr")),
            "-CA".into(),
            s(p("ca.pem")),
            "-CAkey".into(),
            s(p("ca.key")),
            "-CAcreateserial".into(),
            "-days".into(),
            "1".into(),
            "-extfile".into(),
            s(p("client-ext")),
            "-out".into(),
            s(p("client.pem")),
        ],
    ];
    for args in steps {
        let out = Command::new("openssl")
            .args(&args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {:?}: {}",
            args,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    [
        p("ca.pem"),
        p("cert.pem"),
        p("key.pem"),
        p("client.pem"),
        p("client-key.pem"),
    ]
}

/// Runs `ip` with these arguments; fails the test with its error.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A veth pair `name` / `<name>p` (the "NIC" end first), deleted when the guard drops.
pub fn veth(name: &str) -> LinkGuard {
    ip(&[
        "link",
        "add",
        name,
        "type",
        "veth",
        "peer",
        "name",
        &format!("{name}p"),
    ]);
    LinkGuard(name.to_string())
}

/// Deletes a link the test made, however the test ends.
pub struct LinkGuard(pub String);

impl Drop for LinkGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).output();
    }
}

/// The ports holding address `ip`.
pub async fn ports_with_ip(n: &Neutron, ip: &str) -> Vec<kuryr::neutron::Port> {
    n.list(&kuryr::neutron::Filters::new().add("fixed_ips", format!("ip_address={ip}")))
        .await
        .unwrap()
}

/// The port pool's ports (`kuryr-pool-port`) on Neutron network `net`.
pub async fn pool_ports(n: &Neutron, net: &str) -> Vec<kuryr::neutron::Port> {
    n.list(
        &kuryr::neutron::Filters::new()
            .add("name", kuryr::driver::port_pool::POOL_PORT_NAME)
            .add("network_id", net),
    )
    .await
    .unwrap()
}
