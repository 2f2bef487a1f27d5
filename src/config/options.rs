//! The one table of kuryr.conf options: section, names (the first is the name
//! etc/kuryr.conf.sample documents, the others the reference's aliases) and what each sets.
//! Parsing, the defaults' overrides, the known-option list behind the "unknown option"
//! warning and the sample-file check all read this table, so they cannot drift apart.

use std::path::PathBuf;
use std::time::Duration;

use super::{
    driver_short_name, parse_bool, parse_listen_uri, AuthType, Config, ConfigError, PortDriverName,
    Scope, Secret,
};

/// Sets the config from one option's value.
type Setter = fn(&mut Config, &Value<'_>) -> Result<(), ConfigError>;

/// One option.
pub(super) struct Opt {
    pub section: &'static str,
    pub names: &'static [&'static str],
    /// None: accepted for compatibility, no effect here.
    pub set: Option<Setter>,
}

/// The value of one option as the file gives it, with what an error needs to name it.
pub(super) struct Value<'a> {
    pub file: &'a str,
    pub section: &'a str,
    pub name: &'a str,
    pub text: &'a str,
}

impl Value<'_> {
    pub fn err(&self, expected: &str) -> ConfigError {
        self.err_on(self.text, expected)
    }

    pub fn err_on(&self, value: &str, expected: &str) -> ConfigError {
        ConfigError::Value {
            file: self.file.into(),
            section: self.section.into(),
            option: self.name.into(),
            // Never echo a secret back in an error message.
            value: if is_secret_option(self.name) {
                "***".into()
            } else {
                value.into()
            },
            expected: expected.into(),
        }
    }

    fn string(&self) -> String {
        self.text.to_string()
    }

    /// Empty means "not set".
    fn opt_string(&self) -> Option<String> {
        (!self.text.is_empty()).then(|| self.text.to_string())
    }

    fn opt_path(&self) -> Option<PathBuf> {
        self.opt_string().map(PathBuf::from)
    }

    fn bool(&self) -> Result<bool, ConfigError> {
        parse_bool(self.text).ok_or_else(|| self.err("a boolean (true/false, yes/no, on/off, 1/0)"))
    }

    /// Empty means "not set".
    fn uint(&self) -> Result<Option<u64>, ConfigError> {
        if self.text.is_empty() {
            return Ok(None);
        }
        self.text
            .parse::<u64>()
            .map(Some)
            .map_err(|_| self.err("a non-negative integer"))
    }

    /// oslo's list form: `a, b` or `[a, b]`.
    fn list(&self) -> Vec<String> {
        self.text
            .trim_matches(|c| c == '[' || c == ']')
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }
}

pub(super) fn is_secret_option(option: &str) -> bool {
    matches!(
        option,
        "password" | "token" | "application_credential_secret"
    )
}

macro_rules! opt {
    ($section:literal, [$($name:literal),+]) => {
        Opt { section: $section, names: &[$($name),+], set: None }
    };
    ($section:literal, [$($name:literal),+], $set:expr) => {
        Opt { section: $section, names: &[$($name),+], set: Some($set) }
    };
}

fn port_driver(v: &Value<'_>, name: &str) -> Result<PortDriverName, ConfigError> {
    name.parse().map_err(|_| {
        v.err_on(
            name,
            "one of: veth, nested, vlan, sriov (or kuryr_libnetwork.port_driver.drivers.<name>)",
        )
    })
}

