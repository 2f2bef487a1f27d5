#![no_main]
//! Request handling: sequences of libnetwork calls (method byte + body, separated by 0xFF)
//! through the real router and driver against an in-memory Neutron. Panics, an error
//! without `Err`, or a 400 that changed Neutron are findings (see `kuryr::testkit::harness`).
use std::sync::OnceLock;

use kuryr::testkit::harness::Harness;
use libfuzzer_sys::fuzz_target;

struct Ctx {
    rt: tokio::runtime::Runtime,
    harness: Harness,
}

fn ctx() -> &'static Ctx {
    static CTX: OnceLock<Ctx> = OnceLock::new();
    CTX.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let harness = rt.block_on(Harness::new()).expect("fake Neutron");
        Ctx { rt, harness }
    })
}

fuzz_target!(|data: &[u8]| {
    let c = ctx();
    if let Err(e) = c.rt.block_on(c.harness.run(data)) {
        panic!("{e}");
    }
});
