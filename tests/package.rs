//! The Debian package (scripts/package; its path in `KURYR_TEST_DEB`, which scripts/test
//! sets) as an operator meets it, on a fresh Debian 12 and a fresh Debian 13 root (the
//! devenv's package profile keeps pristine debootstrap roots as tarballs; each test
//! unpacks its own copy and removes it): apt installs it with its dependencies from the
//! mirror, `kuryr --version` and `man kuryr` work, the systemd units verify, nothing runs
//! or is enabled after the install, kuryr started as its unit starts it (its `ExecStart`,
//! `Environment` and directories, with the installed config edited as an operator would)
//! serves a Docker network of the devenv's dockerd on the devenv's Neutron and stops
//! cleanly on SIGTERM, and `apt-get purge` leaves nothing of the package in the root:
//! with the dependencies it brought purged as well, the root is the fresh one again (as
//! piuparts checks Debian's packages).
//!
//! Every command in a root runs through `chroot` in a mount namespace of its own (made by
//! `unshare --mount`) where the root has a /proc and the machine's /dev and /sys: those
//! mounts end with the command, whatever happens to the test, and never show on the
//! machine. kuryr runs in the
//! machine's network namespace, with the machine's /run/docker/plugins bound into the
//! root, so the machine's dockerd finds its socket.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::docker_try;

/// One root at a time: each runs apt and a kuryr, and two at once would only be slower on
/// the test machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// PATH as systemd gives it to a system service (and good for apt and dpkg).
const SERVICE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a command printed, for failure messages.
fn show(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The pids of processes whose root directory is `root` or under it (a `chroot` there).
fn pids_in(root: &Path) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(r) = std::fs::read_link(e.path().join("root")) else {
            continue;
        };
        if r.starts_with(root) {
            let cmd = std::fs::read(e.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .unwrap_or_default();
            found.push((pid, cmd));
        }
    }
    found
}

/// Mount points at or under `dir` in this mount namespace.
fn mounts_under(dir: &Path) -> Vec<String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("/proc/self/mounts");
    mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|m| Path::new(m).starts_with(dir))
        .map(str::to_string)
        .collect()
}

/// A fresh copy of a pristine root (`<tarball dir>/test-<suite>-<id>`); on drop, every
/// process still running in it is killed, the files it left on the machine (`host_files`:
/// a killed kuryr's plugin socket) removed, and the copy removed (never through a mount).
struct Root {
    path: PathBuf,
    suite: String,
    host_files: Vec<PathBuf>,
}

impl Root {
    fn fresh(tarball: &str, suite: &str) -> Root {
        let tar = Path::new(tarball);
        assert!(
            tar.is_file(),
            "{tarball} (the package profile's pristine {suite} root) is not there: run `scripts/devenv up package`"
        );
        let path = tar
            .parent()
            .expect("tarball directory")
            .join(common::unique(&format!("test-{suite}-")));
        std::fs::create_dir(&path).expect("root directory");
        let root = Root {
            path,
            suite: suite.to_string(),
            host_files: Vec::new(),
        };
        let out = Command::new("tar")
            .args(["--numeric-owner", "-xpf", tarball, "-C"])
            .arg(&root.path)
            .output()
            .expect("tar");
        assert!(out.status.success(), "unpacking {tarball}: {}", show(&out));
        // Name resolution for apt, as the machine has it (a root's copy may be stale).
        // (Replaced, not written through: a symlink there would lead out of the root.)
        let resolv = std::fs::read("/etc/resolv.conf").expect("/etc/resolv.conf");
        let _ = std::fs::remove_file(root.at("/etc/resolv.conf"));
        std::fs::write(root.at("/etc/resolv.conf"), resolv).expect("write resolv.conf");
        root
    }

    /// `path` of the root, as the machine sees it.
    fn at(&self, path: &str) -> PathBuf {
        self.path.join(path.trim_start_matches('/'))
    }

