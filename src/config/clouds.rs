//! Where the OpenStack clients find credentials: `OS_*` environment variables, or a
//! named cloud of `clouds.yaml` (`OS_CLOUD`). Used for `[neutron]` when kuryr.conf gives
//! no credentials of its own; the values become `[neutron]` options and go through the
//! same validation.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

/// `OS_*` variable -> `[neutron]` option.
const ENV_OPTIONS: &[(&str, &str)] = &[
    ("OS_AUTH_TYPE", "auth_type"),
    ("OS_AUTH_URL", "auth_url"),
    ("OS_ENDPOINT", "endpoint"),
    ("OS_USERNAME", "username"),
    ("OS_USER_ID", "user_id"),
    ("OS_PASSWORD", "password"),
    ("OS_PROJECT_NAME", "project_name"),
    ("OS_TENANT_NAME", "project_name"),
    ("OS_PROJECT_ID", "project_id"),
    ("OS_TENANT_ID", "project_id"),
    ("OS_USER_DOMAIN_NAME", "user_domain_name"),
    ("OS_USER_DOMAIN_ID", "user_domain_id"),
    ("OS_PROJECT_DOMAIN_NAME", "project_domain_name"),
    ("OS_PROJECT_DOMAIN_ID", "project_domain_id"),
    ("OS_REGION_NAME", "region_name"),
    ("OS_INTERFACE", "endpoint_type"),
    ("OS_TOKEN", "token"),
    ("OS_APPLICATION_CREDENTIAL_ID", "application_credential_id"),
    (
        "OS_APPLICATION_CREDENTIAL_NAME",
        "application_credential_name",
    ),
    (
        "OS_APPLICATION_CREDENTIAL_SECRET",
        "application_credential_secret",
    ),
    ("OS_CACERT", "cafile"),
    ("OS_CERT", "certfile"),
    ("OS_KEY", "keyfile"),
];

#[derive(Deserialize)]
struct CloudsFile {
    #[serde(default)]
    clouds: BTreeMap<String, Cloud>,
}

#[derive(Deserialize)]
struct Cloud {
    #[serde(default)]
    auth: BTreeMap<String, Value>,
    #[serde(default)]
    auth_type: Option<String>,
    #[serde(default)]
    region_name: Option<String>,
    #[serde(default)]
    interface: Option<String>,
    #[serde(default)]
    cacert: Option<String>,
    #[serde(default)]
    cert: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    verify: Option<bool>,
}

