//! Announcing a container's IPv4 addresses once its port is live on an OVN chassis: a
//! gratuitous ARP injected into the integration bridge as if the port had sent it.
//!
//! Why: OVN's logical switches answer ARP requests themselves, so a newcomer's own
//! requests never reach its peers. Neutron hands a released address out again at once,
//! and a peer that last saw that address at the old port's MAC keeps sending there,
//! into nothing, until its neighbour entry expires (20 s and more, measured). An
//! unsolicited ARP updates the entry at once. It has to leave after ovn-controller has
//! installed the port's flows (`external_ids:ovn-installed` on the OVS interface):
//! one sent earlier, as Docker 28 sends its own while configuring the container, is
//! dropped. Nothing here is on a start's path: the caller spawns it.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use super::binding::run_within;

/// How long the announcement waits for ovn-controller to install the port.
const INSTALLED_WITHIN_SECS: u64 = 30;

/// Rounds of announcements, one second apart (as Docker 28 and the kernel's
/// `arp_notify` send more than one: a peer ignores an update within a second of the
/// last, its `locktime`).
const ROUNDS: u32 = 2;

/// Waits until ovn-controller has installed `iface` on `bridge`, then sends a
/// gratuitous ARP for each address from the port. Failures are logged, never
/// returned: the container works without it, as it did before.
pub async fn announce(bridge: String, iface: String, mac: String, ips: Vec<Ipv4Addr>) {
    let frames: Vec<(Ipv4Addr, String)> = ips
        .iter()
        .filter_map(|ip| Some((*ip, garp_frame(&mac, *ip)?)))
        .collect();
    if frames.is_empty() {
        return;
    }
    let vsctl = Path::new("ovs-vsctl");
    let wait = [
        format!("--timeout={INSTALLED_WITHIN_SECS}"),
        "wait-until".into(),
        "Interface".into(),
        iface.clone(),
        "external_ids:ovn-installed=true".into(),
    ];
    let deadline = Duration::from_secs(INSTALLED_WITHIN_SECS + 5);
    if let Err(e) = run_within(vsctl, &wait, deadline).await {
        // Removed before it was installed, or no ovn-controller here.
        tracing::debug!(%iface, error = %e, "not announced: the port was never installed by ovn-controller");
        return;
    }
    let get = [
        "--timeout=3".into(),
        "get".into(),
        "Interface".into(),
        iface.clone(),
        "ofport".into(),
    ];
    let ofport = match run_within(vsctl, &get, Duration::from_secs(5)).await {
        Ok(out) => match out.trim().parse::<u32>() {
            Ok(n) if n > 0 => n,
            _ => {
                tracing::debug!(%iface, ofport = %out.trim(), "not announced: no OpenFlow port");
                return;
            }
        },
        Err(e) => {
            tracing::debug!(%iface, error = %e, "not announced: no OpenFlow port");
            return;
        }
    };
    let ofctl = Path::new("ovs-ofctl");
    for round in 0..ROUNDS {
        if round > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        for (ip, frame) in &frames {
            let args = packet_out_args(&bridge, ofport, frame);
            match run_within(ofctl, &args, Duration::from_secs(5)).await {
                Ok(_) => tracing::debug!(%iface, %ip, round, "address announced"),
                Err(e) => {
                    tracing::warn!(%iface, %ip, error = %e, "could not announce the address (gratuitous ARP)");
                    return;
                }
            }
        }
    }
}

/// `ovs-ofctl packet-out`: the frame enters the bridge's first table as if it had come in
/// on the port, so OVN's pipeline (port security included) treats it as the port's own.
fn packet_out_args(bridge: &str, ofport: u32, frame: &str) -> Vec<String> {
    vec![
        "packet-out".into(),
        bridge.into(),
        format!("in_port={ofport} packet={frame} actions=resubmit(,0)"),
    ]
}

/// A gratuitous ARP request (sender and target both `ip`, broadcast) from `mac`, as hex,
/// padded to Ethernet's 60-byte minimum; None if `mac` is no MAC address.
pub fn garp_frame(mac: &str, ip: Ipv4Addr) -> Option<String> {
    let mac = parse_mac(mac)?;
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06]); // ARP
    f.extend_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4]); // Ethernet, IPv4
    f.extend_from_slice(&[0x00, 0x01]); // request
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&ip.octets());
    f.resize(60, 0);
    Some(f.iter().map(|b| format!("{b:02x}")).collect())
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut out {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_garp_names_the_address_as_sender_and_target() {
        let f = garp_frame("fa:16:3e:0a:0b:0c", Ipv4Addr::new(10, 1, 2, 3)).unwrap();
        assert_eq!(f.len(), 120, "60 bytes");
        assert_eq!(&f[..12], "ffffffffffff", "broadcast");
        assert_eq!(&f[12..24], "fa163e0a0b0c", "from the port's MAC");
        assert_eq!(&f[24..28], "0806");
        assert_eq!(&f[28..40], "000108000604");
        assert_eq!(
            &f[40..44],
            "0001",
            "a request, as Linux sends with arp_notify"
        );
        assert_eq!(&f[44..56], "fa163e0a0b0c", "sender MAC");
        assert_eq!(&f[56..64], "0a010203", "sender IP");
        assert_eq!(&f[64..76], "000000000000");
        assert_eq!(&f[76..84], "0a010203", "target IP: the same");
        assert!(f[84..].bytes().all(|c| c == b'0'), "zero padding");
    }

    #[test]
    fn no_frame_without_a_mac() {
        for bad in [
            "",
            "fa:16:3e:0a:0b",
            "fa:16:3e:0a:0b:0c:0d",
            "fa:16:3e:0a:0b:zz",
            "fa16:3e:0a:0b:0c:0",
        ] {
            assert_eq!(garp_frame(bad, Ipv4Addr::LOCALHOST), None, "{bad}");
        }
    }

    #[test]
    fn the_frame_enters_the_pipeline_on_the_ports_ofport() {
        let a = packet_out_args("br-int", 7, "ff");
        assert_eq!(a[..2], ["packet-out", "br-int"]);
        assert_eq!(a[2], "in_port=7 packet=ff actions=resubmit(,0)");
    }
}
