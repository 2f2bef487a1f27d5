use std::sync::Arc;

use thiserror::Error;

/// The error under a failed exchange (the HTTP client's), kept as the `source()` of a
/// [`NeutronError::Transport`]; shared, as errors are cloned.
#[derive(Debug, Clone)]
pub struct Cause(pub Arc<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Two causes are alike when they say the same (the error types under them have no
/// equality of their own).
impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}

/// An error and the errors under it, as one line: `a: b: c`.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let text = s.to_string();
        // Some errors repeat their source in their own message.
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = s.source();
    }
    out
}

/// What went wrong talking to Neutron or Keystone. Neutron's own message is kept so it
/// can be handed to Docker verbatim.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum NeutronError {
    #[error("Neutron: not found: {0}")]
    NotFound(String),
    #[error("Neutron: conflict: {0}")]
    Conflict(String),
    #[error("Neutron: bad request: {0}")]
    BadRequest(String),
    #[error("Neutron: unauthorized: {0}")]
    Unauthorized(String),
    #[error("Neutron: forbidden: {0}")]
    Forbidden(String),
    #[error("Neutron: server error {status}: {message}")]
    Server { status: u16, message: String },
    /// No answer: the message says why, down to the root cause; `cause` is the error
    /// itself when one was raised.
    #[error("Neutron did not answer: {message}")]
    Transport {
        message: String,
        #[source]
        cause: Option<Cause>,
    },
    /// The call's time budget ran out (`crate::deadline`) before Neutron answered.
    #[error("Neutron did not answer in time: {0}")]
    Deadline(String),
    #[error("Neutron: unexpected answer: {0}")]
    Decode(String),
    #[error("Keystone: {0}")]
    Auth(String),
}

impl NeutronError {
    /// Maps an HTTP status and Neutron's message to a typed error.
    pub fn from_status(status: u16, message: String) -> Self {
        match status {
            400 => NeutronError::BadRequest(message),
            401 => NeutronError::Unauthorized(message),
            403 => NeutronError::Forbidden(message),
            404 => NeutronError::NotFound(message),
            409 => NeutronError::Conflict(message),
            _ => NeutronError::Server { status, message },
        }
    }

    /// The status to give Docker for this error (Neutron's own when there is one).
    pub fn http_status(&self) -> u16 {
        match self {
            NeutronError::NotFound(_) => 404,
            NeutronError::Conflict(_) => 409,
            NeutronError::BadRequest(_) => 400,
            NeutronError::Unauthorized(_) => 401,
            NeutronError::Forbidden(_) => 403,
            NeutronError::Server { status, .. } => *status,
            NeutronError::Transport { .. } => 503,
            NeutronError::Deadline(_) => 504,
            NeutronError::Decode(_) | NeutronError::Auth(_) => 500,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, NeutronError::NotFound(_))
    }
    pub fn is_conflict(&self) -> bool {
        matches!(self, NeutronError::Conflict(_))
    }
}

/// Neutron's error body: `{"NeutronError": {"type", "message", "detail"}}`; anything else
/// is passed on as text (cut, so a proxy's HTML page does not flood a Docker error).
pub fn message_from_body(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        if let Some(m) = v
            .get("NeutronError")
            .and_then(|e| e.get("message"))
            .and_then(|m| m.as_str())
        {
            return m.to_string();
        }
        if let Some(m) = v
            .get("error")
            .and_then(|e| e.get("message"))
            .and_then(|m| m.as_str())
        {
            return m.to_string();
        }
    }
    body.trim().chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_status_and_message() {
        let m = message_from_body(
            r#"{"NeutronError": {"type": "NetworkInUse", "message": "Unable to complete operation on network x.", "detail": ""}}"#,
        );
        assert_eq!(m, "Unable to complete operation on network x.");
        let e = NeutronError::from_status(409, m);
        assert!(e.is_conflict());
        assert_eq!(e.http_status(), 409);
        assert_eq!(
            NeutronError::from_status(404, "x".into()).http_status(),
            404
        );
        assert_eq!(
            NeutronError::from_status(502, "x".into()),
            NeutronError::Server {
                status: 502,
                message: "x".into()
            }
        );
        assert_eq!(
            message_from_body("<html>oops</html>\n"),
            "<html>oops</html>"
        );
    }
}
