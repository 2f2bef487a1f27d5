//! Request handling under arbitrary call sequences, through the real router and driver
//! against the in-memory Neutron and fake host of `kuryr::testkit` (the `handle_sequence`
//! fuzz target's harness). Replays the kept seeds and corpus, and checks the harness is deep enough that
//! fuzzing reaches real work: a whole lifecycle succeeds and leaves Neutron empty.

use std::path::Path;

use kuryr::testkit::harness::{encode, Harness};
use serde_json::json;

/// Runs `f` on a runtime of its own with a fresh harness (the host plumbing is the fake
/// one: nothing reaches the machine).
fn isolated<T: Send + 'static>(
    f: impl FnOnce(Harness) -> futures::future::BoxFuture<'static, T> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let h = Harness::new().await.unwrap();
            f(h).await
        })
    })
    .join()
    .unwrap()
}

const NET: &str = "4a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";
const EP: &str = "e1e2e3e4e5e6e7e8e9f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff000102030405ab";
const POOL: &str = "00000000-0000-4000-8000-000000000001";

fn lifecycle() -> Vec<(&'static str, String)> {
    let pool = json!({"AddressSpace": "", "Pool": "10.10.0.0/24", "SubPool": "", "Options": {}, "V6": false});
    let gw = json!({"PoolID": POOL, "Address": "", "Options": {"RequestAddressType": "com.docker.network.gateway"}});
    let net = json!({"NetworkID": NET, "Options": {"com.docker.network.generic": {}},
        "IPv4Data": [{"AddressSpace": "", "Pool": "10.10.0.0/24", "Gateway": "10.10.0.1/24"}], "IPv6Data": []});
    let addr = json!({"PoolID": POOL, "Address": "", "Options": {"com.docker.network.endpoint.macaddress": "02:42:0a:0a:00:02"}});
    let ep = json!({"NetworkID": NET, "EndpointID": EP, "Options": {},
        "Interface": {"Address": "10.10.0.2/24", "AddressIPv6": "", "MacAddress": "02:42:0a:0a:00:02"}});
    let join = json!({"NetworkID": NET, "EndpointID": EP, "SandboxKey": "/var/run/docker/netns/0123456789ab", "Options": {}});
    let epref = json!({"NetworkID": NET, "EndpointID": EP});
    vec![
        ("IpamDriver.RequestPool", pool.to_string()),
        ("IpamDriver.RequestAddress", gw.to_string()),
        ("NetworkDriver.CreateNetwork", net.to_string()),
        ("IpamDriver.RequestAddress", addr.to_string()),
        ("NetworkDriver.CreateEndpoint", ep.to_string()),
        ("NetworkDriver.Join", join.to_string()),
        ("NetworkDriver.Leave", epref.to_string()),
        ("NetworkDriver.DeleteEndpoint", epref.to_string()),
        (
            "IpamDriver.ReleaseAddress",
            json!({"PoolID": POOL, "Address": "10.10.0.2"}).to_string(),
        ),
        (
            "NetworkDriver.DeleteNetwork",
            json!({"NetworkID": NET}).to_string(),
        ),
        (
            "IpamDriver.ReleaseAddress",
            json!({"PoolID": POOL, "Address": "10.10.0.1"}).to_string(),
        ),
        (
            "IpamDriver.ReleasePool",
            json!({"PoolID": POOL}).to_string(),
        ),
    ]
}