    /// `chroot <root> ARGS` in a mount namespace of its own where the root has a /proc
    /// and the machine's /dev and /sys, and also the machine's /run/docker/plugins with
    /// `plugins`; a clean environment plus `env`.
    fn command(&self, args: &[&str], env: &[(String, String)], plugins: bool) -> Command {
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(
                r#"set -e
r=$1 plugins=$2
shift 2
mount -t proc proc "$r/proc"
mount --rbind /dev "$r/dev"
mount --rbind /sys "$r/sys"
if [ "$plugins" = 1 ]; then mount --bind /run/docker/plugins "$r/run/docker/plugins"; fi
exec chroot "$r" "$@""#,
            )
            .arg("sh")
            .arg(&self.path)
            .arg(if plugins { "1" } else { "0" })
            .args(args)
            .env_clear()
            .env("PATH", SERVICE_PATH)
            .env("LANG", "C.UTF-8")
            .env("HOME", "/root")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args, &[], false)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("chroot {args:?}: {e}"))
    }

    /// As `run`; fails the test unless the command succeeds.
    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{}: `{}` failed: {}",
            self.suite,
            args.join(" "),
            show(&out)
        );
        out
    }

    /// Every path in the root (relative, without a leading /), not following symlinks.
    fn files(&self) -> BTreeSet<String> {
        fn walk(dir: &Path, top: &Path, out: &mut BTreeSet<String>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for e in entries.flatten() {
                let p = e.path();
                out.insert(p.strip_prefix(top).unwrap().to_string_lossy().into_owned());
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    walk(&p, top, out);
                }
            }
        }
        let mut out = BTreeSet::new();
        walk(&self.path, &self.path, &mut out);
        out
    }

    /// The packages installed in the root.
    fn packages(&self) -> BTreeSet<String> {
        let out = self.ok(&[
            "dpkg-query",
            "-W",
            "-f=${db:Status-Status} ${binary:Package}\\n",
        ]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("installed "))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        for _ in 0..50 {
            let pids = pids_in(&self.path);
            if pids.is_empty() {
                break;
            }
            for (pid, _) in pids {
                // SAFETY: plain kill(2); the process runs in this test's own root.
                unsafe {
                    libc::kill(pid as i32, libc::SIGKILL);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for f in &self.host_files {
            let _ = std::fs::remove_file(f);
        }
        let mounts = mounts_under(&self.path);
        if !mounts.is_empty() {
            eprintln!(
                "{} not removed: mounts remain under it: {mounts:?}",
                self.path.display()
            );
            return;
        }
        let _ = Command::new("rm")
            .args(["-rf", "--one-file-system"])
            .arg(&self.path)
            .status();
    }
}

/// How the installed kuryr.service starts kuryr: its command line, environment, and the
/// directories systemd makes for it.
#[derive(Debug, Default)]
struct Unit {
    /// ExecStartPre= lines: (command, failure ignored)
    exec_start_pre: Vec<(Vec<String>, bool)>,
    exec_start: Vec<String>,
    env: Vec<(String, String)>,
    /// (directory systemd makes, removed again when the service stops)
    dirs: Vec<(String, bool)>,
    /// RuntimeDirectoryPreserve=yes: the runtime directories stay after a stop.
    preserve_runtime: bool,
}

impl Unit {
    /// Reads the [Service] section of a unit file; what this test cannot reproduce
    /// outside systemd (specifiers, variables, quoting, another user) fails it, saying so.
    fn parse(text: &str) -> Unit {
        let mut unit = Unit::default();
        let mut section = String::new();
        let joined = text.replace("\\\n", " ");
        for line in joined.lines().map(str::trim) {
            if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
                continue;
            }
            if line.starts_with('[') {
                section = line.to_string();
                continue;
            }
            if section != "[Service]" {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            let words = || value.split_whitespace().map(str::to_string);
            let command = || {
                assert!(
                    !value.contains(['%', '$', '"', '\'']),
                    "kuryr.service: {key}={value} uses specifiers, variables or quotes this test does not reproduce: extend it"
                );
                let cmd = value.trim_start_matches(['-', '@', ':', '+', '!']);
                let words: Vec<String> = cmd.split_whitespace().map(str::to_string).collect();
                (words, value.starts_with('-'))
            };
            match key {
                "ExecStart" => {
                    assert!(
                        unit.exec_start.is_empty() && !value.is_empty(),
                        "kuryr.service: one ExecStart= expected"
                    );
                    unit.exec_start = command().0;
                }
                "ExecStartPre" => unit.exec_start_pre.push(command()),
                "ExecStartPost" | "ExecCondition" => {
                    panic!("kuryr.service: {key}= is not reproduced by this test: extend it")
                }
                "Environment" => {
                    for w in words() {
                        let w = w.trim_matches('"');
                        let (k, v) = w.split_once('=').expect("Environment=KEY=VALUE");
                        unit.env.push((k.to_string(), v.to_string()));
                    }
                }
                "EnvironmentFile" => panic!(
                    "kuryr.service: EnvironmentFile= is not reproduced by this test: extend it"
                ),
                "User" | "DynamicUser" | "Group"
                    if !matches!(value, "root" | "no" | "false" | "") =>
                {
                    panic!("kuryr.service: {key}={value} is not reproduced by this test: extend it")
                }
                "RuntimeDirectoryPreserve" => unit.preserve_runtime = value == "yes",
                "RuntimeDirectory" => unit
                    .dirs
                    .extend(words().map(|d| (format!("/run/{d}"), true))),
                "StateDirectory" => unit
                    .dirs
                    .extend(words().map(|d| (format!("/var/lib/{d}"), false))),
                "CacheDirectory" => unit
                    .dirs
                    .extend(words().map(|d| (format!("/var/cache/{d}"), false))),
                "LogsDirectory" => unit
                    .dirs
                    .extend(words().map(|d| (format!("/var/log/{d}"), false))),
                "ConfigurationDirectory" => unit
                    .dirs
                    .extend(words().map(|d| (format!("/etc/{d}"), false))),
                _ => {}
            }
        }
        assert!(
            !unit.exec_start.is_empty(),
            "kuryr.service has no ExecStart="
        );
        unit
    }
}

/// `text` (an ini file) with `key = value` in `[section]`: the first line setting or
/// showing (commented out) `key` there becomes it, as an operator would edit the sample.
fn set_option(text: &str, section: &str, key: &str, value: &str) -> String {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut done = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            current = t.to_string();
        }
        let k = t.trim_start_matches(['#', ';']).trim_start();
        let is_key = k
            .split_once('=')
            .is_some_and(|(name, _)| name.trim() == key);
        if !done && current == format!("[{section}]") && is_key {
            out.push(format!("{key} = {value}"));
            done = true;
        } else {
            out.push(line.to_string());
        }
    }
    assert!(
        done,
        "the installed kuryr.conf shows no `{key}` in [{section}]: an operator would not know where to set it"
    );
    out.join("\n") + "\n"
}

