//! The Neutron client under faults, against an in-process fake that answers what each
//! test scripts (fault injection only: everything else is tested on the real Neutron).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kuryr::config::Config;
use kuryr::neutron::{Filters, Network, Neutron, NeutronError, REQUEST_ID};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A fake Neutron: answers the scripted (status, body) list in order, then the last one
/// forever; records each request's head.
struct Fake {
    port: u16,
    hits: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
}

async fn fake(script: Vec<(u16, &'static str)>, delay: Duration) -> Fake {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve_script(l, script, delay)
}

fn serve_script(l: TcpListener, script: Vec<(u16, &'static str)>, delay: Duration) -> Fake {
    let port = l.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let heads = Arc::new(Mutex::new(Vec::new()));
    let (h, hd) = (hits.clone(), heads.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let (h, hd, script) = (h.clone(), hd.clone(), script.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                hd.lock().unwrap().push(head);
                let i = h.fetch_add(1, Ordering::SeqCst);
                let (status, body) = script[i.min(script.len() - 1)];
                tokio::time::sleep(delay).await;
                let resp = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    Fake { port, hits, heads }
}

fn client(port: u16, timeout: u64) -> Neutron {
    let cfg = Config::parse(
        "t",
        &format!("[neutron]\nendpoint = http://127.0.0.1:{port}\ntimeout = {timeout}\n"),
    )
    .unwrap()
    .config;
    Neutron::new(&cfg.neutron).unwrap()
}

const NETS: &str = r#"{"networks": [{"id": "n1", "name": "a"}]}"#;
const UNAVAILABLE: &str =
    r#"{"NeutronError": {"type": "ServiceUnavailable", "message": "try later", "detail": ""}}"#;
const BOOM: &str =
    r#"{"NeutronError": {"type": "Boom", "message": "internal boom", "detail": ""}}"#;

#[tokio::test]
async fn gets_retry_on_503_then_succeed() {
    let f = fake(
        vec![(503, UNAVAILABLE), (503, UNAVAILABLE), (200, NETS)],
        Duration::ZERO,
    )
    .await;
    let n = client(f.port, 5);
    let nets: Vec<Network> = n.list(&Filters::new()).await.unwrap();
    assert_eq!(nets[0].id, "n1");
    assert_eq!(f.hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn gets_retry_on_502_and_504_too() {
    let f = fake(
        vec![(502, UNAVAILABLE), (504, UNAVAILABLE), (200, NETS)],
        Duration::ZERO,
    )
    .await;
    let n = client(f.port, 5);
    let nets: Vec<Network> = n.list(&Filters::new()).await.unwrap();
    assert_eq!(nets[0].id, "n1");
    assert_eq!(f.hits.load(Ordering::SeqCst), 3);
}

/// A refused connection never reached Neutron: even a POST is sent again, once
/// Neutron listens (here 100 ms later, before the first retry).
#[tokio::test]
async fn a_post_whose_connection_was_refused_is_sent_again() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let n = client(port, 5);
    let later = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let l = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        serve_script(
            l,
            vec![(201, r#"{"network": {"id": "x"}}"#)],
            Duration::ZERO,
        )
    });
    let made: Network = n.create(json!({"name": "a"})).await.unwrap();
    assert_eq!(made.id, "x");
    let f = later.await.unwrap();
    assert_eq!(
        f.hits.load(Ordering::SeqCst),
        1,
        "sent once where it arrived"
    );
}

#[tokio::test]
async fn retries_are_bounded() {
    let f = fake(vec![(503, UNAVAILABLE)], Duration::ZERO).await;
    let n = client(f.port, 5);
    let e = n.list::<Network>(&Filters::new()).await.unwrap_err();
    assert_eq!(e.http_status(), 503);
    assert!(
        e.to_string().contains("try later"),
        "Neutron's message kept: {e}"
    );
    assert_eq!(f.hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn server_errors_and_posts_are_not_retried() {
    let f = fake(vec![(500, BOOM)], Duration::ZERO).await;
    let n = client(f.port, 5);
    let e = n.list::<Network>(&Filters::new()).await.unwrap_err();
    assert_eq!(
        e,
        NeutronError::Server {
            status: 500,
            message: "internal boom".into()
        }
    );
    assert_eq!(f.hits.load(Ordering::SeqCst), 1);

    // A POST that reached Neutron is never sent twice, even on a 503.
    let f = fake(
        vec![(503, UNAVAILABLE), (201, r#"{"network": {"id": "x"}}"#)],
        Duration::ZERO,
    )
    .await;
    let n = client(f.port, 5);
    assert!(n.create::<Network>(json!({"name": "a"})).await.is_err());
    assert_eq!(f.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn slow_neutron_times_out() {
    let f = fake(vec![(200, NETS)], Duration::from_secs(5)).await;
    let n = client(f.port, 1);
    let started = std::time::Instant::now();
    let e = n.create::<Network>(json!({"name": "a"})).await.unwrap_err();
    assert!(matches!(e, NeutronError::Transport { .. }), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the timeout bounds the call"
    );
}

#[tokio::test]
async fn garbage_answers_are_decode_errors() {
    let f = fake(vec![(200, "<html>not json</html>")], Duration::ZERO).await;
    let n = client(f.port, 5);
    let e = n.list::<Network>(&Filters::new()).await.unwrap_err();
    assert!(matches!(e, NeutronError::Decode(_)), "{e:?}");
}

#[tokio::test]
async fn request_id_is_sent_as_global_request_id() {
    let f = fake(vec![(200, NETS)], Duration::ZERO).await;
    let n = client(f.port, 5);
    REQUEST_ID
        .scope("req-1234".to_string(), async {
            n.list::<Network>(&Filters::new()).await.unwrap();
        })
        .await;
    let heads = f.heads.lock().unwrap().clone();
    assert!(
        heads[0]
            .to_ascii_lowercase()
            .contains("x-openstack-request-id: req-1234"),
        "{}",
        heads[0]
    );
}

/// A request that never reaches Neutron says why, down to the root cause (the client's
/// own text is only "error sending request"), and keeps the client's error as its source.
#[tokio::test]
async fn a_refused_connection_names_its_cause_and_keeps_its_source() {
    // A port that was just free: nothing listens there.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let e = client(port, 2)
        .list::<Network>(&Filters::new())
        .await
        .unwrap_err();
    let NeutronError::Transport { message, cause } = &e else {
        panic!("not a transport error: {e:?}");
    };
    assert!(
        message.to_ascii_lowercase().contains("refused"),
        "{message}"
    );
    assert!(cause.is_some());
    assert!(std::error::Error::source(&e).is_some(), "{e:?}");
}
