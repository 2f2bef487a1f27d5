//! Keystone v3 authentication: password, application credential and token, with the
//! Neutron endpoint taken from the token's catalog. The token is cached and renewed
//! shortly before it expires (and once after a 401).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::error::{message_from_body, NeutronError};
use crate::config::{AuthType, NeutronConfig, Secret};

/// Renew a token this long before Keystone says it expires.
const RENEW_MARGIN: Duration = Duration::from_secs(120);

#[derive(Clone, Debug)]
pub struct Session {
    pub token: Secret,
    pub endpoint: String,
    /// Unix seconds; None = never expires (no Keystone).
    pub expires_at: Option<u64>,
    /// When to get a new token: a margin before expiry, scaled for short lifetimes.
    pub renew_at: Option<u64>,
}

pub struct Authenticator {
    cfg: NeutronConfig,
    /// The current token; read without waiting for a renewal in progress.
    cached: std::sync::Mutex<Option<Session>>,
    /// Held by the one request that asks Keystone for a token (single flight).
    issuing: Mutex<()>,
    issued: std::sync::atomic::AtomicU64,
}

impl Authenticator {
    pub fn new(cfg: NeutronConfig) -> Self {
        Authenticator {
            cfg,
            cached: std::sync::Mutex::new(None),
            issuing: Mutex::new(()),
            issued: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Tokens obtained from Keystone so far.
    pub fn tokens_issued(&self) -> u64 {
        self.issued.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn uses_keystone(&self) -> bool {
        self.cfg.auth_type != AuthType::None
    }

    /// A valid session: the cached one, or a new token from Keystone.
    pub async fn session(&self, http: &reqwest::Client) -> Result<Session, NeutronError> {
        if !self.uses_keystone() {
            let endpoint = self.cfg.endpoint.clone().unwrap_or_default();
            return Ok(Session {
                token: Secret::default(),
                endpoint,
                expires_at: None,
                renew_at: None,
            });
        }
        let current = self.current();
        if let Some(s) = &current {
            if !needs_renewal(s.renew_at, now()) {
                return Ok(s.clone());
            }
            // Due for renewal but still valid: one request renews it, the others go on
            // with it meanwhile (a slow Keystone holds up nobody else).
            if s.expires_at.is_none_or(|e| now() < e) {
                return match self.issuing.try_lock() {
                    Ok(_g) => self.renew(http).await.or_else(|e| {
                        tracing::warn!(error = %e, "token renewal failed; the current token is used until it expires");
                        Ok(s.clone())
                    }),
                    Err(_) => Ok(s.clone()),
                };
            }
        }
        // No valid token: wait for the one request that gets it.
        let _g = self.issuing.lock().await;
        if let Some(s) = self.current() {
            if !needs_renewal(s.renew_at, now()) {
                return Ok(s);
            }
        }
        self.renew(http).await
    }

    fn current(&self) -> Option<Session> {
        self.cached.lock().ok().and_then(|c| c.clone())
    }

    /// A new token, cached; the caller holds `issuing`.
    async fn renew(&self, http: &reqwest::Client) -> Result<Session, NeutronError> {
        let s = self.issue(http).await?;
        if let Ok(mut c) = self.cached.lock() {
            *c = Some(s.clone());
        }
        Ok(s)
    }

    /// Forgets the token Neutron refused (a 401), unless another request has renewed it
    /// meanwhile: concurrent 401s do not throw away a token just issued.
    pub async fn invalidate(&self, refused: &Secret) {
        if let Ok(mut c) = self.cached.lock() {
            if c.as_ref().is_some_and(|s| &s.token == refused) {
                *c = None;
            }
        }
    }

    async fn issue(&self, http: &reqwest::Client) -> Result<Session, NeutronError> {
        let url = format!(
            "{}/auth/tokens",
            self.cfg
                .auth_url
                .as_deref()
                .unwrap_or_default()
                .trim_end_matches('/')
        );
        let body = token_request_body(&self.cfg)?;
        let started = std::time::Instant::now();
        self.issued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let resp = http
            .post(&url)
            .json(&body)
            .send()
            .await
            .map_err(|e| NeutronError::Auth(format!("cannot reach {url}: {e}")))?;
        let status = resp.status().as_u16();
        tracing::debug!(url = %url, status, elapsed_ms = started.elapsed().as_millis() as u64, "keystone token request");
        let token = resp
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.to_string());
        let text = resp
            .text()
            .await
            .map_err(|e| NeutronError::Auth(e.to_string()))?;
        if !(200..300).contains(&status) {
            return Err(NeutronError::Auth(format!(
                "token request failed ({status}): {}",
                message_from_body(&text)
            )));
        }
        let token =
            token.ok_or_else(|| NeutronError::Auth("no X-Subject-Token in the answer".into()))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| NeutronError::Auth(format!("bad token body: {e}")))?;
        let expires_at = v["token"]["expires_at"].as_str().and_then(parse_iso8601);
        let issued_at = v["token"]["issued_at"].as_str().and_then(parse_iso8601);
        let renew_at = expires_at.map(|e| e.saturating_sub(renew_margin(issued_at, e)));
        let endpoint = catalog_endpoint(
            &v["token"]["catalog"],
            &self.cfg.endpoint_type,
            self.cfg.region_name.as_deref(),
        )
        .or_else(|| self.cfg.endpoint.clone())
        .ok_or_else(|| {
            NeutronError::Auth(format!(
                "no `network` endpoint (interface {}{}) in the Keystone catalog",
                self.cfg.endpoint_type,
                self.cfg
                    .region_name
                    .as_deref()
                    .map(|r| format!(", region {r}"))
                    .unwrap_or_default()
            ))
        })?;
        Ok(Session {
            token: Secret::new(token),
            endpoint,
            expires_at,
            renew_at,
        })
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn needs_renewal(renew_at: Option<u64>, now: u64) -> bool {
    renew_at.is_some_and(|t| now >= t)
}

/// Seconds before expiry to renew: two minutes, or a quarter of a short token's life.
fn renew_margin(issued_at: Option<u64>, expires_at: u64) -> u64 {
    let life = issued_at
        .map(|i| expires_at.saturating_sub(i))
        .unwrap_or(u64::MAX);
    RENEW_MARGIN.as_secs().min(life / 4)
}

fn scope(cfg: &NeutronConfig) -> Option<Value> {
    if let Some(id) = &cfg.project_id {
        return Some(json!({"project": {"id": id}}));
    }
    let name = cfg.project_name.as_ref()?;
    let domain = match (&cfg.project_domain_id, &cfg.project_domain_name) {
        (Some(id), _) => json!({"id": id}),
        (None, Some(n)) => json!({"name": n}),
        (None, None) => json!({"id": "default"}),
    };
    Some(json!({"project": {"name": name, "domain": domain}}))
}

fn user_domain(cfg: &NeutronConfig) -> Value {
    match (&cfg.user_domain_id, &cfg.user_domain_name) {
        (Some(id), _) => json!({"id": id}),
        (None, Some(n)) => json!({"name": n}),
        (None, None) => json!({"id": "default"}),
    }
}

/// The body of `POST /v3/auth/tokens` for the configured method.
pub fn token_request_body(cfg: &NeutronConfig) -> Result<Value, NeutronError> {
    let identity = match cfg.auth_type {
        AuthType::Password => {
            let user = match (&cfg.user_id, &cfg.username) {
                (Some(id), _) => json!({"id": id, "password": cfg.password.expose()}),
                (None, Some(name)) => {
                    json!({"name": name, "domain": user_domain(cfg), "password": cfg.password.expose()})
                }
                (None, None) => {
                    return Err(NeutronError::Auth(
                        "password auth needs username or user_id".into(),
                    ))
                }
            };
            json!({"methods": ["password"], "password": {"user": user}})
        }
        AuthType::Token => {
            json!({"methods": ["token"], "token": {"id": cfg.token.expose()}})
        }
        AuthType::ApplicationCredential => {
            let cred = match (
                &cfg.application_credential_id,
                &cfg.application_credential_name,
            ) {
                (Some(id), _) => {
                    json!({"id": id, "secret": cfg.application_credential_secret.expose()})
                }
                (None, Some(name)) => {
                    let user = match (&cfg.user_id, &cfg.username) {
                        (Some(id), _) => json!({"id": id}),
                        (None, Some(n)) => json!({"name": n, "domain": user_domain(cfg)}),
                        _ => {
                            return Err(NeutronError::Auth(
                                "application_credential_name needs username or user_id".into(),
                            ))
                        }
                    };
                    json!({"name": name, "user": user, "secret": cfg.application_credential_secret.expose()})
                }
                _ => {
                    return Err(NeutronError::Auth(
                        "application credential auth needs application_credential_id or _name"
                            .into(),
                    ))
                }
            };
            json!({"methods": ["application_credential"], "application_credential": cred})
        }
        AuthType::None => return Err(NeutronError::Auth("no Keystone configured".into())),
    };
    let mut auth = json!({"identity": identity});
    // Application credentials carry their own scope.
    if cfg.auth_type != AuthType::ApplicationCredential {
        if let Some(s) = scope(cfg) {
            auth["scope"] = s;
        }
    }
    Ok(json!({"auth": auth}))
}

/// Finds the `network` service URL for an interface (and region) in a v3 catalog.
pub fn catalog_endpoint(catalog: &Value, interface: &str, region: Option<&str>) -> Option<String> {
    catalog.as_array()?.iter().find_map(|svc| {
        if svc["type"].as_str()? != "network" {
            return None;
        }
        svc["endpoints"].as_array()?.iter().find_map(|ep| {
            if ep["interface"].as_str()? != interface {
                return None;
            }
            if let Some(r) = region {
                let er = ep["region_id"].as_str().or_else(|| ep["region"].as_str());
                if er != Some(r) {
                    return None;
                }
            }
            ep["url"]
                .as_str()
                .map(|u| u.trim_end_matches('/').to_string())
        })
    })
}

/// `2026-11-29T01:02:03.000000Z` -> Unix seconds (UTC only, as Keystone writes it).
pub fn parse_iso8601(s: &str) -> Option<u64> {
    let s = s.trim().trim_end_matches('Z');
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-');
    let y: i64 = d.next()?.parse().ok()?;
    let m: i64 = d.next()?.parse().ok()?;
    let day: i64 = d.next()?.parse().ok()?;
    let time = time.split(['+', '.']).next()?;
    let mut t = time.split(':');
    let hh: i64 = t.next()?.parse().ok()?;
    let mm: i64 = t.next()?.parse().ok()?;
    let ss: i64 = t.next().unwrap_or("0").parse().ok()?;
    // Out of range is not a time (and would overflow below).
    let fields = [
        (y, 1970, 9999),
        (m, 1, 12),
        (day, 1, 31),
        (hh, 0, 23),
        (mm, 0, 59),
        (ss, 0, 60),
    ];
    if !fields.iter().all(|&(v, lo, hi)| (lo..=hi).contains(&v)) {
        return None;
    }
    // Days from civil date (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = if y2 >= 0 { y2 } else { y2 - 399 } / 400;
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A Keystone that answers every token request after `delay`, with token `tN`.
    async fn slow_keystone(delay: std::time::Duration) -> (String, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v3", l.local_addr().unwrap());
        let n = Arc::new(AtomicUsize::new(0));
        let count = n.clone();
        tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                let k = count.fetch_add(1, Ordering::SeqCst) + 2;
                tokio::spawn(async move {
                    let mut buf = [0u8; 8192];
                    let _ = c.read(&mut buf).await;
                    tokio::time::sleep(delay).await;
                    let body = json!({"token": {
                        "issued_at": "2026-01-01T00:00:00Z", "expires_at": "2099-01-01T00:00:00Z",
                        "catalog": [{"type": "network", "endpoints": [
                            {"interface": "public", "url": "http://neutron:9696"}]}]}})
                    .to_string();
                    let head = format!(
                        "HTTP/1.1 201 Created\r\nX-Subject-Token: t{k}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = c.write_all(format!("{head}{body}").as_bytes()).await;
                });
            }
        });
        (url, n)
    }

    fn password_auth(url: &str) -> Authenticator {
        let text = format!(
            "[neutron]\nauth_type = password\nauth_url = {url}\nusername = u\npassword = p\nproject_name = x\n"
        );
        Authenticator::new(Config::parse("t", &text).unwrap().config.neutron)
    }

    fn token(t: &str, renew_at: u64, expires_at: u64) -> Session {
        Session {
            token: Secret::new(t),
            endpoint: "http://neutron:9696".into(),
            expires_at: Some(expires_at),
            renew_at: Some(renew_at),
        }
    }

    #[tokio::test]
    async fn a_slow_renewal_holds_up_no_request_while_the_token_is_valid() {
        crate::tls::install_crypto_provider();
        let (url, issued) = slow_keystone(std::time::Duration::from_millis(800)).await;
        let auth = Arc::new(password_auth(&url));
        // Due for renewal, valid for a while yet.
        *auth.cached.lock().unwrap() = Some(token("t1", now() - 1, now() + 300));
        let http = reqwest::Client::new();
        let renewing = {
            let (auth, http) = (auth.clone(), http.clone());
            tokio::spawn(async move { auth.session(&http).await.unwrap() })
        };
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        // Meanwhile: answered at once, with the current token.
        let t = std::time::Instant::now();
        let other = auth.session(&http).await.unwrap();
        assert!(
            t.elapsed() < std::time::Duration::from_millis(300),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(other.token.expose(), "t1");
        assert_eq!(renewing.await.unwrap().token.expose(), "t2");
        assert_eq!(issued.load(Ordering::SeqCst), 1, "one renewal, not two");
        assert_eq!(auth.session(&http).await.unwrap().token.expose(), "t2");
    }

    #[tokio::test]
    async fn a_401_forgets_only_the_token_it_was_for() {
        let auth = password_auth("http://127.0.0.1:1/v3");
        *auth.cached.lock().unwrap() = Some(token("t2", now() + 100, now() + 300));
        // A request that went out with the old token comes back 401 after the renewal.
        auth.invalidate(&Secret::new("t1")).await;
        assert_eq!(auth.current().map(|s| s.token), Some(Secret::new("t2")));
        auth.invalidate(&Secret::new("t2")).await;
        assert!(auth.current().is_none());
    }

    #[test]
    fn iso8601() {
        assert_eq!(parse_iso8601("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_iso8601("2026-11-29T01:02:03.000000Z"),
            Some(1_795_914_123)
        );
        assert_eq!(parse_iso8601("garbage"), None);
        // From Keystone or a port's created_at: out of range is no time, never a panic.
        for bad in [
            "99999999999999999-01-01T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-29T24:00:00Z",
            "2026-11-29T01:99999999999999999:03Z",
            "-5-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
    }

    #[test]
    fn renewal_margin() {
        assert!(!needs_renewal(None, 10));
        assert!(needs_renewal(Some(100), 100));
        assert!(!needs_renewal(Some(1000), 0));
        // An hour's token renews two minutes early; a 20 s token five seconds early.
        assert_eq!(renew_margin(Some(0), 3600), 120);
        assert_eq!(renew_margin(Some(100), 120), 5);
        assert_eq!(renew_margin(None, 5000), 120);
    }

    #[test]
    fn catalog_lookup() {
        let cat = json!([
            {"type": "identity", "endpoints": [{"interface": "public", "url": "http://k"}]},
            {"type": "network", "endpoints": [
                {"interface": "internal", "region_id": "R1", "url": "http://n-int:9696/"},
                {"interface": "public", "region_id": "R2", "url": "http://n-pub2:9696"},
                {"interface": "public", "region_id": "R1", "url": "http://n-pub1:9696"}
            ]}
        ]);
        assert_eq!(
            catalog_endpoint(&cat, "internal", None).as_deref(),
            Some("http://n-int:9696")
        );
        assert_eq!(
            catalog_endpoint(&cat, "public", Some("R1")).as_deref(),
            Some("http://n-pub1:9696")
        );
        assert_eq!(catalog_endpoint(&cat, "admin", None), None);
    }

    #[test]
    fn password_body_is_scoped() {
        let mut c = Config::default().neutron;
        c.auth_type = AuthType::Password;
        c.username = Some("admin".into());
        c.password = Secret::new("pw");
        c.project_name = Some("admin".into());
        c.user_domain_name = Some("Default".into());
        c.project_domain_name = Some("Default".into());
        let b = token_request_body(&c).unwrap();
        assert_eq!(b["auth"]["identity"]["password"]["user"]["name"], "admin");
        assert_eq!(
            b["auth"]["identity"]["password"]["user"]["domain"]["name"],
            "Default"
        );
        assert_eq!(b["auth"]["scope"]["project"]["name"], "admin");
        c.auth_type = AuthType::ApplicationCredential;
        c.application_credential_id = Some("ac".into());
        c.application_credential_secret = Secret::new("s");
        let b = token_request_body(&c).unwrap();
        assert_eq!(b["auth"]["identity"]["application_credential"]["id"], "ac");
        assert!(b["auth"].get("scope").is_none());
    }
}
