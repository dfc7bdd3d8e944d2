//! Real flannel for tests: flanneld and flannel's CNI plugin, built by
//! `scripts/build-flannel.sh` (the build `scripts/cluster.sh` runs, from
//! the Go modules pinned in cluster/flannel and cluster/flannel-cni), once
//! per test process; the script serializes concurrent builds with a lock.

use std::path::PathBuf;
use std::sync::OnceLock;

/// Where the flannel binaries are.
#[derive(Debug, Clone)]
pub struct FlannelBins {
    /// The agent, `flanneld`.
    pub flanneld: PathBuf,
    /// The directory holding the CNI plugin `flannel` (for `CNI_PATH`).
    pub cni_dir: PathBuf,
}

/// Builds flannel when its pins changed (a cold build takes a few
/// minutes), else only looks its cache up.
pub fn flannel_bins() -> &'static FlannelBins {
    static BINS: OnceLock<FlannelBins> = OnceLock::new();
    BINS.get_or_init(|| {
        let dir = crate::go_built::built_dir(
            "scripts/build-flannel.sh",
            &["bin/flanneld", "cni/flannel"],
        );
        FlannelBins {
            flanneld: dir.join("bin/flanneld"),
            cni_dir: dir.join("cni"),
        }
    })
}
