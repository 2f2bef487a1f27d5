//! `kuryr.conf`: the reference's INI file, same sections, option names and defaults.
//!
//! Parsing is strict about values (a bad value names file, section, option and what was
//! expected) and lenient about names (unknown options are returned as warnings), so a
//! config written for the Python kuryr-libnetwork starts this one unchanged.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

pub mod clouds;

/// Default location of the plugin socket: Docker discovers `kuryr` here.
pub const DEFAULT_UNIX_SOCKET: &str = "/run/docker/plugins/kuryr.sock";
pub const DEFAULT_KURYR_URI: &str = "http://127.0.0.1:23750";

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {error}")]
    Read { file: String, error: std::io::Error },
    #[error("{file}: not a valid INI file: {message}")]
    Syntax { file: String, message: String },
    #[error("{file}: [{section}] {option} = {value:?}: expected {expected}")]
    Value {
        file: String,
        section: String,
        option: String,
        value: String,
        expected: String,
    },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
}

/// A secret string: never printed by `Debug` or `Display`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("\"***\"")
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Local,
    Global,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Local => "local",
            Scope::Global => "global",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthType {
    /// No Keystone: `endpoint` is Neutron's URL.
    None,
    Password,
    Token,
    ApplicationCredential,
}

#[derive(Debug, Clone)]
pub struct NeutronConfig {
    pub auth_type: AuthType,
    pub auth_url: Option<String>,
    pub endpoint: Option<String>,
    pub username: Option<String>,
    pub user_id: Option<String>,
    pub password: Secret,
    pub user_domain_name: Option<String>,
    pub user_domain_id: Option<String>,
    pub project_name: Option<String>,
    pub project_id: Option<String>,
    pub project_domain_name: Option<String>,
    pub project_domain_id: Option<String>,
    pub token: Secret,
    pub application_credential_id: Option<String>,
    pub application_credential_name: Option<String>,
    pub application_credential_secret: Secret,
    pub region_name: Option<String>,
    pub endpoint_type: String,
    pub cafile: Option<PathBuf>,
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
    pub insecure: bool,
    pub timeout: Duration,
    pub enable_dhcp: bool,
    pub default_subnetpool_v4: String,
    pub default_subnetpool_v6: String,
    pub vif_plugging_is_fatal: bool,
    pub vif_plugging_timeout: u64,
}

