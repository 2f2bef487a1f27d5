//! The naming and tagging contract shared with the Python kuryr-libnetwork. Every string
//! here is part of what existing deployments depend on: keep them byte for byte.

pub const TAG_LOW: &str = "kuryr.net.uuid.lh:";
pub const TAG_HIGH: &str = "kuryr.net.uuid.uh:";
pub const TAG_NET_EXISTING: &str = "kuryr.net.existing:";
pub const TAG_POOL_EXISTING: &str = "kuryr.subnetpool.existing";
pub const TAG_PORT_EXISTING: &str = "kuryr.port.existing";
/// On an SR-IOV port whose VF kuryr chose (`[sriov] physical_device_mappings`): the
/// `pci_slot` it wrote is given back at DeleteEndpoint.
pub const TAG_VF_PICKED: &str = "kuryr.port.vf_picked";
/// On a network whose DeleteNetwork has begun (kuryr's own, not upstream's): a kuryr
/// killed half-way finishes the delete when it starts again, since Docker's retry of the
/// call comes with an empty body and Docker forgets the network whatever the answer.
pub const TAG_DELETING: &str = "kuryr.net.deleting";
pub const DEVICE_OWNER: &str = "compute:kuryr";
/// On a port of a CNI attachment (kuryr's own, not upstream's): its container is the
/// port's `device_id`, its interface and network config the two tags below. `kuryr gc`
/// leaves these to the runtime's CNI GC: Docker does not know them.
pub const TAG_CNI: &str = "kuryr.cni";
/// On a Neutron network (kuryr's own, not upstream's): a security group every kuryr
/// port on it gets, unless its container asks for others (`neutron.security_groups`).
pub const TAG_SG: &str = "kuryr.sg:";
/// On a Neutron network (kuryr's own): the external network its containers get a
/// floating IP from (`neutron.floating_network`).
pub const TAG_FIP_NET: &str = "kuryr.fipnet:";
/// The description of a floating IP kuryr allocated, followed by its endpoint's id
/// (floating IPs take no tags in their create). kuryr releases it with its endpoint;
/// `kuryr gc`, one left with no port.
pub const FIP_DESCRIPTION_PREFIX: &str = "kuryr:";
/// On a port with a container's own settings (`neutron.security_groups`,
/// `neutron.qos_policy`, a floating IP): it is deleted at release, never given back to
/// the port pool with them.
pub const TAG_PORT_OWN: &str = "kuryr.port.own";
pub const TAG_CNI_IF: &str = "kuryr.cni.if:";
pub const TAG_CNI_NET: &str = "kuryr.cni.net:";
/// On a Neutron network kuryr made for a CNI config's `cidr`/`subnetpool`; kept after
/// its last attachment, as the runtime's network config is.
pub const TAG_CNI_MADE: &str = "kuryr.cni.made";
/// On a Neutron network kuryr made for a Podman network (`podman network create -d
/// kuryr`): the Podman network's id (its first 45 characters: a tag holds 60).
pub const TAG_NETAVARK_NET: &str = "kuryr.netavark:";
/// On a Neutron network kuryr made for a Docker network (kuryr's own, not upstream's):
/// the host whose kuryr made it. `kuryr gc` removes only networks of its own host: on
/// another host, a network its Docker does not have may be another Docker's.
pub const TAG_HOST: &str = "kuryr.host:";
/// Tag on ports made by IPAM (same string as the device owner, as upstream).
pub const TAG_KURYR_PORT: &str = "compute:kuryr";
pub const UNBOUND_PORT_NAME: &str = "kuryr-unbound-port";
pub const NET_NAME_PREFIX: &str = "kuryr-net-";
pub const SUBNET_NAME_PREFIX: &str = "kuryr-subnet-";
pub const SG_DESCRIPTION: &str = "Docker exposed ports created by Kuryr.";
pub const HOST_VETH_PREFIX: &str = "tap";
pub const CONTAINER_VETH_PREFIX: &str = "t_c";
/// Linux interface names hold 15 bytes; the agents look for `tap` + 11 chars.
pub const IFNAME_LEN: usize = 14;

