//! Where the Kubernetes binaries come from: `scripts/build-kubernetes.sh`,
//! the same build `scripts/cluster.sh` runs (k8s.io/kubernetes at the
//! release pinned in cluster/kubernetes/go.mod). It prints the directory of
//! the cached binaries, building them first when the pin changed (about
//! five minutes on two cores); a test never skips because they are missing.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use crate::go_built::repo_root;

/// The directory holding `kube-apiserver`, `kubectl` and the others; built
/// once per test process (the script itself serializes concurrent builds
/// with a lock).
pub fn kube_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        crate::go_built::built_dir(
            "scripts/build-kubernetes.sh",
            &["kube-apiserver", "kubectl"],
        )
    })
}
