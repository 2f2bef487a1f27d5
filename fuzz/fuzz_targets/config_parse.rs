#![no_main]
//! kuryr.conf parsing: any text never panics; errors are values.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = kuryr::config::Config::parse("fuzz.conf", text);
        let _ = kuryr::config::clouds::from_clouds_yaml(text, "x");
    }
});
