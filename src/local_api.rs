//! The plugin binaries' client of the kuryr daemon: one JSON POST over the daemon's unix
//! socket, the status and the JSON answer back. `kuryr-cni` and `kuryr-netavark` each
//! turn its errors into their runtime's own error format.

use std::path::Path;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Why no answer came.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalApiError {
    /// No daemon listens at the socket.
    #[error("kuryr daemon not reachable at {socket}: {cause}")]
    Unreachable { socket: String, cause: String },
    /// The exchange broke off, or the request could not be written.
    #[error("kuryr daemon: {0}")]
    Io(String),
    /// An answer that is not JSON.
    #[error("kuryr daemon's answer is not JSON: {0}")]
    Decode(String),
    #[error("kuryr daemon did not answer within {0} s")]
    Timeout(u64),
}

/// `POST path` with `body` on the daemon's socket: (status, JSON answer; Null when empty).
pub async fn post(
    socket: &Path,
    path: &str,
    body: Vec<u8>,
    within: Duration,
) -> Result<(u16, Value), LocalApiError> {
    let unreachable = |cause: String| LocalApiError::Unreachable {
        socket: socket.display().to_string(),
        cause,
    };
    let exchange = async {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        tokio::spawn(conn);
        let req = hyper::Request::post(path)
            .header("host", "kuryr")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| LocalApiError::Io(e.to_string()))?;
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| LocalApiError::Io(e.to_string()))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| LocalApiError::Io(format!("its answer: {e}")))?
            .to_bytes();
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|e| LocalApiError::Decode(e.to_string()))?
        };
        Ok((status, v))
    };
    tokio::time::timeout(within, exchange)
        .await
        .map_err(|_| LocalApiError::Timeout(within.as_secs()))?
}

/// Runs `post` on a runtime of its own: the plugin binaries are synchronous processes.
pub fn post_blocking(
    socket: &Path,
    path: &str,
    body: Vec<u8>,
    within: Duration,
) -> Result<(u16, Value), LocalApiError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LocalApiError::Io(format!("runtime: {e}")))?;
    rt.block_on(post(socket, path, body, within))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_daemon_is_unreachable_and_names_the_socket() {
        let e = post_blocking(
            Path::new("/nonexistent/kuryr-local-api.sock"),
            "/v1/x",
            b"{}".to_vec(),
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(matches!(e, LocalApiError::Unreachable { .. }), "{e:?}");
        assert!(e.to_string().contains("/nonexistent/kuryr-local-api.sock"));
    }
}