pub(super) const OPTIONS: &[Opt] = &[
    // [DEFAULT]
    opt!("DEFAULT", ["bindir"], |c, v| {
        c.bindir = PathBuf::from(v.text);
        Ok(())
    }),
    opt!("DEFAULT", ["subnetpool_name_prefix"], |c, v| {
        if v.text.is_empty() {
            return Err(v.err("a non-empty name prefix"));
        }
        c.subnetpool_name_prefix = v.string();
        Ok(())
    }),
    opt!("DEFAULT", ["deployment_type"]),
    opt!("DEFAULT", ["kuryr_uri"], |c, v| {
        parse_listen_uri(v.text).ok_or_else(|| v.err("a URL like http://127.0.0.1:23750"))?;
        c.kuryr_uri = v.string();
        c.tcp_configured = true;
        Ok(())
    }),
    opt!("DEFAULT", ["capability_scope"], |c, v| {
        c.capability_scope = match v.text {
            "local" => Scope::Local,
            "global" => Scope::Global,
            _ => return Err(v.err("one of: local, global")),
        };
        Ok(())
    }),
    opt!("DEFAULT", ["local_default_address_space"], |c, v| {
        c.local_default_address_space = v.string();
        Ok(())
    }),
    opt!("DEFAULT", ["global_default_address_space"], |c, v| {
        c.global_default_address_space = v.string();
        Ok(())
    }),
    opt!("DEFAULT", ["default_port_driver"], |c, v| {
        c.default_port_driver = port_driver(v, v.text)?;
        Ok(())
    }),
    opt!("DEFAULT", ["enabled_port_drivers"], |c, v| {
        c.enabled_port_drivers = v
            .list()
            .iter()
            .map(|d| port_driver(v, d))
            .collect::<Result<_, _>>()?;
        Ok(())
    }),
    opt!("DEFAULT", ["port_driver"]),
    opt!("DEFAULT", ["process_external_connectivity"], |c, v| {
        c.process_external_connectivity = v.bool()?;
        Ok(())
    }),
    opt!("DEFAULT", ["enable_ssl"], |c, v| {
        c.enable_ssl = v.bool()?;
        Ok(())
    }),
    opt!("DEFAULT", ["ssl_cert_file"], |c, v| {
        c.ssl_cert_file = PathBuf::from(v.text);
        Ok(())
    }),
    opt!("DEFAULT", ["ssl_key_file"], |c, v| {
        c.ssl_key_file = PathBuf::from(v.text);
        Ok(())
    }),
    opt!("DEFAULT", ["ssl_ca_file"], |c, v| {
        c.ssl_ca_file = v.opt_path();
        Ok(())
    }),
    opt!("DEFAULT", ["metrics_listen"], |c, v| {
        c.metrics_listen = match v.text {
            "" => None,
            t => Some(
                t.parse()
                    .map_err(|_| v.err("an address and port, e.g. 127.0.0.1:9309"))?,
            ),
        };
        Ok(())
    }),
    opt!("DEFAULT", ["reconcile_on_start"], |c, v| {
        c.reconcile_on_start = v.bool()?;
        Ok(())
    }),
    opt!("DEFAULT", ["reconcile_grace_seconds"], |c, v| {
        if let Some(n) = v.uint()? {
            c.reconcile_grace = std::time::Duration::from_secs(n);
        }
        Ok(())
    }),
    opt!("DEFAULT", ["port_pool_size"], |c, v| {
        if let Some(n) = v.uint()? {
            if n > 100 {
                return Err(v.err("0 to 100 ports per subnet"));
            }
            c.port_pool_size = n as usize;
        }
        Ok(())
    }),
    opt!("DEFAULT", ["port_pool_max"], |c, v| {
        if let Some(n) = v.uint()? {
            if n > 100 {
                return Err(v.err("0 to 100 ports per subnet"));
            }
            c.port_pool_max = Some(n as usize);
        }
        Ok(())
    }),
    opt!("DEFAULT", ["pybasedir"]),
    opt!("DEFAULT", ["host"], |c, v| {
        let t = v.text;
        if t.is_empty() || t.len() > 255 || t.chars().any(char::is_whitespace) {
            return Err(v.err("a host name without spaces"));
        }
        c.host = v.string();
        c.host_set = true;
        Ok(())
    }),
    opt!("DEFAULT", ["cni_socket"], |c, v| {
        c.cni_socket = v.opt_path();
        Ok(())
    }),
    opt!("DEFAULT", ["netavark_network_dir"], |c, v| {
        c.netavark_network_dir = v.opt_path();
        Ok(())
    }),
    opt!("DEFAULT", ["unix_socket"], |c, v| {
        c.unix_socket = v.opt_path();
        Ok(())
    }),
    // oslo.log options: accepted, only `debug` has an effect here.
    opt!("DEFAULT", ["debug"], |c, v| {
        c.debug = v.bool()?;
        Ok(())
    }),
    opt!("DEFAULT", ["verbose"]),
    opt!("DEFAULT", ["log_file"]),
    opt!("DEFAULT", ["log_dir"]),
    opt!("DEFAULT", ["use_syslog"]),
    opt!("DEFAULT", ["use_stderr"]),
    opt!("DEFAULT", ["log_config_append"]),
    opt!("DEFAULT", ["log_date_format"]),
    opt!("DEFAULT", ["logging_context_format_string"]),
    opt!("DEFAULT", ["default_log_levels"]),
    opt!("DEFAULT", ["use_journal"]),
    opt!("DEFAULT", ["use_json"]),
    // [neutron]
    opt!("neutron", ["auth_type", "auth_plugin"], |c, v| {
        c.neutron.auth_type = match v.text {
            "" | "none" | "noauth" => AuthType::None,
            "password" | "v3password" => AuthType::Password,
            "token" | "v3token" => AuthType::Token,
            "v3applicationcredential" | "applicationcredential" => AuthType::ApplicationCredential,
            _ => {
                return Err(v.err(
                    "one of: none, password, v3password, token, v3token, v3applicationcredential",
                ))
            }
        };
        Ok(())
    }),
    opt!("neutron", ["auth_section"]),
    opt!("neutron", ["auth_url"], |c, v| {
        c.neutron.auth_url = v.opt_string();
        Ok(())
    }),
    opt!("neutron", ["endpoint"], |c, v| {
        c.neutron.endpoint = v.opt_string();
        Ok(())
    }),
    opt!("neutron", ["username", "user_name"], |c, v| {
        c.neutron.username = v.opt_string();
        Ok(())
    }),
    opt!("neutron", ["user_id"], |c, v| {
        c.neutron.user_id = v.opt_string();
        Ok(())
    }),
    opt!("neutron", ["password"], |c, v| {
        c.neutron.password = Secret::new(v.text);
        Ok(())
    }),
    opt!(
        "neutron",
        ["user_domain_name", "default_domain_name", "domain_name"],
        |c, v| {
            c.neutron.user_domain_name = v.opt_string();
            Ok(())
        }
    ),
    opt!(
        "neutron",
        ["user_domain_id", "default_domain_id", "domain_id"],
        |c, v| {
            c.neutron.user_domain_id = v.opt_string();
            Ok(())
        }
    ),
    opt!("neutron", ["project_name", "tenant_name"], |c, v| {
        c.neutron.project_name = v.opt_string();
        Ok(())
    }),
    opt!("neutron", ["project_id", "tenant_id"], |c, v| {
        c.neutron.project_id = v.opt_string();
        Ok(())
    }),
    opt!(
        "neutron",
        ["project_domain_name", "default_domain_name"],
        |c, v| {
            c.neutron.project_domain_name = v.opt_string();
            Ok(())
        }
    ),
    opt!(
        "neutron",
        ["project_domain_id", "default_domain_id"],
        |c, v| {
            c.neutron.project_domain_id = v.opt_string();
            Ok(())
        }
    ),
    opt!("neutron", ["system_scope"]),
    opt!("neutron", ["trust_id"]),
    opt!("neutron", ["token"], |c, v| {
        c.neutron.token = Secret::new(v.text);
        Ok(())
    }),
    opt!("neutron", ["application_credential_id"], |c, v| {
        c.neutron.application_credential_id = v.opt_string();
        Ok(())
    }),
    opt!("neutron", ["application_credential_name"], |c, v| {
        c.neutron.application_credential_name = v.opt_string();
        Ok(())
    }),
    opt!("neutron", ["application_credential_secret"], |c, v| {
        c.neutron.application_credential_secret = Secret::new(v.text);
        Ok(())
    }),
    opt!("neutron", ["region_name"], |c, v| {
        c.neutron.region_name = v.opt_string();
        Ok(())
    }),
    opt!("neutron", ["endpoint_type"], |c, v| {
        let t = v.text.trim_end_matches("URL");
        if !matches!(t, "public" | "internal" | "admin") {
            return Err(v.err_on(t, "one of: public, internal, admin"));
        }
        c.neutron.endpoint_type = t.to_string();
        Ok(())
    }),
    opt!("neutron", ["cafile"], |c, v| {
        c.neutron.cafile = v.opt_path();
        Ok(())
    }),
    opt!("neutron", ["certfile"], |c, v| {
        c.neutron.certfile = v.opt_path();
        Ok(())
    }),
    opt!("neutron", ["keyfile"], |c, v| {
        c.neutron.keyfile = v.opt_path();
        Ok(())
    }),
    opt!("neutron", ["insecure"], |c, v| {
        c.neutron.insecure = v.bool()?;
        Ok(())
    }),
    opt!("neutron", ["timeout"], |c, v| {
        if v.text.is_empty() {
            return Ok(());
        }
        let secs: f64 = v
            .text
            .parse()
            .ok()
            .filter(|s: &f64| s.is_finite() && *s > 0.0 && *s < 86_400.0)
            .ok_or_else(|| v.err("a positive number of seconds"))?;
        c.neutron.timeout = Duration::from_secs_f64(secs);
        Ok(())
    }),
    opt!("neutron", ["collect_timing"]),
    opt!("neutron", ["split_loggers"]),
    opt!("neutron", ["enable_dhcp"], |c, v| {
        c.neutron.enable_dhcp = v.bool()?;
        Ok(())
    }),
    opt!("neutron", ["default_subnetpool_v4"], |c, v| {
        c.neutron.default_subnetpool_v4 = v.string();
        Ok(())
    }),
    opt!("neutron", ["default_subnetpool_v6"], |c, v| {
        c.neutron.default_subnetpool_v6 = v.string();
        Ok(())
    }),
    opt!("neutron", ["vif_plugging_is_fatal"], |c, v| {
        c.neutron.vif_plugging_is_fatal = v.bool()?;
        Ok(())
    }),
    opt!("neutron", ["vif_plugging_timeout"], |c, v| {
        if let Some(t) = v.uint()? {
            c.neutron.vif_plugging_timeout = t;
        }
        Ok(())
    }),
    // [binding]
    opt!("binding", ["veth_dst_prefix"], |c, v| {
        let t = v.text;
        if t.is_empty()
            || t.len() > 10
            || !t.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        {
            return Err(v.err("1 to 10 letters, digits or _"));
        }
        c.binding.veth_dst_prefix = v.string();
        Ok(())
    }),
    opt!("binding", ["default_driver", "driver"], |c, v| {
        c.binding.default_driver = driver_short_name(v.text);
        Ok(())
    }),
    opt!("binding", ["enabled_drivers"], |c, v| {
        c.binding.enabled_drivers = v.list().iter().map(|s| driver_short_name(s)).collect();
        Ok(())
    }),
    opt!("binding", ["link_iface"], |c, v| {
        c.binding.link_iface = v.opt_string();
        Ok(())
    }),
    // [sriov]
    opt!("sriov", ["physical_device_mappings"], |c, v| {
        for entry in v.list() {
            let pair = entry
                .split_once(':')
                .map(|(n, d)| (n.trim().to_string(), d.trim().to_string()))
                .filter(|(n, d)| {
                    !n.is_empty() && crate::protocol::validate::ifname("PF", d).is_ok()
                });
            let Some(pair) = pair else {
                return Err(v.err_on(&entry, "a list of <physical network>:<PF interface>"));
            };
            c.binding.sriov_device_mappings.push(pair);
        }
        Ok(())
    }),
];

