//! The count after the churn: what the node and the pods hold, against
//! what the valid attachments should hold and nothing more.
//!
//! A pod is compared whole (links, addresses, routes of every table,
//! permanent neighbours, qdiscs, tc filters, nftables; see
//! `common::state`) with a reference pod of its kind that got one clean
//! ADD and was never churned — after the parts that differ between any
//! two pods (MACs, ifindexes, the pod's address, the container ID, tc
//! action indexes, link-local addresses) are masked.

use std::collections::BTreeSet;

use crate::common::state::state;

/// Everything left over, by kind.
#[derive(Debug, Default)]
pub struct Leaks {
    pub addresses: Vec<String>,
    pub host_veths: Vec<String>,
    pub pods: Vec<String>,
    pub records: Vec<String>,
}

impl Leaks {
    pub fn total(&self) -> usize {
        self.addresses.len() + self.host_veths.len() + self.pods.len() + self.records.len()
    }

    pub fn summary(&self) -> String {
        format!(
            "leaked: {} addresses, {} host veths, {} pods not as a clean one \
             (links, addresses, routes, neighbours, tc, nft), {} records",
            self.addresses.len(),
            self.host_veths.len(),
            self.pods.len(),
            self.records.len()
        )
    }
}

/// Set differences, as "extra" (leaked) and "missing" lines.
pub fn compare(what: &str, have: &BTreeSet<String>, want: &BTreeSet<String>) -> Vec<String> {
    let mut out: Vec<String> = have
        .difference(want)
        .map(|x| format!("{what}: {x} left over"))
        .collect();
    out.extend(
        want.difference(have)
            .map(|x| format!("{what}: {x} missing (a valid attachment's)")),
    );
    out
}

/// A pod's state with what differs between any two equal pods masked:
/// `ip` (the attachment's address) and `id` (its container ID).
pub fn pod_fingerprint(ns: &str, ip: Option<&str>, id: Option<&str>) -> String {
    let text = state(&[ns], &[]);
    let mut out = String::new();
    for line in text.lines() {
        // IPv6 link-local addresses and their local routes come with
        // duplicate address detection, a second or more after the link.
        if line.contains("fe80::") {
            continue;
        }
        let mut words: Vec<String> = Vec::new();
        let mut iter = line.split_whitespace().peekable();
        let mut first = true;
        while let Some(w) = iter.next() {
            // IPv6 duplicate address detection still running on a pod
            // made a moment ago.
            if w == "tentative" {
                continue;
            }
            let masked = mask_word(w, ip, id, first);
            first = false;
            words.push(masked);
            // The word after these names a per-namespace counter or name.
            if matches!(w, "index" | "link-netnsid" | "link-netns" | "ref" | "bind")
                && iter.next().is_some()
            {
                words.push("<n>".into());
            }
        }
        out.push_str(&words.join(" ").replace(ns, "<pod>"));
        out.push('\n');
    }
    out
}

fn mask_word(w: &str, ip: Option<&str>, id: Option<&str>, first: bool) -> String {
    let mut w = w.to_string();
    if let Some(ip) = ip {
        if w == ip {
            return "<ip>".into();
        }
        if let Some(rest) = w.strip_prefix(&format!("{ip}/")) {
            return format!("<ip>/{rest}");
        }
    }
    if let Some(id) = id {
        w = w.replace(id, "<id>");
    }
    if is_mac(w.trim_end_matches([',', ';'])) {
        return "<mac>".into();
    }
    // "12:" opening a link line; "eth0@if34:" naming the peer's index.
    if first && w.ends_with(':') && w[..w.len() - 1].chars().all(|c| c.is_ascii_digit()) {
        return "<ifindex>:".into();
    }
    if let Some((name, _)) = w.split_once("@if") {
        return format!("{name}@if<n>");
    }
    w
}

fn is_mac(w: &str) -> bool {
    let parts: Vec<&str> = w.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Every veth in the node namespace, as `name alias` (`-` without one).
pub fn node_veths(node_ns: &str) -> BTreeSet<String> {
    tweed_testkit::kernel::links(node_ns)
        .iter()
        .filter(|l| l["linkinfo"]["info_kind"] == "veth")
        .map(|l| {
            format!(
                "{} {}",
                l["ifname"].as_str().unwrap_or("?"),
                l["ifalias"].as_str().unwrap_or("-")
            )
        })
        .collect()
}

/// Every file under `dir` (recursively), as paths relative to it.
pub fn files_under(dir: &std::path::Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap_or(&p);
                out.insert(rel.display().to_string());
            }
        }
    }
    out
}
