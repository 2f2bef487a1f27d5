#![no_main]
//! Request decoding and validation: any bytes, for every request type, never panic.
use kuryr::protocol::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = serde_json::from_slice::<CreateNetworkRequest>(data) {
        let _ = validate::docker_id("NetworkID", &r.network_id);
        for d in r.ipv4_data.iter().chain(&r.ipv6_data) {
            let _ = validate::cidr("Pool", &d.pool);
            let _ = validate::ip_maybe_cidr("Gateway", &d.gateway);
        }
        let _ = generic_options(&r.options);
    }
    if let Ok(r) = serde_json::from_slice::<CreateEndpointRequest>(data) {
        let _ = validate::ip_maybe_cidr("Address", &r.interface.address);
        let _ = validate::mac("MacAddress", &r.interface.mac_address);
        let _ = exposed_ports(&r.options);
    }
    if let Ok(r) = serde_json::from_slice::<JoinRequest>(data) {
        let _ = validate::docker_id("EndpointID", &r.endpoint_id);
    }
    if let Ok(r) = serde_json::from_slice::<RequestPoolRequest>(data) {
        let _ = validate::cidr("Pool", &r.pool);
        let _ = validate::cidr("SubPool", &r.sub_pool);
    }
    if let Ok(r) = serde_json::from_slice::<RequestAddressRequest>(data) {
        let _ = validate::uuid("PoolID", &r.pool_id);
        let _ = validate::ip_maybe_cidr("Address", &r.address);
    }
    let _ = serde_json::from_slice::<ReleaseAddressRequest>(data);
    let _ = serde_json::from_slice::<EndpointRequest>(data);
});
