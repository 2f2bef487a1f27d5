//! `kuryr gc`: finds what kuryr left behind (a crash, a Docker that removed a network
//! whose deletion failed) and, with `--apply`, removes it. Only things this host owns are
//! touched: ports bound to this host, veths on this host.

mod finders;
mod podman;

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::config::Config;
use crate::docker::Docker;
use crate::host::{Plumber, Plumbing};
use crate::neutron::auth::parse_iso8601;
use crate::neutron::{
    FloatingIp, Network, NetworkId, Neutron, Port, PortBody, PortId, SecurityGroup, SubnetPool,
    SubnetPoolId, SubportAsk,
};
use finders::Finder;

/// Something to remove, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leak {
    Port {
        id: PortId,
        why: String,
    },
    Veth {
        name: String,
        why: String,
    },
    /// An OVS port kuryr plugged (`owner=kuryr`) whose device or Neutron port is gone.
    OvsPort {
        name: String,
        why: String,
    },
    SecurityGroup {
        id: String,
        why: String,
    },
    Network {
        id: NetworkId,
        why: String,
    },
    Pool {
        id: SubnetPoolId,
        why: String,
    },
    /// A nested container's address left in the VM port's allowed_address_pairs.
    VmPair {
        vm_port: PortId,
        ip: String,
        why: String,
    },
    /// A nested container's port left on the VM's trunk.
    Subport {
        trunk: String,
        port: String,
        why: String,
    },
    /// A floating IP kuryr allocated for an endpoint, left with no port.
    FloatingIp {
        id: String,
        why: String,
    },
}

impl std::fmt::Display for Leak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Leak::Port { id, why } => write!(f, "port {id}: {why}"),
            Leak::Veth { name, why } | Leak::OvsPort { name, why } => {
                write!(f, "host interface {name}: {why}")
            }
            Leak::SecurityGroup { id, why } => write!(f, "security group {id}: {why}"),
            Leak::Network { id, why } => write!(f, "network {id}: {why}"),
            Leak::Pool { id, why } => write!(f, "subnetpool {id}: {why}"),
            Leak::VmPair { vm_port, ip, why } => {
                write!(f, "allowed address pair {ip} of VM port {vm_port}: {why}")
            }
            Leak::Subport { trunk, port, why } => {
                write!(f, "subport {port} of trunk {trunk}: {why}")
            }
            Leak::FloatingIp { id, why } => write!(f, "floating IP {id}: {why}"),
        }
    }
}

pub struct Options {
    /// Where `kuryr gc` asks Docker for its view.
    pub docker_socket: std::path::PathBuf,
    /// Unbound ports and empty pools younger than this are left alone: a container or
    /// network may be starting right now.
    pub grace: Duration,
}

fn age(created_at: &Value) -> Option<Duration> {
    let t = parse_iso8601(created_at.as_str()?)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(now.saturating_sub(t)))
}

/// What Docker has now: its networks and their endpoints.
#[derive(Debug, Clone, Default)]
pub struct Live {
    pub networks: HashSet<String>,
    pub endpoints: HashSet<String>,
}

impl Live {
    /// Asks the Docker engine at `socket`.
    pub async fn from_docker(socket: &std::path::Path) -> Result<Live, String> {
        let nets = Docker::new(socket).networks().await?;
        Ok(Live {
            networks: nets.iter().map(|(id, _)| id.clone()).collect(),
            endpoints: nets.into_iter().flat_map(|(_, eps)| eps).collect(),
        })
    }
}

fn neutron_err(e: crate::neutron::NeutronError) -> String {
    e.to_string()
}

/// Finds leaked resources, judged against Docker's view `live`.
pub async fn find(
    cfg: &Config,
    neutron: &Neutron,
    host: &dyn Plumbing,
    live: &Live,
    opts: &Options,
) -> Result<Vec<Leak>, String> {
    let mut f = Finder {
        cfg,
        neutron,
        host,
        live,
        grace: opts.grace,
        doomed: HashSet::new(),
        leaks: Vec::new(),
    };
    f.bound_ports().await?;
    f.cni_attachments().await?;
    f.stray_reservations().await?;
    f.nested().await?;
    f.veths().await?;
    f.exposed_groups().await?;
    f.networks().await?;
    f.podman_networks().await?;
    f.pools().await?;
    f.floating_ips().await?;
    Ok(f.leaks)
}