#[derive(Debug, Clone)]
pub struct BindingConfig {
    pub veth_dst_prefix: String,
    pub default_driver: String,
    pub enabled_drivers: Vec<String>,
    pub link_iface: Option<String>,
    /// `[sriov] physical_device_mappings`: (physical network, PF netdev). SR-IOV ports
    /// without a `pci_slot` get a free VF of a PF of their network's physical network.
    pub sriov_device_mappings: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub bindir: PathBuf,
    pub subnetpool_name_prefix: String,
    pub kuryr_uri: String,
    /// True when `kuryr_uri` was set in the file: only then do we listen on TCP.
    pub tcp_configured: bool,
    pub unix_socket: Option<PathBuf>,
    pub capability_scope: Scope,
    pub local_default_address_space: String,
    pub global_default_address_space: String,
    pub default_port_driver: String,
    pub enabled_port_drivers: Vec<String>,
    pub process_external_connectivity: bool,
    pub enable_ssl: bool,
    pub ssl_cert_file: PathBuf,
    pub ssl_key_file: PathBuf,
    /// CA that signed `ssl_cert_file`, named in the `.json` discovery file for Docker.
    pub ssl_ca_file: Option<PathBuf>,
    /// Where to serve /metrics, /healthz and /readyz over TCP (they are always on the
    /// plugin socket too).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Run `gc --apply` for this host once at start-up.
    pub reconcile_on_start: bool,
    /// Ports kept ready per kuryr subnet (0 = no pool).
    pub port_pool_size: usize,
    /// Name used as `binding:host_id`; must match the L2 agent's `host`.
    pub host: String,
    pub debug: bool,
    pub neutron: NeutronConfig,
    pub binding: BindingConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bindir: PathBuf::from("/usr/libexec/kuryr"),
            subnetpool_name_prefix: "kuryrPool".into(),
            kuryr_uri: DEFAULT_KURYR_URI.into(),
            tcp_configured: false,
            unix_socket: Some(PathBuf::from(DEFAULT_UNIX_SOCKET)),
            capability_scope: Scope::Local,
            local_default_address_space: "no_address_space".into(),
            global_default_address_space: "no_address_space".into(),
            default_port_driver: "veth".into(),
            enabled_port_drivers: vec!["veth".into()],
            process_external_connectivity: true,
            enable_ssl: false,
            ssl_cert_file: PathBuf::from("/var/lib/kuryr/certs/cert.pem"),
            ssl_key_file: PathBuf::from("/var/lib/kuryr/certs/key.pem"),
            ssl_ca_file: None,
            metrics_listen: None,
            reconcile_on_start: false,
            port_pool_size: 0,
            host: hostname(),
            debug: false,
            neutron: NeutronConfig {
                auth_type: AuthType::None,
                auth_url: None,
                endpoint: None,
                username: None,
                user_id: None,
                password: Secret::default(),
                user_domain_name: None,
                user_domain_id: None,
                project_name: None,
                project_id: None,
                project_domain_name: None,
                project_domain_id: None,
                token: Secret::default(),
                application_credential_id: None,
                application_credential_name: None,
                application_credential_secret: Secret::default(),
                region_name: None,
                endpoint_type: "public".into(),
                cafile: None,
                certfile: None,
                keyfile: None,
                insecure: false,
                timeout: Duration::from_secs(30),
                enable_dhcp: true,
                default_subnetpool_v4: "kuryr".into(),
                default_subnetpool_v6: "kuryr6".into(),
                vif_plugging_is_fatal: false,
                vif_plugging_timeout: 0,
            },
            binding: BindingConfig {
                veth_dst_prefix: "eth".into(),
                default_driver: "veth".into(),
                enabled_drivers: vec!["veth".into()],
                link_iface: None,
                sriov_device_mappings: Vec::new(),
            },
        }
    }
}

/// The machine's host name, as the Neutron agents report it.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for its length; gethostname NUL-terminates within it or truncates.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Options known per section (oslo names; `-` and `_` are equivalent).
const KNOWN_DEFAULT: &[&str] = &[
    "bindir",
    "subnetpool_name_prefix",
    "deployment_type",
    "kuryr_uri",
    "capability_scope",
    "local_default_address_space",
    "global_default_address_space",
    "default_port_driver",
    "enabled_port_drivers",
    "port_driver",
    "process_external_connectivity",
    "enable_ssl",
    "ssl_cert_file",
    "ssl_key_file",
    "ssl_ca_file",
    "metrics_listen",
    "reconcile_on_start",
    "port_pool_size",
    "pybasedir",
    "host",
    "unix_socket",
    // oslo.log options: accepted, only `debug` has an effect here.
    "debug",
    "verbose",
    "log_file",
    "log_dir",
    "use_syslog",
    "use_stderr",
    "log_config_append",
    "log_date_format",
    "logging_context_format_string",
    "default_log_levels",
    "use_journal",
    "use_json",
];
const KNOWN_NEUTRON: &[&str] = &[
    "auth_type",
    "auth_plugin",
    "auth_section",
    "auth_url",
    "endpoint",
    "username",
    "user_name",
    "user_id",
    "password",
    "user_domain_name",
    "user_domain_id",
    "project_name",
    "tenant_name",
    "project_id",
    "tenant_id",
    "project_domain_name",
    "project_domain_id",
    "domain_name",
    "domain_id",
    "default_domain_name",
    "default_domain_id",
    "system_scope",
    "trust_id",
    "token",
    "application_credential_id",
    "application_credential_name",
    "application_credential_secret",
    "region_name",
    "endpoint_type",
    "cafile",
    "certfile",
    "keyfile",
    "insecure",
    "timeout",
    "collect_timing",
    "split_loggers",
    "enable_dhcp",
    "default_subnetpool_v4",
    "default_subnetpool_v6",
    "vif_plugging_is_fatal",
    "vif_plugging_timeout",
];
const KNOWN_BINDING: &[&str] = &[
    "veth_dst_prefix",
    "default_driver",
    "driver",
    "enabled_drivers",
    "link_iface",
];
const KNOWN_SRIOV: &[&str] = &["physical_device_mappings"];

