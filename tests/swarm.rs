//! Swarm, against the real Neutron and the second, current engine (profile engine2): a
//! single-node swarm, kuryr as a managed v2 plugin with `capability_scope = global`, a
//! swarm-scoped kuryr network and a service of two replicas that ping each other over
//! Neutron. The manager allocates the network (RequestPool, AllocateNetwork) and the tasks'
//! addresses before the node creates the network and asks for the same pool again; removal
//! (service, then network) leaves nothing in Neutron.

mod common;

use std::process::{Command, Output};

use kuryr::neutron::{Filters, Neutron, Port, Subnet, SubnetPool};

const CIDR: &str = "10.38.0.0/24";

/// The docker CLI against the second engine.
fn e2(args: &[&str]) -> Output {
    Command::new(common::docker_bin())
        .env("DOCKER_HOST", common::devenv_path("KURYR_TEST_ENGINE2"))
        .args(args)
        .output()
        .expect("docker")
}

fn e2_ok(args: &[&str]) -> String {
    let out = e2(args);
    assert!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes what the test made in the engine, whatever happened.
struct Cleanup {
    plugin: String,
    network: String,
    service: String,
    left_swarm: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = e2(&["service", "rm", &self.service]);
        // The node drops the network once its tasks are gone.
        common::wait_until(60, || {
            e2(&["network", "rm", &self.network])
                .status
                .success()
                .then_some(())
        });
        let _ = e2(&["plugin", "disable", "-f", &self.plugin]);
        let _ = e2(&["plugin", "rm", "-f", &self.plugin]);
        if self.left_swarm {
            let _ = e2(&["swarm", "leave", "--force"]);
        }
    }
}

/// The service's task containers, when `n` of them run.
fn tasks(service: &str, n: usize) -> Option<Vec<String>> {
    let filter = format!("label=com.docker.swarm.service.name={service}");
    let ids = e2_ok(&[
        "ps",
        "-q",
        "--filter",
        &filter,
        "--filter",
        "status=running",
    ]);
    let ids: Vec<String> = ids.lines().map(str::to_string).collect();
    (ids.len() == n).then_some(ids)
}

async fn ports_in(n: &Neutron) -> Vec<Port> {
    let all: Vec<Port> = n.list(&Filters::new()).await.unwrap();
    all.into_iter()
        .filter(|p| {
            p.fixed_ips
                .iter()
                .any(|f| f.ip_address.to_string().starts_with("10.38.0."))
        })
        .collect()
}

async fn subnets_of_cidr(n: &Neutron) -> Vec<Subnet> {
    n.list(&Filters::new().add("cidr", CIDR)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swarm_service_of_two_replicas_pings_over_neutron_and_leaves_nothing() {
    let n = common::neutron().await;
    let root = common::devenv_path("KURYR_TEST_ENGINE2_ROOT");
    let state = e2_ok(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
    let init = state != "active";
    if init {
        e2_ok(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
    }
    let plugin = format!("{}:latest", common::unique("kswarm-"));
    let (net, svc) = (common::unique("ksw-"), common::unique("ksws-"));
    let _cleanup = Cleanup {
        plugin: plugin.clone(),
        network: net.clone(),
        service: svc.clone(),
        left_swarm: init,
    };

    // The plugin's config, where the engine (in its own root) finds it.
    let etc_rel = format!("/tmp/{}", common::unique("kswarm-etc-"));
    let etc = format!("{root}{etc_rel}");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(
        format!("{etc}/kuryr.conf"),
        format!(
            "[DEFAULT]\nhost = {}\ncapability_scope = global\n[neutron]\nauth_type = none\nendpoint = {}\n",
            kuryr::config::hostname(),
            common::neutron_url()
        ),
    )
    .unwrap();
    let build = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/docker-plugin/build"
    ))
    .env("DOCKER_HOST", common::devenv_path("KURYR_TEST_ENGINE2"))
    .args([&plugin, env!("CARGO_BIN_EXE_kuryr")])
    .output()
    .unwrap();
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
    e2_ok(&["plugin", "set", &plugin, &format!("etc.source={etc_rel}")]);
    e2_ok(&["plugin", "enable", &plugin]);

    // A global-scope driver's network is the swarm's (the manager allocates it).
    let net_id = e2_ok(&[
        "network",
        "create",
        "-d",
        &plugin,
        "--ipam-driver",
        &plugin,
        "--subnet",
        CIDR,
        "--gateway",
        "10.38.0.1",
        &net,
    ]);
    assert_eq!(
        e2_ok(&["network", "inspect", "-f", "{{.Scope}}", &net]),
        "swarm"
    );
    e2_ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        &svc,
        "--replicas",
        "2",
        "--network",
        &net,
        "--no-resolve-image",
        &common::image(),
        "sleep",
        "600",
    ]);
    let ids = common::wait_until(120, || tasks(&svc, 2)).unwrap_or_else(|| {
        panic!(
            "the two tasks never ran: {}",
            e2_ok(&[
                "service",
                "ps",
                "--no-trunc",
                "--format",
                "{{.Name}} {{.CurrentState}} {{.Error}}",
                &svc
            ])
        )
    });
    let ip_of = |c: &str| {
        e2_ok(&[
            "inspect",
            "-f",
            &format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}"),
            c,
        ])
    };
    let ips: Vec<String> = ids.iter().map(|c| ip_of(c)).collect();
    for (from, to) in [(0, 1), (1, 0)] {
        let ok = common::wait_until(30, || {
            e2(&["exec", &ids[from], "ping", "-c", "1", "-W", "2", &ips[to]])
                .status
                .success()
                .then_some(())
        });
        assert!(
            ok.is_some(),
            "task {from} cannot ping task {to} at {}",
            ips[to]
        );
    }

    // Each task's address is a kuryr port of this host on the one Neutron network the
    // swarm network maps to; IPAM's holding network became it (one subnet of the CIDR).
    let neutron_net = common::neutron_network_of(&n, &net_id).await;
    assert_eq!(subnets_of_cidr(&n).await.len(), 1);
    for ip in &ips {
        let p = common::port_at(&n, ip).await;
        assert_eq!(p.network_id, neutron_net);
        assert_eq!(p.host_id, kuryr::config::hostname());
        assert!(p.vif_type.is_bound(), "{p:?}");
    }

    e2_ok(&["service", "rm", &svc]);
    let gone = common::wait_until(60, || {
        e2(&["network", "rm", &net]).status.success().then_some(())
    });
    assert!(gone.is_some(), "docker network rm {net} never succeeded");
    // The manager frees the network after the node: wait for both.
    let mut left = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..60 {
        let pools: Vec<SubnetPool> = n.list(&Filters::new()).await.unwrap();
        left = (
            ports_in(&n).await,
            subnets_of_cidr(&n).await,
            pools
                .into_iter()
                .filter(|p| p.prefixes.iter().any(|x| x == CIDR))
                .collect(),
        );
        if left.0.is_empty() && left.1.is_empty() && left.2.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    assert!(
        left.0.is_empty() && left.1.is_empty() && left.2.is_empty(),
        "left in Neutron: {left:?}"
    );
    let _ = std::fs::remove_dir_all(&etc);
}
