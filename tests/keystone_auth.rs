//! Keystone authentication against the real Keystone and a neutron-server behind it
//! (`scripts/devenv keystone`): password and application credential, the endpoint from
//! the catalog, token renewal on expiry and after a 401, and no secret in any log.

mod common;

use std::time::Duration;

use kuryr::config::Config;
use kuryr::neutron::{Filters, Network, Neutron, NeutronError};
use serde_json::{json, Value};

fn keystone_url() -> String {
    std::env::var("KURYR_TEST_KEYSTONE_URL").unwrap_or_else(|_| "http://127.0.0.1:25000/v3".into())
}

fn admin_password() -> String {
    std::env::var("KURYR_TEST_ADMIN_PASSWORD").unwrap_or_else(|_| "kuryr-devenv-admin".into())
}

fn token_lifetime() -> u64 {
    std::env::var("KURYR_TEST_TOKEN_LIFETIME")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
}

fn password_conf() -> String {
    format!(
        "[neutron]\nauth_type = password\nauth_url = {}\nusername = admin\npassword = {}\nproject_name = admin\nuser_domain_name = Default\nproject_domain_name = Default\nregion_name = RegionOne\nendpoint_type = internal\n",
        keystone_url(),
        admin_password()
    )
}

fn client(conf: &str) -> Neutron {
    let cfg = Config::parse("test", conf).expect("config").config;
    Neutron::new(&cfg.neutron).expect("client")
}