/// The option names known in a section (`DEFAULT`, `neutron`, `binding`).
pub fn known_options(section: &str) -> &'static [&'static str] {
    match section {
        "DEFAULT" => KNOWN_DEFAULT,
        "neutron" => KNOWN_NEUTRON,
        "binding" => KNOWN_BINDING,
        "sriov" => KNOWN_SRIOV,
        _ => &[],
    }
}

/// The parsed file plus what deserves a warning.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

struct Reader<'a> {
    file: String,
    sections: BTreeMap<String, BTreeMap<String, String>>,
    warnings: &'a mut Vec<String>,
}

impl Reader<'_> {
    fn get(&self, section: &str, option: &str) -> Option<&str> {
        self.sections
            .get(section)
            .and_then(|s| s.get(option))
            .map(|v| v.as_str())
    }

    fn err(&self, section: &str, option: &str, value: &str, expected: &str) -> ConfigError {
        ConfigError::Value {
            file: self.file.clone(),
            section: section.into(),
            option: option.into(),
            // Never echo a secret back in an error message.
            value: if is_secret_option(option) {
                "***".into()
            } else {
                value.into()
            },
            expected: expected.into(),
        }
    }

    fn string(&self, section: &str, option: &str, target: &mut String) {
        if let Some(v) = self.get(section, option) {
            *target = v.to_string();
        }
    }

    fn opt_string(&self, section: &str, options: &[&str], target: &mut Option<String>) {
        for o in options {
            if let Some(v) = self.get(section, o) {
                *target = if v.is_empty() {
                    None
                } else {
                    Some(v.to_string())
                };
                return;
            }
        }
    }

    fn bool(&self, section: &str, option: &str, target: &mut bool) -> Result<(), ConfigError> {
        if let Some(v) = self.get(section, option) {
            *target = parse_bool(v).ok_or_else(|| {
                self.err(
                    section,
                    option,
                    v,
                    "a boolean (true/false, yes/no, on/off, 1/0)",
                )
            })?;
        }
        Ok(())
    }

    fn uint(&self, section: &str, option: &str) -> Result<Option<u64>, ConfigError> {
        match self.get(section, option) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse::<u64>()
                .map(Some)
                .map_err(|_| self.err(section, option, v, "a non-negative integer")),
        }
    }

    fn list(&self, section: &str, option: &str) -> Option<Vec<String>> {
        self.get(section, option).map(|v| {
            v.trim_matches(|c| c == '[' || c == ']')
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
    }
}

fn is_secret_option(option: &str) -> bool {
    matches!(
        option,
        "password" | "token" | "application_credential_secret"
    )
}

pub fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" | "y" | "t" => Some(true),
        "false" | "no" | "off" | "0" | "n" | "f" => Some(false),
        _ => None,
    }
}

/// Short name of a port/binding driver given as a Python module path or a short name.
pub fn driver_short_name(v: &str) -> String {
    v.rsplit('.').next().unwrap_or(v).to_string()
}

