//! Podman's network store (`network_config_dir`, `/etc/containers/networks` for root):
//! one `<name>.json` per network, as `create` answered it. `podman network rm` deletes
//! the file and calls no plugin, so the store is how kuryr learns a network is gone.

use std::collections::HashSet;
use std::path::Path;

use serde_json::Value;

/// The ids of the store's networks, of every driver or (`driver`) of one; None when
/// there is no store (no Podman 5 on this host).
pub fn network_ids(dir: &Path, driver: Option<&str>) -> Option<HashSet<String>> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut ids = HashSet::new();
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        let Some(v) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        else {
            continue;
        };
        if driver.is_some_and(|d| v["driver"].as_str() != Some(d)) {
            continue;
        }
        if let Some(id) = v["id"].as_str() {
            ids.insert(id.to_string());
        }
    }
    Some(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_read_from_the_json_files_of_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("a.json", r#"{"name":"a","id":"aaa","driver":"kuryr"}"#);
        write("b.json", r#"{"name":"b","id":"bbb","driver":"bridge"}"#);
        write("c.json.tmp", r#"{"name":"c","id":"ccc","driver":"kuryr"}"#);
        write("d.json", "not json");
        let all = network_ids(dir.path(), None).unwrap();
        assert_eq!(all, ["aaa", "bbb"].map(String::from).into());
        let ours = network_ids(dir.path(), Some("kuryr")).unwrap();
        assert_eq!(ours, ["aaa"].map(String::from).into());
        assert!(network_ids(&dir.path().join("none"), None).is_none());
    }
}
