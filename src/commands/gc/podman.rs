//! The finder of Neutron networks kuryr made for Podman networks that are gone:
//! `podman network rm` never calls a plugin, so Podman's network store is what says a
//! network of driver kuryr no longer exists.

use serde_json::Value;

use crate::names;
use crate::neutron::{Filters, Network, Port};

use super::finders::Finder;
use super::{neutron_err, Leak};

impl Finder<'_> {
    /// Networks kuryr made for a Podman network (tagged with its id) that Podman's store
    /// no longer has; their pool ports go with them. A network with a container's port
    /// still on it stays.
    pub(super) async fn podman_networks(&mut self) -> Result<(), String> {
        let Some(dir) = &self.cfg.netavark_network_dir else {
            return Ok(());
        };
        let Some(live) = crate::netavark::store::network_ids(dir, None) else {
            return Ok(());
        };
        let nets: Vec<Value> = self
            .neutron
            .list_raw("networks", &Filters::new().tags(&[names::TAG_CNI_MADE]))
            .await
            .map_err(neutron_err)?;
        for raw in nets {
            let Ok(n) = serde_json::from_value::<Network>(raw.clone()) else {
                continue;
            };
            // `podman network create` may be under way (made here, not stored yet).
            if self.recent(&raw) {
                continue;
            }
            // Every Podman network on it must be gone (several may share it), and no
            // Docker network have taken it.
            let tagged: Vec<&str> = n
                .tags
                .iter()
                .filter_map(|t| t.strip_prefix(names::TAG_NETAVARK_NET))
                .collect();
            let Some(&first) = tagged.first() else {
                continue;
            };
            let used = |p: &&str| live.iter().any(|id| id.starts_with(*p));
            let docker = n
                .tags
                .iter()
                .any(|t| t.starts_with(names::TAG_NET_EXISTING));
            if tagged.iter().any(used) || docker {
                continue;
            }
            let tagged = first;
            let ports: Vec<Port> = self
                .neutron
                .list(&Filters::new().add("network_id", &n.id))
                .await
                .map_err(neutron_err)?;
            for p in &ports {
                let pooled = crate::driver::port_pool::is_free_pool_port(p)
                    && p.device_owner == names::DEVICE_OWNER;
                if pooled && !self.doomed.contains(&p.id) {
                    self.doom_port(p.id.clone(), "pool port of a Podman network removed".into());
                }
            }
            // Neutron's own (DHCP, a router's) go with the network; anything else (a
            // container's, a VM's) keeps it.
            let busy = ports
                .iter()
                .any(|p| !p.device_owner.starts_with("network:") && !self.doomed.contains(&p.id));
            if !busy {
                self.leaks.push(Leak::Network {
                    id: n.id,
                    why: format!("kuryr made it for Podman network {tagged}…, which is gone"),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::super::{apply, find, Leak, Live, Options};
    use crate::names;
    use crate::testkit::TestDriver;

    const KEPT: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const GONE: &str = "2222222222222222222222222222222222222222222222222222222222222222";
    const BUSY: &str = "3333333333333333333333333333333333333333333333333333333333333333";

    #[tokio::test]
    async fn a_network_made_for_a_podman_network_goes_once_podmans_store_has_it_no_more() {
        let store = tempfile::tempdir().unwrap();
        let conf = format!(
            "[DEFAULT]\nnetavark_network_dir = {}\n",
            store.path().display()
        );
        let t = TestDriver::new(&conf).await;
        for (name, id) in [("kept", KEPT), ("busy", BUSY)] {
            std::fs::write(
                store.path().join(format!("{name}.json")),
                json!({"name": name, "id": id, "driver": "kuryr"}).to_string(),
            )
            .unwrap();
        }
        let net = |id: &str| {
            t.neutron.seed(
                "networks",
                json!({"name": names::network_name(id),
                    "tags": [names::TAG_CNI_MADE, names::netavark_net_tag(id)]}),
            )
        };
        let (kept, gone, busy) = (net(KEPT), net(GONE), net(BUSY));
        let pool_port = t.neutron.seed(
            "ports",
            json!({"network_id": gone["id"], "name": crate::driver::port_pool::POOL_PORT_NAME,
                "device_owner": names::DEVICE_OWNER, "device_id": ""}),
        );
        // Podman's store loses busy's network while a container's port is still on it.
        std::fs::remove_file(store.path().join("busy.json")).unwrap();
        t.neutron.seed(
            "ports",
            json!({"network_id": busy["id"], "name": "kuryr-cni-c1-eth0",
                "device_owner": names::DEVICE_OWNER, "device_id": "c1"}),
        );
        let opts = Options {
            docker_socket: "/nonexistent".into(),
            grace: Duration::from_secs(0),
        };
        let cfg = &t.driver.cfg;
        let leaks = find(cfg, t.driver.neutron(), &t.host, &Live::default(), &opts)
            .await
            .unwrap();
        let nets: Vec<String> = leaks
            .iter()
            .filter_map(|l| match l {
                Leak::Network { id, .. } => Some(id.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(
            nets,
            vec![gone["id"].as_str().unwrap().to_string()],
            "{leaks:?}"
        );
        assert!(leaks.iter().any(
            |l| matches!(l, Leak::Port { id, .. } if *id == pool_port["id"].as_str().unwrap())
        ));
        assert!(apply(t.driver.neutron(), &t.host, &leaks).await.is_empty());
        let left: Vec<serde_json::Value> = t
            .neutron
            .all("networks")
            .iter()
            .map(|n| n["id"].clone())
            .collect();
        assert_eq!(left, vec![kept["id"].clone(), busy["id"].clone()]);

        // Without Podman's store nothing of Podman's is judged.
        std::fs::remove_file(store.path().join("kept.json")).unwrap();
        drop(store);
        let leaks = find(cfg, t.driver.neutron(), &t.host, &Live::default(), &opts)
            .await
            .unwrap();
        assert!(
            !leaks.iter().any(|l| matches!(l, Leak::Network { .. })),
            "{leaks:?}"
        );
    }
}