/// The two tags that carry a 64-char Docker id (network or endpoint).
pub fn id_tags(docker_id: &str) -> Vec<String> {
    // Docker's ids are ASCII; an id read back from a tag need not be.
    let low = prefix(docker_id, 32);
    let high = docker_id.get(low.len()..).unwrap_or_default();
    let mut tags = vec![format!("{TAG_LOW}{low}")];
    if !high.is_empty() {
        tags.push(format!("{TAG_HIGH}{high}"));
    }
    tags
}

/// `kuryr.host:<host>`; a host name too long for a tag (60 characters) keeps its first
/// 32 and a hash of the whole, so two long names that share a beginning still differ.
pub fn host_tag(host: &str) -> String {
    const ROOM: usize = 60 - TAG_HOST.len();
    if host.len() <= ROOM {
        return format!("{TAG_HOST}{host}");
    }
    // FNV-1a: stable across builds and Rust versions, unlike std's hasher.
    let hash = host.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let start: String = host
        .chars()
        .scan(0, |len, c| {
            *len += c.len_utf8();
            (*len <= 32).then_some(c)
        })
        .collect();
    format!("{TAG_HOST}{start}~{hash:016x}")
}

pub fn existing_net_tag(docker_net_id: &str) -> String {
    format!("{TAG_NET_EXISTING}{}", prefix(docker_net_id, 12))
}

/// Whether a Neutron network is used by a Docker network other than `ours` (this host's
/// Docker networks on it, when known). Kuryr's multi-host pattern is one Docker network
/// per host on one Neutron network: the Docker network that made it (`kuryr-net-<id>`)
/// carries its two id tags, every other one adopts it with its own
/// `kuryr.net.existing:<id>` tag.
pub fn used_by_other_docker_networks(net_name: &str, tags: &[String], ours: &[String]) -> bool {
    let mine: Vec<String> = ours.iter().map(|id| existing_net_tag(id)).collect();
    if tags
        .iter()
        .any(|t| t.starts_with(TAG_NET_EXISTING) && !mine.contains(t))
    {
        return true;
    }
    creator_present(net_name, tags) && !net_name_is_ours(net_name, ours)
}

