//! Kubernetes' runtime on kuryr: containerd's CRI plugin (Debian 12's containerd 1.6)
//! runs pods whose network is `kuryr-cni`, driven through the CRI API as the kubelet
//! drives it (tests/common/cri.rs). A pod's IP is its Neutron port's; a pod, a Docker
//! container and a Podman container on one Neutron network reach each other; the CNI
//! config's groups and QoS policy are the pod port's; removing a pod leaves nothing; a
//! pod outlives a containerd restart and is cleaned up after it; a kuryr killed in the
//! middle of a pod's ADD leaves nothing once `kuryr gc` has run (containerd 1.6 speaks
//! CNI 1.0.0: it never sends GC). containerd runs in the devenv's containerd profile.

mod common;

use std::path::PathBuf;

use common::cni::TestNet;
use common::cri::{pod_config, Cri, PodSandboxConfig, SANDBOX_READY};
use common::Kuryr;
use kuryr::neutron::{Filters, Port, QosPolicy, SecurityGroup};
use serde_json::{json, Value};

/// One test at a time: containerd loads one CNI config (`max_conf_num = 1`), which each
/// test writes for its own network, and `kuryr gc` (grace 0) judges every port here.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The profile's containerd, with `kuryr-cni` in its CNI plugin directory.
struct Containerd {
    cri: Cri,
    conf_dir: PathBuf,
    image: String,
    logs: tempfile::TempDir,
    pods: Vec<String>,
}

impl Containerd {
    fn new() -> Containerd {
        let bin_dir = PathBuf::from(common::devenv_path("KURYR_TEST_CONTAINERD_CNI_BIN_DIR"));
        // Written aside and renamed in: containerd never execs a half-written plugin.
        let tmp = bin_dir.join(format!(".{}", common::unique("kuryr-cni-")));
        std::fs::copy(env!("CARGO_BIN_EXE_kuryr-cni"), &tmp).unwrap();
        std::fs::rename(&tmp, bin_dir.join("kuryr-cni")).unwrap();
        let socket = common::devenv_path("KURYR_TEST_CONTAINERD_SOCKET");
        Containerd {
            cri: Cri::connect(socket.as_ref()),
            conf_dir: common::devenv_path("KURYR_TEST_CONTAINERD_CNI_CONF_DIR").into(),
            image: common::devenv_path("KURYR_TEST_CONTAINERD_IMAGE"),
            logs: tempfile::tempdir().unwrap(),
            pods: Vec::new(),
        }
    }

