//! systemd socket activation (kuryr.socket, kuryr-cni.socket): `kuryr serve` started with
//! listening sockets passed in (`LISTEN_PID`, `LISTEN_FDS`, fds 3 and 4, as systemd
//! passes them) serves Docker's plugin API and the CNI API on them instead of binding
//! its own, and leaves their files, which belong to the socket units, when it stops.
//! Needs no Neutron: Plugin.Activate is answered before Neutron is reached.

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

#[test]
fn passed_sockets_are_served_and_left_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let (plugin, cni) = (dir.path().join("kuryr.sock"), dir.path().join("cni.sock"));
    let conf = dir.path().join("kuryr.conf");
    std::fs::write(
        &conf,
        format!(
            "[DEFAULT]\nunix_socket = {}\ncni_socket = {}\n[neutron]\nauth_type = none\nendpoint = http://127.0.0.1:9\n",
            plugin.display(),
            cni.display()
        ),
    )
    .unwrap();
    // What the socket units would have bound.
    let a = UnixListener::bind(&plugin).unwrap();
    let b = UnixListener::bind(&cni).unwrap();
    let inodes = (
        std::fs::metadata(&plugin).unwrap().ino(),
        std::fs::metadata(&cni).unwrap().ino(),
    );
    let (fa, fb) = (a.as_raw_fd(), b.as_raw_fd());
    let mut cmd = Command::new("sh");
    // LISTEN_PID must be kuryr's own pid: the shell's, which exec keeps.
    cmd.args([
        "-c",
        "LISTEN_PID=$$ LISTEN_FDS=2 exec \"$0\" serve --config-file \"$1\"",
        env!("CARGO_BIN_EXE_kuryr"),
    ])
    .arg(&conf)
    .stderr(Stdio::piped());
    // SAFETY: only fcntl and dup2, async-signal-safe, between fork and exec. Each goes
    // above 100 first: a listener may already sit at 3 or 4 (dup2 onto itself would
    // keep close-on-exec, and the second dup2 could overwrite the first listener).
    unsafe {
        cmd.pre_exec(move || {
            let high = [fa, fb].map(|fd| libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 100));
            for (from, to) in high.into_iter().zip([3, 4]) {
                if from < 0 || libc::dup2(from, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap();
    drop((a, b));

    let (status, v) = common::raw_call(&plugin, "POST", "/Plugin.Activate", "{}");
    assert_eq!(status, 200, "{v}");
    assert!(v["Implements"].to_string().contains("NetworkDriver"), "{v}");
    // The CNI API answers too: a request it cannot take, refused in CNI's own format.
    let (status, v) = common::raw_call(&cni, "POST", "/v1/cni", "not json");
    assert!((400..500).contains(&status), "{status} {v}");
    // kuryr served the passed sockets: it did not bind files of its own in their place.
    let now = (
        std::fs::metadata(&plugin).unwrap().ino(),
        std::fs::metadata(&cni).unwrap().ino(),
    );
    assert_eq!(now, inodes, "kuryr replaced a passed socket");

    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("socket activation"), "{log}");
    assert!(
        plugin.exists() && cni.exists(),
        "the socket units' files are gone"
    );
}