impl Config {
    /// Reads and validates a kuryr.conf.
    pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            file: file.clone(),
            error,
        })?;
        Self::parse(&file, &text)
    }

    /// Reads and validates a kuryr.conf; `[neutron]` credentials may come from `OS_*`
    /// variables or clouds.yaml when the file has none.
    pub fn load_with_env(path: &Path) -> Result<Loaded, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            file: file.clone(),
            error,
        })?;
        Self::parse_with_env(&file, &text, &|k| std::env::var(k).ok())
    }

    /// Parses kuryr.conf text; `file` names it in messages.
    pub fn parse(file: &str, text: &str) -> Result<Loaded, ConfigError> {
        Self::parse_with_env(file, text, &|_| None)
    }

    /// Parses kuryr.conf text, filling `[neutron]` from `env` when the file names no
    /// endpoint and no Keystone.
    pub fn parse_with_env(
        file: &str,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Loaded, ConfigError> {
        let ini = ini::Ini::load_from_str_opt(
            text,
            ini::ParseOption {
                enabled_quote: false,
                enabled_escape: false,
                enabled_indented_mutiline_value: false,
                enabled_preserve_key_leading_whitespace: false,
            },
        )
        .map_err(|e| ConfigError::Syntax {
            file: file.into(),
            message: e.to_string(),
        })?;
        let mut warnings = Vec::new();
        let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (sec, props) in ini.iter() {
            let sec = sec.unwrap_or("DEFAULT");
            let known: Option<&[&str]> = match sec {
                "DEFAULT" => Some(KNOWN_DEFAULT),
                "neutron" => Some(KNOWN_NEUTRON),
                "binding" => Some(KNOWN_BINDING),
                "sriov" => Some(KNOWN_SRIOV),
                _ => None,
            };
            let Some(known) = known else {
                warnings.push(format!("{file}: unknown section [{sec}] ignored"));
                continue;
            };
            let entry = sections.entry(sec.to_string()).or_default();
            for (k, v) in props.iter() {
                let key = k.trim().replace('-', "_");
                if !known.contains(&key.as_str()) {
                    warnings.push(format!("{file}: unknown option [{sec}] {key} ignored"));
                }
                entry.insert(key, v.trim().to_string());
            }
        }
        let neutron = sections.entry("neutron".to_string()).or_default();
        let has_own = ["auth_type", "auth_plugin", "endpoint", "auth_url"]
            .iter()
            .any(|k| neutron.contains_key(*k));
        if !has_own {
            let (opts, source) =
                clouds::neutron_options(env).map_err(|message| ConfigError::Invalid {
                    file: file.into(),
                    message,
                })?;
            if !opts.is_empty() {
                warnings.push(format!(
                    "{file}: [neutron] has no credentials; using {source}"
                ));
                for (k, v) in opts {
                    neutron.entry(k).or_insert(v);
                }
            }
        }
        let r = Reader {
            file: file.to_string(),
            sections,
            warnings: &mut warnings,
        };
        let config = Self::from_reader(&r)?;
        let _ = r.warnings;
        Ok(Loaded { config, warnings })
    }

    fn from_reader(r: &Reader<'_>) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        const D: &str = "DEFAULT";
        if let Some(v) = r.get(D, "bindir") {
            c.bindir = PathBuf::from(v);
        }
        r.string(D, "subnetpool_name_prefix", &mut c.subnetpool_name_prefix);
        if c.subnetpool_name_prefix.is_empty() {
            return Err(r.err(D, "subnetpool_name_prefix", "", "a non-empty name prefix"));
        }
        if let Some(v) = r.get(D, "kuryr_uri") {
            parse_listen_uri(v)
                .ok_or_else(|| r.err(D, "kuryr_uri", v, "a URL like http://127.0.0.1:23750"))?;
            c.kuryr_uri = v.to_string();
            c.tcp_configured = true;
        }
        if let Some(v) = r.get(D, "unix_socket") {
            c.unix_socket = if v.is_empty() {
                None
            } else {
                Some(PathBuf::from(v))
            };
        }
        if let Some(v) = r.get(D, "capability_scope") {
            c.capability_scope = match v {
                "local" => Scope::Local,
                "global" => Scope::Global,
                _ => return Err(r.err(D, "capability_scope", v, "one of: local, global")),
            };
        }
        r.string(
            D,
            "local_default_address_space",
            &mut c.local_default_address_space,
        );
        r.string(
            D,
            "global_default_address_space",
            &mut c.global_default_address_space,
        );
        const PORT_DRIVERS: &[&str] = &["veth", "nested", "vlan", "sriov"];
        if let Some(v) = r.get(D, "default_port_driver") {
            let short = driver_short_name(v);
            if !PORT_DRIVERS.contains(&short.as_str()) {
                return Err(r.err(
                    D,
                    "default_port_driver",
                    v,
                    "one of: veth, nested, vlan, sriov (or kuryr_libnetwork.port_driver.drivers.<name>)",
                ));
            }
            c.default_port_driver = short;
        }
        if let Some(list) = r.list(D, "enabled_port_drivers") {
            c.enabled_port_drivers = list.iter().map(|s| driver_short_name(s)).collect();
            for d in &c.enabled_port_drivers {
                if !PORT_DRIVERS.contains(&d.as_str()) {
                    return Err(r.err(
                        D,
                        "enabled_port_drivers",
                        d,
                        "a list of: veth, nested, vlan, sriov",
                    ));
                }
            }
        }
        if !c.enabled_port_drivers.contains(&c.default_port_driver) {
            return Err(ConfigError::Invalid {
                file: r.file.clone(),
                message: format!(
                    "[DEFAULT] default_port_driver {} is not in enabled_port_drivers ({})",
                    c.default_port_driver,
                    c.enabled_port_drivers.join(", ")
                ),
            });
        }
        r.bool(
            D,
            "process_external_connectivity",
            &mut c.process_external_connectivity,
        )?;
        r.bool(D, "enable_ssl", &mut c.enable_ssl)?;
        if let Some(v) = r.get(D, "ssl_cert_file") {
            c.ssl_cert_file = PathBuf::from(v);
        }
        if let Some(v) = r.get(D, "ssl_key_file") {
            c.ssl_key_file = PathBuf::from(v);
        }
        if let Some(v) = r.get(D, "ssl_ca_file") {
            c.ssl_ca_file = (!v.is_empty()).then(|| PathBuf::from(v));
        }
        if let Some(v) = r.get(D, "metrics_listen") {
            if !v.is_empty() {
                c.metrics_listen = Some(v.parse().map_err(|_| {
                    r.err(
                        D,
                        "metrics_listen",
                        v,
                        "an address and port, e.g. 127.0.0.1:9309",
                    )
                })?);
            }
        }
        r.bool(D, "reconcile_on_start", &mut c.reconcile_on_start)?;
        if let Some(n) = r.uint(D, "port_pool_size")? {
            if n > 100 {
                return Err(r.err(
                    D,
                    "port_pool_size",
                    &n.to_string(),
                    "0 to 100 ports per subnet",
                ));
            }
            c.port_pool_size = n as usize;
        }
        if let Some(v) = r.get(D, "host") {
            if v.is_empty() || v.len() > 255 || v.chars().any(|ch| ch.is_whitespace()) {
                return Err(r.err(D, "host", v, "a host name without spaces"));
            }
            c.host = v.to_string();
        }
        r.bool(D, "debug", &mut c.debug)?;

        // [neutron]
        const N: &str = "neutron";
        let n = &mut c.neutron;
        let auth = r.get(N, "auth_type").or_else(|| r.get(N, "auth_plugin"));
        n.auth_type =
            match auth {
                None | Some("") | Some("none") | Some("noauth") => AuthType::None,
                Some("password") | Some("v3password") => AuthType::Password,
                Some("token") | Some("v3token") => AuthType::Token,
                Some("v3applicationcredential") | Some("applicationcredential") => {
                    AuthType::ApplicationCredential
                }
                Some(v) => return Err(r.err(
                    N,
                    "auth_type",
                    v,
                    "one of: none, password, v3password, token, v3token, v3applicationcredential",
                )),
            };
        r.opt_string(N, &["auth_url"], &mut n.auth_url);
        r.opt_string(N, &["endpoint"], &mut n.endpoint);
        r.opt_string(N, &["username", "user_name"], &mut n.username);
        r.opt_string(N, &["user_id"], &mut n.user_id);
        if let Some(v) = r.get(N, "password") {
            n.password = Secret::new(v);
        }
        r.opt_string(
            N,
            &["user_domain_name", "default_domain_name", "domain_name"],
            &mut n.user_domain_name,
        );
        r.opt_string(
            N,
            &["user_domain_id", "default_domain_id", "domain_id"],
            &mut n.user_domain_id,
        );
        r.opt_string(N, &["project_name", "tenant_name"], &mut n.project_name);
        r.opt_string(N, &["project_id", "tenant_id"], &mut n.project_id);
        r.opt_string(
            N,
            &["project_domain_name", "default_domain_name"],
            &mut n.project_domain_name,
        );
        r.opt_string(
            N,
            &["project_domain_id", "default_domain_id"],
            &mut n.project_domain_id,
        );
        if let Some(v) = r.get(N, "token") {
            n.token = Secret::new(v);
        }
        r.opt_string(
            N,
            &["application_credential_id"],
            &mut n.application_credential_id,
        );
        r.opt_string(
            N,
            &["application_credential_name"],
            &mut n.application_credential_name,
        );
        if let Some(v) = r.get(N, "application_credential_secret") {
            n.application_credential_secret = Secret::new(v);
        }
        r.opt_string(N, &["region_name"], &mut n.region_name);
        if let Some(v) = r.get(N, "endpoint_type") {
            let v = v.trim_end_matches("URL");
            if !matches!(v, "public" | "internal" | "admin") {
                return Err(r.err(N, "endpoint_type", v, "one of: public, internal, admin"));
            }
            n.endpoint_type = v.to_string();
        }
        for (opt, target) in [
            ("cafile", &mut n.cafile),
            ("certfile", &mut n.certfile),
            ("keyfile", &mut n.keyfile),
        ] {
            if let Some(v) = r.get(N, opt) {
                *target = if v.is_empty() {
                    None
                } else {
                    Some(PathBuf::from(v))
                };
            }
        }
        r.bool(N, "insecure", &mut n.insecure)?;
        if let Some(v) = r.get(N, "timeout") {
            if !v.is_empty() {
                let secs: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0 && *s < 86_400.0)
                    .ok_or_else(|| r.err(N, "timeout", v, "a positive number of seconds"))?;
                n.timeout = Duration::from_secs_f64(secs);
            }
        }
        r.bool(N, "enable_dhcp", &mut n.enable_dhcp)?;
        r.string(N, "default_subnetpool_v4", &mut n.default_subnetpool_v4);
        r.string(N, "default_subnetpool_v6", &mut n.default_subnetpool_v6);
        r.bool(N, "vif_plugging_is_fatal", &mut n.vif_plugging_is_fatal)?;
        if let Some(t) = r.uint(N, "vif_plugging_timeout")? {
            n.vif_plugging_timeout = t;
        }
        match n.auth_type {
            AuthType::None => {
                let Some(ep) = &n.endpoint else {
                    return Err(ConfigError::Invalid {
                        file: r.file.clone(),
                        message: "[neutron] auth_type = none needs `endpoint` (Neutron's URL, e.g. http://127.0.0.1:9696)".into(),
                    });
                };
                if !(ep.starts_with("http://") || ep.starts_with("https://")) {
                    return Err(r.err(N, "endpoint", ep, "an http:// or https:// URL"));
                }
            }
            _ => {
                let Some(url) = &n.auth_url else {
                    return Err(ConfigError::Invalid {
                        file: r.file.clone(),
                        message: "[neutron] Keystone authentication needs `auth_url`".into(),
                    });
                };
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(r.err(N, "auth_url", url, "an http:// or https:// URL"));
                }
            }
        }
        if n.auth_type == AuthType::Password && n.password.is_empty() {
            return Err(ConfigError::Invalid {
                file: r.file.clone(),
                message: "[neutron] auth_type = password needs `password`".into(),
            });
        }

        // [binding]
        const B: &str = "binding";
        r.string(B, "veth_dst_prefix", &mut c.binding.veth_dst_prefix);
        if c.binding.veth_dst_prefix.is_empty()
            || c.binding.veth_dst_prefix.len() > 10
            || !c
                .binding
                .veth_dst_prefix
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        {
            return Err(r.err(
                B,
                "veth_dst_prefix",
                &c.binding.veth_dst_prefix,
                "1 to 10 letters, digits or _",
            ));
        }
        if let Some(v) = r.get(B, "default_driver").or_else(|| r.get(B, "driver")) {
            c.binding.default_driver = driver_short_name(v);
        }
        if let Some(list) = r.list(B, "enabled_drivers") {
            c.binding.enabled_drivers = list.iter().map(|s| driver_short_name(s)).collect();
        }
        let mut link = None;
        r.opt_string(B, &["link_iface"], &mut link);
        c.binding.link_iface = link;
        if let Some(list) = r.list("sriov", "physical_device_mappings") {
            for entry in list {
                let pair = entry
                    .split_once(':')
                    .map(|(n, d)| (n.trim().to_string(), d.trim().to_string()))
                    .filter(|(n, d)| {
                        !n.is_empty() && crate::protocol::validate::ifname("PF", d).is_ok()
                    });
                let Some(pair) = pair else {
                    return Err(r.err(
                        "sriov",
                        "physical_device_mappings",
                        &entry,
                        "a list of <physical network>:<PF interface>",
                    ));
                };
                c.binding.sriov_device_mappings.push(pair);
            }
        }
        Ok(c)
    }
}

