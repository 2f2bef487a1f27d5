//! The multihost profile of `scripts/devenv`: two Docker hosts, mh-a and mh-b, each a
//! network namespace (kmh-a, kmh-b) with its own dockerd, plugin directory and L2 agent
//! (on ML2/OVN its own Open vSwitch and ovn-controller), joined by an underlay veth
//! (10.99.0.1 - 10.99.0.2). With the engine3 profile up, each host also runs a second
//! dockerd of that profile's release (28.x); `KURYR_TEST_MULTIHOST_ENGINE=engine3` makes
//! the tests drive those instead of the Debian 12 ones.

use std::process::{Command, Output};

use super::{docker_bin, Kuryr};

pub struct Host {
    pub name: &'static str,
    /// `a` or `b`: the devenv's name for it (namespace kmh-<h>, directory <dir>/<h>).
    pub h: &'static str,
    /// Its ports' `binding:host_id`: the agent's host, or on OVN the chassis' host name.
    pub binding: String,
    pub sock: String,
    pub kuryr: Option<Kuryr>,
}

impl Host {
    /// Host `h` (`a` or `b`) of the profile at `dir`, with no kuryr yet.
    pub fn new(dir: &str, h: &'static str) -> Host {
        let binding = if super::on_ovn() {
            format!("mh-{h}-ovn")
        } else {
            format!("mh-{h}")
        };
        Host {
            name: if h == "a" { "mh-a" } else { "mh-b" },
            h,
            binding,
            sock: engine_sock(dir, h),
            kuryr: None,
        }
    }

    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.sock)
    }

    pub fn netns(&self) -> String {
        format!("kmh-{}", self.h)
    }

    /// Its underlay address.
    pub fn ip(&self) -> &'static str {
        if self.h == "a" {
            "10.99.0.1"
        } else {
            "10.99.0.2"
        }
    }

    pub fn docker_try(&self, args: &[&str]) -> Output {
        Command::new(docker_bin())
            .arg("-H")
            .arg(self.docker_host())
            .args(args)
            .output()
            .expect("docker CLI")
    }

    /// `docker network create` of a kuryr network on this host, labelled for clean-up.
    pub fn network_create(&self, name: &str, args: &[&str]) {
        let mut all = vec!["network", "create", "--label", "kuryr-test", "-d", "kuryr"];
        all.extend_from_slice(&["--ipam-driver", "kuryr"]);
        all.extend_from_slice(args);
        all.push(name);
        self.docker(&all);
    }

    pub fn docker(&self, args: &[&str]) -> String {
        let out = self.docker_try(args);
        assert!(
            out.status.success(),
            "host {}: docker {args:?}: {}\nkuryr log:\n{}",
            self.name,
            String::from_utf8_lossy(&out.stderr),
            self.kuryr
                .as_ref()
                .map(|k| k.log_text())
                .unwrap_or_default()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Removes the containers and networks the tests made here (labelled `kuryr-test`),
    /// so that a test that failed half-way leaves nothing to the next one.
    pub fn remove_test_objects(&self) {
        let steps: [(&[&str], &[&str]); 2] = [
            (
                &["ps", "-aq", "--filter", "label=kuryr-test"],
                &["rm", "-f"],
            ),
            (
                &["network", "ls", "-q", "--filter", "label=kuryr-test"],
                &["network", "rm"],
            ),
        ];
        for (list, rm) in steps {
            let out = self.docker_try(list);
            let ids = String::from_utf8_lossy(&out.stdout).into_owned();
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let _ = self.docker_try(&[rm, ids.as_slice()].concat());
            }
        }
    }

    /// Interfaces of this host whose name starts with `prefix`.
    pub fn links(&self, prefix: &str) -> Vec<String> {
        super::links_in(Some(&self.netns()), prefix)
    }
}

/// The profile's directory; fails loudly when its engines are not there.
pub fn multihost_dir() -> String {
    let dir = super::devenv_path("KURYR_TEST_MULTIHOST");
    for h in ["a", "b"] {
        let sock = engine_sock(&dir, h);
        assert!(
            std::path::Path::new(&sock).exists(),
            "{sock} missing: start the two-host profile with `scripts/devenv multihost` \
             (and `engine3` for its second engines; scripts/test does)"
        );
    }
    dir
}

/// Host `h`'s API socket of the engine under test: the profile's Debian 12 dockerd, or
/// with `KURYR_TEST_MULTIHOST_ENGINE=engine3` its dockerd of engine3's release.
pub fn engine_sock(dir: &str, h: &str) -> String {
    match std::env::var("KURYR_TEST_MULTIHOST_ENGINE").as_deref() {
        Ok("engine3") => format!("{dir}/{h}/engine3/docker.sock"),
        Ok("") | Err(_) => format!("{dir}/{h}/docker.sock"),
        Ok(other) => panic!("KURYR_TEST_MULTIHOST_ENGINE={other}: only engine3 is known"),
    }
}

/// Host `h`'s kuryr.conf `[DEFAULT]` host line and (on OVN) its OVS_RUNDIR. Each host's
/// kuryr: its own `host` (binding:host_id), same plugin name. On OVN none: kuryr takes
/// the name its host's chassis registered, from that host's Open vSwitch.
pub fn host_line(dir: &str, h: &str) -> (String, Option<String>) {
    if super::on_ovn() {
        (String::new(), Some(format!("{dir}/{h}/ovs")))
    } else {
        (format!("host = mh-{h}\n"), None)
    }
}

/// A random third octet for a test's CIDR.
pub fn rand_octet() -> u8 {
    (uuid::Uuid::new_v4().as_bytes()[0] % 200) + 20
}
