//! The `kuryr-netavark` binary's side: argv and stdin in, answers `info` itself and
//! forwards `create`, `setup` and `teardown` to the daemon; its answer on stdout and exit
//! 0, or `{"error": ...}` and exit 1, as netavark reads a plugin. Nothing on stderr:
//! netavark shows a plugin's stderr to the user as it is.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::spec::{options, Call, Command, Info, Network, PluginError, Request};
use crate::local_api;

/// The daemon answers within 50 s (`deadline::PLUGIN_ANSWER`); a little more for the
/// connection and a busy machine.
const ANSWER_WITHIN: Duration = Duration::from_secs(55);

/// The process: argv and stdin in, stdout and exit code out.
pub fn main() -> i32 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut stdin = Vec::new();
    let (out, code) = match std::io::stdin().read_to_end(&mut stdin) {
        Ok(_) => run(&args, &stdin, std::process::id()),
        Err(e) => failed(format!("cannot read stdin: {e}")),
    };
    let mut o = std::io::stdout().lock();
    if !out.is_null() {
        let _ = writeln!(o, "{out}");
    }
    let _ = o.flush();
    code
}

fn failed(msg: impl Into<String>) -> (Value, i32) {
    (
        serde_json::to_value(PluginError::new(msg)).unwrap_or_default(),
        1,
    )
}

/// One command: what to print (Null: nothing) and the exit code.
pub fn run(args: &[String], stdin: &[u8], pid: u32) -> (Value, i32) {
    let command = match Command::parse(args) {
        Ok(c) => c,
        Err(e) => return failed(e),
    };
    if command == Command::Info {
        return info();
    }
    let request: Value = match serde_json::from_slice(stdin) {
        Ok(v) => v,
        Err(e) => return failed(format!("stdin is not JSON: {e}")),
    };
    // The socket is the network's option, set once at create: every later call of any
    // podman command (or of conmon's cleanup) on the network finds the same daemon.
    let (name, netns, opts) = match &command {
        Command::Create => match serde_json::from_value::<Network>(request.clone()) {
            Ok(n) => ("create", String::new(), n.options),
            Err(e) => return failed(format!("not a netavark network: {e}")),
        },
        Command::Setup(ns) | Command::Teardown(ns) => {
            let name = if matches!(command, Command::Setup(_)) {
                "setup"
            } else {
                "teardown"
            };
            match serde_json::from_value::<Request>(request.clone()) {
                Ok(r) => (name, ns.clone(), r.network.options),
                Err(e) => return failed(format!("not a netavark request: {e}")),
            }
        }
        Command::Info => return info(),
    };
    let socket = PathBuf::from(
        opts.get(options::SOCKET)
            .map_or(crate::cni::spec::DEFAULT_SOCKET, String::as_str),
    );
    let call = Call {
        command: name.to_string(),
        netns,
        pid: Some(pid),
        request,
    };
    let body = match serde_json::to_vec(&call) {
        Ok(b) => b,
        Err(e) => return failed(format!("encoding the call: {e}")),
    };
    match local_api::post_blocking(&socket, super::daemon::PATH, body, ANSWER_WITHIN) {
        Ok((200, answer)) => (answer, 0),
        Ok((_, answer)) if answer.get("error").is_some() => (answer, 1),
        Ok((status, answer)) => failed(format!(
            "kuryr daemon answered {status} without an error: {answer}"
        )),
        Err(e) => failed(e.to_string()),
    }
}

fn info() -> (Value, i32) {
    (serde_json::to_value(Info::current()).unwrap_or_default(), 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn info_is_answered_without_a_daemon() {
        let (v, code) = run(&args(&["info"]), b"", 1);
        assert_eq!(code, 0);
        assert_eq!(v["api_version"], "1.0.0");
    }

    #[test]
    fn bad_input_is_an_error_object_and_exit_1() {
        let (v, code) = run(&args(&["frobnicate"]), b"{}", 1);
        assert_eq!(code, 1);
        assert!(v["error"].as_str().unwrap().contains("frobnicate"), "{v}");
        let (v, code) = run(&args(&["create"]), b"not json", 1);
        assert_eq!(code, 1);
        assert!(v["error"].as_str().unwrap().contains("not JSON"), "{v}");
        let (v, code) = run(&args(&["setup", "/run/netns/x"]), b"{}", 1);
        assert_eq!(code, 1);
        assert!(v["error"].as_str().unwrap().contains("request"), "{v}");
    }

    #[test]
    fn a_daemon_not_running_is_named_with_its_socket() {
        let net = br#"{"name":"n","id":"1","driver":"kuryr",
            "options":{"kuryr.socket":"/nonexistent/kuryr-netavark-test.sock"}}"#;
        let (v, code) = run(&args(&["create"]), net, 1);
        assert_eq!(code, 1);
        assert!(v["error"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/kuryr-netavark-test.sock"));
    }
}
