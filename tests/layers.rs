//! The layers of `src/`, checked: every `crate::` path outside test code goes down the
//! stack or stays in its own module, never up and never across to a sibling.
//!
//! 5 the binaries (`main.rs`, `bin/`)
//! 4 the CLI's commands (`commands/`)
//! 3 front-ends, one per runtime protocol: the libnetwork server, the CNI daemon and the
//!   `kuryr-cni` plugin side; siblings, none uses another
//! 2 the core (`driver/`) and the daemon's handle on it (`service.rs`)
//! 1 clients and host plumbing: the Neutron client, the Docker engine client, netlink
//!   and the binders (`host/`); siblings
//! 0 protocol types, names, configuration, deadlines, TLS, metrics, wire strings
//!
//! `docs/architecture.md` says what lives where; this test keeps it true.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// (module path prefix, layer, sibling group). Longest prefix wins; a module may use its
/// own prefix's group and anything of a lower layer.
const LAYERS: &[(&str, u8, &str)] = &[
    ("main", 5, "main"),
    ("bin", 5, "bin"),
    ("commands", 4, "commands"),
    ("server", 3, "server"),
    ("cni::daemon", 3, "cni::daemon"),
    ("cni::plugin", 3, "cni::plugin"),
    ("netavark::daemon", 3, "netavark::daemon"),
    ("netavark::watch", 3, "netavark::daemon"),
    ("netavark::plugin", 3, "netavark::plugin"),
    ("driver", 2, "core"),
    ("service", 2, "core"),
    ("neutron", 1, "neutron"),
    ("docker", 1, "docker"),
    ("host", 1, "host"),
    ("local_api", 1, "local_api"),
    ("cni::spec", 0, "base"),
    ("cni", 0, "base"),
    ("netavark::spec", 0, "base"),
    ("netavark", 0, "base"),
    ("config", 0, "base"),
    ("names", 0, "base"),
    ("protocol", 0, "base"),
    ("deadline", 0, "base"),
    ("tls", 0, "base"),
    ("vif", 0, "base"),
    ("wire", 0, "base"),
    ("activation", 0, "base"),
    ("metrics", 0, "base"),
    ("kill_point", 0, "base"),
];

fn layer_of(module: &str) -> Option<(u8, &'static str)> {
    LAYERS
        .iter()
        .filter(|(p, _, _)| module == *p || module.starts_with(&format!("{p}::")))
        .max_by_key(|(p, _, _)| p.len())
        .map(|(_, l, g)| (*l, *g))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/driver/ipam.rs` -> `driver::ipam`; `src/cni/mod.rs` -> `cni`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
        parts.pop();
    }
    parts.join("::")
}

/// The product code of a file: test modules (`#[cfg(test)] mod ...` to the end, as this
/// crate writes them) and test-only files are left out.
fn product_code(text: &str) -> &str {
    match text.find("#[cfg(test)]\nmod ") {
        Some(i) => &text[..i],
        None => text,
    }
}

/// Every `crate::a::b` path in the code, as `a::b` (or `a` alone), and every `use
/// crate::{a, b::c}` group's first segments.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let code: String = code
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    for (i, _) in code.match_indices("crate::") {
        if code[..i].ends_with('$') {
            continue; // `$crate::` in a macro: the macro's own crate
        }
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let item = item.trim();
                if !item.is_empty() {
                    out.insert(path_head(item));
                }
            }
        } else {
            out.insert(path_head(rest));
        }
    }
    out
}

/// The first two segments of a path (`driver::ipam::X` -> `driver::ipam`).
fn path_head(path: &str) -> String {
    let end = path
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(path.len());
    path[..end]
        .split("::")
        .filter(|s| !s.is_empty())
        .take(2)
        .collect::<Vec<_>>()
        .join("::")
}

#[test]
fn no_module_uses_a_higher_layer_or_a_sibling() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut wrong = Vec::new();
    let mut checked = 0;
    for f in &files {
        let module = module_of(&src, f);
        // The crate root, the test kit and the unit-test files are not product layers.
        if module.is_empty()
            || module.starts_with("testkit")
            || module.ends_with("tests")
            || module == "bin"
        {
            continue;
        }
        let (layer, group) = layer_of(&module)
            .unwrap_or_else(|| panic!("{module} ({}) has no layer in LAYERS", f.display()));
        let text = std::fs::read_to_string(f).expect("read file");
        for used in crate_paths(product_code(&text)) {
            if used.starts_with("testkit") || used.is_empty() {
                continue;
            }
            let Some((to_layer, to_group)) = layer_of(&used) else {
                wrong.push(format!(
                    "{module} uses {used}, which has no layer in LAYERS"
                ));
                continue;
            };
            checked += 1;
            if to_group == group {
                continue;
            }
            if to_layer > layer {
                wrong.push(format!(
                    "{module} (layer {layer}) uses {used} (layer {to_layer}): up the stack"
                ));
            } else if to_layer == layer {
                wrong.push(format!(
                    "{module} ({group}) uses {used} ({to_group}): a sibling of its layer"
                ));
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} crate paths found: the scan is broken"
    );
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

#[test]
fn the_scan_sees_groups_macros_and_test_modules() {
    let code = "use crate::{names, driver::Driver};\nfn f() { crate::host::x(); $crate::t(); }\n\
                // crate::server::nope\n#[cfg(test)]\nmod tests { use crate::server; }\n";
    let got: Vec<String> = crate_paths(product_code(code)).into_iter().collect();
    assert_eq!(got, ["driver::Driver", "host::x", "names"]);
    assert_eq!(layer_of("driver::Driver"), Some((2, "core")));
    assert_eq!(layer_of("cni::daemon"), Some((3, "cni::daemon")));
    assert_eq!(layer_of("cni::spec::Result"), Some((0, "base")));
    assert_eq!(layer_of("host::x"), Some((1, "host")));
}
