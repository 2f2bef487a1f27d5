//! Security groups through Docker, against the real Neutron: a network's groups
//! (`-o neutron.security_groups=`) go on every container port of it, a container's own
//! (`docker network connect --driver-opt neutron.security_groups=`) replace them, an
//! unknown group is refused before anything is made, and removal leaves the groups and
//! nothing else.

mod common;

use common::{docker, docker_try, Kuryr};
use kuryr::neutron::{Filters, Network, Neutron, Port, SecurityGroup};
use serde_json::json;

async fn group(n: &Neutron, name: &str) -> SecurityGroup {
    n.create(json!({"name": name, "description": "kuryr test"}))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_and_container_groups_reach_neutron_and_unknown_ones_are_refused() {
    common::require_docker();
    let n = common::neutron().await;
    let p = common::unique("ksg");
    let _k = Kuryr::plugin(&p).start();
    let (web_name, db_name) = (common::unique("kt-web-"), common::unique("kt-db-"));
    let (web, db) = (group(&n, &web_name).await, group(&n, &db_name).await);

    // Unknown: refused, nothing in Neutron.
    let bad = common::unique("ksgbad-");
    let nets_before: Vec<Network> = n.list(&Filters::new()).await.unwrap();
    let out = common::kuryr_network_try(
        &p,
        &bad,
        &[
            "--subnet",
            "10.253.70.0/24",
            "-o",
            "neutron.security_groups=no-such-group-kuryr",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no security group is named \"no-such-group-kuryr\""),
        "{err}"
    );
    let nets_after: Vec<Network> = n.list(&Filters::new()).await.unwrap();
    assert_eq!(
        nets_before.len(),
        nets_after.len(),
        "a refused network was made"
    );

    let net = common::unique("ksg-");
    common::kuryr_network_with(
        &p,
        &net,
        &[
            "--subnet",
            "10.253.71.0/24",
            "--gateway",
            "10.253.71.1",
            "-o",
            &format!("neutron.security_groups={web_name}"),
        ],
    );
    let a = common::unique("ksga-");
    common::run_container(&a, &net, &[]);
    let a_port = common::port_at(&n, &common::container_ip(&a, &net)).await;
    assert_eq!(a_port.security_groups, vec![web.id.clone()]);

    // A container's own groups replace the network's.
    let b = common::unique("ksgb-");
    common::connected_with(
        &b,
        &net,
        &format!("neutron.security_groups={db_name} {}", web.id),
        &["sleep", "600"],
    );
    docker(&["start", &b]);
    let b_port = common::port_at(&n, &common::container_ip(&b, &net)).await;
    let mut got = b_port.security_groups.clone();
    got.sort();
    let mut want = vec![db.id.clone(), web.id.clone()];
    want.sort();
    assert_eq!(got, want);
    // What the user sees: the container's groups by name.
    let v = common::kuryr_inspect(&b);
    let mut shown: Vec<String> = v["ports"][0]["security_groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap_or_default().to_string())
        .collect();
    shown.sort();
    let mut names = vec![db_name.clone(), web_name.clone()];
    names.sort();
    assert_eq!(shown, names, "{v}");
    // A container naming an unknown group does not start, and its port is not changed.
    let c = common::unique("ksgc-");
    common::connected_with(
        &c,
        &net,
        "neutron.security_groups=no-such-group-kuryr",
        &["sleep", "600"],
    );
    let out = docker_try(&["start", &c]);
    assert!(!out.status.success(), "started with an unknown group");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no-such-group-kuryr"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    for ct in [&a, &b, &c] {
        docker(&["rm", "-f", ct]);
    }
    docker(&["network", "rm", &net]);
    // The groups stay (they are the user's), and no port of the network is left.
    for g in [&web, &db] {
        let still: SecurityGroup = n.get(&g.id).await.unwrap();
        assert_eq!(still.id, g.id);
        n.delete::<SecurityGroup>(&g.id).await.unwrap();
    }
    for port in [&a_port, &b_port] {
        let gone = n.get::<Port>(&port.id).await;
        assert!(
            gone.as_ref().is_err_and(|e| e.is_not_found()),
            "port {} left: {gone:?}",
            port.id
        );
    }
}
