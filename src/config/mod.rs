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
mod options;

/// Default location of the plugin socket: Docker discovers `kuryr` here.
pub const DEFAULT_UNIX_SOCKET: &str = "/run/docker/plugins/kuryr.sock";
/// Where `kuryr-cni` reaches the daemon (the CNI config's `socket` when elsewhere).
pub const DEFAULT_CNI_SOCKET: &str = crate::cni::spec::DEFAULT_SOCKET;
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

/// A port driver, named in kuryr.conf by its short name or the reference's module path
/// (`kuryr_libnetwork.port_driver.drivers.<name>`); parsed once, when the file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortDriverName {
    Veth,
    Nested,
    Vlan,
    Sriov,
}

impl std::str::FromStr for PortDriverName {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match driver_short_name(s).as_str() {
            "veth" => Ok(PortDriverName::Veth),
            "nested" => Ok(PortDriverName::Nested),
            "vlan" => Ok(PortDriverName::Vlan),
            "sriov" => Ok(PortDriverName::Sriov),
            _ => Err(()),
        }
    }
}

impl fmt::Display for PortDriverName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PortDriverName::Veth => "veth",
            PortDriverName::Nested => "nested",
            PortDriverName::Vlan => "vlan",
            PortDriverName::Sriov => "sriov",
        })
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
    /// The CNI API's socket (`kuryr-cni`); None: no CNI front-end.
    pub cni_socket: Option<PathBuf>,
    /// Podman's network store (`network_config_dir`), where `kuryr gc` learns which
    /// Podman networks of driver kuryr still exist; None: not looked at.
    pub netavark_network_dir: Option<PathBuf>,
    pub capability_scope: Scope,
    pub local_default_address_space: String,
    pub global_default_address_space: String,
    pub default_port_driver: PortDriverName,
    pub enabled_port_drivers: Vec<PortDriverName>,
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
    /// What reconcile leaves alone: created or changed this recently (Docker may be
    /// creating it), as `kuryr gc --grace-seconds`.
    pub reconcile_grace: std::time::Duration,
    /// Ports kept ready per kuryr network (0 = no pool): the pool's floor.
    pub port_pool_size: usize,
    /// How far a network's pool grows when starts outrun it (unset: 4 x the floor, at
    /// most 100); it shrinks back to the floor once the bursts stop.
    pub port_pool_max: Option<usize>,
    /// Name used as `binding:host_id`; must match the L2 agent's `host`.
    pub host: String,
    /// Whether kuryr.conf set `host`; when it did not, commands may take the name this
    /// host's OVN chassis registered (`commands::resolve_host`).
    pub host_set: bool,
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
            cni_socket: Some(PathBuf::from(DEFAULT_CNI_SOCKET)),
            netavark_network_dir: Some(PathBuf::from("/etc/containers/networks")),
            capability_scope: Scope::Local,
            local_default_address_space: "no_address_space".into(),
            global_default_address_space: "no_address_space".into(),
            default_port_driver: PortDriverName::Veth,
            enabled_port_drivers: vec![PortDriverName::Veth],
            process_external_connectivity: true,
            enable_ssl: false,
            ssl_cert_file: PathBuf::from("/var/lib/kuryr/certs/cert.pem"),
            ssl_key_file: PathBuf::from("/var/lib/kuryr/certs/key.pem"),
            ssl_ca_file: None,
            metrics_listen: None,
            reconcile_on_start: false,
            reconcile_grace: std::time::Duration::from_secs(600),
            port_pool_size: 0,
            port_pool_max: None,
            host: hostname(),
            host_set: false,
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

pub use options::{known_options, option_table, OptionInfo};

/// The parsed file plus what deserves a warning.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
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
    /// The most ports a network's pool grows to under bursts: `port_pool_max`, else four
    /// times `port_pool_size` (at most 100).
    pub fn port_pool_ceiling(&self) -> usize {
        self.port_pool_max
            .unwrap_or_else(|| (self.port_pool_size * 4).min(100).max(self.port_pool_size))
    }

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
            if !options::is_section(sec) {
                warnings.push(format!("{file}: unknown section [{sec}] ignored"));
                continue;
            }
            let known = options::known_options(sec);
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
        let mut config = Config::default();
        let get = |section: &str, option: &str| sections.get(section)?.get(option).cloned();
        options::apply(&mut config, file, &get)?;
        config.check(file)?;
        Ok(Loaded { config, warnings })
    }

    /// What no single option can say: options that must go together.
    fn check(&self, file: &str) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            file: file.into(),
            message,
        };
        if !self
            .enabled_port_drivers
            .contains(&self.default_port_driver)
        {
            return Err(invalid(format!(
                "[DEFAULT] default_port_driver {} is not in enabled_port_drivers ({})",
                self.default_port_driver,
                self.enabled_port_drivers
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if let Some(max) = self.port_pool_max {
            if max < self.port_pool_size {
                return Err(invalid(format!(
                    "[DEFAULT] port_pool_max ({max}) is below port_pool_size ({})",
                    self.port_pool_size
                )));
            }
        }
        let n = &self.neutron;
        let url = |option: &str, v: &str| {
            if v.starts_with("http://") || v.starts_with("https://") {
                Ok(())
            } else {
                Err(ConfigError::Value {
                    file: file.into(),
                    section: "neutron".into(),
                    option: option.into(),
                    value: v.into(),
                    expected: "an http:// or https:// URL".into(),
                })
            }
        };
        match (&n.auth_type, &n.endpoint, &n.auth_url) {
            (AuthType::None, None, _) => return Err(invalid(
                "[neutron] auth_type = none needs `endpoint` (Neutron's URL, e.g. http://127.0.0.1:9696)".into(),
            )),
            (AuthType::None, Some(ep), _) => url("endpoint", ep)?,
            (_, _, None) => {
                return Err(invalid("[neutron] Keystone authentication needs `auth_url`".into()))
            }
            (_, _, Some(u)) => url("auth_url", u)?,
        }
        if n.auth_type == AuthType::Password && n.password.is_empty() {
            return Err(invalid(
                "[neutron] auth_type = password needs `password`".into(),
            ));
        }
        Ok(())
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
        assert_eq!(c.default_port_driver, PortDriverName::Veth);
        assert_eq!(
            c.enabled_port_drivers,
            vec![PortDriverName::Veth, PortDriverName::Nested]
        );
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
    fn the_port_pool_grows_to_four_times_its_floor_unless_told() {
        let ceiling = |text: &str| parse(text).map(|l| l.config.port_pool_ceiling());
        let n = "[neutron]\nendpoint = http://x:1\n";
        assert_eq!(
            ceiling(&format!("[DEFAULT]\nport_pool_size = 10\n{n}")).ok(),
            Some(40)
        );
        assert_eq!(
            ceiling(&format!("[DEFAULT]\nport_pool_size = 40\n{n}")).ok(),
            Some(100)
        );
        let told = format!("[DEFAULT]\nport_pool_size = 10\nport_pool_max = 10\n{n}");
        assert_eq!(ceiling(&told).ok(), Some(10));
        let below = format!("[DEFAULT]\nport_pool_size = 10\nport_pool_max = 5\n{n}");
        let e = parse(&below)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("port_pool_max (5) is below port_pool_size (10)"),
            "{e}"
        );
        let over = format!("[DEFAULT]\nport_pool_max = 101\n{n}");
        assert!(parse(&over).is_err());
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
