//! The HTTP side of the Neutron client: the reqwest client (CA, client certificate,
//! timeouts), answers' bodies and URL path segments.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::{NeutronError, Result};
use crate::config::NeutronConfig;

/// The reqwest client for Neutron and Keystone: timeouts, CA, client certificate.
pub(super) fn http_client(cfg: &NeutronConfig) -> Result<reqwest::Client> {
    crate::tls::install_crypto_provider();
    match build(cfg, false) {
        Ok(c) => Ok(c),
        // A host without a system CA store (a minimal root, a container image): plain
        // http, and https verified against `cafile`, work all the same.
        Err(e) => match build(cfg, true) {
            Ok(c) => {
                tracing::warn!(error = %e, "no system CA certificates: https to Neutron and Keystone is verified against [neutron] cafile only");
                Ok(c)
            }
            Err(_) => Err(e),
        },
    }
}

/// The client; `cafile_only`: the roots are `cafile`'s alone, not the system's too.
fn build(cfg: &NeutronConfig, cafile_only: bool) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5).min(cfg.timeout))
        .timeout(cfg.timeout)
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(16)
        .user_agent(concat!("kuryr-rs/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = &cfg.cafile {
        let pem = std::fs::read(ca)
            .map_err(|e| NeutronError::Auth(format!("cafile {}: {e}", ca.display())))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| NeutronError::Auth(format!("cafile {}: {e}", ca.display())))?;
        b = if cafile_only {
            b.tls_certs_only(certs)
        } else {
            b.tls_certs_merge(certs)
        };
    } else if cafile_only {
        b = b.tls_certs_only([]);
    }
    if let (Some(cert), Some(key)) = (&cfg.certfile, &cfg.keyfile) {
        let mut pem = std::fs::read(cert)
            .map_err(|e| NeutronError::Auth(format!("certfile {}: {e}", cert.display())))?;
        pem.extend(
            std::fs::read(key)
                .map_err(|e| NeutronError::Auth(format!("keyfile {}: {e}", key.display())))?,
        );
        let id = reqwest::Identity::from_pem(&pem)
            .map_err(|e| NeutronError::Auth(format!("client certificate: {e}")))?;
        b = b.identity(id);
    }
    if cfg.insecure {
        b = b.danger_accept_invalid_certs(true);
    }
    b.build().map_err(|e| NeutronError::Transport {
        message: format!("HTTP client: {}", super::error::chain(&e)),
        cause: Some(super::error::Cause(std::sync::Arc::new(e))),
    })
}

/// A 2xx answer's body: empty, or JSON.
pub(super) fn decode_body(method: &Method, path: &str, text: &str) -> Result<Option<Value>> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(text)
        .map(Some)
        .map_err(|e| NeutronError::Decode(format!("{method} {path}: {e}")))
}

/// The collection a request path is about (`/v2.0/ports/<id>/tags` -> `ports`).
pub(super) fn collection_of(path: &str) -> &str {
    path.trim_start_matches("/v2.0/")
        .split('/')
        .next()
        .unwrap_or("")
}

/// Percent-encodes a path segment (tags contain `:`; keep it readable but safe).
pub(super) fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