/// Host and port from `kuryr_uri` (`http://host:port`, `https://host:port`, `tcp://...`).
pub fn parse_listen_uri(uri: &str) -> Option<(String, u16)> {
    let rest = uri
        .strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"))
        .or_else(|| uri.strip_prefix("tcp://"))?;
    let hostport = rest.split('/').next()?;
    let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
        let (h, p) = h.split_once("]:")?;
        (h.to_string(), p)
    } else {
        let (h, p) = hostport.rsplit_once(':')?;
        (h.to_string(), p)
    };
    let port: u16 = port.parse().ok()?;
    if host.is_empty() || port == 0 {
        return None;
    }
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Loaded, ConfigError> {
        Config::parse("kuryr.conf", text)
    }

    #[test]
    fn defaults_match_reference() {
        let l = parse("[neutron]\nendpoint = http://127.0.0.1:9696\n").unwrap();
        let c = l.config;
        assert_eq!(c.bindir, PathBuf::from("/usr/libexec/kuryr"));
        assert_eq!(c.subnetpool_name_prefix, "kuryrPool");
        assert_eq!(c.kuryr_uri, "http://127.0.0.1:23750");
        assert!(!c.tcp_configured);
        assert_eq!(c.capability_scope, Scope::Local);
        assert_eq!(c.local_default_address_space, "no_address_space");
        assert_eq!(c.neutron.default_subnetpool_v4, "kuryr");
        assert_eq!(c.neutron.default_subnetpool_v6, "kuryr6");
        assert_eq!(c.binding.veth_dst_prefix, "eth");
        assert!(c.process_external_connectivity);
        assert!(c.neutron.enable_dhcp);
        assert!(!c.neutron.vif_plugging_is_fatal);
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    }

    #[test]
    fn reference_module_paths_are_accepted() {
        let l = parse(
            "[DEFAULT]\ndefault_port_driver = kuryr_libnetwork.port_driver.drivers.veth\n\
             enabled_port_drivers = kuryr_libnetwork.port_driver.drivers.veth, kuryr_libnetwork.port_driver.drivers.nested\n\
             capability_scope = global\nkuryr_uri = http://0.0.0.0:2377\n\
             [binding]\ndriver = kuryr.lib.binding.drivers.macvlan\nlink_iface = eth0\n\
             [neutron]\nauth_type = v3password\nauth_url = http://ks:5000/v3\nusername = admin\npassword = s3cret\nproject_name = admin\n",
        )
        .unwrap();
        let c = l.config;
        assert_eq!(c.default_port_driver, "veth");
        assert_eq!(c.enabled_port_drivers, vec!["veth", "nested"]);
        assert_eq!(c.capability_scope, Scope::Global);
        assert!(c.tcp_configured);
        assert_eq!(c.binding.default_driver, "macvlan");
        assert_eq!(c.binding.link_iface.as_deref(), Some("eth0"));
        assert_eq!(c.neutron.auth_type, AuthType::Password);
        assert_eq!(c.neutron.password.expose(), "s3cret");
    }

    #[test]
    fn bad_value_names_file_section_option() {
        let e = parse("[neutron]\nendpoint = http://x:1\nvif_plugging_is_fatal = maybe\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("kuryr.conf"), "{e}");
        assert!(e.contains("[neutron] vif_plugging_is_fatal"), "{e}");
        assert!(e.contains("boolean"), "{e}");
    }

    #[test]
    fn bad_scope_and_timeout_rejected() {
        assert!(
            parse("[DEFAULT]\ncapability_scope = galaxy\n[neutron]\nendpoint = http://x:1\n")
                .is_err()
        );
        assert!(parse("[neutron]\nendpoint = http://x:1\nvif_plugging_timeout = -3\n").is_err());
        assert!(parse("[neutron]\nendpoint = http://x:1\ntimeout = abc\n").is_err());
        assert!(
            parse("[DEFAULT]\nkuryr_uri = 127.0.0.1\n[neutron]\nendpoint = http://x:1\n").is_err()
        );
    }

    #[test]
    fn unknown_options_warn_not_fail() {
        let l =
            parse("[DEFAULT]\nfrobnicate = 1\n[neutron]\nendpoint = http://x:1\n[weird]\na = b\n")
                .unwrap();
        assert_eq!(l.warnings.len(), 2, "{:?}", l.warnings);
        assert!(l.warnings[0].contains("frobnicate"));
    }

    #[test]
    fn sriov_device_mappings_are_pairs_of_physnet_and_pf() {
        let c = parse("[neutron]\nendpoint = http://x:1\n[sriov]\nphysical_device_mappings = physnet1:ens1f0, physnet1:ens1f1,physnet2:ens2f0\n")
            .unwrap()
            .config;
        assert_eq!(
            c.binding.sriov_device_mappings,
            vec![
                ("physnet1".to_string(), "ens1f0".to_string()),
                ("physnet1".to_string(), "ens1f1".to_string()),
                ("physnet2".to_string(), "ens2f0".to_string()),
            ]
        );
        for bad in ["ens1f0", ":ens1f0", "physnet1:", "physnet1:../x"] {
            let e = parse(&format!(
                "[neutron]\nendpoint = http://x:1\n[sriov]\nphysical_device_mappings = {bad}\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(e.contains("physical_device_mappings"), "{bad}: {e}");
        }
    }

    #[test]
    fn secrets_never_in_errors_or_debug() {
        let l = parse(
            "[neutron]\nauth_type = password\nauth_url = http://k:5000/v3\npassword = hunter2\n",
        )
        .unwrap();
        assert!(!format!("{:?}", l.config).contains("hunter2"));
        let e = parse("[neutron]\nauth_type = password\nauth_url = nope\npassword = hunter2\n")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn missing_endpoint_for_noauth_is_explained() {
        let e = parse("[DEFAULT]\n").unwrap_err().to_string();
        assert!(e.contains("endpoint"), "{e}");
    }

    #[test]
    fn listen_uri_forms() {
        assert_eq!(
            parse_listen_uri("http://127.0.0.1:23750"),
            Some(("127.0.0.1".into(), 23750))
        );
        assert_eq!(
            parse_listen_uri("https://[::1]:8443/"),
            Some(("::1".into(), 8443))
        );
        assert_eq!(parse_listen_uri("unix:///x"), None);
        assert_eq!(parse_listen_uri("http://h:0"), None);
    }
}
