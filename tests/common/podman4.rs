//! Podman 4.3 (Debian 12, CNI backend) as the tests run it: the devenv's image store and
//! a containers.conf of the test's own (CNI backend, its conflist directory, kuryr-cni's
//! directory first among the plugins).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::json;

/// Podman with the devenv's image store and a containers.conf of this test's: CNI
/// backend, its own conflist directory, kuryr-cni's directory first among the plugins.
pub struct Podman {
    dir: tempfile::TempDir,
    store: PathBuf,
    image: String,
    pub containers: Vec<String>,
}

impl Podman {
    pub fn new() -> Podman {
        let store = PathBuf::from(super::devenv_path("KURYR_TEST_PODMAN_DIR"));
        let image = super::devenv_path("KURYR_TEST_PODMAN_IMAGE");
        let dir = tempfile::tempdir().unwrap();
        let plugin_dir = Path::new(env!("CARGO_BIN_EXE_kuryr-cni")).parent().unwrap();
        std::fs::create_dir_all(dir.path().join("net.d")).unwrap();
        std::fs::write(
            dir.path().join("containers.conf"),
            format!(
                "[containers]\ndefault_ulimits = []\n[network]\nnetwork_backend = \"cni\"\n\
                 network_config_dir = \"{}\"\ncni_plugin_dirs = [\"{}\", \"/usr/lib/cni\"]\n\
                 [engine]\nruntime = \"runc\"\n",
                dir.path().join("net.d").display(),
                plugin_dir.display()
            ),
        )
        .unwrap();
        Podman {
            dir,
            store,
            image,
            containers: Vec::new(),
        }
    }

    /// A conflist of one kuryr-cni plugin on Neutron network `network`.
    pub fn network(&self, name: &str, network: &str, cni_socket: &Path) {
        let conflist = json!({"cniVersion": "1.0.0", "name": name,
            "plugins": [{"type": "kuryr-cni", "network": network, "socket": cni_socket}]});
        std::fs::write(
            self.dir
                .path()
                .join("net.d")
                .join(format!("{name}.conflist")),
            conflist.to_string(),
        )
        .unwrap();
    }

    pub fn try_run(&self, args: &[&str]) -> Output {
        Command::new("podman")
            .env("CONTAINERS_CONF", self.dir.path().join("containers.conf"))
            .arg("--root")
            .arg(self.store.join("storage"))
            .arg("--runroot")
            .arg(self.store.join("run"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
            ])
            .args(args)
            .output()
            .expect("podman")
    }

    pub fn run(&self, args: &[&str]) -> String {
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
    /// Podman 4 no longer grants by default).
    pub fn container(&mut self, name: &str, net: &str, extra: &[&str]) -> Output {
        self.containers.push(name.to_string());
        let mut args = vec!["run", "-d", "--name", name, "--cap-add", "NET_RAW"];
        args.extend_from_slice(&["--network", net]);
        args.extend_from_slice(extra);
        args.extend_from_slice(&[self.image.as_str(), "sleep", "600"]);
        self.try_run(&args)
    }

    pub fn ip_of(&self, name: &str) -> String {
        let out = self.run(&["exec", name, "ip", "-o", "-4", "addr", "show", "eth0"]);
        out.split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .and_then(|a| a.split('/').next())
            .unwrap_or_default()
            .to_string()
    }

    pub fn pings(&self, from: &str, to: &str) -> bool {
        super::wait_until(90, || {
            let out = self.try_run(&["exec", from, "ping", "-c", "1", "-W", "1", to]);
            out.status.success().then_some(())
        })
        .is_some()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = self.try_run(&["rm", "-f", "-t", "0", c]);
        }
    }
}
