//! The Neutron client against the real neutron-server started by `scripts/devenv up`.

mod common;

use kuryr::neutron::*;
use serde_json::json;

#[tokio::test]
async fn networks_subnets_ports_crud_with_tags() {
    let n = common::neutron().await;
    let name = common::unique("kt-net-");
    let net: Network = n
        .create(json!({"name": name, "admin_state_up": true}))
        .await
        .unwrap();
    assert_eq!(net.name, name);
    assert_eq!(net.mtu, Some(1500));

    // Tags: replace all in one request, then add and remove one.
    let tags = vec![
        "kuryr.net.uuid.lh:aa".to_string(),
        "kuryr.net.uuid.uh:bb".to_string(),
    ];
    n.replace_tags::<Network>(&net.id, &tags).await.unwrap();
    n.add_tag::<Network>(&net.id, "extra:1").await.unwrap();
    let got: Network = n.get(&net.id).await.unwrap();
    assert_eq!(got.tags.len(), 3);
    // AND filter finds it only with both tags; ANY with either.
    let both: Vec<Network> = n.list(&Filters::new().tags(&tags)).await.unwrap();
    assert_eq!(both.len(), 1);
    let none: Vec<Network> = n
        .list(&Filters::new().tags(&["kuryr.net.uuid.lh:aa", "nope"]))
        .await
        .unwrap();
    assert!(none.is_empty());
    let any: Vec<Network> = n
        .list(
            &Filters::new()
                .tags_any(&["nope", "extra:1"])
                .add("name", &name),
        )
        .await
        .unwrap();
    assert_eq!(any.len(), 1);
    n.remove_tag::<Network>(&net.id, "extra:1").await.unwrap();
    // Removing an absent tag is not an error.
    n.remove_tag::<Network>(&net.id, "extra:1").await.unwrap();

    let subnet: Subnet = n
        .create(json!({"network_id": net.id, "ip_version": 4, "cidr": "10.251.0.0/24",
                       "enable_dhcp": false,
                       "host_routes": [{"destination": "10.99.0.0/16", "nexthop": "10.251.0.254"}]}))
        .await
        .unwrap();
    assert_eq!(
        subnet.gateway_ip.map(|g| g.to_string()).as_deref(),
        Some("10.251.0.1")
    );
    assert_eq!(subnet.host_routes.len(), 1);
    let by_cidr: Vec<Subnet> = n
        .list(
            &Filters::new()
                .add("network_id", &net.id)
                .add("cidr", "10.251.0.0/24"),
        )
        .await
        .unwrap();
    assert_eq!(by_cidr.len(), 1);

    let port: Port = n
        .create(json!({"network_id": net.id, "name": "kt-port",
                       "fixed_ips": [{"subnet_id": subnet.id, "ip_address": "10.251.0.10"}]}))
        .await
        .unwrap();
    assert_eq!(port.fixed_ips[0].ip_address.to_string(), "10.251.0.10");
    let by_ip: Vec<Port> = n
        .list(
            &Filters::new()
                .add("fixed_ips", format!("subnet_id={}", subnet.id))
                .add("fixed_ips", "ip_address=10.251.0.10"),
        )
        .await
        .unwrap();
    assert_eq!(by_ip.len(), 1);
    let by_mac: Vec<Port> = n
        .list(&Filters::new().add("mac_address", &port.mac_address))
        .await
        .unwrap();
    assert_eq!(by_mac[0].id, port.id);
    let updated: Port = n
        .update(
            &port.id,
            json!({"device_owner": "compute:kuryr", "binding:host_id": kuryr::config::hostname()}),
        )
        .await
        .unwrap();
    assert_eq!(updated.device_owner, "compute:kuryr");
    // With the linuxbridge agent on this host, ML2 binds the port.
    assert_eq!(updated.vif_type, "bridge");

    // 409: a network with a compute port cannot be deleted.
    let e = n.delete::<Network>(&net.id).await.unwrap_err();
    assert!(e.is_conflict(), "{e:?}");
    assert_eq!(e.http_status(), 409);

    n.delete::<Port>(&port.id).await.unwrap();
    let e = n.get::<Port>(&port.id).await.unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
    n.delete_if_exists::<Port>(&port.id).await.unwrap();
    n.delete::<Network>(&net.id).await.unwrap();
}

#[tokio::test]
async fn subnetpools_and_errors() {
    let n = common::neutron().await;
    let name = common::unique("kt-pool-");
    let pool: SubnetPool = n
        .create(json!({"name": name, "prefixes": ["10.252.0.0/16"], "default_prefixlen": 24}))
        .await
        .unwrap();
    assert_eq!(pool.prefixes, vec!["10.252.0.0/16"]);
    let found: Vec<SubnetPool> = n.list(&Filters::new().add("name", &name)).await.unwrap();
    assert_eq!(found.len(), 1);

    // 400 for a bad CIDR, with Neutron's own message kept.
    let e = n
        .create::<SubnetPool>(json!({"name": "kt-bad", "prefixes": ["10.0.0.0/33"]}))
        .await
        .unwrap_err();
    match &e {
        NeutronError::BadRequest(m) => assert!(!m.is_empty()),
        other => panic!("expected BadRequest, got {other:?}"),
    }
    assert_eq!(e.http_status(), 400);

    n.delete::<SubnetPool>(&pool.id).await.unwrap();
    assert!(n
        .delete::<SubnetPool>(&pool.id)
        .await
        .unwrap_err()
        .is_not_found());
}

