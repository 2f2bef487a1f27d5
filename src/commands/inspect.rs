//! `kuryr inspect CONTAINER`: what Neutron gives a container on each kuryr network (its
//! port, addresses, security groups, QoS policy, floating IPs), by name as the user set
//! them. A Docker container is found through Docker's API; a CNI container (Podman, ...)
//! by its id, through the ports kuryr tagged for it.

use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

use crate::config::Config;
use crate::docker::Docker;
use crate::names;
use crate::neutron::{
    Filters, FloatingIp, Network, Neutron, NeutronError, Port, QosPolicy, SecurityGroup,
};

pub struct Options {
    pub docker_socket: PathBuf,
    pub container: String,
    pub json: bool,
}

/// One of the container's attachments as Docker (or the CNI runtime) knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Docker network name, or `cni` with the interface name.
    pub network: String,
    /// Docker network id (empty for CNI).
    pub network_id: String,
    /// Docker endpoint id (empty for CNI).
    pub endpoint_id: String,
    /// The container's IPv4 address there, if any (finds a port not tagged yet).
    pub ip: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Named {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PortView {
    pub network: String,
    pub port_id: String,
    pub status: String,
    pub mac_address: String,
    pub ips: Vec<String>,
    pub security_groups: Vec<Named>,
    pub qos_policy: Option<Named>,
    /// `port` (the container's own) or `network` (its network's).
    pub qos_policy_from: Option<&'static str>,
    pub floating_ips: Vec<String>,
}

/// The container's attachments from Docker's `GET /containers/<name>/json`: its id
/// and each network it is on.
pub fn attachments_of(container: &Value) -> (String, Vec<Attachment>) {
    let id = container["Id"].as_str().unwrap_or_default().to_string();
    let mut out: Vec<Attachment> = container["NetworkSettings"]["Networks"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(name, n)| Attachment {
                    network: name.clone(),
                    network_id: n["NetworkID"].as_str().unwrap_or_default().to_string(),
                    endpoint_id: n["EndpointID"].as_str().unwrap_or_default().to_string(),
                    ip: n["IPAddress"].as_str().unwrap_or_default().to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort_by(|a, b| a.network.cmp(&b.network));
    (id, out)
}

/// The kuryr port of an attachment: by its endpoint's tags, else (bookkeeping not yet
/// written) by its address on the network's Neutron network; None: not a kuryr network.
async fn port_of(n: &Neutron, a: &Attachment) -> Result<Option<Port>, NeutronError> {
    if a.endpoint_id.is_empty() {
        return Ok(None);
    }
    let tagged: Vec<Port> = n
        .list(&Filters::new().tags(&names::id_tags(&a.endpoint_id)))
        .await?;
    if let Some(p) = tagged.into_iter().next() {
        return Ok(Some(p));
    }
    if a.ip.is_empty() || a.network_id.is_empty() {
        return Ok(None);
    }
    let nets: Vec<Network> = n
        .list(&Filters::new().tags(&names::id_tags(&a.network_id)))
        .await?;
    let Some(net) = nets.into_iter().next() else {
        return Ok(None);
    };
    let ports: Vec<Port> = n
        .list(
            &Filters::new()
                .add("network_id", &net.id)
                .add("fixed_ips", format!("ip_address={}", a.ip)),
        )
        .await?;
    Ok(ports.into_iter().next())
}

/// What Neutron says of a port, with names for its groups and policy.
pub async fn view(
    n: &Neutron,
    network: &str,
    port: &Port,
    floating: bool,
) -> Result<PortView, NeutronError> {
    let mut groups = Vec::new();
    if !port.security_groups.is_empty() {
        let mut f = Filters::new();
        for g in &port.security_groups {
            f = f.add("id", g);
        }
        let found: Vec<SecurityGroup> = n.list(&f).await?;
        for g in &port.security_groups {
            let name = found
                .iter()
                .find(|x| &x.id == g)
                .map(|x| x.name.clone())
                .unwrap_or_default();
            groups.push(Named {
                id: g.clone(),
                name,
            });
        }
    }
    let (qos_id, from) = match &port.qos_policy_id {
        Some(q) => (Some(q.clone()), Some("port")),
        None => {
            let net: Network = n.get(&port.network_id).await?;
            let from = net.qos_policy_id.as_ref().map(|_| "network");
            (net.qos_policy_id, from)
        }
    };
    let qos_policy = match qos_id {
        Some(id) => {
            let name = match n.get::<QosPolicy>(&id).await {
                Ok(p) => p.name,
                Err(e) if e.is_not_found() => String::new(),
                Err(e) => return Err(e),
            };
            Some(Named { id, name })
        }
        None => None,
    };
    let floating_ips = if floating {
        let fips: Vec<FloatingIp> = n.list(&Filters::new().add("port_id", &port.id)).await?;
        fips.into_iter().map(|f| f.floating_ip_address).collect()
    } else {
        Vec::new()
    };
    Ok(PortView {
        network: network.to_string(),
        port_id: port.id.to_string(),
        status: port.status.as_str().to_string(),
        mac_address: port.mac_address.clone(),
        ips: port
            .fixed_ips
            .iter()
            .map(|f| f.ip_address.to_string())
            .collect(),
        security_groups: groups,
        qos_policy,
        qos_policy_from: from,
        floating_ips,
    })
}

/// Every kuryr port of the container: its Docker attachments', else (a container Docker
/// does not know) the CNI ports kuryr made for this container id.
pub async fn find(
    n: &Neutron,
    docker_answer: Option<&Value>,
    container: &str,
) -> Result<Vec<PortView>, NeutronError> {
    // Floating IPs only where Neutron has the L3 service.
    let floating = n.extensions().await?.has("router");
    let mut out = Vec::new();
    match docker_answer {
        Some(c) => {
            for a in attachments_of(c).1 {
                if let Some(p) = port_of(n, &a).await? {
                    out.push(view(n, &a.network, &p, floating).await?);
                }
            }
        }
        None => {
            let ports: Vec<Port> = n
                .list(
                    &Filters::new()
                        .add("device_id", container)
                        .tags(&[names::TAG_CNI]),
                )
                .await?;
            for p in ports {
                let ifname = p
                    .tags
                    .iter()
                    .find_map(|t| t.strip_prefix(names::TAG_CNI_IF))
                    .unwrap_or_default()
                    .to_string();
                out.push(view(n, &format!("cni {ifname}"), &p, floating).await?);
            }
        }
    }
    Ok(out)
}

/// The human form.
pub fn render(container: &str, views: &[PortView]) -> String {
    let mut s = format!("container {container}\n");
    for v in views {
        s.push_str(&format!(
            "  network {}: port {} {}, MAC {}, {}\n",
            v.network,
            v.port_id,
            v.status,
            v.mac_address,
            v.ips.join(", ")
        ));
        let groups: Vec<String> = v
            .security_groups
            .iter()
            .map(|g| format!("{} ({})", g.name, g.id))
            .collect();
        s.push_str(&format!(
            "    security groups: {}\n",
            if groups.is_empty() {
                "none".to_string()
            } else {
                groups.join(", ")
            }
        ));
        match (&v.qos_policy, v.qos_policy_from) {
            (Some(q), Some(from)) => s.push_str(&format!(
                "    QoS policy: {} ({}), the {from}'s\n",
                q.name, q.id
            )),
            _ => s.push_str("    QoS policy: none\n"),
        }
        s.push_str(&format!(
            "    floating IPs: {}\n",
            if v.floating_ips.is_empty() {
                "none".to_string()
            } else {
                v.floating_ips.join(", ")
            }
        ));
    }
    s
}

pub fn run(cfg: &Config, opts: Options) -> anyhow::Result<bool> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let neutron = Neutron::new(&cfg.neutron)?;
        let docker = Docker::new(&opts.docker_socket);
        let path = format!("/containers/{}/json", encode(&opts.container));
        // Docker first; a container it does not know may be a CNI runtime's.
        let answer = match docker.get(&path).await {
            Ok(v) => Some(v),
            Err(e) if e.contains("answered 404") || e.contains("cannot connect") => None,
            Err(e) => anyhow::bail!(e),
        };
        let name = answer
            .as_ref()
            .map(|c| attachments_of(c).0)
            .unwrap_or_else(|| opts.container.clone());
        let views = find(&neutron, answer.as_ref(), &opts.container).await?;
        if views.is_empty() {
            eprintln!(
                "{}: no kuryr port (not on a kuryr network, or not a container Docker or a CNI runtime gave kuryr)",
                opts.container
            );
            return Ok(false);
        }
        if opts.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({"container": name, "ports": views}))?
            );
        } else {
            print!("{}", render(&name, &views));
        }
        Ok(true)
    })
}

