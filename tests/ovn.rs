//! ML2/OVN as an operator meets it, against the ovn profile's neutron-server (in every
//! run, whatever backend the other tests use): kuryr with no `host` in kuryr.conf binds as
//! this host's chassis (its name is not the kernel's here), and `kuryr doctor` names the
//! chassis, the integration bridge and its datapath, explains a container port whose OVS
//! interface is gone, and fails with the fix when kuryr.conf names another host.

mod common;

use common::{docker, docker_try, Kuryr};

fn doctor(conf: &str, plugin: &str) -> (bool, String) {
    let rundir = common::devenv_path("KURYR_TEST_OVS_RUNDIR");
    common::kuryr_doctor(conf, plugin, &[("OVS_RUNDIR", &rundir)])
}

#[test]
fn doctor_names_the_chassis_and_explains_a_port_without_its_interface() {
    common::require_docker();
    let rundir = common::devenv_path("KURYR_TEST_OVS_RUNDIR");
    let ovn_host = common::devenv_path("KURYR_TEST_OVN_HOST");
    assert_ne!(
        ovn_host,
        kuryr::config::hostname(),
        "the devenv's chassis name"
    );
    let plugin = common::unique("ktovn");
    let socket = std::path::PathBuf::from(format!("/run/docker/plugins/{plugin}.sock"));
    let conf = format!(
        "[DEFAULT]\nunix_socket = {}\ncni_socket = /run/kuryr/{}.sock\n[neutron]\nauth_type = none\nendpoint = {}\n",
        socket.display(),
        common::unique("ovn-cni"),
        common::devenv_path("KURYR_TEST_OVN_NEUTRON_URL")
    );
    let k = Kuryr::at(socket)
        .conf(&conf)
        .envs(&[("OVS_RUNDIR", &rundir)])
        .start();
    let (net, ct) = (common::unique("kovn-"), common::unique("kovnc-"));
    common::kuryr_network(&plugin, "10.37.0.0/24", "10.37.0.1", &net);
    common::run_container(&ct, &net, &[]);

    let checks = |out: &str| -> Result<(), String> {
        for want in [
            format!("[ ok ] binding host: {ovn_host} (this host's OVN chassis"),
            format!("[ ok ] OVN chassis: kuryr-devenv (host {ovn_host}) alive"),
            "[ ok ] OVN integration bridge: br-int, userspace datapath".to_string(),
            "[ ok ] OVN ports plugged: 1 port(s) in use".to_string(),
        ] {
            if !out.contains(&want) {
                return Err(want);
            }
        }
        Ok(())
    };
    // The port is the container's once its bookkeeping is written, a second after.
    let mut out = String::new();
    let passed = common::wait_until(20, || {
        let (ok, o) = doctor(&conf, &plugin);
        out = o;
        (ok && checks(&out).is_ok()).then_some(())
    })
    .is_some();

    // The container's OVS interface removed behind kuryr's back: its port is named.
    let mac = docker(&["exec", &ct, "cat", "/sys/class/net/eth0/address"]);
    let tap = common::ovs::bridge_ports(&rundir, "br-int")
        .into_iter()
        .find(|p| common::ovs::external_id(&rundir, p, "attached-mac") == mac)
        .expect("the container's interface on br-int");
    let port_id = common::ovs::external_id(&rundir, &tap, "iface-id");
    common::ovs::vsctl(&rundir, &["del-port", "br-int", &tap]);
    let (_, unplugged) = doctor(&conf, &plugin);

    // kuryr.conf naming the kernel's host name: ML2/OVN would not bind.
    let (wrong_ok, wrong) = doctor(
        &conf.replace(
            "[DEFAULT]\n",
            &format!("[DEFAULT]\nhost = {}\n", kuryr::config::hostname()),
        ),
        &plugin,
    );

    let _ = docker_try(&["rm", "-f", &ct]);
    let _ = docker_try(&["network", "rm", &net]);
    drop(k);
    assert!(
        passed,
        "{:?} missing or doctor failed:\n{out}",
        checks(&out)
    );
    assert!(
        unplugged.contains(&format!(
            "[warn] OVN ports plugged: 1 of 1: port {port_id}: no OVS interface carries its iface-id"
        )),
        "{unplugged}"
    );
    assert!(!wrong_ok, "{wrong}");
    assert!(
        wrong.contains("ML2/OVN refuses to bind them") && wrong.contains("remove `host`"),
        "{wrong}"
    );
}
