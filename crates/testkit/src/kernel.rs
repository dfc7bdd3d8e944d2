//! Kernel state read back with iproute2's JSON output, independent of the
//! netlink code under test.

use serde_json::Value;

use crate::netns::run_ok;

fn ip_json(ns: &str, args: &[&str]) -> Value {
    let mut full = vec!["-n", ns, "-j", "-d"];
    full.extend_from_slice(args);
    let out = run_ok("ip", &full);
    if out.trim().is_empty() {
        return Value::Array(vec![]);
    }
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("ip {args:?}: bad JSON {e}: {out}"))
}

/// Every link in `ns`, as `ip -j -d link show` prints them.
pub fn links(ns: &str) -> Vec<Value> {
    ip_json(ns, &["link", "show"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// One link by name, if present.
pub fn link(ns: &str, name: &str) -> Option<Value> {
    links(ns).into_iter().find(|l| l["ifname"] == name)
}

/// Names of links in `ns` whose name starts with `prefix`.
pub fn link_names_with_prefix(ns: &str, prefix: &str) -> Vec<String> {
    links(ns)
        .iter()
        .filter_map(|l| l["ifname"].as_str())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// Addresses (`addr/prefix`) on interface `dev` in `ns`, link-local excluded.
pub fn addresses(ns: &str, dev: &str) -> Vec<String> {
    let v = ip_json(ns, &["addr", "show", "dev", dev]);
    let mut out = Vec::new();
    for link in v.as_array().into_iter().flatten() {
        for a in link["addr_info"].as_array().into_iter().flatten() {
            if a["scope"] == "link" {
                continue;
            }
            out.push(format!(
                "{}/{}",
                a["local"].as_str().unwrap_or_default(),
                a["prefixlen"]
            ));
        }
    }
    out
}

/// Routes of one family (`-4`/`-6`) in the main table of `ns`.
pub fn routes(ns: &str, family: &str) -> Vec<Value> {
    let out = run_ok("ip", &["-n", ns, "-j", family, "route", "show"]);
    serde_json::from_str::<Value>(&out)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

/// The value of a sysctl inside `ns`.
pub fn sysctl(ns: &str, key: &str) -> String {
    run_ok("ip", &["netns", "exec", ns, "sysctl", "-n", key])
        .trim()
        .to_string()
}
