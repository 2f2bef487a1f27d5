//! Parallel use: 30 containers on one network, 5 networks at once, and racing
//! find-or-create calls. Everything succeeds, nothing is duplicated, nothing leaks.

mod common;

use std::collections::HashSet;
use std::thread;

use common::{docker, docker_try, Kuryr};
use kuryr::neutron::{Filters, Network, Port, Subnet, SubnetPool};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_containers_in_parallel() {
    common::require_docker();
    let n = common::neutron().await;
    let p = common::unique("kt");
    let _k = Kuryr::plugin(&p).start();
    let net = common::unique("kc30-");
    common::kuryr_network(&p, "10.38.0.0/24", "10.38.0.1", &net);
    let names: Vec<String> = (0..30)
        .map(|i| common::unique(&format!("kc{i}-")))
        .collect();
    let started: Vec<(String, bool, String)> = thread::scope(|s| {
        let hs: Vec<_> = names
            .iter()
            .map(|c| {
                let net = net.clone();
                s.spawn(move || {
                    let out = common::run_container_try(c, &net);
                    (
                        c.clone(),
                        out.status.success(),
                        String::from_utf8_lossy(&out.stderr).into_owned(),
                    )
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let failed: Vec<_> = started.iter().filter(|(_, ok, _)| !ok).collect();
    assert!(failed.is_empty(), "failed starts: {failed:?}");
    let docker_id = common::network_id(&net);
    let nets: Vec<Network> = n
        .list(&Filters::new().tags(&kuryr::names::id_tags(&docker_id)))
        .await
        .unwrap();
    let ports: Vec<Port> = n
        .list(
            &Filters::new()
                .add("network_id", &nets[0].id)
                .add("device_owner", "compute:kuryr"),
        )
        .await
        .unwrap();
    assert_eq!(ports.len(), 30, "one port per container, no duplicate");
    let ips: HashSet<String> = ports
        .iter()
        .map(|p| p.fixed_ips[0].ip_address.to_string())
        .collect();
    assert_eq!(ips.len(), 30);
    let ids: Vec<String> = ports.iter().map(|p| p.id.to_string()).collect();

    thread::scope(|s| {
        for c in &names {
            s.spawn(move || docker(&["rm", "-f", c]));
        }
    });
    let left: Vec<Port> = n
        .list(
            &Filters::new()
                .add("network_id", &nets[0].id)
                .add("device_owner", "compute:kuryr"),
        )
        .await
        .unwrap();
    assert!(left.is_empty(), "{} ports leaked", left.len());
    let unbound: Vec<Port> = n
        .list(
            &Filters::new()
                .add("network_id", &nets[0].id)
                .add("name", "kuryr-unbound-port"),
        )
        .await
        .unwrap();
    assert!(unbound.is_empty(), "{} reservations leaked", unbound.len());
    for id in &ids {
        assert!(
            common::host_links(&kuryr::names::host_veth(id)).is_empty(),
            "veth of {id} leaked"
        );
    }
    docker(&["network", "rm", &net]);
    assert!(n
        .get::<Network>(&nets[0].id)
        .await
        .unwrap_err()
        .is_not_found());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_networks_in_parallel() {
    common::require_docker();
    let n = common::neutron().await;
    let p = common::unique("kt");
    let _k = Kuryr::plugin(&p).start();
    let nets: Vec<(String, String)> = (0..5)
        .map(|i| {
            (
                common::unique(&format!("kn{i}-")),
                format!("10.39.{i}.0/24"),
            )
        })
        .collect();
    let results: Vec<bool> = thread::scope(|s| {
        let hs: Vec<_> = nets
            .iter()
            .map(|(name, cidr)| {
                let p = p.clone();
                s.spawn(move || {
                    docker_try(&[
                        "network",
                        "create",
                        "--label",
                        "kuryr-test",
                        "-d",
                        &p,
                        "--ipam-driver",
                        &p,
                        "--subnet",
                        cidr,
                        name,
                    ])
                    .status
                    .success()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(results.iter().all(|ok| *ok), "{results:?}");
    for (_, cidr) in &nets {
        let pools: Vec<SubnetPool> = n
            .list(&Filters::new().add("name", format!("kuryrPool-{cidr}")))
            .await
            .unwrap();
        assert_eq!(pools.len(), 1, "one pool for {cidr}");
        let subnets: Vec<Subnet> = n
            .list(&Filters::new().add("cidr", cidr.as_str()))
            .await
            .unwrap();
        assert_eq!(subnets.len(), 1, "one subnet for {cidr}");
    }
    thread::scope(|s| {
        for (name, _) in &nets {
            s.spawn(move || docker(&["network", "rm", name]));
        }
    });
    for (_, cidr) in &nets {
        let pools: Vec<SubnetPool> = n
            .list(&Filters::new().add("name", format!("kuryrPool-{cidr}")))
            .await
            .unwrap();
        assert!(pools.is_empty());
        let subnets: Vec<Subnet> = n
            .list(&Filters::new().add("cidr", cidr.as_str()))
            .await
            .unwrap();
        assert!(subnets.is_empty());
    }
}

#[test]
fn racing_request_pool_makes_one_pool() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kuryr::at(dir.path().join("k.sock")).start();
    let ids: HashSet<String> = thread::scope(|s| {
        let hs: Vec<_> = (0..10)
            .map(|_| {
                let k = &k;
                s.spawn(move || {
                    let (st, v) =
                        k.call("IpamDriver.RequestPool", &json!({"Pool": "10.39.99.0/24"}));
                    assert_eq!(st, 200, "{v}");
                    v["PoolID"].as_str().unwrap().to_string()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        ids.len(),
        1,
        "ten racing RequestPool calls share one pool: {ids:?}"
    );
    let id = ids.into_iter().next().unwrap();
    assert_eq!(
        k.call("IpamDriver.ReleasePool", &json!({"PoolID": id})).0,
        200
    );
}