/// Docker objects of the test, removed however it ends (before its kuryr stops).
struct DockerObjects {
    container: String,
    network: String,
}

impl Drop for DockerObjects {
    fn drop(&mut self) {
        let _ = docker_try(&["rm", "-f", &self.container]);
        let _ = docker_try(&["network", "rm", &self.network]);
    }
}

/// Waits for `child` to exit, up to `secs`; its status.
fn wait_exit(child: &mut Child, secs: u64) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// The package's whole life on a fresh copy of the pristine root in env `var`.
async fn package_on(var: &str, suite: &str, cidr: &str, gateway: &str) {
    let _serial = SERIAL.lock().await;
    let deb = common::devenv_path("KURYR_TEST_DEB");
    let deb_path = Path::new(&deb);
    assert!(
        deb_path.is_file(),
        "KURYR_TEST_DEB={deb} is not a file: build it with scripts/package"
    );
    let deb_name = deb_path.file_name().unwrap().to_string_lossy().into_owned();
    let version = env!("CARGO_PKG_VERSION");
    common::require_docker();
    let neutron = common::neutron().await;

    let mut root = Root::fresh(&common::devenv_path(var), suite);
    let before = root.files();
    let packages = root.packages();

    // Installed with its dependencies resolved, from the mirror in the root's sources.
    let in_root = format!("/tmp/{deb_name}");
    std::fs::copy(deb_path, root.at(&in_root)).expect("copy the package into the root");
    root.ok(&["apt-get", "update", "-q"]);
    let install = root.ok(&["apt-get", "install", "-y", "-q", &in_root]);
    let log = String::from_utf8_lossy(&install.stdout).into_owned()
        + &String::from_utf8_lossy(&install.stderr);
    assert!(
        !log.lines().any(|l| l.starts_with("E:")),
        "{suite}: apt reported errors: {log}"
    );
    std::fs::remove_file(root.at(&in_root)).expect("remove the copied package");
    let status = root.ok(&["dpkg-query", "-W", "-f=${Status} ${Version}", "kuryr"]);
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(
        status.starts_with("install ok installed ")
            && status.ends_with(&format!(" {}", version.replace('-', "~") + "-1")),
        "{suite}: kuryr after apt-get install: {status}"
    );
    let listed = root.ok(&["dpkg", "-L", "kuryr"]);
    let listed: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter(|l| l.starts_with('/'))
        .map(str::to_string)
        .collect();

    // Where runtimes look, and the config readable by root only (it holds credentials).
    let units: Vec<&str> = listed
        .iter()
        .map(String::as_str)
        .filter(|p| p.starts_with("/usr/lib/systemd/system/") && p.contains("kuryr"))
        .collect();
    for unit in ["kuryr.service", "kuryr.socket"] {
        assert!(
            units.contains(&format!("/usr/lib/systemd/system/{unit}").as_str()),
            "{suite}: the package has no {unit}: {units:?}"
        );
    }
    let modes = [
        ("/usr/bin/kuryr", 0o755),
        ("/usr/lib/cni/kuryr-cni", 0o755),
        ("/usr/libexec/netavark/kuryr", 0o755),
        ("/etc/kuryr/kuryr.conf", 0o640),
    ];
    for (path, mode) in modes.into_iter().chain(units.iter().map(|u| (*u, 0o644))) {
        let m = std::fs::metadata(root.at(path)).unwrap_or_else(|e| panic!("{suite}: {path}: {e}"));
        assert_eq!(
            m.permissions().mode() & 0o7777,
            mode,
            "{suite}: mode of {path}"
        );
        assert_eq!((m.uid(), m.gid()), (0, 0), "{suite}: owner of {path}");
    }
    let conffiles =
        std::fs::read_to_string(root.at("/var/lib/dpkg/info/kuryr.conffiles")).unwrap_or_default();
    assert_eq!(
        conffiles.trim(),
        "/etc/kuryr/kuryr.conf",
        "{suite}: conffiles"
    );

    // The binaries run on this Debian: the CLI, the CNI and the netavark plugins.
    let out = root.ok(&["kuryr", "--version"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("kuryr ") && first.split_whitespace().any(|w| w == version),
        "{suite}: kuryr --version printed {text:?}, not version {version}"
    );
    let out = root.ok(&[
        "sh",
        "-c",
        "echo '{\"cniVersion\":\"1.0.0\"}' | CNI_COMMAND=VERSION /usr/lib/cni/kuryr-cni",
    ]);
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("kuryr-cni VERSION prints JSON");
    assert!(
        v["supportedVersions"].is_array(),
        "{suite}: kuryr-cni VERSION: {v}"
    );
    let out = root.ok(&["/usr/libexec/netavark/kuryr", "info"]);
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("netavark plugin info prints JSON");
    assert_eq!(v["version"], version, "{suite}: netavark plugin info: {v}");

    // The manual pages, through man-db as a user reads them.
    for (args, name) in [
        (vec!["man", "-P", "cat", "kuryr"], "kuryr"),
        (vec!["man", "-P", "cat", "5", "kuryr.conf"], "kuryr.conf"),
    ] {
        let out = root.ok(&args);
        let page = String::from_utf8_lossy(&out.stdout);
        assert!(
            page.contains("NAME") && page.contains(name),
            "{suite}: `{}` shows no page: {}",
            args.join(" "),
            show(&out)
        );
    }

    // The units verify clean (their Documentation= pages exist too): nothing on stdout
    // or stderr.
    let mut verify = vec!["systemd-analyze", "verify"];
    verify.extend(units.iter().copied());
    let out = root.run(&verify);
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "{suite}: systemd-analyze verify: {}",
        show(&out)
    );

    // Nothing runs and nothing is enabled: kuryr waits for its configuration.
    let running = pids_in(&root.path);
    assert!(
        running.is_empty(),
        "{suite}: processes left running by the install: {running:?}"
    );
    let enabled: Vec<String> = root
        .files()
        .into_iter()
        .filter(|f| f.starts_with("etc/systemd/system/") && f.contains("kuryr"))
        .collect();
    assert!(
        enabled.is_empty(),
        "{suite}: units enabled by the install: {enabled:?}"
    );

    // kuryr as its unit starts it, with the config edited as an operator would: this
    // devenv's Neutron, and a plugin socket of the test's own in Docker's plugin directory.
    let unit = Unit::parse(
        &std::fs::read_to_string(root.at("/usr/lib/systemd/system/kuryr.service"))
            .expect("kuryr.service"),
    );
    let plugin = common::unique("kpkg");
    let socket = PathBuf::from(format!("/run/docker/plugins/{plugin}.sock"));
    root.host_files.push(socket.clone());
    let conf_path = root.at("/etc/kuryr/kuryr.conf");
    let mut conf = std::fs::read_to_string(&conf_path).expect("kuryr.conf");
    conf = set_option(&conf, "DEFAULT", "unix_socket", &socket.to_string_lossy());
    conf = set_option(&conf, "neutron", "auth_type", "none");
    conf = set_option(&conf, "neutron", "endpoint", &common::neutron_url());
    std::fs::write(&conf_path, conf).expect("edit kuryr.conf");
    let mut made = Vec::new();
    for (dir, _) in &unit.dirs {
        if !root.at(dir).exists() {
            std::fs::create_dir_all(root.at(dir)).expect("unit directory");
            made.push(dir.clone());
        }
    }
    assert!(
        !root.at("/run/docker").exists(),
        "{suite}: /run/docker in a fresh root"
    );
    std::fs::create_dir_all(root.at("/run/docker/plugins")).expect("plugin directory");
    for (pre, ignore_failure) in &unit.exec_start_pre {
        let args: Vec<&str> = pre.iter().map(String::as_str).collect();
        let out = root
            .command(&args, &unit.env, true)
            .stdin(Stdio::null())
            .output()
            .expect("ExecStartPre");
        assert!(
            *ignore_failure || out.status.success(),
            "{suite}: ExecStartPre={}: {}",
            pre.join(" "),
            show(&out)
        );
    }
    let log_file = tempfile::NamedTempFile::new().expect("log file");
    let args: Vec<&str> = unit.exec_start.iter().map(String::as_str).collect();
    let mut kuryr = root
        .command(&args, &unit.env, true)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file.reopen().expect("log file"))
        .spawn()
        .expect("start kuryr in the root");
    let kuryr_log = || std::fs::read_to_string(log_file.path()).unwrap_or_default();
    let ready = common::wait_until(30, || {
        if let Ok(Some(s)) = kuryr.try_wait() {
            panic!("{suite}: kuryr exited ({s}) at start:\n{}", kuryr_log());
        }
        if !socket.exists() {
            return None;
        }
        let (_, stats) = common::raw_call(&socket, "GET", "/kuryr/stats", "");
        (stats["connected"] != false && stats.is_object()).then_some(())
    });
    assert!(
        ready.is_some(),
        "{suite}: kuryr did not serve {}:\n{}",
        socket.display(),
        kuryr_log()
    );

    {
        let objects = DockerObjects {
            container: common::unique("kpkg-c"),
            network: common::unique("kpkg-n"),
        };
        common::kuryr_network_with(
            &plugin,
            &objects.network,
            &["--subnet", cidr, "--gateway", gateway],
        );
        common::run_container(&objects.container, &objects.network, &[]);
        let ip = common::container_ip(&objects.container, &objects.network);
        let port = common::port_at(&neutron, &ip).await;
        assert_eq!(
            port.host_id,
            common::binding_host(),
            "{suite}: the port of {ip}: {port:?}"
        );
        common::docker(&["rm", "-f", &objects.container]);
        common::docker(&["network", "rm", &objects.network]);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ports: Vec<kuryr::neutron::Port> = neutron
                .list(&kuryr::neutron::Filters::new().add("fixed_ips", format!("ip_address={ip}")))
                .await
                .expect("ports");
            if ports.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{suite}: the port of {ip} outlived its container and network: {ports:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // SIGTERM, as systemd stops it: it exits 0 and takes its socket with it.
    // SAFETY: plain kill(2) on our own child's pid (unshare and chroot exec in place).
    unsafe {
        libc::kill(kuryr.id() as i32, libc::SIGTERM);
    }
    let status = wait_exit(&mut kuryr, 30).unwrap_or_else(|| {
        panic!(
            "{suite}: kuryr still runs 30 s after SIGTERM:\n{}",
            kuryr_log()
        )
    });
    assert!(
        status.success(),
        "{suite}: kuryr exited {status} on SIGTERM:\n{}",
        kuryr_log()
    );
    assert!(!socket.exists(), "{suite}: kuryr left {}", socket.display());
    // As systemd after a stop: the runtime directories go (unless preserved); the test's
    // plugin directory too.
    for (dir, runtime) in &unit.dirs {
        if *runtime && !unit.preserve_runtime {
            let _ = std::fs::remove_dir_all(root.at(dir));
        }
    }
    std::fs::remove_dir(root.at("/run/docker/plugins"))
        .expect("the root's plugin directory (empty)");
    std::fs::remove_dir(root.at("/run/docker")).expect("the root's /run/docker");

    // Purged: the package is gone, and with it every file it shipped or made.
    root.ok(&["apt-get", "purge", "-y", "-q", "kuryr"]);
    // `dpkg -l` either knows no kuryr any more, or lists it not installed (un, pn).
    let out = root.run(&["dpkg", "-l", "kuryr"]);
    let states: Vec<&str> = std::str::from_utf8(&out.stdout)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("kuryr"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        states.iter().all(|s| *s == "un" || *s == "pn"),
        "{suite}: dpkg -l kuryr after purge: {}",
        show(&out)
    );
    for path in listed.iter().filter(|p| *p != "/.") {
        let rel = path.trim_start_matches('/');
        assert!(
            before.contains(rel) || !root.at(path).exists(),
            "{suite}: {path} of the package is still there after purge"
        );
    }
    for (dir, _) in &unit.dirs {
        assert!(
            !made.contains(dir) || !root.at(dir).exists(),
            "{suite}: {dir} (its unit's directory) is still there after purge"
        );
    }
    assert!(
        !root.at("/etc/kuryr").exists(),
        "{suite}: /etc/kuryr is still there after purge"
    );
    // No file or directory named after kuryr anywhere in the root; man's cache of the
    // pages it formatted for the test's `man` is man-db's, as for any package's pages.
    let named: Vec<String> = root
        .files()
        .into_iter()
        .filter(|f| f.contains("kuryr") && !f.starts_with("var/cache/man/"))
        .collect();
    assert!(
        named.is_empty(),
        "{suite}: named after kuryr in the root after purge: {named:?}"
    );

    // And once the dependencies the install brought are purged too, the root is the
    // fresh one again, but for apt's and dpkg's records and logs (and what
    // `systemd-analyze` itself leaves in /run/systemd).
    let deps: Vec<String> = root.packages().difference(&packages).cloned().collect();
    if !deps.is_empty() {
        let mut args = vec!["apt-get", "purge", "-y", "-q"];
        args.extend(deps.iter().map(String::as_str));
        root.ok(&args);
    }
    assert_eq!(
        root.packages(),
        packages,
        "{suite}: packages after all purges"
    );
    let records = [
        "var/lib/dpkg/",
        "var/lib/apt/",
        "var/cache/",
        "var/log/",
        "run/systemd/",
    ];
    let left: Vec<String> = root
        .files()
        .difference(&before)
        .filter(|f| !records.iter().any(|r| f.starts_with(r)))
        .cloned()
        .collect();
    assert!(
        left.is_empty(),
        "{suite}: new in the root after purging kuryr and its dependencies ({deps:?}): {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_package_installs_runs_and_purges_on_debian_12() {
    package_on(
        "KURYR_TEST_PACKAGE_BOOKWORM",
        "bookworm",
        "10.232.12.0/24",
        "10.232.12.1",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_package_installs_runs_and_purges_on_debian_13() {
    package_on(
        "KURYR_TEST_PACKAGE_TRIXIE",
        "trixie",
        "10.232.13.0/24",
        "10.232.13.1",
    )
    .await;
}
