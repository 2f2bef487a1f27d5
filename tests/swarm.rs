//! Swarm, against the real Neutron and the engine of `DOCKER_HOST` (./scripts/test runs it
//! on Docker 20.10 and again on engine2's current one): a single-node swarm, kuryr as a managed v2 plugin with `capability_scope = global`, a
//! swarm-scoped kuryr network and a service of two replicas that ping each other over
//! Neutron. The manager allocates the network (RequestPool, AllocateNetwork) and the tasks'
//! addresses before the node creates the network and asks for the same pool again; removal
//! (service, then network) leaves nothing in Neutron.

mod common;

use std::process::Output;

use kuryr::neutron::{Filters, Neutron, Port, Subnet, SubnetPool};

const CIDR: &str = "10.38.0.0/24";

fn engine(args: &[&str]) -> Output {
    common::docker_try(args)
}

fn engine_ok(args: &[&str]) -> String {
    let out = engine(args);
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
        let _ = engine(&["service", "rm", &self.service]);
        // The node drops the network once its tasks are gone (or the test removed it).
        common::wait_until(60, || {
            let gone = !engine(&["network", "inspect", &self.network])
                .status
                .success();
            (gone || engine(&["network", "rm", &self.network]).status.success()).then_some(())
        });
        let _ = engine(&["plugin", "disable", "-f", &self.plugin]);
        let _ = engine(&["plugin", "rm", "-f", &self.plugin]);
        if self.left_swarm {
            let _ = engine(&["swarm", "leave", "--force"]);
        }
    }
}

/// The service's task containers, when `n` of them run.
fn tasks(service: &str, n: usize) -> Option<Vec<String>> {
    let ids = common::running_tasks(engine_ok, service);
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
    common::require_docker();
    let state = engine_ok(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
    let init = state != "active";
    if init {
        engine_ok(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
    }
    // The manager answers once its node is listed Ready.
    let ready = common::wait_until(60, || {
        let out = engine(&["node", "ls", "--format", "{{.Status}}"]);
        (out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "Ready")
            .then_some(())
    });
    assert!(ready.is_some(), "the swarm's node never became Ready");
    let plugin = format!("{}:latest", common::unique("kswarm-"));
    let (net, svc) = (common::unique("ksw-"), common::unique("ksws-"));
    let _cleanup = Cleanup {
        plugin: plugin.clone(),
        network: net.clone(),
        service: svc.clone(),
        left_swarm: init,
    };

    let _etc = common::managed_plugin(&plugin, "capability_scope = global\n");

    // A global-scope driver's network is the swarm's (the manager allocates it).
    let net_id = common::swarm_network_create(
        engine,
        &[
            "-d",
            &plugin,
            "--ipam-driver",
            &plugin,
            "--subnet",
            CIDR,
            "--gateway",
            "10.38.0.1",
            &net,
        ],
    );
    assert_eq!(
        engine_ok(&["network", "inspect", "-f", "{{.Scope}}", &net]),
        "swarm"
    );
    engine_ok(&[
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
            engine_ok(&[
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
        engine_ok(&[
            "inspect",
            "-f",
            &format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}"),
            c,
        ])
    };
    let ips: Vec<String> = ids.iter().map(|c| ip_of(c)).collect();
    for (from, to) in [(0, 1), (1, 0)] {
        let ok = common::wait_until(30, || {
            engine(&["exec", &ids[from], "ping", "-c", "1", "-W", "2", &ips[to]])
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
        assert_eq!(p.host_id, common::binding_host());
        assert!(p.vif_type.is_bound(), "{p:?}");
    }

    engine_ok(&["service", "rm", &svc]);
    let gone = common::wait_until(60, || {
        engine(&["network", "rm", &net])
            .status
            .success()
            .then_some(())
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
}
