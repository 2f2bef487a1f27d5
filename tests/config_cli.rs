//! The binary's start-up: bad configuration fails fast with a message a user can act on.

use std::process::Command;

fn serve_with(conf: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kuryr.conf");
    std::fs::write(&path, conf).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kuryr"))
        .args(["serve", "--config-file"])
        .arg(&path)
        .env("KURYR_LOG_FORMAT", "text")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version_prints() {
    let out = Command::new(env!("CARGO_BIN_EXE_kuryr"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn missing_file_is_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_kuryr"))
        .args(["serve", "--config-file", "/nonexistent/kuryr.conf"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/kuryr.conf"), "{err}");
}

#[test]
fn malformed_ini_fails() {
    let (ok, err) = serve_with("[neutron\nendpoint = http://127.0.0.1:9696\n");
    assert!(!ok);
    assert!(err.contains("not a valid INI file"), "{err}");
}

#[test]
fn bad_value_names_section_and_option() {
    let (ok, err) = serve_with(
        "[DEFAULT]\ncapability_scope = planet\n[neutron]\nendpoint = http://127.0.0.1:9696\n",
    );
    assert!(!ok);
    assert!(err.contains("[DEFAULT] capability_scope"), "{err}");
    assert!(err.contains("local, global"), "{err}");

    let (ok, err) =
        serve_with("[neutron]\nendpoint = http://127.0.0.1:9696\nenable_dhcp = sometimes\n");
    assert!(!ok);
    assert!(err.contains("[neutron] enable_dhcp"), "{err}");
}

#[test]
fn secret_never_echoed() {
    let (ok, err) = serve_with(
        "[neutron]\nauth_type = password\nauth_url = not-a-url\nusername = u\npassword = topsecret42\n",
    );
    assert!(!ok);
    assert!(!err.contains("topsecret42"), "{err}");
    assert!(err.contains("auth_url"), "{err}");
}

#[test]
fn non_http_endpoint_rejected_at_once() {
    let (ok, err) = serve_with("[neutron]\nendpoint = ftp://127.0.0.1:9\n");
    assert!(!ok);
    assert!(err.contains("endpoint"), "{err}");
}

#[test]
fn sample_config_documents_known_options() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/etc/kuryr.conf.sample"
    ))
    .unwrap();
    let mut section = String::new();
    let mut seen = 0;
    for line in text.lines() {
        let l = line.trim();
        if let Some(s) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = s.to_string();
            continue;
        }
        // `#name = value` lines are options; prose comments have spaces before `=` or none.
        let Some(opt) = l
            .strip_prefix('#')
            .and_then(|r| r.split_once(" ="))
            .map(|(n, _)| n)
        else {
            continue;
        };
        if opt.is_empty() || opt.contains(' ') {
            continue;
        }
        seen += 1;
        assert!(
            kuryr::config::known_options(&section).contains(&opt),
            "sample documents [{section}] {opt}, which the parser does not know"
        );
    }
    assert!(seen > 40, "only {seen} options found in the sample");
}

/// A host without a system CA store (a minimal root, a container image): kuryr starts
/// and serves all the same, Neutron over plain http working as before.
#[test]
fn no_system_ca_certificates_still_serves() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("k.sock");
    let path = dir.path().join("kuryr.conf");
    std::fs::write(
        &path,
        format!(
            "[DEFAULT]\nunix_socket = {}\ncni_socket =\n[neutron]\nauth_type = none\nendpoint = http://127.0.0.1:9\n",
            sock.display()
        ),
    )
    .unwrap();
    let empty = dir.path().join("no-ca");
    std::fs::create_dir(&empty).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kuryr"))
        .args(["serve", "--config-file"])
        .arg(&path)
        // What rustls' platform verifier reads on Linux: nothing there.
        .env("SSL_CERT_FILE", empty.join("none.pem"))
        .env("SSL_CERT_DIR", &empty)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Still running after it tried Neutron a few times (it exits on a client it cannot
    // build).
    std::thread::sleep(std::time::Duration::from_secs(3));
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(running, "kuryr exited: {log}");
    assert!(log.contains("no system CA certificates"), "{log}");
}