/// `kuryr-net-` and the 8 hex digits of the Docker network that made it.
pub fn is_kuryr_net_name(name: &str) -> bool {
    name.strip_prefix(NET_NAME_PREFIX)
        .is_some_and(|p| p.len() == 8 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether the Docker network that made this `kuryr-net-` network still tags it.
pub fn creator_present(net_name: &str, tags: &[String]) -> bool {
    let Some(p) = net_name.strip_prefix(NET_NAME_PREFIX) else {
        return false;
    };
    let low = format!("{TAG_LOW}{p}");
    !p.is_empty() && tags.iter().any(|t| t.starts_with(&low))
}

fn net_name_is_ours(net_name: &str, ours: &[String]) -> bool {
    ours.iter().any(|id| network_name(id) == net_name)
}

pub fn network_name(docker_net_id: &str) -> String {
    format!("{NET_NAME_PREFIX}{}", prefix(docker_net_id, 8))
}

pub fn subnet_name(pool_cidr: &str) -> String {
    format!("{SUBNET_NAME_PREFIX}{pool_cidr}")
}

pub fn subnetpool_name(prefix_option: &str, cidr: &str) -> String {
    format!("{prefix_option}-{cidr}")
}

pub fn endpoint_port_name(endpoint_id: &str) -> String {
    format!("{endpoint_id}-port")
}

pub fn exposed_sg_name(port_id: &str) -> String {
    format!("{port_id}-exposed_ports")
}

pub fn host_veth(port_id: &str) -> String {
    ifname(HOST_VETH_PREFIX, port_id)
}

pub fn container_veth(port_id: &str) -> String {
    ifname(CONTAINER_VETH_PREFIX, port_id)
}

/// `brq` + network id[0:11]: the linuxbridge agent's bridge for a network.
pub fn linuxbridge_name(neutron_net_id: &str) -> String {
    format!("brq{}", prefix(neutron_net_id, 11))
}

fn ifname(p: &str, port_id: &str) -> String {
    prefix(&format!("{p}{port_id}"), IFNAME_LEN).to_string()
}

/// An id's first 12 characters, as Docker shows ids.
pub fn short_id(id: &str) -> &str {
    prefix(id, 12)
}

fn prefix(s: &str, n: usize) -> &str {
    // Ids are ASCII; anything else is cut at the character boundary below `n` bytes.
    let mut end = n.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// True when `tags` hold both id tags of `docker_id`.
pub fn has_id_tags(tags: &[String], docker_id: &str) -> bool {
    id_tags(docker_id).iter().all(|t| tags.contains(t))
}

/// Reassembles a Docker id from its two tags, if present.
pub fn id_from_tags(tags: &[String]) -> Option<String> {
    let low = tags.iter().find_map(|t| t.strip_prefix(TAG_LOW))?;
    let high = tags
        .iter()
        .find_map(|t| t.strip_prefix(TAG_HIGH))
        .unwrap_or("");
    Some(format!("{low}{high}"))
}

/// The network tags naming security groups `ids`.
pub fn sg_tags(ids: &[String]) -> Vec<String> {
    ids.iter().map(|id| format!("{TAG_SG}{id}")).collect()
}

/// The description of the floating IP kuryr allocates for an endpoint.
pub fn fip_description(endpoint_id: &str) -> String {
    format!("{FIP_DESCRIPTION_PREFIX}{endpoint_id}")
}

/// The external network a network's tags name for floating IPs.
pub fn fip_net_from_tags(tags: &[String]) -> Option<String> {
    tags.iter()
        .find_map(|t| t.strip_prefix(TAG_FIP_NET))
        .map(str::to_string)
}

/// The security groups a network's tags name, in tag order.
pub fn sgs_from_tags(tags: &[String]) -> Vec<String> {
    tags.iter()
        .filter_map(|t| t.strip_prefix(TAG_SG))
        .map(str::to_string)
        .collect()
}

/// The tags of a CNI attachment's port: interface and network config name (cut to fit
/// Neutron's 60-character tags).
pub fn cni_tags(ifname: &str, conf_name: &str) -> Vec<String> {
    vec![
        TAG_CNI.to_string(),
        format!("{TAG_CNI_IF}{ifname}"),
        cni_net_tag(conf_name),
    ]
}

pub fn cni_net_tag(conf_name: &str) -> String {
    format!("{TAG_CNI_NET}{}", prefix(conf_name, 60 - TAG_CNI_NET.len()))
}

/// A network's tags name a user of it besides the runtime network of `tag`: another
/// Podman network, or a Docker network that took it as an existing network.
pub fn other_users(tags: &[String], tag: &str) -> bool {
    tags.iter()
        .any(|t| t != tag && (t.starts_with(TAG_NETAVARK_NET) || t.starts_with(TAG_NET_EXISTING)))
}

pub fn netavark_net_tag(podman_net_id: &str) -> String {
    format!(
        "{TAG_NETAVARK_NET}{}",
        prefix(podman_net_id, 60 - TAG_NETAVARK_NET.len())
    )
}

/// The description of a pod's port: `kubernetes pod <namespace>/<name>`, cut to
/// Neutron's 255 characters.
pub fn pod_description(pod: &str) -> String {
    format!("kubernetes pod {pod}").chars().take(255).collect()
}

/// The port name of a CNI attachment.
pub fn cni_port_name(container_id: &str, ifname: &str) -> String {
    format!("kuryr-cni-{}-{ifname}", prefix(container_id, 12))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET: &str = "3b6c0e6a8f3c4c1f9d2e7a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d";

    /// Ids read back from Neutron (a port id, an id tag anyone in the project can set)
    /// need not be ASCII: names cut from them never split a character.
    #[test]
    fn names_cut_from_ids_never_split_a_character() {
        let odd = "0123456789é123456789012345678é0123456789";
        assert_eq!(host_veth("0123456789abcdef"), "tap0123456789a");
        assert!(host_veth(odd).len() <= IFNAME_LEN);
        assert!(container_veth(odd).len() <= IFNAME_LEN);
        assert_eq!(short_id("ab€cdefghijklmnop"), "ab€cdefghi");
        assert_eq!(short_id("0123456789a€"), "0123456789a");
        assert_eq!(
            id_tags(odd).concat().len(),
            odd.len() + TAG_LOW.len() + TAG_HIGH.len()
        );
    }

    #[test]
    fn a_host_tag_fits_neutrons_60_characters_and_long_names_stay_apart() {
        assert_eq!(host_tag("node-1"), "kuryr.host:node-1");
        let a = format!(
            "{}.region-one.example.com",
            "compute-0001-rack-17-row-b-site"
        );
        let b = format!(
            "{}.region-two.example.com",
            "compute-0001-rack-17-row-b-site"
        );
        assert!(a.len() > 49);
        let (ta, tb) = (host_tag(&a), host_tag(&b));
        assert!(ta.len() <= 60 && tb.len() <= 60, "{ta} {tb}");
        assert_ne!(ta, tb);
        assert_eq!(ta, host_tag(&a), "the same host, the same tag");
        assert!(ta.starts_with("kuryr.host:compute-0001-rack-17-row-b-site."));
        let wide = "\u{e9}".repeat(40);
        assert!(host_tag(&wide).len() <= 60);
    }

    #[test]
    fn tags_split_the_id_in_two() {
        let t = id_tags(NET);
        assert_eq!(t[0], format!("kuryr.net.uuid.lh:{}", &NET[..32]));
        assert_eq!(t[1], format!("kuryr.net.uuid.uh:{}", &NET[32..]));
        assert!(t.iter().all(|t| t.len() <= 60));
        assert_eq!(id_from_tags(&t).as_deref(), Some(NET));
        assert!(has_id_tags(&t, NET));
        assert_eq!(id_tags("abc"), vec!["kuryr.net.uuid.lh:abc".to_string()]);
    }

    #[test]
    fn other_docker_networks_are_seen_by_their_tags() {
        let other = "ab".repeat(32);
        let ours = vec![NET.to_string()];
        // Adopted by us only.
        let mut tags = id_tags(NET);
        tags.push(existing_net_tag(NET));
        assert!(!used_by_other_docker_networks("net", &tags, &ours));
        // Adopted by another host's Docker network too.
        tags.extend(id_tags(&other));
        tags.push(existing_net_tag(&other));
        assert!(used_by_other_docker_networks("net", &tags, &ours));
        // We do not know which is ours (cold cache): every user counts.
        assert!(used_by_other_docker_networks(
            "net",
            &[existing_net_tag(NET)],
            &[]
        ));
        // Made by another host's Docker network, adopted by us.
        let mut tags = id_tags(&other);
        tags.extend(id_tags(NET));
        tags.push(existing_net_tag(NET));
        let made = network_name(&other);
        assert!(creator_present(&made, &tags));
        assert!(used_by_other_docker_networks(&made, &tags, &ours));
        // Made by us, nobody else: not shared; the creator gone: not present.
        assert!(!used_by_other_docker_networks(
            &network_name(NET),
            &id_tags(NET),
            &ours
        ));
        assert!(!creator_present(&made, &id_tags(NET)));
    }

    #[test]
    fn names_match_reference() {
        assert_eq!(network_name(NET), "kuryr-net-3b6c0e6a");
        assert_eq!(existing_net_tag(NET), "kuryr.net.existing:3b6c0e6a8f3c");
        assert_eq!(subnet_name("10.0.0.0/24"), "kuryr-subnet-10.0.0.0/24");
        assert_eq!(
            subnetpool_name("kuryrPool", "10.0.0.0/24"),
            "kuryrPool-10.0.0.0/24"
        );
        let port = "a1b2c3d4-e5f6-4711-8899-aabbccddeeff";
        assert_eq!(host_veth(port), "tapa1b2c3d4-e5");
        assert_eq!(container_veth(port), "t_ca1b2c3d4-e5");
        assert_eq!(linuxbridge_name(port), "brqa1b2c3d4-e5");
        assert_eq!(exposed_sg_name(port), format!("{port}-exposed_ports"));
        assert_eq!(endpoint_port_name("ep"), "ep-port");
    }
}
