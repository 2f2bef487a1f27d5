//! libnetwork's calls to an in-process driver (no socket, no Docker), for tests that need
//! a driver built with their own configuration.

use kuryr::driver::Driver;
use serde_json::{json, Value};

/// A 64-hex-digit id, as Docker makes them.
pub fn hexid() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// One libnetwork call through the server's dispatch: the answer, or the error text.
pub async fn call(d: &Driver, method: &str, body: Value) -> Result<Value, String> {
    let m = kuryr::protocol::Method::from_path(method)
        .unwrap_or_else(|| panic!("{method} is no libnetwork method"));
    kuryr::server::dispatch(d, m, body.to_string().as_bytes())
        .await
        .map_err(|e| e.to_string())
}

/// A Docker network over the plugin calls Docker makes, on the existing Neutron network
/// it was made for; `address` is the container address reserved by `cnm_address`.
pub struct CnmNet {
    pub docker_net: String,
    pub pool_id: String,
    pub gateway: Value,
    pub address: String,
}

impl CnmNet {
    /// CreateEndpoint with the reserved address (and the MAC Docker would send).
    pub async fn create_endpoint(
        &self,
        d: &Driver,
        ep: &str,
        mac: Option<&str>,
    ) -> Result<Value, String> {
        let mut iface = json!({"Address": self.address});
        if let Some(m) = mac {
            iface["MacAddress"] = json!(m);
        }
        call(
            d,
            "NetworkDriver.CreateEndpoint",
            json!({"NetworkID": self.docker_net, "EndpointID": ep, "Interface": iface}),
        )
        .await
    }

    pub async fn delete_endpoint(&self, d: &Driver, ep: &str) -> Result<Value, String> {
        call(
            d,
            "NetworkDriver.DeleteEndpoint",
            json!({"NetworkID": self.docker_net, "EndpointID": ep}),
        )
        .await
    }
}

/// RequestPool (a random 10.<second_octet>.x.0/24), the gateway and CreateNetwork with
/// `neutron.net.uuid = net_id`.
pub async fn cnm_network(d: &Driver, second_octet: u8, net_id: &str) -> CnmNet {
    let docker_net = hexid();
    let third = (uuid::Uuid::new_v4().as_bytes()[0] % 200) + 20;
    let cidr = format!("10.{second_octet}.{third}.0/24");
    let pool = call(d, "IpamDriver.RequestPool", json!({"Pool": cidr}))
        .await
        .unwrap();
    let pool_id = pool["PoolID"].as_str().unwrap().to_string();
    let gateway = call(
        d,
        "IpamDriver.RequestAddress",
        json!({"PoolID": pool_id, "Address": "",
        "Options": {"RequestAddressType": "com.docker.network.gateway"}}),
    )
    .await
    .unwrap()["Address"]
        .clone();
    call(
        d,
        "NetworkDriver.CreateNetwork",
        json!({"NetworkID": docker_net,
        "IPv4Data": [{"Pool": cidr, "Gateway": gateway}],
        "Options": {"com.docker.network.generic": {"neutron.net.uuid": net_id}}}),
    )
    .await
    .unwrap();
    CnmNet {
        docker_net,
        pool_id,
        gateway,
        address: String::new(),
    }
}

/// RequestAddress for a container: `address` (e.g. an existing port's, as `--ip` asks)
/// or any free one, with the MAC `docker run --mac-address` would send.
pub async fn cnm_address(d: &Driver, c: &mut CnmNet, address: Option<&str>, mac: Option<&str>) {
    let mut opts = json!({});
    if let Some(m) = mac {
        opts["com.docker.network.endpoint.macaddress"] = json!(m);
    }
    let addr = call(
        d,
        "IpamDriver.RequestAddress",
        json!({"PoolID": c.pool_id, "Address": address.unwrap_or(""), "Options": opts}),
    )
    .await
    .unwrap();
    c.address = addr["Address"].as_str().unwrap().to_string();
}

/// Docker's teardown order: the container's address, the network, the gateway, the pool.
pub async fn cnm_teardown(d: &Driver, c: &CnmNet) {
    let (pool, net) = (&c.pool_id, &c.docker_net);
    let mut calls = Vec::new();
    if !c.address.is_empty() {
        calls.push((
            "IpamDriver.ReleaseAddress",
            json!({"PoolID": pool, "Address": c.address}),
        ));
    }
    calls.extend([
        ("NetworkDriver.DeleteNetwork", json!({"NetworkID": net})),
        (
            "IpamDriver.ReleaseAddress",
            json!({"PoolID": pool, "Address": c.gateway}),
        ),
        ("IpamDriver.ReleasePool", json!({"PoolID": pool})),
    ]);
    for (method, body) in calls {
        if let Err(e) = call(d, method, body).await {
            panic!("{method}: {e}");
        }
    }
}

/// The kuryr.conf text of an in-process driver: `sections` (DEFAULT and binding) plus the
/// test Neutron without authentication.
pub fn driver_conf(sections: &str) -> String {
    format!(
        "{sections}\n[neutron]\nauth_type = none\nendpoint = {}\n",
        super::neutron_url()
    )
}

/// An in-process driver with that configuration, on this host.
pub async fn driver(sections: &str) -> Driver {
    driver_with_sysfs(sections, None).await
}

/// As `driver`, with SR-IOV devices looked up under `sysfs` instead of /sys.
pub async fn driver_with_sysfs(sections: &str, sysfs: Option<kuryr::host::sriov::Sysfs>) -> Driver {
    let cfg = kuryr::config::Config::parse("t", &driver_conf(sections))
        .unwrap()
        .config;
    let neutron = kuryr::neutron::Neutron::new(&cfg.neutron).unwrap();
    let mut plumber = kuryr::host::Plumber::new(cfg.bindir.clone(), cfg.host.clone()).unwrap();
    if let Some(s) = sysfs {
        plumber.set_sysfs(s);
    }
    Driver::new(
        std::sync::Arc::new(cfg),
        neutron,
        std::sync::Arc::new(plumber),
    )
    .await
    .unwrap()
}