/// An admin token and the admin user's id, straight from Keystone.
async fn admin_token() -> (String, String) {
    kuryr::tls::install_crypto_provider();
    let r = reqwest::Client::new()
        .post(format!("{}/auth/tokens", keystone_url()))
        .json(
            &json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": admin_password()}}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}),
        )
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "Keystone does not answer at {} ({e}); `scripts/devenv keystone` starts it",
                keystone_url()
            )
        });
    assert_eq!(r.status(), 201, "admin login failed");
    let tok = r.headers()["x-subject-token"].to_str().unwrap().to_string();
    let body: Value = r.json().await.unwrap();
    (
        tok,
        body["token"]["user"]["id"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn password_auth_finds_neutron_in_the_catalog() {
    let n = client(&password_conf());
    let nets: Vec<Network> = n
        .list(&Filters::new())
        .await
        .expect("list through Keystone");
    let _ = nets;
    assert_eq!(n.tokens_issued(), 1);
    // The token is cached: more calls, no new token.
    n.extensions().await.unwrap();
    n.list::<Network>(&Filters::new()).await.unwrap();
    assert_eq!(n.tokens_issued(), 1);
}

#[tokio::test]
async fn wrong_password_is_an_auth_error_without_the_password() {
    let conf = password_conf().replace(
        &format!("password = {}", admin_password()),
        "password = wrong-Secret-123",
    );
    let n = client(&conf);
    let e = n.list::<Network>(&Filters::new()).await.unwrap_err();
    assert!(matches!(e, NeutronError::Auth(_)), "{e:?}");
    assert!(!e.to_string().contains("wrong-Secret-123"), "{e}");
}

#[tokio::test]
async fn application_credential_auth() {
    let (tok, user) = admin_token().await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!(
            "{}/users/{user}/application_credentials",
            keystone_url()
        ))
        .header("X-Auth-Token", &tok)
        .json(&json!({"application_credential": {"name": common::unique("kuryr-test-")}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let ac: Value = r.json().await.unwrap();
    let (id, secret) = (
        ac["application_credential"]["id"]
            .as_str()
            .unwrap()
            .to_string(),
        ac["application_credential"]["secret"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    let n = client(&format!(
        "[neutron]\nauth_type = v3applicationcredential\nauth_url = {}\napplication_credential_id = {id}\napplication_credential_secret = {secret}\n",
        keystone_url()
    ));
    let ext = n.extensions().await.expect("app credential works");
    assert!(ext.tags());
    let _ = http
        .delete(format!(
            "{}/users/{user}/application_credentials/{id}",
            keystone_url()
        ))
        .header("X-Auth-Token", &tok)
        .send()
        .await;
}

/// A user of its own with admin on the admin project, so revoking its tokens does not
/// disturb the other tests.
async fn own_admin_user(http: &reqwest::Client, tok: &str, password: &str) -> (String, String) {
    let ks = keystone_url();
    let get = |path: String| {
        http.get(format!("{ks}/{path}"))
            .header("X-Auth-Token", tok)
            .send()
    };
    let roles: Value = get("roles?name=admin".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let projects: Value = get("projects?name=admin".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (role, project) = (
        roles["roles"][0]["id"].as_str().unwrap().to_string(),
        projects["projects"][0]["id"].as_str().unwrap().to_string(),
    );
    let name = common::unique("kuryr-renew-");
    let u: Value = http
        .post(format!("{ks}/users"))
        .header("X-Auth-Token", tok)
        .json(&json!({"user": {"name": name, "domain_id": "default", "password": password}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let uid = u["user"]["id"].as_str().unwrap().to_string();
    let r = http
        .put(format!("{ks}/projects/{project}/users/{uid}/roles/{role}"))
        .header("X-Auth-Token", tok)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "role assignment: {}", r.status());
    (name, uid)
}

#[tokio::test]
async fn token_renewed_after_revocation_and_expiry() {
    let (tok, _) = admin_token().await;
    let http = reqwest::Client::new();
    let pw = "Renew-Test-Pw-1";
    let (name, uid) = own_admin_user(&http, &tok, pw).await;
    let n = client(
        &password_conf()
            .replace("username = admin", &format!("username = {name}"))
            .replace(
                &format!("password = {}", admin_password()),
                &format!("password = {pw}"),
            ),
    );
    n.list::<Network>(&Filters::new()).await.unwrap();
    assert_eq!(n.tokens_issued(), 1);

    // Revoke the token kuryr holds: Keystone revokes all of a user's tokens when its
    // password is set; set the same one again.
    let r = http
        .patch(format!("{}/users/{uid}", keystone_url()))
        .header("X-Auth-Token", &tok)
        .json(&json!({"user": {"password": pw}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Revocation events have second granularity: a token issued in the same second as
    // the event would be refused too.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    n.list::<Network>(&Filters::new())
        .await
        .expect("401 answered by a new token");
    assert_eq!(n.tokens_issued(), 2, "exactly one renewal after the 401");

    // Expiry: past three quarters of the token's life kuryr renews before asking.
    tokio::time::sleep(Duration::from_secs(token_lifetime() * 3 / 4 + 1)).await;
    n.list::<Network>(&Filters::new()).await.unwrap();
    assert_eq!(n.tokens_issued(), 3, "renewed before expiry");
    let _ = http
        .delete(format!("{}/users/{uid}", keystone_url()))
        .header("X-Auth-Token", &tok)
        .send()
        .await;
}

#[test]
fn no_secret_in_kuryr_logs() {
    let (pw, ks) = (admin_password(), keystone_url());
    let dir = tempfile::tempdir().unwrap();
    let k = common::Kuryr::at(dir.path().join("k.sock"))
        .conf(&format!(
            "[DEFAULT]\nunix_socket = {}\ndebug = true\n{}",
            dir.path().join("k.sock").display(),
            password_conf()
        ))
        .start();
    // Calls that reach Neutron through Keystone, including a failing one.
    let (s, v) = k.call("IpamDriver.RequestPool", &json!({"Pool": "10.254.9.0/24"}));
    assert_eq!(s, 200, "{v}");
    let pool = v["PoolID"].as_str().unwrap().to_string();
    k.call("IpamDriver.ReleasePool", &json!({"PoolID": pool}));
    let log = k.log_text();
    assert!(
        log.contains("neutron request"),
        "debug logging is on: {log}"
    );
    assert!(!log.contains(&pw), "password in the log");
    // Fernet tokens start with gAAAAA.
    assert!(!log.contains("gAAAAA"), "token in the log");
    let _ = ks;
}

#[tokio::test]
async fn token_auth_and_os_environment() {
    // auth_type = token: a token obtained elsewhere, scoped by Keystone.
    let (tok, _) = admin_token().await;
    let n = client(&format!(
        "[neutron]\nauth_type = token\nauth_url = {}\ntoken = {tok}\nproject_name = admin\nproject_domain_name = Default\n",
        keystone_url()
    ));
    n.extensions().await.expect("token auth");

    // No credentials in kuryr.conf: the OS_* variables of an openrc are used.
    let pw = admin_password();
    let ks = keystone_url();
    let env = move |k: &str| -> Option<String> {
        match k {
            "OS_AUTH_URL" => Some(ks.clone()),
            "OS_USERNAME" => Some("admin".into()),
            "OS_PASSWORD" => Some(pw.clone()),
            "OS_PROJECT_NAME" => Some("admin".into()),
            "OS_USER_DOMAIN_NAME" => Some("Default".into()),
            "OS_PROJECT_DOMAIN_NAME" => Some("Default".into()),
            "OS_REGION_NAME" => Some("RegionOne".into()),
            _ => None,
        }
    };
    let loaded = Config::parse_with_env("kuryr.conf", "[DEFAULT]\n", &env).unwrap();
    assert!(
        loaded.warnings.iter().any(|w| w.contains("OS_*")),
        "{:?}",
        loaded.warnings
    );
    let n = Neutron::new(&loaded.config.neutron).unwrap();
    n.extensions().await.expect("OS_* credentials");

    // clouds.yaml with OS_CLOUD.
    let dir = tempfile::tempdir().unwrap();
    let clouds = dir.path().join("clouds.yaml");
    std::fs::write(
        &clouds,
        format!(
            "clouds:\n  dev:\n    auth:\n      auth_url: {}\n      username: admin\n      password: \"{}\"\n      project_name: admin\n      user_domain_name: Default\n      project_domain_name: Default\n    region_name: RegionOne\n    interface: public\n",
            keystone_url(),
            admin_password()
        ),
    )
    .unwrap();
    let path = clouds.display().to_string();
    let env = move |k: &str| -> Option<String> {
        match k {
            "OS_CLOUD" => Some("dev".into()),
            "OS_CLIENT_CONFIG_FILE" => Some(path.clone()),
            _ => None,
        }
    };
    let loaded = Config::parse_with_env("kuryr.conf", "", &env).unwrap();
    let n = Neutron::new(&loaded.config.neutron).unwrap();
    n.extensions().await.expect("clouds.yaml credentials");
}