/// A container name or id as one URL path segment.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::TestDriver;
    use serde_json::json;

    const NET: &str = "4a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";
    const EP: &str = "e1e2e3e4e5e6e7e8e9f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff000102030405ab";

    /// A network with these options and a container endpoint with these; Docker's answer
    /// for the container.
    async fn container(t: &TestDriver, net_opts: Value, ep_opts: Value, flush: bool) -> Value {
        let pool = t
            .ok("IpamDriver.RequestPool", &json!({"Pool": "10.70.0.0/24"}))
            .await;
        t.ok(
            "NetworkDriver.CreateNetwork",
            &json!({"NetworkID": NET, "Options": {"com.docker.network.generic": net_opts},
                "IPv4Data": [{"Pool": "10.70.0.0/24", "Gateway": "10.70.0.1/24"}]}),
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
            &json!({"NetworkID": NET, "EndpointID": EP, "Options": ep_opts,
                "Interface": {"Address": a["Address"]}}),
        )
        .await;
        if flush {
            t.driver.flush().await;
        }
        let ip = a["Address"]
            .as_str()
            .unwrap_or_default()
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        json!({"Id": "c0ffee", "NetworkSettings": {"Networks": {
            "webnet": {"NetworkID": NET, "EndpointID": EP, "IPAddress": ip},
            "bridge": {"NetworkID": "b".repeat(64), "EndpointID": "f".repeat(64), "IPAddress": "172.17.0.2"}}}})
    }

    #[tokio::test]
    async fn a_containers_groups_and_policy_are_shown_by_name_and_where_they_come_from() {
        let t = TestDriver::new("").await;
        let web = t.neutron.seed("security-groups", json!({"name": "web"}));
        let slow = t.neutron.seed("policies", json!({"name": "slow"}));
        let c = container(
            &t,
            json!({"neutron.security_groups": "web", "neutron.qos_policy": "slow"}),
            json!({}),
            true,
        )
        .await;
        let views = find(t.driver.neutron(), Some(&c), "web-1").await.unwrap();
        // Docker's bridge network is not kuryr's: left out.
        assert_eq!(views.len(), 1, "{views:?}");
        let v = &views[0];
        assert_eq!(v.network, "webnet");
        assert_eq!(
            v.ips,
            vec![c["NetworkSettings"]["Networks"]["webnet"]["IPAddress"]
                .as_str()
                .unwrap()]
        );
        assert_eq!(
            v.security_groups,
            vec![Named {
                id: web["id"].as_str().unwrap().into(),
                name: "web".into()
            }]
        );
        assert_eq!(
            v.qos_policy
                .as_ref()
                .map(|q| (q.id.as_str(), q.name.as_str())),
            Some((slow["id"].as_str().unwrap(), "slow"))
        );
        assert_eq!(v.qos_policy_from, Some("network"));
        let text = render("web-1", &views);
        assert!(text.contains("security groups: web ("), "{text}");
        assert!(text.contains("QoS policy: slow ("), "{text}");
        assert!(text.contains("the network's"), "{text}");

        // A container's own policy is the port's.
        let t = TestDriver::new("").await;
        t.neutron.seed("policies", json!({"name": "slow"}));
        let own = t.neutron.seed("policies", json!({"name": "own"}));
        let c = container(
            &t,
            json!({"neutron.qos_policy": "slow"}),
            json!({"neutron.qos_policy": "own"}),
            true,
        )
        .await;
        let v = &find(t.driver.neutron(), Some(&c), "x").await.unwrap()[0];
        assert_eq!(
            v.qos_policy.as_ref().map(|q| q.id.as_str()),
            own["id"].as_str()
        );
        assert_eq!(v.qos_policy_from, Some("port"));
    }

    #[tokio::test]
    async fn a_port_whose_bookkeeping_is_still_to_come_is_found_by_its_address() {
        let t = TestDriver::new("").await;
        let c = container(&t, json!({}), json!({}), false).await;
        let port = t.neutron.all("ports")[0].clone();
        assert!(
            port["device_id"].as_str().unwrap_or_default().is_empty(),
            "{port}"
        );
        let views = find(t.driver.neutron(), Some(&c), "x").await.unwrap();
        assert_eq!(views.len(), 1);
        assert_eq!(views[0].port_id, port["id"].as_str().unwrap());
        assert!(views[0].security_groups.is_empty() && views[0].qos_policy.is_none());
        assert!(render("x", &views).contains("QoS policy: none"));
    }

    #[tokio::test]
    async fn a_container_docker_does_not_know_is_looked_up_among_cni_ports() {
        let t = TestDriver::new("").await;
        let net = t.neutron.seed("networks", json!({"name": "n"}));
        let ctr = "9".repeat(64);
        t.neutron.seed(
            "ports",
            json!({"network_id": net["id"], "device_id": ctr,
                "tags": names::cni_tags("eth0", "podnet")}),
        );
        t.neutron.seed(
            "ports",
            json!({"network_id": net["id"], "device_id": "other"}),
        );
        let views = find(t.driver.neutron(), None, &ctr).await.unwrap();
        assert_eq!(views.len(), 1, "{views:?}");
        assert_eq!(views[0].network, "cni eth0");
        assert!(find(t.driver.neutron(), None, "nobody")
            .await
            .unwrap()
            .is_empty());
    }

    #[test]
    fn names_are_one_path_segment() {
        assert_eq!(encode("web-1"), "web-1");
        assert_eq!(encode("a/../b c"), "a%2F..%2Fb%20c");
    }
}
