//! The Neutron client over TLS: the real Neutron behind a TLS terminator (rustls, in the
//! test), reached with `cafile`, `insecure`, and a client certificate.

mod common;

use std::sync::Arc;

use kuryr::config::Config;
use kuryr::neutron::{Filters, Network, Neutron, NeutronError};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpStream};

/// TLS in front of the real Neutron; with `client_ca`, a client certificate is required.
async fn tls_front(
    cert: &std::path::Path,
    key: &std::path::Path,
    client_ca: Option<&std::path::Path>,
) -> u16 {
    kuryr::tls::install_crypto_provider();
    let cfg = match client_ca {
        None => kuryr::tls::server_config(cert, key).unwrap(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).unwrap() {
                roots.add(c.unwrap()).unwrap();
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .unwrap();
            let certs: Vec<_> = CertificateDer::pem_file_iter(cert)
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
            let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
            Arc::new(
                rustls::ServerConfig::builder()
                    .with_client_cert_verifier(verifier)
                    .with_single_cert(certs, key)
                    .unwrap(),
            )
        }
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let upstream = common::neutron_url()
        .trim_start_matches("http://")
        .to_string();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                let Ok(mut up) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    port
}

fn client(port: u16, extra: &str) -> Neutron {
    let cfg = Config::parse(
        "t",
        &format!("[neutron]\nendpoint = https://127.0.0.1:{port}\ntimeout = 5\n{extra}"),
    )
    .unwrap()
    .config;
    Neutron::new(&cfg.neutron).unwrap()
}

#[tokio::test]
async fn cafile_insecure_and_client_certificate() {
    common::neutron().await;
    let dir = tempfile::tempdir().unwrap();
    let [ca, cert, key, ccert, ckey] = common::make_certs(dir.path());
    let port = tls_front(&cert, &key, None).await;

    // Our CA: Neutron is reached.
    let n = client(port, &format!("cafile = {}\n", ca.display()));
    n.list::<Network>(&Filters::new())
        .await
        .expect("TLS with cafile");
    // No CA: the unknown issuer is refused.
    let e = client(port, "")
        .list::<Network>(&Filters::new())
        .await
        .unwrap_err();
    assert!(matches!(e, NeutronError::Transport { .. }), "{e:?}");
    // insecure = true skips verification.
    client(port, "insecure = true\n")
        .list::<Network>(&Filters::new())
        .await
        .expect("insecure");

    // A Neutron that wants a client certificate.
    let mport = tls_front(&cert, &key, Some(&ca)).await;
    let with = client(
        mport,
        &format!(
            "cafile = {}\ncertfile = {}\nkeyfile = {}\n",
            ca.display(),
            ccert.display(),
            ckey.display()
        ),
    );
    with.list::<Network>(&Filters::new())
        .await
        .expect("mutual TLS");
    let without = client(mport, &format!("cafile = {}\n", ca.display()));
    assert!(
        without.list::<Network>(&Filters::new()).await.is_err(),
        "no client certificate, no answer"
    );
}