fn calls(v: &[(&'static str, String)]) -> Vec<u8> {
    let refs: Vec<(&str, &str)> = v.iter().map(|(m, b)| (*m, b.as_str())).collect();
    encode(&refs)
}

#[test]
fn a_whole_lifecycle_succeeds_and_leaves_the_fake_neutron_empty() {
    let input = calls(&lifecycle());
    let (answers, after_endpoint, end) = isolated(move |h| {
        Box::pin(async move {
            // Up to CreateEndpoint: a network, subnet, pool and container port exist.
            let upto = calls(&lifecycle()[..5]);
            h.run(&upto).await.unwrap();
            let mid = (
                h.fake.count("networks"),
                h.fake.count("subnets"),
                h.fake.count("ports"),
            );
            let answers = h.run(&input).await.unwrap();
            (answers, mid, h.fake.snapshot())
        })
    });
    assert_eq!(after_endpoint, (1, 1, 1));
    assert_eq!(answers.len(), 12);
    for (m, s, v) in &answers {
        assert_eq!(*s, 200, "{m} answered {v}");
    }
    let empty = end
        .as_object()
        .unwrap()
        .values()
        .all(|c| c.as_object().is_some_and(|m| m.is_empty()));
    assert!(empty, "Neutron not empty after the lifecycle: {end}");
}

#[test]
fn every_call_twice_gives_the_same_answer_and_no_duplicate() {
    let mut twice = Vec::new();
    for c in lifecycle().into_iter().take(5) {
        twice.push(c.clone());
        twice.push(c);
    }
    let input = calls(&twice);
    let (answers, counts) = isolated(move |h| {
        Box::pin(async move {
            let a = h.run(&input).await.unwrap();
            (
                a,
                (
                    h.fake.count("subnetpools"),
                    h.fake.count("networks"),
                    h.fake.count("ports"),
                ),
            )
        })
    });
    for pair in answers.chunks(2) {
        assert_eq!(pair[0].1, 200, "{} answered {}", pair[0].0, pair[0].2);
        assert_eq!(
            pair[0].2, pair[1].2,
            "{} answered differently the second time",
            pair[0].0
        );
    }
    // One pool, one network, the gateway reservation is not a port here, one container port.
    assert_eq!(counts, (1, 1, 1));
}

#[test]
fn bad_bodies_are_400_with_err_and_change_nothing() {
    // After a valid pool and network, every method gets garbage, wrong types and bad ids.
    let mut seq: Vec<(&'static str, String)> = lifecycle()[..3].to_vec();
    let bad = [
        "not json",
        "[]",
        r#"{"NetworkID": 5}"#,
        r#"{"NetworkID": "../../etc", "EndpointID": "x"}"#,
        r#"{"PoolID": "nope", "Address": "300.1.1.1"}"#,
        r#"{"Pool": "10.0.0.0/99"}"#,
        r#"{"NetworkID": "ab", "EndpointID": "cd", "Interface": {"MacAddress": "zz"}}"#,
    ];
    let methods = [
        "NetworkDriver.CreateNetwork",
        "NetworkDriver.DeleteNetwork",
        "NetworkDriver.CreateEndpoint",
        "NetworkDriver.Join",
        "NetworkDriver.DeleteEndpoint",
        "IpamDriver.RequestPool",
        "IpamDriver.RequestAddress",
        "IpamDriver.ReleaseAddress",
        "IpamDriver.ReleasePool",
    ];
    let mut checked = 0;
    for m in methods {
        for b in bad {
            let mut s = seq.clone();
            s.push((m, b.to_string()));
            let input = calls(&s);
            // The harness fails the run if a 400 changed Neutron or an error lacks `Err`.
            let answers = isolated(move |h| Box::pin(async move { h.run(&input).await.unwrap() }));
            let last = answers.last().unwrap();
            assert!(last.1 >= 400, "{m} accepted {b}: {:?}", last.2);
            checked += 1;
        }
    }
    seq.clear();
    assert_eq!(checked, methods.len() * bad.len());
}

#[test]
fn kept_seeds_and_corpus_replay_without_a_broken_invariant() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut inputs = Vec::new();
    for dir in ["seeds/handle_sequence", "corpus/handle_sequence"] {
        if let Ok(rd) = std::fs::read_dir(root.join(dir)) {
            for e in rd.flatten() {
                inputs.push((e.path(), std::fs::read(e.path()).unwrap()));
            }
        }
    }
    assert!(!inputs.is_empty(), "no seeds in fuzz/seeds/handle_sequence");
    let n = inputs.len();
    let failures = isolated(move |h| {
        Box::pin(async move {
            let mut bad = Vec::new();
            for (p, data) in inputs {
                if let Err(e) = h.run(&data).await {
                    bad.push(format!("{}: {e}", p.display()));
                }
            }
            bad
        })
    });
    assert!(
        failures.is_empty(),
        "{} of {n} inputs broke an invariant:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// An input's delayed work (the endpoint bookkeeping a second after CreateEndpoint) is done
/// before `run` returns: left pending, it wrote into the next input's Neutron (same short
/// ids) while a later call answered 400, which the fuzzer took for a 400 that changed
/// Neutron.
#[test]
fn an_inputs_delayed_work_ends_with_it() {
    // Docker gives no MAC: the port RequestAddress made is taken as it is, and its
    // bookkeeping is the delayed work.
    let mut seq = lifecycle()[..3].to_vec();
    seq.push((
        "IpamDriver.RequestAddress",
        json!({"PoolID": POOL, "Address": "", "Options": {}}).to_string(),
    ));
    seq.push((
        "NetworkDriver.CreateEndpoint",
        json!({"NetworkID": NET, "EndpointID": EP, "Options": {},
            "Interface": {"Address": "10.10.0.2/24", "AddressIPv6": ""}})
        .to_string(),
    ));
    let upto = calls(&seq);
    let (at_return, later) = isolated(move |h| {
        Box::pin(async move {
            h.run(&upto).await.unwrap();
            let at_return = h.fake.snapshot();
            // Well past the bookkeeping delay.
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            (at_return, h.fake.snapshot())
        })
    });
    assert_eq!(
        at_return, later,
        "Neutron changed after the input's run had returned"
    );
    let port = at_return["ports"]
        .as_object()
        .and_then(|m| m.values().next())
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        port["device_id"].as_str(),
        Some(EP),
        "the bookkeeping was not written: {port}"
    );
}

/// The kept seeds are the current encoding of the lifecycle (a changed method list or input
/// format would silently turn them into other inputs). `KURYR_WRITE_SEEDS=1` rewrites them.
#[test]
fn kept_seeds_are_in_the_current_input_format() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/handle_sequence");
    let mut twice = Vec::new();
    for c in lifecycle().into_iter().take(5) {
        twice.push(c.clone());
        twice.push(c);
    }
    let want = [("lifecycle", calls(&lifecycle())), ("twice", calls(&twice))];
    for (name, bytes) in want {
        let path = dir.join(name);
        if std::env::var_os("KURYR_WRITE_SEEDS").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let kept = std::fs::read(&path).unwrap_or_default();
        assert!(
            kept == bytes,
            "{} is stale: rerun with KURYR_WRITE_SEEDS=1",
            path.display()
        );
    }
}