/// `[neutron]` options from the environment, with where they came from; empty when the
/// environment says nothing.
pub fn neutron_options(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(BTreeMap<String, String>, String), String> {
    if let Some(cloud) = env("OS_CLOUD").filter(|c| !c.is_empty()) {
        let (path, text) = find_clouds_yaml(env)?;
        return from_clouds_yaml(&text, &cloud)
            .map(|m| (m, format!("cloud {cloud:?} of {}", path.display())))
            .map_err(|e| format!("{}: {e}", path.display()));
    }
    let mut out = BTreeMap::new();
    for (var, opt) in ENV_OPTIONS {
        if let Some(v) = env(var).filter(|v| !v.is_empty()) {
            out.entry(opt.to_string()).or_insert(v);
        }
    }
    if out.contains_key("auth_url") && !out.contains_key("auth_type") {
        let t = if out.contains_key("application_credential_secret") {
            "v3applicationcredential"
        } else if out.contains_key("token") && !out.contains_key("password") {
            "token"
        } else {
            "password"
        };
        out.insert("auth_type".into(), t.into());
    }
    Ok((out, "OS_* environment variables".into()))
}

fn find_clouds_yaml(env: &dyn Fn(&str) -> Option<String>) -> Result<(PathBuf, String), String> {
    let mut candidates = Vec::new();
    if let Some(f) = env("OS_CLIENT_CONFIG_FILE") {
        candidates.push(PathBuf::from(f));
    }
    candidates.push(PathBuf::from("clouds.yaml"));
    if let Some(home) = env("HOME") {
        candidates.push(PathBuf::from(home).join(".config/openstack/clouds.yaml"));
    }
    candidates.push(PathBuf::from("/etc/openstack/clouds.yaml"));
    for c in &candidates {
        if let Ok(text) = std::fs::read_to_string(c) {
            return Ok((c.clone(), text));
        }
    }
    Err(format!(
        "OS_CLOUD is set but no clouds.yaml was found (looked in {})",
        candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// The `[neutron]` options of one cloud in a clouds.yaml text.
pub fn from_clouds_yaml(text: &str, cloud: &str) -> Result<BTreeMap<String, String>, String> {
    // The parser's message quotes the file, whose lines hold passwords: only where.
    let f: CloudsFile = serde_saphyr::from_str(text).map_err(|e| match e.location() {
        Some(l) => format!(
            "not a valid clouds.yaml: line {} column {} (the text is not shown: it may hold secrets)",
            l.line(),
            l.column()
        ),
        None => "not a valid clouds.yaml (the parser's message is not shown: it may hold secrets)"
            .to_string(),
    })?;
    let c = f
        .clouds
        .get(cloud)
        .ok_or_else(|| format!("no cloud named {cloud:?}"))?;
    let mut out = BTreeMap::new();
    for (k, v) in &c.auth {
        let v = match v {
            Value::String(s) => s.clone(),
            Value::Null => continue,
            other => other.to_string(),
        };
        let key = match k.as_str() {
            "tenant_name" => "project_name",
            "tenant_id" => "project_id",
            other => other,
        };
        out.insert(key.to_string(), v);
    }
    let extra = [
        ("auth_type", &c.auth_type),
        ("region_name", &c.region_name),
        ("endpoint_type", &c.interface),
        ("cafile", &c.cacert),
        ("certfile", &c.cert),
        ("keyfile", &c.key),
    ];
    for (k, v) in extra {
        if let Some(v) = v {
            out.insert(k.to_string(), v.clone());
        }
    }
    if c.verify == Some(false) {
        out.insert("insecure".into(), "true".into());
    }
    if !out.contains_key("auth_type") && out.contains_key("auth_url") {
        let t = if out.contains_key("application_credential_secret") {
            "v3applicationcredential"
        } else {
            "password"
        };
        out.insert("auth_type".into(), t.into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clouds.yaml that is not YAML is refused without quoting it: its lines hold
    /// passwords.
    #[test]
    fn a_broken_clouds_yaml_is_refused_without_its_secrets() {
        for text in [
            "clouds:\n  c:\n    auth:\n      password: s3cret-pw\n     - x: [\n",
            "clouds:\n  c:\n    auth: {password: s3cret-pw, \n",
            "clouds:\n  c:\n    auth:\n      password: s3cret-pw\n    region_name: [a, b\n",
        ] {
            let Err(e) = from_clouds_yaml(text, "c") else {
                panic!("accepted: {text}");
            };
            assert!(!e.contains("s3cret"), "{e}");
        }
    }

    #[test]
    fn env_variables_map_to_options() {
        let env = |k: &str| match k {
            "OS_AUTH_URL" => Some("http://ks:5000/v3".to_string()),
            "OS_USERNAME" => Some("admin".to_string()),
            "OS_PASSWORD" => Some("pw".to_string()),
            "OS_TENANT_NAME" => Some("demo".to_string()),
            "OS_INTERFACE" => Some("internal".to_string()),
            _ => None,
        };
        let (m, from) = neutron_options(&env).unwrap();
        assert_eq!(m["auth_type"], "password");
        assert_eq!(m["project_name"], "demo");
        assert_eq!(m["endpoint_type"], "internal");
        assert!(from.contains("OS_"));
    }

    #[test]
    fn clouds_yaml_cloud() {
        let text = r#"
clouds:
  prod:
    auth:
      auth_url: https://ks.example:5000/v3
      application_credential_id: "abc"
      application_credential_secret: "s3"
    region_name: RegionTwo
    interface: internal
    verify: false
  other:
    auth: {auth_url: "http://x", username: u, password: p, project_name: q}
"#;
        let m = from_clouds_yaml(text, "prod").unwrap();
        assert_eq!(m["auth_type"], "v3applicationcredential");
        assert_eq!(m["region_name"], "RegionTwo");
        assert_eq!(m["endpoint_type"], "internal");
        assert_eq!(m["insecure"], "true");
        assert_eq!(
            from_clouds_yaml(text, "other").unwrap()["auth_type"],
            "password"
        );
        assert!(from_clouds_yaml(text, "nope").unwrap_err().contains("nope"));
        assert!(from_clouds_yaml("clouds: [", "x").is_err());
    }
}