#[tokio::test]
async fn security_groups_and_rules() {
    let n = common::neutron().await;
    let sg: SecurityGroup = n
        .create(json!({"name": common::unique("kt-sg-"), "description": "test"}))
        .await
        .unwrap();
    let rule: SecurityGroupRule = n
        .create(
            json!({"security_group_id": sg.id, "direction": "ingress", "protocol": "tcp",
                       "port_range_min": 80, "port_range_max": 82, "ethertype": "IPv4"}),
        )
        .await
        .unwrap();
    assert_eq!(rule.port_range_max, Some(82));
    let got: SecurityGroup = n.get(&sg.id).await.unwrap();
    assert!(got.security_group_rules.iter().any(|r| r.id == rule.id));
    n.delete::<SecurityGroupRule>(&rule.id).await.unwrap();
    n.delete::<SecurityGroup>(&sg.id).await.unwrap();
}

#[tokio::test]
async fn pagination_follows_links() {
    let n = common::neutron().await;
    let prefix = common::unique("kt-page-");
    let mut ids = Vec::new();
    for i in 0..5 {
        let net: Network = n
            .create(json!({"name": format!("{prefix}-{i}")}))
            .await
            .unwrap();
        ids.push(net.id);
    }
    let before = n.stats().total();
    let all: Vec<Network> = n
        .list(
            &Filters::new()
                .add("limit", "2")
                .add("sort_key", "name")
                .add("sort_dir", "asc"),
        )
        .await
        .unwrap();
    let pages = n.stats().total() - before;
    let ours: Vec<&Network> = all.iter().filter(|x| x.name.starts_with(&prefix)).collect();
    assert_eq!(ours.len(), 5, "all five found across pages");
    assert!(
        pages >= 3,
        "limit=2 over >=5 networks takes at least 3 pages, took {pages}"
    );
    for id in ids {
        n.delete::<Network>(&id).await.unwrap();
    }
}

#[tokio::test]
async fn extensions_detected() {
    let n = common::neutron().await;
    let ext = n.extensions().await.unwrap();
    for a in [
        "standard-attr-tag",
        "subnet_allocation",
        "binding",
        "security-group",
        "allowed-address-pairs",
    ] {
        assert!(ext.has(a), "missing {a}");
    }
    assert!(ext.tags());
}

#[tokio::test]
async fn unreachable_neutron_is_a_transport_error() {
    let cfg = kuryr::config::Config::parse(
        "t",
        "[neutron]\nendpoint = http://127.0.0.1:9\ntimeout = 2\n",
    )
    .unwrap()
    .config;
    let n = Neutron::new(&cfg.neutron).unwrap();
    let e = n.list::<Network>(&Filters::new()).await.unwrap_err();
    assert!(matches!(e, NeutronError::Transport { .. }), "{e:?}");
    assert_eq!(e.http_status(), 503);
    // Connection refused is retried (bounded): three attempts were made.
    assert_eq!(n.stats().total(), 3);
}

#[tokio::test]
async fn trunks_and_subports() {
    let n = common::neutron().await;
    let ext = n.extensions().await.unwrap();
    assert!(
        ext.has("trunk"),
        "the trunk service plugin is enabled by scripts/devenv"
    );
    let net: Network = n
        .create(json!({"name": common::unique("kt-trunk-")}))
        .await
        .unwrap();
    let _s: Subnet = n
        .create(json!({"network_id": net.id, "ip_version": 4, "cidr": "10.250.0.0/24", "enable_dhcp": false}))
        .await
        .unwrap();
    let parent: Port = n
        .create(json!({"network_id": net.id, "name": "vm-port"}))
        .await
        .unwrap();
    let child: Port = n
        .create(json!({"network_id": net.id, "name": "container-port"}))
        .await
        .unwrap();
    let trunk: Trunk = n
        .create(json!({"port_id": parent.id, "name": "kt-trunk"}))
        .await
        .unwrap();
    let t = n
        .trunk_subports(&trunk.id, true, &[SubportAsk::vlan(child.id.as_str(), 101)])
        .await
        .unwrap();
    assert_eq!(t.sub_ports.len(), 1);
    let p: Port = n.get(&parent.id).await.unwrap();
    let details = p.trunk_details.expect("trunk_details on the parent port");
    assert_eq!(details.trunk_id, trunk.id);
    assert_eq!(details.sub_ports[0].segmentation_id, Some(101));
    let t = n
        .trunk_subports(&trunk.id, false, &[SubportAsk::remove(child.id.as_str())])
        .await
        .unwrap();
    assert!(t.sub_ports.is_empty());
    n.delete::<Trunk>(&trunk.id).await.unwrap();
    n.delete::<Port>(&child.id).await.unwrap();
    n.delete::<Port>(&parent.id).await.unwrap();
    n.delete::<Network>(&net.id).await.unwrap();
}
