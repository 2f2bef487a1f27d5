//! One module per subcommand; `main` only parses arguments and dispatches.

pub mod cli;
pub mod doctor;
pub mod gc;
pub mod inspect;
pub mod serve;

use crate::config::Config;

/// Where the binding host name came from, for logs and `doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostSource {
    /// `[DEFAULT] host` in kuryr.conf.
    Config,
    /// The local Open vSwitch is an OVN chassis registered under this name
    /// (`external_ids:hostname`).
    OvnChassis,
    /// The kernel's host name.
    Kernel,
}

/// The binding host when kuryr.conf does not set `host`. ML2/OVN binds a port only to
/// the host name an alive chassis registered, which ovn-controller takes from
/// `external_ids:hostname` of the local Open vSwitch (deployment tools set it, often to
/// the FQDN) before the kernel's: so on a chassis that name is the one to use.
pub fn resolve_host(cfg: &mut Config) -> HostSource {
    if cfg.host_set {
        return HostSource::Config;
    }
    choose_host(cfg, crate::host::ovs::local_chassis())
}

fn choose_host(cfg: &mut Config, chassis: Option<crate::host::ovs::Chassis>) -> HostSource {
    match chassis.and_then(|c| c.hostname) {
        Some(h) if !h.chars().any(char::is_whitespace) => {
            cfg.host = h;
            HostSource::OvnChassis
        }
        _ => HostSource::Kernel,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::ovs::Chassis;

    fn chassis(hostname: Option<&str>) -> Option<Chassis> {
        Some(Chassis {
            name: "c".into(),
            hostname: hostname.map(Into::into),
            bridge: "br-int".into(),
        })
    }

    #[test]
    fn an_unset_host_is_the_chassis_name_and_a_set_one_wins() {
        let mut cfg = Config::default();
        let kernel = cfg.host.clone();
        assert_eq!(choose_host(&mut cfg, None), HostSource::Kernel);
        assert_eq!(cfg.host, kernel);
        assert_eq!(choose_host(&mut cfg, chassis(None)), HostSource::Kernel);
        assert_eq!(cfg.host, kernel);
        assert_eq!(
            choose_host(&mut cfg, chassis(Some("node1.example.org"))),
            HostSource::OvnChassis
        );
        assert_eq!(cfg.host, "node1.example.org");

        let mut set = Config::parse(
            "t",
            "[DEFAULT]\nhost = mine\n[neutron]\nendpoint = http://n\n",
        )
        .unwrap()
        .config;
        assert_eq!(resolve_host(&mut set), HostSource::Config);
        assert_eq!(set.host, "mine");
    }
}
