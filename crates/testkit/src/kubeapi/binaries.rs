//! Where the Kubernetes binaries come from: `scripts/build-kubernetes.sh`,
//! the same build `scripts/cluster.sh` runs (k8s.io/kubernetes at the
//! release pinned in cluster/kubernetes/go.mod). It prints the directory of
//! the cached binaries, building them first when the pin changed (about
//! five minutes on two cores); a test never skips because they are missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Where Go lives on the project's machines, for a `PATH` that lacks it
/// (the build script needs `go` even to compute its cache key).
const GO_BIN: &str = "/usr/local/go/bin";

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/testkit has a repository root")
        .to_path_buf()
}

/// The directory holding `kube-apiserver`, `kubectl` and the others; built
/// once per test process (the script itself serializes concurrent builds
/// with a lock).
pub fn kube_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(build)
}

fn build() -> PathBuf {
    let script = repo_root().join("scripts/build-kubernetes.sh");
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
    for c in ["kube-apiserver", "kubectl"] {
        assert!(
            dir.join(c).is_file(),
            "{} printed {}, which holds no {c}:\n{stderr}",
            script.display(),
            dir.display()
        );
    }
    dir
}