/// Sections the table knows.
pub(super) fn is_section(section: &str) -> bool {
    OPTIONS.iter().any(|o| o.section == section)
}

/// One option as documentation sees it (kuryr.conf(5), the configuration reference).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionInfo {
    pub section: &'static str,
    /// The name, then the reference's aliases.
    pub names: &'static [&'static str],
    /// False: accepted for compatibility with kuryr-libnetwork, no effect here.
    pub has_effect: bool,
}

/// The table, in its order (sections as kuryr.conf.sample has them).
pub fn option_table() -> Vec<OptionInfo> {
    OPTIONS
        .iter()
        .map(|o| OptionInfo {
            section: o.section,
            names: o.names,
            has_effect: o.set.is_some(),
        })
        .collect()
}

/// Every name (and alias) known in a section.
pub fn known_options(section: &str) -> Vec<&'static str> {
    OPTIONS
        .iter()
        .filter(|o| o.section == section)
        .flat_map(|o| o.names.iter().copied())
        .collect()
}

/// Applies every option the file sets: for each option the first of its names present.
pub(super) fn apply(
    c: &mut Config,
    file: &str,
    get: &dyn Fn(&str, &str) -> Option<String>,
) -> Result<(), ConfigError> {
    for o in OPTIONS {
        let Some(set) = o.set else { continue };
        let found = o
            .names
            .iter()
            .find_map(|n| get(o.section, n).map(|t| (*n, t)));
        if let Some((name, text)) = found {
            set(
                c,
                &Value {
                    file,
                    section: o.section,
                    name,
                    text: &text,
                },
            )?;
        }
    }
    Ok(())
}
