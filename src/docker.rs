//! A minimal Docker Engine API client over its unix socket, for `doctor` and `gc` only.
//! Never used on the request path: a plugin that calls Docker while Docker calls it can
//! deadlock Docker's start-up.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// The engine's socket as the docker CLI finds it: `DOCKER_HOST` when it names a unix
/// socket, else the default.
pub fn socket_from_env() -> PathBuf {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| parse_socket(&h).ok())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

/// A `--docker-socket` or `DOCKER_HOST` value: a path or `unix://<path>`; kuryr speaks to
/// Docker over its unix socket only.
pub fn parse_socket(v: &str) -> Result<PathBuf, String> {
    match v.strip_prefix("unix://") {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        Some(_) => Err(format!("{v}: no socket path")),
        None if v.contains("://") => Err(format!("{v}: only unix sockets are supported")),
        None => Ok(PathBuf::from(v)),
    }
}

pub struct Docker {
    socket: PathBuf,
}

impl Docker {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Docker {
            socket: socket.into(),
        }
    }

    /// `GET path` with a JSON answer. HTTP/1.0 keeps the answer unchunked.
    pub async fn get(&self, path: &str) -> Result<Value, String> {
        let fut = async {
            let mut s = UnixStream::connect(&self.socket)
                .await
                .map_err(|e| format!("cannot connect to {}: {e}", self.socket.display()))?;
            s.write_all(format!("GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n").as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
            Ok::<Vec<u8>, String>(buf)
        };
        let buf = tokio::time::timeout(Duration::from_secs(10), fut)
            .await
            .map_err(|_| format!("{} did not answer within 10 s", self.socket.display()))??;
        let text = String::from_utf8_lossy(&buf);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| "malformed answer from dockerd".to_string())?;
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if status != 200 {
            return Err(format!(
                "dockerd answered {status} to GET {path}: {}",
                body.trim()
            ));
        }
        serde_json::from_str(body).map_err(|e| format!("dockerd's answer to {path}: {e}"))
    }

    /// Every Docker network: (id, endpoint ids). All drivers count: an endpoint is alive
    /// wherever Docker has it.
    pub async fn networks(&self) -> Result<Vec<(String, Vec<String>)>, String> {
        let list = self.get("/networks").await?;
        let mut out = Vec::new();
        for n in list.as_array().into_iter().flatten() {
            let Some(id) = n["Id"].as_str() else { continue };
            // The list omits endpoints; the network itself has them.
            let full = self.get(&format!("/networks/{id}")).await?;
            let eps = full["Containers"]
                .as_object()
                .map(|m| {
                    m.values()
                        .filter_map(|c| c["EndpointID"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            out.push((id.to_string(), eps));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_host_values() {
        assert_eq!(
            parse_socket("unix:///run/e/docker.sock"),
            Ok(PathBuf::from("/run/e/docker.sock"))
        );
        assert_eq!(
            parse_socket("/var/run/docker.sock"),
            Ok(PathBuf::from("/var/run/docker.sock"))
        );
        assert!(parse_socket("tcp://127.0.0.1:2375").is_err());
        assert!(parse_socket("unix://").is_err());
    }
}
