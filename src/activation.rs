//! systemd socket activation (`sd_listen_fds(3)`): the listening unix sockets a service
//! manager passed in, from fd 3 on, when `LISTEN_PID` is this process and `LISTEN_FDS`
//! counts them. `kuryr serve` takes the one whose path is a socket it would bind, so
//! Docker's first call, or a CNI runtime's first ADD, starts kuryr (kuryr.socket).

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

/// The first passed fd (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;

/// The listeners passed in, by the path each is bound to.
#[derive(Debug, Default)]
pub struct Inherited {
    listeners: Vec<(PathBuf, UnixListener)>,
    /// Passed fds that are not a unix socket bound to a path (closed).
    pub ignored: usize,
}

impl Inherited {
    /// Takes the passed fds once and unsets the variables, so nothing this process
    /// starts takes them for its own. Outside socket activation: none.
    pub fn take() -> Inherited {
        let fds = passed_fds(
            std::env::var("LISTEN_PID").ok().as_deref(),
            std::env::var("LISTEN_FDS").ok().as_deref(),
            std::process::id(),
        );
        for v in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
            std::env::remove_var(v);
        }
        let mut inherited = Inherited::default();
        for fd in fds {
            // SAFETY: the service manager passed this fd to this process (LISTEN_PID is
            // ours) and nothing else in the process owns it: it is taken once, here.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            inherited.add(UnixListener::from(owned));
        }
        inherited
    }

    fn add(&mut self, l: UnixListener) {
        let path = l
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(Path::to_path_buf));
        match path {
            Some(p) => self.listeners.push((p, l)),
            None => self.ignored += 1,
        }
    }

    /// The passed listener bound to `path`, ready for tokio.
    pub fn listener_for(&mut self, path: &Path) -> Option<std::io::Result<UnixListener>> {
        let i = self.listeners.iter().position(|(p, _)| p == path)?;
        let (_, l) = self.listeners.remove(i);
        Some(l.set_nonblocking(true).map(|()| l))
    }

    /// The paths of passed listeners nobody took (kuryr.conf names other sockets).
    pub fn unused(&self) -> Vec<PathBuf> {
        self.listeners.iter().map(|(p, _)| p.clone()).collect()
    }
}

/// The fds passed to process `pid`: none unless `LISTEN_PID` is `pid` and `LISTEN_FDS`
/// a count.
fn passed_fds(listen_pid: Option<&str>, listen_fds: Option<&str>, pid: u32) -> Vec<RawFd> {
    let ours = listen_pid.and_then(|p| p.parse::<u32>().ok()) == Some(pid);
    let count = listen_fds
        .and_then(|n| n.parse::<RawFd>().ok())
        .filter(|n| (1..=64).contains(n));
    match (ours, count) {
        (true, Some(n)) => (FIRST_FD..FIRST_FD + n).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fds_are_taken_only_when_passed_to_this_process() {
        assert_eq!(passed_fds(Some("42"), Some("2"), 42), vec![3, 4]);
        assert!(
            passed_fds(Some("41"), Some("2"), 42).is_empty(),
            "another pid's"
        );
        assert!(passed_fds(None, Some("2"), 42).is_empty());
        assert!(passed_fds(Some("42"), Some("x"), 42).is_empty());
        assert!(passed_fds(Some("42"), Some("0"), 42).is_empty());
    }

    #[test]
    fn a_listener_is_found_by_its_path_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.sock");
        let mut inh = Inherited::default();
        inh.add(UnixListener::bind(&path).unwrap());
        inh.add(UnixListener::bind(dir.path().join("other.sock")).unwrap());
        assert!(inh.listener_for(&dir.path().join("none.sock")).is_none());
        assert!(inh.listener_for(&path).is_some_and(|l| l.is_ok()));
        assert!(inh.listener_for(&path).is_none(), "taken twice");
        assert_eq!(inh.unused(), vec![dir.path().join("other.sock")]);
    }
}