    /// Makes `plugin` (a kuryr-cni plugin's config) containerd's pod network, and waits
    /// until containerd has loaded it (it watches its config directory).
    async fn network(&self, plugin: Value) {
        let name = common::unique("kuryr-k8s-");
        let conflist = json!({"cniVersion": "1.0.0", "name": name, "plugins": [plugin]});
        let tmp = self.conf_dir.join(".kuryr.tmp");
        std::fs::write(&tmp, conflist.to_string()).unwrap();
        std::fs::rename(&tmp, self.conf_dir.join("10-kuryr.conflist")).unwrap();
        let mut last = String::new();
        for _ in 0..100 {
            if let Ok(info) = self.cri.status_info().await {
                last = info.get("cniconfig").cloned().unwrap_or_default();
                if last.contains(&name) {
                    return;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        panic!("containerd did not load the CNI config {name}; it has {last}");
    }

    fn sandbox(&self, name: &str) -> PodSandboxConfig {
        pod_config(&common::unique(name), "kuryr-test", self.logs.path())
    }

    /// RunPodSandbox, then a busybox container sleeping in the pod: (pod id, container id).
    async fn pod(&mut self, sandbox: &PodSandboxConfig) -> (String, String) {
        let pod = self.cri.run_pod(sandbox).await.expect("RunPodSandbox");
        self.pods.push(pod.clone());
        let ctr = self
            .cri
            .start_container(&pod, sandbox, "main", &self.image, &["sleep", "3600"])
            .await
            .expect("CreateContainer + StartContainer");
        (pod, ctr)
    }

    async fn ip(&self, pod: &str) -> String {
        let status = self.cri.pod_status(pod).await.expect("PodSandboxStatus");
        assert_eq!(status.state, SANDBOX_READY, "{status:?}");
        status.network.map(|n| n.ip).unwrap_or_default()
    }

    /// Whether container `ctr` reaches `to` (tried for a while: a port turns ACTIVE late).
    async fn pings(&self, ctr: &str, to: &str) -> bool {
        for _ in 0..45 {
            let r = self
                .cri
                .exec(ctr, &["ping", "-c", "1", "-W", "1", to])
                .await;
            if matches!(r, Ok((0, _))) {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        false
    }

    /// StopPodSandbox + RemovePodSandbox, as the kubelet removes a pod.
    async fn remove(&mut self, pod: &str) {
        self.cri.stop_pod(pod).await.expect("StopPodSandbox");
        self.cri.remove_pod(pod).await.expect("RemovePodSandbox");
        self.pods.retain(|p| p != pod);
    }
}

impl Drop for Containerd {
    /// A failed test's pods go too (best effort, on a runtime of its own: Drop is sync).
    fn drop(&mut self) {
        let (cri, pods) = (self.cri.clone(), std::mem::take(&mut self.pods));
        if pods.is_empty() {
            return;
        }
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().ok()?;
            rt.block_on(async {
                for p in pods {
                    let _ = cri.stop_pod(&p).await;
                    let _ = cri.remove_pod(&p).await;
                }
            });
            Some(())
        })
        .join();
    }
}

fn plugin(k: &Kuryr, network: &str, extra: Value) -> Value {
    let mut p = json!({"type": "kuryr-cni", "network": network, "socket": k.cni_socket});
    if let (Some(p), Some(e)) = (p.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    p
}

async fn cni_ports(net: &TestNet) -> Vec<Port> {
    net.ports()
        .await
        .into_iter()
        .filter(|p| p.tags.iter().any(|t| t == kuryr::names::TAG_CNI))
        .collect()
}

async fn port_with_ip(net: &TestNet, ip: &str) -> Port {
    let ports = cni_ports(net).await;
    ports
        .iter()
        .find(|p| p.fixed_ips.iter().any(|f| f.ip_address.to_string() == ip))
        .cloned()
        .unwrap_or_else(|| panic!("no kuryr port holds the pod's address {ip}: {ports:?}"))
}

fn assert_no_veth(port: &Port) {
    let veth = kuryr::names::host_veth(&port.id);
    assert!(common::host_links(&veth).is_empty(), "veth {veth} is left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_has_its_ports_address_reaches_docker_and_podman_and_leaves_nothing() {
    let _serial = SERIAL.lock().await;
    common::require_docker();
    let plugin_name = common::unique("kk8s");
    let k = Kuryr::plugin(&plugin_name).start();
    let net = TestNet::new("10.253.90.0/24", "10.253.90.1").await;
    let mut ctrd = Containerd::new();
    let version = ctrd.cri.version().await.expect("CRI Version");
    assert_eq!(version.runtime_name, "containerd", "{version:?}");
    ctrd.network(plugin(&k, &net.name, json!({}))).await;

    let sandbox = ctrd.sandbox("web-");
    let (pod, ctr) = ctrd.pod(&sandbox).await;
    let ip = ctrd.ip(&pod).await;
    let port = port_with_ip(&net, &ip).await;
    assert_eq!(port.device_id, pod, "the pod's port names its sandbox");
    // And the pod, for people reading Neutron: CRI's K8S_POD_NAMESPACE and K8S_POD_NAME.
    let raw = net
        .n
        .list_raw("ports", &Filters::new().add("id", port.id.as_str()))
        .await
        .unwrap();
    let meta = sandbox.metadata.clone().unwrap_or_default();
    let described = format!("kubernetes pod {}/{}", meta.namespace, meta.name);
    assert_eq!(raw[0]["description"], described.as_str());
    let (_, link) = ctrd
        .cri
        .exec(&ctr, &["ip", "-o", "link", "show", "eth0"])
        .await
        .unwrap();
    assert!(link.contains(&port.mac_address), "{link}");

    // A Docker container on the same Neutron network.
    let dnet = common::unique("kk8d-");
    common::kuryr_network_with(
        &plugin_name,
        &dnet,
        &[
            "--subnet",
            "10.253.90.0/24",
            "--gateway",
            "10.253.90.1",
            "-o",
            &format!("neutron.net.uuid={}", net.id),
        ],
    );
    let d = common::unique("k8d-");
    common::run_container(&d, &dnet, &[]);
    let d_ip = common::container_ip(&d, &dnet);
    // A Podman 4 container on it, through the same kuryr-cni.
    let mut pm = common::podman4::Podman::new();
    let pnet = common::unique("kuryr-k8p-");
    pm.network(&pnet, &net.name, &k.cni_socket);
    let p = common::unique("k8p-");
    let out = pm.container(&p, &pnet, &[]);
    assert!(out.status.success(), "podman run: {out:?}");
    let p_ip = pm.ip_of(&p);

    assert!(
        ctrd.pings(&ctr, &d_ip).await,
        "the pod cannot reach docker at {d_ip}"
    );
    assert!(
        ctrd.pings(&ctr, &p_ip).await,
        "the pod cannot reach podman at {p_ip}"
    );
    let back = common::wait_until(60, || {
        common::docker_try(&["exec", &d, "ping", "-c", "1", "-W", "1", &ip])
            .status
            .success()
            .then_some(())
    });
    assert!(back.is_some(), "docker cannot reach the pod at {ip}");
    assert!(pm.pings(&p, &ip), "podman cannot reach the pod at {ip}");

    // The kubelet removes the pod: its port and veth go.
    ctrd.remove(&pod).await;
    assert!(
        cni_ports(&net)
            .await
            .iter()
            .all(|q| q.id != port.id && q.device_id != pod),
        "the pod's port is left"
    );
    assert_no_veth(&port);
    pm.run(&["rm", "-f", "-t", "0", &p]);
    pm.containers.clear();
    common::docker(&["rm", "-f", &d]);
    common::docker(&["network", "rm", &dnet]);
    net.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pods_port_has_the_groups_and_qos_policy_of_the_cni_config() {
    let _serial = SERIAL.lock().await;
    let k = Kuryr::private().start();
    let net = TestNet::new("10.253.91.0/24", "10.253.91.1").await;
    let n = common::neutron().await;
    let group: SecurityGroup = n
        .create(json!({"name": common::unique("kuryr-k8s-sg-"), "description": "kuryr test"}))
        .await
        .unwrap();
    let policy: QosPolicy = n
        .create(json!({"name": common::unique("kuryr-k8s-qos-")}))
        .await
        .unwrap();
    let mut ctrd = Containerd::new();
    // The group by name, the policy by id: the config takes either.
    let extra = json!({"securityGroups": [group.name], "qosPolicy": policy.id});
    ctrd.network(plugin(&k, &net.name, extra)).await;

    let (pod, _) = ctrd.pod(&ctrd.sandbox("grp-")).await;
    let port = port_with_ip(&net, &ctrd.ip(&pod).await).await;
    assert_eq!(port.security_groups, vec![group.id.clone()]);
    assert_eq!(port.qos_policy_id.as_deref(), Some(policy.id.as_str()));

    ctrd.remove(&pod).await;
    assert!(cni_ports(&net).await.is_empty(), "the pod's port is left");
    net.remove().await;
    n.delete::<SecurityGroup>(&group.id).await.unwrap();
    n.delete::<QosPolicy>(&policy.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_outlives_a_containerd_restart_and_its_removal_still_cleans_up() {
    let _serial = SERIAL.lock().await;
    let k = Kuryr::private().start();
    let net = TestNet::new("10.253.92.0/24", "10.253.92.1").await;
    let mut ctrd = Containerd::new();
    ctrd.network(plugin(&k, &net.name, json!({}))).await;
    let (a, a_ctr) = ctrd.pod(&ctrd.sandbox("a-")).await;
    let (b, _) = ctrd.pod(&ctrd.sandbox("b-")).await;
    let (a_ip, b_ip) = (ctrd.ip(&a).await, ctrd.ip(&b).await);
    assert!(ctrd.pings(&a_ctr, &b_ip).await, "pod a cannot reach pod b");

    let restart = |var: &str| {
        let out = std::process::Command::new(common::devenv_path(var))
            .output()
            .expect("containerd start/stop script");
        assert!(out.status.success(), "{var}: {out:?}");
    };
    restart("KURYR_TEST_CONTAINERD_STOP");
    restart("KURYR_TEST_CONTAINERD_START");
    // The pods run on (their shims outlived containerd), with the same addresses.
    assert_eq!(ctrd.ip(&a).await, a_ip);
    assert_eq!(ctrd.ip(&b).await, b_ip);
    assert!(
        ctrd.pings(&a_ctr, &b_ip).await,
        "pod a cannot reach pod b after containerd's restart"
    );
    assert_eq!(cni_ports(&net).await.len(), 2);

    let ports = cni_ports(&net).await;
    ctrd.remove(&a).await;
    ctrd.remove(&b).await;
    assert!(
        cni_ports(&net).await.is_empty(),
        "ports left after the restart"
    );
    ports.iter().for_each(assert_no_veth);
    net.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kuryr_killed_in_a_pods_add_leaves_nothing_once_gc_has_run() {
    let _serial = SERIAL.lock().await;
    let net = TestNet::new("10.253.93.0/24", "10.253.93.1").await;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("k.sock");
    let mut k = Kuryr::at(sock.clone())
        .envs(&[("KURYR_TEST_KILL_AT", "CNI.ADD.after_port")])
        .start();
    let ctrd = Containerd::new();
    ctrd.network(plugin(&k, &net.name, json!({}))).await;
    let sandbox = ctrd.sandbox("kill-");
    let run = ctrd.cri.run_pod(&sandbox).await;
    assert!(
        run.is_err(),
        "RunPodSandbox succeeded with its kuryr killed"
    );
    assert!(k.child.wait().is_ok());
    // What the kill left: the port, made and tagged, and no veth yet.
    let left = cni_ports(&net).await;
    assert_eq!(left.len(), 1, "the killed ADD left no port");

    // The kubelet gives up on the pod (containerd has torn its sandbox down already);
    // kuryr comes back; `kuryr gc` removes the attachment nobody serves.
    let conf = std::fs::read_to_string(k.dir.path().join("kuryr.conf")).unwrap();
    drop(k);
    let _k2 = Kuryr::at(sock).conf(&conf).start();
    let report = common::kuryr_gc(&conf, &["--apply"]);
    assert!(report.contains(left[0].id.as_str()), "{report}");
    assert!(cni_ports(&net).await.is_empty(), "gc left the port");
    assert_no_veth(&left[0]);
    net.remove().await;
}
