//! Crash safety: kuryr is killed (SIGKILL, no clean-up) at a point of a container's
//! lifecycle, either right after a call's work (`KURYR_TEST_CRASH_AFTER`) or inside a
//! handler between two of its side effects (`KURYR_TEST_KILL_AT`, test builds only), then
//! restarted at once. Docker's command is asserted to end as documented, the user then
//! finishes (`docker rm`, `docker network rm`, and `kuryr gc` for a network Docker never
//! got), and nothing kuryr made remains: no port, subnet, network, subnetpool or security
//! group in Neutron, no veth on the host.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::{docker, docker_try, Kuryr};
use kuryr::neutron::{Filters, Network, Neutron, Port, SecurityGroup, Subnet, SubnetPool};

/// The user's commands, in order; a kill lands in one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    NetworkCreate,
    Run,
    Remove,
    NetworkRemove,
}

struct Case {
    /// The environment variable that places the kill, and its value.
    point: (&'static str, &'static str),
    /// [DEFAULT] options.
    conf: &'static str,
    subnet: &'static str,
    /// More `docker run` arguments (`--expose`, `--mac-address`).
    run: &'static [&'static str],
    /// The command the kill lands in, and whether it succeeds all the same.
    killed_in: Step,
    succeeds: bool,
    /// How long the kill may come after that command has ended.
    linger: Duration,
}

/// The host's veths and, on OVN, the ports of br-int (which outlive a deleted veth).
fn veths() -> Vec<String> {
    let mut v = common::host_links("tap");
    v.extend(common::host_links("t_c"));
    v.extend(
        common::ovn_bridge_ports()
            .into_iter()
            .map(|p| format!("br-int:{p}")),
    );
    v
}

