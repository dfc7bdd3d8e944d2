//! What a bench runs on and with: root, the workspace's binaries, the
//! machine and tool lines of the report, knobs from the environment.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tweed_lab::Binaries;

/// Fails unless run as root (namespaces, raw sockets).
pub fn require_root(bench: &str) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("{bench}: must run as root (sudo cargo bench -p tweed-lab --bench {bench})");
        std::process::exit(1);
    }
}

/// True when `cargo bench` asked for another bench by name (it passes the
/// filter through to every bench binary).
pub fn filtered_out(bench: &str) -> bool {
    std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !bench.contains(a.as_str()))
}

/// `tweedd` and `tweed` from the profile directory this bench was built
/// into (`<target>/x86_64-unknown-linux-gnu/release/`; the bench itself is
/// in `deps/` below it), Debian's etcd.
pub fn binaries() -> Binaries {
    let exe = std::env::current_exe().expect("bench exe");
    let profile_dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let b = Binaries {
        tweedd: profile_dir.join("tweedd"),
        plugin: profile_dir.join("tweed"),
        etcd: PathBuf::from("/usr/bin/etcd"),
    };
    for p in [&b.tweedd, &b.plugin] {
        if !p.is_file() {
            eprintln!(
                "{} missing: `cargo bench -p tweed-lab` does not build other packages' binaries; \
                 run `cargo build --release --workspace` (same CARGO_TARGET_DIR) first",
                p.display()
            );
            std::process::exit(1);
        }
    }
    b
}

/// One line naming the binaries used and when they were built (a stale
/// `tweedd` would silently measure old code).
pub fn binaries_line(b: &Binaries) -> String {
    let age = |p: &Path| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .map(|d| format!("built {} min ago", d.as_secs() / 60))
            .unwrap_or_default()
    };
    let size = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| format!("{} KiB", m.len() / 1024))
            .unwrap_or_default()
    };
    format!(
        "binaries: {} ({}, {}), {} ({}, {})",
        b.tweedd.display(),
        size(&b.tweedd),
        age(&b.tweedd),
        b.plugin.display(),
        size(&b.plugin),
        age(&b.plugin)
    )
}

// Each bench uses a part of these.
#[allow(unused_imports)]
pub use tweed_testkit::machine::{loadavg, machine_line, today, tool_version};
pub use tweed_testkit::stats::env_usize;

/// A comma-separated list of whole numbers from the environment.
pub fn env_list(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{name}: comma-separated whole numbers"))
        })
        .collect()
}
