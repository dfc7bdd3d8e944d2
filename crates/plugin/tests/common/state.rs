//! Snapshots of everything a CNI call may change, as text, so two can be
//! compared: per namespace the links, addresses, routes of every table,
//! programmed neighbours, qdiscs and tc filters and the nftables ruleset;
//! then every file under the given state directories (IPAM store, guest
//! records, wire records) with its content. Two equal snapshots mean
//! nothing a plugin could have made or removed differs.

use std::path::{Path, PathBuf};

use tweed_testkit::kernel;

/// The snapshot of `namespaces` and of the files under `dirs`.
pub fn state(namespaces: &[&str], dirs: &[&Path]) -> String {
    let mut out = String::new();
    for ns in namespaces {
        for args in [
            &["-d", "link", "show"][..],
            &["addr", "show"],
            &["-4", "route", "show", "table", "all"],
            &["-6", "route", "show", "table", "all"],
            // Only entries someone programmed: the kernel's learnt ones
            // (a router solicitation leaves one on the bridge, say) come
            // and go by themselves; the plugin only ever adds permanent
            // ones.
            &["neigh", "show", "nud", "permanent"],
        ] {
            let text = tweed_testkit::run_ok("ip", &[&["-n", ns][..], args].concat());
            out.push_str(&format!(
                "== {ns}: ip {}\n{}\n",
                args.join(" "),
                without_timers(&text)
            ));
        }
        let qdiscs = tweed_testkit::run_ok("tc", &["-n", ns, "qdisc", "show"]);
        out.push_str(&format!("== {ns}: tc qdisc\n{qdiscs}\n"));
        for link in kernel::links(ns) {
            let Some(dev) = link["ifname"].as_str() else {
                continue;
            };
            // The plugin's filters hang off ingress qdiscs.
            if !qdiscs.contains(&format!("dev {dev} parent ffff:fff1")) {
                continue;
            }
            let filters =
                tweed_testkit::run_ok("tc", &["-n", ns, "filter", "show", "dev", dev, "ingress"]);
            out.push_str(&format!(
                "== {ns}: tc filter dev {dev} ingress\n{filters}\n"
            ));
        }
        let nft = tweed_testkit::run_ok("ip", &["netns", "exec", ns, "nft", "list", "ruleset"]);
        out.push_str(&format!("== {ns}: nft list ruleset\n{nft}\n"));
    }
    let mut files = Vec::new();
    for dir in dirs {
        collect_files(dir, &mut files);
    }
    files.sort();
    for f in files {
        let content = std::fs::read(&f).unwrap_or_default();
        out.push_str(&format!(
            "== file {}: {:?}\n",
            f.display(),
            String::from_utf8_lossy(&content)
        ));
    }
    out
}

/// `ip -d link` prints a bridge's and its ports' running timers
/// (`gc_timer 123.45`), which change by themselves.
fn without_timers(text: &str) -> String {
    text.lines()
        .map(|line| {
            let mut words = line.split_whitespace().peekable();
            let mut kept = Vec::new();
            while let Some(w) = words.next() {
                if w.ends_with("_timer") {
                    words.next();
                } else {
                    kept.push(w);
                }
            }
            kept.join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Panics with the lines that differ between two [`state`] snapshots.
pub fn assert_same_state(before: &str, after: &str, what: &str) {
    if before == after {
        return;
    }
    let b: Vec<&str> = before.lines().collect();
    let a: Vec<&str> = after.lines().collect();
    let gone: Vec<&&str> = b.iter().filter(|l| !a.contains(l)).collect();
    let new: Vec<&&str> = a.iter().filter(|l| !b.contains(l)).collect();
    if gone.is_empty() && new.is_empty() {
        panic!(
            "{what} changed the order of the node's or pod's state:\n{before}\n---- after:\n{after}"
        );
    }
    panic!("{what} changed the node or pod:\n  gone: {gone:#?}\n  new: {new:#?}");
}

/// `snapshot()` once it stops changing and no IPv6 address is still in
/// duplicate address detection (a link made a moment ago keeps its
/// link-local address `tentative` a second or more on a busy machine);
/// panics after 20 s.
pub fn settled(snapshot: impl Fn() -> String) -> String {
    let mut last = snapshot();
    for _ in 0..40 {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let now = snapshot();
        if now == last && !now.contains(" tentative") {
            return now;
        }
        last = now;
    }
    panic!("the node and pods never settled:\n{last}");
}