/// Takes one address off the VM port's pairs, read fresh (the driver may be changing
/// them too; Neutron has no atomic update of one pair).
async fn remove_vm_pair(neutron: &Neutron, vm_port: &str, ip: &str) -> Result<(), String> {
    let vm: Port = neutron.get(vm_port).await.map_err(|e| e.to_string())?;
    let pairs: Vec<_> = vm
        .allowed_address_pairs
        .iter()
        .filter(|p| p.ip_address != ip)
        .cloned()
        .collect();
    if pairs.len() == vm.allowed_address_pairs.len() {
        return Ok(());
    }
    neutron
        .update::<Port>(
            vm_port,
            PortBody {
                allowed_address_pairs: Some(pairs),
                ..PortBody::default()
            },
        )
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Removes leaks; keeps going after a failure and reports every one.
pub async fn apply(neutron: &Neutron, host: &dyn Plumbing, leaks: &[Leak]) -> Vec<String> {
    let mut errors = Vec::new();
    // Order: a port comes off the VM port / trunk before it is deleted (Neutron refuses
    // to delete a subport); ports and groups before the networks and pools they keep busy.
    let rank = |l: &Leak| match l {
        Leak::Veth { .. } | Leak::OvsPort { .. } => 0,
        Leak::VmPair { .. } | Leak::Subport { .. } | Leak::FloatingIp { .. } => 1,
        Leak::Port { .. } => 2,
        Leak::SecurityGroup { .. } => 3,
        Leak::Network { .. } => 4,
        Leak::Pool { .. } => 5,
    };
    let mut sorted: Vec<&Leak> = leaks.iter().collect();
    sorted.sort_by_key(|l| rank(l));
    for l in sorted {
        let r = match l {
            Leak::Veth { name, .. } => host
                .delete_link(name)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Leak::OvsPort { name, .. } => host
                .delete_ovs_port(name)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Leak::Port { id, .. } => neutron
                .delete_if_exists::<Port>(id)
                .await
                .map_err(|e| e.to_string()),
            Leak::SecurityGroup { id, .. } => neutron
                .delete_if_exists::<SecurityGroup>(id)
                .await
                .map_err(|e| e.to_string()),
            Leak::Network { id, .. } => neutron
                .delete_if_exists::<Network>(id)
                .await
                .map_err(|e| e.to_string()),
            Leak::Pool { id, .. } => neutron
                .delete_if_exists::<SubnetPool>(id)
                .await
                .map_err(|e| e.to_string()),
            Leak::VmPair { vm_port, ip, .. } => remove_vm_pair(neutron, vm_port, ip).await,
            Leak::FloatingIp { id, .. } => neutron
                .delete_if_exists::<FloatingIp>(id)
                .await
                .map_err(|e| e.to_string()),
            Leak::Subport { trunk, port, .. } => {
                match neutron
                    .trunk_subports(trunk, false, &[SubportAsk::remove(port.as_str())])
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) if e.is_not_found() => Ok(()),
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        if let Err(e) = r {
            errors.push(format!("{l}: {e}"));
        }
    }
    errors
}

pub fn run(cfg: &Config, opts: Options, do_apply: bool) -> anyhow::Result<bool> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let neutron = Neutron::new(&cfg.neutron)?;
        let host = Plumber::new(cfg.bindir.clone(), cfg.host.clone())?;
        let live = Live::from_docker(&opts.docker_socket)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        let leaks = find(cfg, &neutron, &host, &live, &opts)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        if leaks.is_empty() {
            println!("nothing to collect");
            return Ok(true);
        }
        for l in &leaks {
            println!("{}{l}", if do_apply { "removing " } else { "" });
        }
        if !do_apply {
            println!(
                "{} leaked resource(s); run with --apply to remove them",
                leaks.len()
            );
            return Ok(true);
        }
        let errors = apply(&neutron, &host, &leaks).await;
        for e in &errors {
            eprintln!("failed: {e}");
        }
        println!("removed {} of {}", leaks.len() - errors.len(), leaks.len());
        Ok(errors.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names;
    use crate::testkit::TestDriver;
    use serde_json::json;

    const NET: &str = "4a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";
    const EP: &str = "e1e2e3e4e5e6e7e8e9f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff000102030405ab";

    /// A network and an endpoint made through the driver, its bookkeeping written.
    async fn endpoint() -> (TestDriver, String) {
        let t = TestDriver::new("").await;
        let pool = t
            .ok("IpamDriver.RequestPool", &json!({"Pool": "10.10.0.0/24"}))
            .await;
        t.ok(
            "NetworkDriver.CreateNetwork",
            &json!({"NetworkID": NET, "IPv4Data": [{"Pool": "10.10.0.0/24", "Gateway": "10.10.0.1/24"}]}),
        )
        .await;
        let a = t
            .ok(
                "IpamDriver.RequestAddress",
                &json!({"PoolID": pool["PoolID"], "Address": ""}),
            )
            .await;
        t.ok(
            "NetworkDriver.CreateEndpoint",
            &json!({"NetworkID": NET, "EndpointID": EP, "Interface": {"Address": a["Address"]}}),
        )
        .await;
        t.driver.flush().await;
        let port = t.neutron.all("ports")[0]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        (t, port)
    }

    fn opts(grace: u64) -> Options {
        Options {
            docker_socket: "/nonexistent".into(),
            grace: Duration::from_secs(grace),
        }
    }

    #[tokio::test]
    async fn what_docker_may_be_creating_is_left_alone_for_the_grace_period() {
        let (t, port) = endpoint().await;
        // Docker's view has neither the endpoint nor the network (yet, or any more).
        let live = Live::default();
        let cfg = &t.driver.cfg;
        let leaks = find(cfg, t.driver.neutron(), &t.host, &live, &opts(600))
            .await
            .unwrap();
        assert!(
            !leaks
                .iter()
                .any(|l| matches!(l, Leak::Port { id, .. } if *id == port)),
            "a port changed a moment ago was collected: {leaks:?}"
        );
        assert!(
            !leaks.iter().any(|l| matches!(l, Leak::Network { .. })),
            "{leaks:?}"
        );
        // Past the grace period it is a leak, with its veth and its network.
        let leaks = find(cfg, t.driver.neutron(), &t.host, &live, &opts(0))
            .await
            .unwrap();
        assert!(
            leaks
                .iter()
                .any(|l| matches!(l, Leak::Port { id, .. } if *id == port)),
            "{leaks:?}"
        );
        assert!(
            leaks.iter().any(|l| matches!(l, Leak::Veth { .. })),
            "{leaks:?}"
        );
        assert!(
            leaks.iter().any(|l| matches!(l, Leak::Network { .. })),
            "{leaks:?}"
        );
        // With Docker knowing the endpoint and network, nothing is a leak.
        let live = Live {
            networks: [NET.to_string()].into(),
            endpoints: [EP.to_string()].into(),
        };
        let leaks = find(cfg, t.driver.neutron(), &t.host, &live, &opts(0))
            .await
            .unwrap();
        assert!(leaks.is_empty(), "{leaks:?}");
        // Applying removes the port and its veth.
        let live = Live::default();
        let leaks = find(cfg, t.driver.neutron(), &t.host, &live, &opts(0))
            .await
            .unwrap();
        let errors = apply(t.driver.neutron(), &t.host, &leaks).await;
        assert!(errors.is_empty(), "{errors:?}");
        assert!(t.host.links().is_empty());
        assert_eq!(t.neutron.count("networks"), 0);
    }

    /// The pool of a leaked network goes in the same pass as the network, so a single
    /// pass (`reconcile_on_start`) leaves nothing; a pool one live network still uses stays.
    #[tokio::test]
    async fn a_leaked_networks_pool_goes_in_the_same_pass_a_live_ones_stays() {
        let (t, _port) = endpoint().await;
        let old = json!({"created_at": "2020-01-01T00:00:00Z"});
        let pool = t.neutron.all("subnetpools")[0]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        t.neutron.set("subnetpools", &pool, old);
        let cfg = &t.driver.cfg;
        // Docker still has the network: its pool is in use.
        let live = Live {
            networks: [NET.to_string()].into(),
            endpoints: HashSet::new(),
        };
        let leaks = find(cfg, t.driver.neutron(), &t.host, &live, &opts(0))
            .await
            .unwrap();
        assert!(
            !leaks.iter().any(|l| matches!(l, Leak::Pool { .. })),
            "{leaks:?}"
        );
        // Docker lost it: network and pool in one pass, and apply removes both.
        let leaks = find(cfg, t.driver.neutron(), &t.host, &Live::default(), &opts(0))
            .await
            .unwrap();
        assert!(
            leaks
                .iter()
                .any(|l| matches!(l, Leak::Pool { id, .. } if id.as_str() == pool)),
            "{leaks:?}"
        );
        let errors = apply(t.driver.neutron(), &t.host, &leaks).await;
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(t.neutron.count("networks"), 0);
        assert_eq!(t.neutron.count("subnetpools"), 0);
        let leaks = find(cfg, t.driver.neutron(), &t.host, &Live::default(), &opts(0))
            .await
            .unwrap();
        assert!(leaks.is_empty(), "{leaks:?}");
    }

    #[tokio::test]
    async fn kuryrs_floating_ips_left_without_a_port_are_released_a_users_never() {
        let (t, port) = endpoint().await;
        let public = t.neutron.seed(
            "networks",
            json!({"name": "public", "router:external": true}),
        );
        let fip = |desc: &str, port: Option<&str>| {
            t.neutron.seed(
                "floatingips",
                json!({"floating_network_id": public["id"], "description": desc,
                    "port_id": port}),
            )
        };
        let left = fip(&names::fip_description(EP), None);
        let users = fip("", None);
        let live_one = fip(&names::fip_description(EP), Some(&port));
        let live = Live {
            networks: [NET.to_string()].into(),
            endpoints: [EP.to_string()].into(),
        };
        let cfg = &t.driver.cfg;
        let leaks = find(cfg, t.driver.neutron(), &t.host, &live, &opts(0))
            .await
            .unwrap();
        let fips: Vec<&Leak> = leaks
            .iter()
            .filter(|l| matches!(l, Leak::FloatingIp { .. }))
            .collect();
        assert_eq!(
            fips,
            vec![&Leak::FloatingIp {
                id: left["id"].as_str().unwrap().to_string(),
                why: "kuryr allocated it for an endpoint; its port is gone".into()
            }],
            "{leaks:?}"
        );
        assert!(apply(t.driver.neutron(), &t.host, &leaks).await.is_empty());
        let ids: Vec<Value> = t
            .neutron
            .all("floatingips")
            .iter()
            .map(|f| f["id"].clone())
            .collect();
        assert_eq!(ids.len(), 2);
        assert!(ids.contains(&users["id"]) && ids.contains(&live_one["id"]));
    }
}
