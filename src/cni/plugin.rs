//! The `kuryr-cni` binary's side: reads `CNI_*` and the config on stdin, answers VERSION
//! itself, forwards every other command to the daemon and prints its answer. Exit code
//! 0 with a result (or nothing) on stdout, else 1 with a CNI error on stdout.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::spec::{self, Call, CniError, Code, NetConf};
use crate::local_api::{self, LocalApiError};

/// The daemon answers within 50 s (`deadline::PLUGIN_ANSWER`); a little more for the
/// connection and a busy machine.
const ANSWER_WITHIN: Duration = Duration::from_secs(55);

/// The process: environment and stdin in, stdout and exit code out.
pub fn main() -> i32 {
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let command = env("CNI_COMMAND");
    let (out, code) = match read {
        Ok(_) => run(&command, &stdin, &env),
        Err(e) => (
            CniError::new(Code::Io, format!("cannot read stdin: {e}"))
                .to_json(spec::DEFAULT_VERSION),
            1,
        ),
    };
    let mut o = std::io::stdout().lock();
    if !out.is_null() {
        let _ = writeln!(o, "{out}");
    }
    let _ = o.flush();
    code
}

/// One command: what to print (Null: nothing) and the exit code.
pub fn run(command: &str, stdin: &[u8], env: &dyn Fn(&str) -> String) -> (Value, i32) {
    // VERSION needs no daemon, and may come with a config of any version.
    if command == "VERSION" {
        let v = serde_json::from_slice::<Value>(stdin)
            .ok()
            .and_then(|v| v["cniVersion"].as_str().map(str::to_string))
            .unwrap_or_else(|| spec::DEFAULT_VERSION.to_string());
        return (spec::version_info(&v), 0);
    }
    let fail = |e: CniError, v: &str| (e.to_json(v), 1);
    let required = match spec::Command::parse(command) {
        Ok(c) => c.required_env(),
        Err(e) => return fail(e, spec::DEFAULT_VERSION),
    };
    let conf = match NetConf::parse(stdin) {
        Ok(c) => c,
        Err(e) => return fail(e, spec::DEFAULT_VERSION),
    };
    let version = conf.version().to_string();
    for k in required {
        if env(k).is_empty() {
            return fail(
                CniError::new(Code::InvalidEnv, format!("{k} is not set")),
                &version,
            );
        }
    }
    let config = match serde_json::from_slice::<Value>(stdin) {
        Ok(Value::Object(m)) => m,
        _ => {
            return fail(
                CniError::new(Code::Decode, "network configuration is not a JSON object"),
                &version,
            )
        }
    };
    let call = Call {
        command: command.to_string(),
        container_id: env("CNI_CONTAINERID"),
        netns: env("CNI_NETNS"),
        ifname: env("CNI_IFNAME"),
        args: env("CNI_ARGS"),
        config,
    };
    let socket = PathBuf::from(conf.socket.as_deref().unwrap_or(spec::DEFAULT_SOCKET));
    let body = match serde_json::to_vec(&call) {
        Ok(b) => b,
        Err(e) => {
            return fail(
                CniError::new(Code::Io, format!("encoding the call: {e}")),
                &version,
            )
        }
    };
    match local_api::post_blocking(&socket, "/v1/cni", body, ANSWER_WITHIN) {
        Ok((200, body)) => (body, 0),
        Ok((_, body)) if body.get("code").is_some() => (body, 1),
        Ok((status, body)) => fail(
            CniError::new(
                Code::Io,
                format!("kuryr daemon answered {status} without a CNI error"),
            )
            .with_details(body.to_string()),
            &version,
        ),
        Err(e) => fail(cni_error_of(e), &version),
    }
}

/// The spec's code for a daemon that did not answer.
fn cni_error_of(e: LocalApiError) -> CniError {
    let code = match &e {
        LocalApiError::Unreachable { .. } => Code::NotAvailable,
        LocalApiError::Timeout(_) => Code::TryAgain,
        LocalApiError::Decode(_) => Code::Decode,
        LocalApiError::Io(_) => Code::Io,
    };
    match e {
        LocalApiError::Unreachable { socket, cause } => {
            CniError::new(code, format!("kuryr daemon not reachable at {socket}"))
                .with_details(cause)
        }
        e => CniError::new(code, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> String {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
                .unwrap_or_default()
        }
    }

    #[test]
    fn version_is_answered_without_a_daemon() {
        let (v, code) = run("VERSION", br#"{"cniVersion":"0.4.0"}"#, &env_of(&[]));
        assert_eq!(code, 0);
        assert_eq!(v["cniVersion"], "0.4.0");
        assert!(v["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&Value::from("1.1.0")));
    }

    #[test]
    fn missing_environment_is_error_4_in_the_configs_version() {
        let conf = br#"{"cniVersion":"1.0.0","name":"n","type":"kuryr-cni","network":"x"}"#;
        let (v, code) = run("ADD", conf, &env_of(&[("CNI_CONTAINERID", "c1")]));
        assert_eq!(code, 1);
        assert_eq!(v["code"], 4);
        assert_eq!(v["cniVersion"], "1.0.0");
        assert!(v["msg"].as_str().unwrap().contains("CNI_NETNS"), "{v}");
    }

    #[test]
    fn daemon_down_is_error_50() {
        let conf = br#"{"cniVersion":"1.1.0","name":"n","type":"kuryr-cni","network":"x",
            "socket":"/nonexistent/kuryr-cni-test.sock"}"#;
        let (v, code) = run("STATUS", conf, &env_of(&[]));
        assert_eq!((code, v["code"].as_u64()), (1, Some(50)));
        assert!(v["msg"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/kuryr-cni-test.sock"));
    }
}
