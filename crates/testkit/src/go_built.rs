//! Outside components the repository builds from their Go modules with a
//! script of its own (`scripts/build-kubernetes.sh`,
//! `scripts/build-flannel.sh`, the builds `scripts/cluster.sh` runs). Each
//! script prints the directory of its cached binaries, building them first
//! when their pin changed; a test never skips because they are missing.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where Go lives on the project's machines, for a `PATH` that lacks it
/// (the build scripts need `go` even to compute their cache key).
const GO_BIN: &str = "/usr/local/go/bin";

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/testkit has a repository root")
        .to_path_buf()
}

/// Runs the build script at `script` (relative to the repository root) and
/// returns the directory it printed, after checking that it holds every
/// file of `expect` (paths relative to it). Panics with the script's
/// output when it fails.
pub fn built_dir(script: &str, expect: &[&str]) -> PathBuf {
    let script = repo_root().join(script);
    let path = match std::env::var_os("PATH") {
        Some(p) => {
            let mut dirs: Vec<PathBuf> = std::env::split_paths(&p).collect();
            dirs.push(GO_BIN.into());
            std::env::join_paths(dirs).expect("PATH entries join")
        }
        None => GO_BIN.into(),
    };
    let out = Command::new(&script)
        .env("PATH", path)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} failed ({}):\n{stderr}",
        script.display(),
        out.status
    );
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    for f in expect {
        assert!(
            dir.join(f).is_file(),
            "{} printed {}, which holds no {f}:\n{stderr}",
            script.display(),
            dir.display()
        );
    }
    dir
}