/// Runs `cmd` while watching kuryr: if kuryr dies meanwhile it is restarted at once
/// (without the kill point). Whether kuryr died, and the command's result.
/// `linger` keeps watching after the command has ended, for a kill in work kuryr does
/// after its answer.
fn watched(
    k: &mut Kuryr,
    sock: &Path,
    conf: &str,
    cmd: Vec<String>,
    linger: Duration,
) -> (bool, Output, Option<Kuryr>) {
    let run = std::thread::spawn(move || {
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        docker_try(&args)
    });
    let mut ended: Option<Instant> = None;
    loop {
        if let Ok(Some(_)) = k.child.try_wait() {
            let restarted = Kuryr::at(sock.to_path_buf()).conf(conf).start();
            let out = run.join().expect("docker command");
            return (true, out, Some(restarted));
        }
        if run.is_finished() {
            let at = *ended.get_or_insert_with(Instant::now);
            if at.elapsed() >= linger {
                return (false, run.join().expect("docker command"), None);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run_args(ct: &str, net: &str, extra: &[&str]) -> Vec<String> {
    let image = common::image();
    let mut a: Vec<String> = [
        "run",
        "-d",
        "--label",
        "kuryr-test",
        "--name",
        ct,
        "--network",
        net,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a.extend([image, "sleep".into(), "600".into()]);
    a
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

async fn crash(n: &Neutron, case: &Case) {
    let what = format!("{}={}", case.point.0, case.point.1);
    let before = veths();
    let neutron_before = neutron_ids(n).await;
    let p = common::unique("kt");
    let sock = PathBuf::from(format!("/run/docker/plugins/{p}.sock"));
    let conf = format!(
        "[DEFAULT]\nunix_socket = {}\n{}[neutron]\nauth_type = none\nendpoint = {}\n",
        sock.display(),
        case.conf,
        common::neutron_url()
    );
    let mut k = Kuryr::at(sock.clone())
        .conf(&conf)
        .envs(&[case.point])
        .start();
    let mut restarted: Option<Kuryr> = None;
    let (net, ct) = (common::unique("kx-"), common::unique("kxc-"));
    let gw = case.subnet.replace("0/24", "1");
    let steps = [
        (
            Step::NetworkCreate,
            strings(&[
                "network",
                "create",
                "--label",
                "kuryr-test",
                "-d",
                &p,
                "--ipam-driver",
                &p,
                "--subnet",
                case.subnet,
                "--gateway",
                &gw,
                &net,
            ]),
        ),
        (Step::Run, run_args(&ct, &net, case.run)),
        (Step::Remove, strings(&["rm", "-f", &ct])),
        (Step::NetworkRemove, strings(&["network", "rm", &net])),
    ];
    let mut killed = None;
    let mut created = true;
    for (step, cmd) in steps {
        if !created {
            break;
        }
        let (died, out, k2) = if restarted.is_none() {
            let linger = if step == case.killed_in {
                case.linger
            } else {
                Duration::ZERO
            };
            watched(&mut k, &sock, &conf, cmd, linger)
        } else {
            let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
            (false, docker_try(&args), None)
        };
        if died {
            restarted = k2;
            killed = Some(step);
            assert_eq!(step, case.killed_in, "{what}: kuryr was killed in {step:?}");
            assert_eq!(
                out.status.success(),
                case.succeeds,
                "{what}: {step:?} {} after the kill: {}",
                if out.status.success() {
                    "succeeded"
                } else {
                    "failed"
                },
                String::from_utf8_lossy(&out.stderr).trim()
            );
            if step == Step::Run && out.status.success() {
                second_start_gets_another_address(n, &what, &ct, &net).await;
            }
        } else if step != Step::Remove {
            assert!(
                out.status.success(),
                "{what}: {step:?} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        if step == Step::NetworkCreate && !out.status.success() {
            created = false;
        }
        if step == Step::NetworkRemove && !out.status.success() {
            // What a user does next: remove it again.
            docker(&["network", "rm", &net]);
        }
    }
    assert_eq!(
        killed,
        Some(case.killed_in),
        "{what}: kuryr was never killed"
    );
    if !created {
        // Docker never got the network: what kuryr made for it is gc's to remove.
        common::kuryr_gc(&conf, &["--apply"]);
    }
    let _ = docker_try(&["rm", "-f", &ct]);
    let after = restarted.as_ref().map(Kuryr::log_text).unwrap_or_default();
    nothing_left(n, &what, &neutron_before, &before, &after).await;
    drop(restarted);
}

/// A start after the restart never gets the address of the first container (its
/// bookkeeping may never have been written: its veth says it is taken).
async fn second_start_gets_another_address(n: &Neutron, what: &str, ct: &str, net: &str) {
    let ct3 = common::unique("kxd-");
    let second = common::run_container_try(&ct3, net);
    if second.status.success() {
        let (ip1, ip3) = (
            common::container_ip(ct, net),
            common::container_ip(&ct3, net),
        );
        assert_ne!(ip1, ip3, "{what}: one address handed out twice");
        let holders: Vec<Port> = n
            .list(&Filters::new().add("fixed_ips", format!("ip_address={ip3}")))
            .await
            .unwrap();
        assert_eq!(holders.len(), 1, "{what}: {holders:?}");
    }
    let _ = docker_try(&["rm", "-f", &ct3]);
}

/// Ids of what is in Neutron: networks, subnets, subnetpools, ports, security groups.
async fn neutron_ids(n: &Neutron) -> Vec<(String, String)> {
    fn ids<T>(kind: &str, v: Vec<T>, id: impl Fn(&T) -> String) -> Vec<(String, String)> {
        v.iter().map(|x| (kind.to_string(), id(x))).collect()
    }
    let f = Filters::new();
    let mut all = ids("network", n.list::<Network>(&f).await.unwrap(), |x| {
        x.id.to_string()
    });
    all.extend(ids("subnet", n.list::<Subnet>(&f).await.unwrap(), |x| {
        x.id.to_string()
    }));
    all.extend(ids(
        "subnetpool",
        n.list::<SubnetPool>(&f).await.unwrap(),
        |x| format!("{} {:?}", x.id, x.prefixes),
    ));
    all.extend(ids("port", n.list::<Port>(&f).await.unwrap(), |x| {
        format!("{} {}", x.id, x.device_owner)
    }));
    all.extend(ids(
        "security group",
        n.list::<SecurityGroup>(&f).await.unwrap(),
        |x| format!("{} {}", x.id, x.name),
    ));
    all
}

/// Nothing in Neutron that was not there before the case, no new veth on the host (the
/// cases run one at a time, and no other test binary runs meanwhile), once what finishes
/// in the background (kuryr's resumed deletes, the DHCP agent's teardown) is done.
async fn nothing_left(
    n: &Neutron,
    what: &str,
    neutron_before: &[(String, String)],
    veths_before: &[String],
    restarted_log: &str,
) {
    // Some of it is kuryr's to finish in the background (a delete it resumes at start).
    let deadline = Instant::now() + Duration::from_secs(15);
    let left = loop {
        let left: Vec<(String, String)> = neutron_ids(n)
            .await
            .into_iter()
            .filter(|x| !neutron_before.contains(x))
            .collect();
        if left.is_empty() || Instant::now() >= deadline {
            break left;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(
        left.is_empty(),
        "{what}: left in Neutron: {left:?}\n---- restarted kuryr's log ----\n{restarted_log}"
    );
    // Neutron's DHCP agent (linuxbridge interface driver) has `tap` veths of its own,
    // made and removed as it processes a network, after the API call: one of the case's
    // network may outlive it for a moment. A veth kuryr left never goes by itself.
    let deadline = Instant::now() + Duration::from_secs(15);
    let stray = loop {
        let stray: Vec<String> = veths()
            .into_iter()
            .filter(|l| !veths_before.contains(l))
            .collect();
        if stray.is_empty() || Instant::now() >= deadline {
            break stray;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(
        stray.is_empty(),
        "{what}: veths left: {stray:?}\n---- restarted kuryr's log ----\n{restarted_log}"
    );
}

const EXPOSE: &[&str] = &["--expose", "8080/tcp"];

/// One case at a time: each compares all of Neutron before and after.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn each(cases: &[Case]) {
    let _one = ONE_AT_A_TIME.lock().await;
    common::require_docker();
    let n = common::neutron().await;
    for c in cases {
        let started = Instant::now();
        crash(&n, c).await;
        eprintln!("{}={}: {:?}", c.point.0, c.point.1, started.elapsed());
    }
}

/// Kills on the start path: after each call's work, and inside CreateEndpoint (a chosen
/// MAC: the port is updated, then the veth made) and ProgramExternalConnectivity (the
/// group made, not yet on the port). The interrupted call is resent by Docker with an
/// empty body, refused: `docker run` fails, and Docker's own rollback calls remove
/// what the call made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_each_step_of_a_start() {
    const CRASH: &str = "KURYR_TEST_CRASH_AFTER";
    const KILL: &str = "KURYR_TEST_KILL_AT";
    let start = |point, subnet, run| Case {
        point,
        conf: "",
        subnet,
        run,
        killed_in: Step::Run,
        succeeds: false,
        linger: Duration::ZERO,
    };
    each(&[
        // RequestAddress #1 is the network's gateway; #2 is the container's.
        start((CRASH, "IpamDriver.RequestAddress#2"), "10.40.1.0/24", &[]),
        start((CRASH, "NetworkDriver.CreateEndpoint"), "10.40.2.0/24", &[]),
        start((CRASH, "NetworkDriver.Join"), "10.40.3.0/24", &[]),
        start(
            (CRASH, "NetworkDriver.ProgramExternalConnectivity"),
            "10.40.4.0/24",
            EXPOSE,
        ),
        start(
            (KILL, "CreateEndpoint.after_port"),
            "10.40.6.0/24",
            &["--mac-address", "02:42:0a:28:06:09"],
        ),
        start(
            (KILL, "ProgramExternalConnectivity.after_group"),
            "10.40.7.0/24",
            EXPOSE,
        ),
    ])
    .await;
}

/// With the pool, CreateEndpoint answers before the endpoint's bookkeeping (device_id,
/// name, tags) is on its port, and Join writes it before answering; a kill while it is
/// written fails the start (Join gets no answer) and leaves a port known to be taken
/// only by its veth, which Docker's clean-up and the restarted kuryr give back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_the_answer_and_the_bookkeeping() {
    each(&[Case {
        point: ("KURYR_TEST_KILL_AT", "CreateEndpoint.bookkeeping"),
        conf: "port_pool_size = 2\n",
        subnet: "10.40.5.0/24",
        run: &[],
        killed_in: Step::Run,
        succeeds: false,
        linger: Duration::ZERO,
    }])
    .await;
}

/// Kills while a network is made and while things are removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_a_network_is_made_or_things_are_removed() {
    const KILL: &str = "KURYR_TEST_KILL_AT";
    let case = |point, subnet, run, killed_in, succeeds| Case {
        point: (KILL, point),
        conf: "",
        subnet,
        run,
        killed_in,
        succeeds,
        linger: Duration::ZERO,
    };
    each(&[
        // The network is made, its subnet not: `docker network create` fails, and
        // `kuryr gc` removes the network Docker never got.
        case(
            "CreateNetwork.after_network",
            "10.40.8.0/24",
            &[],
            Step::NetworkCreate,
            false,
        ),
        // The port's group is off the port, not yet deleted.
        case(
            "RevokeExternalConnectivity.after_port",
            "10.40.9.0/24",
            EXPOSE,
            Step::Remove,
            true,
        ),
        // The veth is gone, the port not yet released.
        case(
            "DeleteEndpoint.after_unplug",
            "10.40.10.0/24",
            &[],
            Step::Remove,
            true,
        ),
        // The network's ports are gone, the network not yet.
        case(
            "DeleteNetwork.after_ports",
            "10.40.11.0/24",
            &[],
            Step::NetworkRemove,
            true,
        ),
    ])
    .await;
}
