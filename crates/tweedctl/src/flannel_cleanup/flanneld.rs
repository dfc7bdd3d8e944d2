//! Is flanneld running? Cleaning up under a live flanneld would be undone
//! (it recreates its chains and lease file) and would pull its rules from
//! under the pods it still serves.

use std::io;
use std::path::Path;

/// The process name (`/proc/<pid>/comm`, at most 15 bytes) of flannel's
/// agent.
const NAME: &str = "flanneld";

/// The pids of the processes named `flanneld` that `proc` (a procfs mount)
/// shows: in Kubernetes the DaemonSet running the cleanup needs `hostPID`
/// to see flannel's pod.
pub fn running(proc: &Path) -> io::Result<Vec<u32>> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir(proc)? {
        let entry = entry?;
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue; // not a process: /proc/net, /proc/sys, ...
        };
        // A process may exit between the listing and the read.
        let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) else {
            continue;
        };
        if comm.trim_end_matches('\n') == NAME {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    Ok(pids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_processes_by_name_in_a_proc_tree() {
        let dir = tempfile::tempdir().unwrap();
        for (pid, comm) in [
            ("12", "flanneld\n"),
            ("7", "tweedd\n"),
            ("30", "flanneld-x\n"),
        ] {
            std::fs::create_dir(dir.path().join(pid)).unwrap();
            std::fs::write(dir.path().join(pid).join("comm"), comm).unwrap();
        }
        std::fs::create_dir(dir.path().join("net")).unwrap();
        std::fs::create_dir(dir.path().join("99")).unwrap(); // exited
        assert_eq!(running(dir.path()).unwrap(), [12]);
    }
}
